// The guide tests paste the guide's code as written: every marked block must be the
// guide's code token for token, and every section of the guide that calls the API must
// have its block.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { it } from "node:test";

import { GUIDE_PATH, pastedBlocks, squeeze } from "./helpers/guide.js";

const GUIDE_TESTS = [
  new URL("./guide-secrets.test.js", import.meta.url),
  new URL("./guide-tasks.test.js", import.meta.url),
];

const SECTIONS_CALLING_THE_API = [
  "Creating Secrets",
  "Listing Secrets",
  "Listing Secrets: pagination",
  "Listing Secrets: metadata filter",
  "Retrieving Secrets",
  "Updating Secrets",
  "Partial Updates",
  "Deleting Secrets",
  "Error Handling",
  "Secret Rotation Example",
  "Using Secrets in Tasks",
  "Using Secrets in Expressions",
  "Using Multiple Secrets",
  "Working with Async/Await",
];

it("every section of the guide that calls the API is pasted, once", async () => {
  const sections = (await pastedBlocks(GUIDE_TESTS)).map((b) => b.section);
  assert.deepEqual([...sections].sort(), [...SECTIONS_CALLING_THE_API].sort());
});

it("every pasted block is the guide's code as written", async () => {
  const guide = squeeze(await readFile(GUIDE_PATH, "utf8"));
  for (const block of await pastedBlocks(GUIDE_TESTS)) {
    const code = squeeze(block.code);
    assert.ok(code.length > 40, `${block.file}: "${block.section}" is (nearly) empty`);
    assert.ok(guide.includes(code), `${block.file}: "${block.section}" differs from the guide`);
  }
});
