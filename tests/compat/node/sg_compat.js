"use strict";
/*
 * Shared by the Node scripts of the compatibility tests: `require("sg_compat")`.
 *
 * - `args`: the JSON value the test passed (`SG_COMPAT_ARGS`), or null.
 * - `options(extra)`: worker options for this test database, with Graphile Worker's log
 *   sent to stderr and no signal handlers, merged with `extra`.
 * - `emit(value)`: print one JSON line on stdout; stdout carries nothing else.
 * - `main(fn)`: run the async `fn`, emit what it returns (unless undefined), and exit 1 on
 *   an error.
 * - `stdinClosed()`: a promise resolved when the test closes our stdin (its "stop" signal).
 * - `command(name)`: a promise resolved when the test sends the stdin line
 *   {"command": name} (also if it was sent earlier).
 * - `recorded(body)`: wrap a task so each run writes a row to `compat.runs` before `body`
 *   runs and stamps `finished_at` after it, both with the server's clock_timestamp() and
 *   outside any job transaction.
 */
const readline = require("readline");
const { Logger } = require("graphile-worker");

const args = JSON.parse(process.env.SG_COMPAT_ARGS || "null");

const logger = new Logger(() => (level, message) => {
  if (level !== "debug") process.stderr.write(`[${level}] ${message}\n`);
});

function options(extra) {
  return {
    connectionString: process.env.DATABASE_URL,
    logger,
    noHandleSignals: true,
    ...extra,
  };
}

function emit(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function main(fn) {
  fn().then(
    (result) => {
      if (result !== undefined) emit(result);
    },
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}

let closed = null; // resolved when stdin ends; null until stdin is first read
const commands = new Map(); // name -> { promise, resolve }

function listen() {
  if (closed !== null) return;
  const input = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  closed = new Promise((resolve) => input.on("close", resolve));
  input.on("line", (line) => slot(JSON.parse(line).command).resolve());
}

function slot(name) {
  if (!commands.has(name)) {
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    commands.set(name, { promise, resolve });
  }
  return commands.get(name);
}

function stdinClosed() {
  listen();
  return closed;
}

function command(name) {
  listen();
  return slot(name).promise;
}

function recorded(body = async () => {}) {
  return async (payload, helpers) => {
    const { job } = helpers;
    const {
      rows: [{ id }],
    } = await helpers.query(
      `insert into compat.runs (runtime, task, job_id, attempt, payload)
       values ('node', $1, $2, $3, $4) returning id`,
      [job.task_identifier, job.id, job.attempts, JSON.stringify(payload)],
    );
    try {
      return await body(payload, helpers);
    } finally {
      await helpers.query(
        "update compat.runs set finished_at = clock_timestamp() where id = $1",
        [id],
      );
    }
  };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

module.exports = { args, command, emit, logger, main, options, recorded, sleep, stdinClosed };
