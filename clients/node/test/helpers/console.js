// A stand-in for `console` that the guide's blocks receive as a parameter, so that what
// they print can be checked (and is not printed).

import { format } from "node:util";

export function recorder() {
  const logs = [];
  const errors = [];
  return {
    logs,
    errors,
    console: {
      log: (...args) => logs.push(format(...args)),
      error: (...args) => errors.push(format(...args)),
    },
  };
}

/** Run `block(console)` with a recorder; its return value and what it printed. */
export async function runBlock(block) {
  const out = recorder();
  const value = await block(out.console);
  return { value, logs: out.logs, errors: out.errors };
}
