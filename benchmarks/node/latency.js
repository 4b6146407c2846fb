// add->start latency of one runner: `warmup + samples` jobs added one at a time through a
// separate WorkerUtils pool; each sample runs from the start of the addJob call to the
// start of the task, both read from the same monotonic clock. Prints {samples_ms} and the
// duration of each addJob call itself ({add_call_ms}) as JSON.
// Argument: a JSON object {worker: <preset worker options>, samples, warmup}.
"use strict";

const { makeWorkerUtils, run } = require("graphile-worker");

const SAMPLE_TIMEOUT_MS = 30000;

async function main() {
  const { worker, samples, warmup } = JSON.parse(process.argv[2]);
  const waiting = new Map();
  const taskList = {
    latency: async (payload) => {
      const startedAt = process.hrtime.bigint();
      const resolve = waiting.get(payload.id);
      if (resolve) {
        waiting.delete(payload.id);
        resolve(startedAt);
      }
    },
  };
  const runner = await run({ noHandleSignals: true, taskList, preset: { worker } });
  const utils = await makeWorkerUtils({ connectionString: worker.connectionString });
  const measured = [];
  const addCalls = [];
  try {
    for (let id = 0; id < warmup + samples; id++) {
      let timer;
      const started = new Promise((resolve, reject) => {
        waiting.set(id, resolve);
        timer = setTimeout(
          () => reject(new Error(`job ${id} did not start within ${SAMPLE_TIMEOUT_MS} ms`)),
          SAMPLE_TIMEOUT_MS,
        );
      });
      const addedAt = process.hrtime.bigint();
      await utils.addJob("latency", { id });
      const returnedAt = process.hrtime.bigint();
      const startedAt = await started;
      clearTimeout(timer);
      if (id >= warmup) {
        measured.push(Number(startedAt - addedAt) / 1e6);
        addCalls.push(Number(returnedAt - addedAt) / 1e6);
      }
    }
  } finally {
    await utils.release();
    await runner.stop();
  }
  console.log(JSON.stringify({ samples_ms: measured, add_call_ms: addCalls }));
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
