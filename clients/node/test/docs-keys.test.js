// docs/keys.md's Node.js block runs as printed: as one ES module importing "strongroom",
// against a real server; each `console.log(...)` must print what the comment at the end
// of its line says (as readme.test.js checks the README's quick start).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, it } from "node:test";

import { Strongroom } from "../dist/index.js";
import { startServer } from "./helpers/server.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

async function nodeBlock() {
  const doc = await readFile(new URL("../../../docs/keys.md", import.meta.url), "utf8");
  const section = doc.match(/<!-- keys-node:begin -->\n([\s\S]*?)<!-- keys-node:end -->/);
  assert.ok(section, "docs/keys.md lost its Node.js section");
  return [...section[1].matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]).join("\n");
}

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.stop());

it("docs/keys.md's Node.js block runs and prints what it says", async () => {
  const code = await nodeBlock();
  const expected = [...code.matchAll(/console\.log\(.*\);\s*\/\/ (.*)$/gm)].map((m) => m[1]);
  assert.ok(expected.length >= 4);
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    ["--input-type=module", "--eval", code],
    {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", STRONGROOM_API_KEY: server.apiKey, STRONGROOM_BASE_URL: server.baseURL },
    },
  ).catch((error) => assert.fail(`the example failed:\n${error.stderr}`));
  assert.equal(stderr.replace(/^.*ExperimentalWarning.*\n(.*--trace-warnings.*\n)?/gm, ""), "");
  assert.deepEqual(stdout.trimEnd().split("\n"), expected);

  const admin = new Strongroom({ apiKey: server.apiKey, baseURL: server.baseURL });
  assert.deepEqual((await admin.secrets.list()).items, []); // it cleaned up after itself
  const ci = (await admin.keys.list({ includeRevoked: true })).items.filter((k) => k.name === "ci");
  assert.equal(ci.length, 2);
  assert.ok(ci.every((k) => k.revokedAt !== null));
});
