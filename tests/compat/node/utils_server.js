"use strict";
/*
 * Graphile Worker's `makeWorkerUtils`, driven over stdin and stdout so that a test can
 * interleave Node calls with Python ones without starting Node for every call.
 *
 * Once connected it prints {"ready": true}. Then each stdin line is a request
 * {"id": n, "method": "addJob", "args": [...]}, answered, in order, by one stdout line
 * {"id": n, "result": ...} or {"id": n, "error": {"message": ..., "code": ...}}.
 * - `method` is a WorkerUtils method (addJob, addJobs, completeJobs, rescheduleJobs,
 *   forceUnlockWorkers, ...) or "query" (args: SQL text and values; result: the rows).
 * - A `runAt` given as an ISO string, in a job spec or in rescheduleJobs' options, is
 *   turned into a Date, as the API expects.
 * Closing stdin releases the utils and ends the process.
 */
const readline = require("readline");
const { makeWorkerUtils } = require("graphile-worker");
const { emit, main, options } = require("sg_compat");

// Which argument holds the spec(s) or options that may carry a runAt.
const SPEC_ARGUMENT = { addJob: 2, addJobs: 0, rescheduleJobs: 1 };

function withDate(spec) {
  if (spec === null || typeof spec !== "object" || typeof spec.runAt !== "string") return spec;
  return { ...spec, runAt: new Date(spec.runAt) };
}

async function call(utils, method, args) {
  if (method === "query") {
    const { rows } = await utils.withPgClient((client) => client.query(args[0], args[1]));
    return rows;
  }
  if (typeof utils[method] !== "function") throw new Error(`no such method: ${method}`);
  const converted = [...args];
  const index = SPEC_ARGUMENT[method];
  if (index !== undefined && index < args.length) {
    const arg = args[index];
    converted[index] = Array.isArray(arg) ? arg.map(withDate) : withDate(arg);
  }
  return utils[method](...converted);
}

main(async () => {
  const utils = await makeWorkerUtils(options());
  try {
    emit({ ready: true });
    const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
    for await (const line of lines) {
      const { id, method, args } = JSON.parse(line);
      try {
        const result = await call(utils, method, args);
        emit({ id, result: result === undefined ? null : result });
      } catch (error) {
        emit({ id, error: { message: String(error?.message ?? error), code: error?.code ?? null } });
      }
    }
  } finally {
    await utils.release();
  }
});
