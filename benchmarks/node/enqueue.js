// Adds `count` log_if_999 jobs with one workerUtils.addJobs call and prints the call's
// duration as one JSON line. Argument: a JSON object {connectionString, count}.
"use strict";

const { makeWorkerUtils } = require("graphile-worker");

async function main() {
  const { connectionString, count } = JSON.parse(process.argv[2]);
  const specs = [];
  for (let id = 0; id < count; id++) {
    specs.push({ identifier: "log_if_999", payload: { id } });
  }
  // makeWorkerUtils connects (and checks the schema) before we start the clock.
  const utils = await makeWorkerUtils({ connectionString });
  try {
    const before = process.hrtime.bigint();
    const jobs = await utils.addJobs(specs);
    const callNs = process.hrtime.bigint() - before;
    if (jobs.length !== count) {
      throw new Error(`addJobs returned ${jobs.length} jobs, expected ${count}`);
    }
    console.log(JSON.stringify({ call_s: Number(callNs) / 1e9, jobs: jobs.length }));
  } finally {
    await utils.release();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
