// The trivial job of the throughput runs (twin of benchmarks/tasks.py: LogIf999).
"use strict";

module.exports = async (payload, helpers) => {
  if (payload.id === 999) {
    helpers.logger.info("job 999 ran");
  }
};
