// The README's quick start runs as printed: its blocks, one after the other, as one ES
// module importing "strongroom", against a real server; each `console.log(...)` must print
// what the comment at the end of its line says.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, it } from "node:test";

import { startServer } from "./helpers/server.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

async function quickStart() {
  const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
  const section = readme.match(/<!-- node-quickstart:begin -->\n([\s\S]*?)<!-- node-quickstart:end -->/);
  assert.ok(section, "the README lost its quick start");
  return [...section[1].matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
}

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.stop());

it("the README's quick start runs and prints what it says", async () => {
  const blocks = await quickStart();
  assert.ok(blocks.length >= 4);
  const code = blocks.join("\n");
  const expected = [...code.matchAll(/console\.log\(.*\);\s*\/\/ (.*)$/gm)].map((m) => m[1]);
  // Run from the package directory, where "strongroom" resolves to this package itself.
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    ["--input-type=module", "--eval", code],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? "",
        STRONGROOM_API_KEY: server.apiKey,
        STRONGROOM_BASE_URL: server.baseURL,
      },
    },
  ).catch((error) => assert.fail(`the quick start failed:\n${error.stderr}`));
  assert.equal(stderr.replace(/^.*ExperimentalWarning.*\n(.*--trace-warnings.*\n)?/gm, ""), "");
  assert.deepEqual(stdout.trimEnd().split("\n"), expected);
});
