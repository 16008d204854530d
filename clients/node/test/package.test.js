// The package as published: types that compile in a strict consumer project, and no
// runtime dependencies (the global fetch is all it needs).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { it } from "node:test";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");

it("a TypeScript consumer of the guide's calls compiles with tsc --strict --noEmit", async () => {
  const consumer = join(ROOT, "test", "types-consumer", "tsconfig.json");
  const run = promisify(execFile)(process.execPath, [TSC, "--strict", "--noEmit", "-p", consumer], { cwd: ROOT });
  await run.catch((error) => assert.fail(`tsc failed:\n${error.stdout}${error.stderr}`));
});

it("has no runtime dependencies, and dist imports only its own modules and node:", async () => {
  const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
  assert.deepEqual(Object.keys(pkg.dependencies ?? {}), []);
  assert.deepEqual(Object.keys(pkg.peerDependencies ?? {}), []);
  const dist = join(ROOT, "dist");
  const files = (await readdir(dist, { recursive: true })).filter((f) => f.endsWith(".js"));
  assert.ok(files.includes("index.js"));
  assert.doesNotMatch(
    (await Promise.all(files.map((f) => readFile(join(dist, f), "utf8")))).join("\n"),
    /\bimport\s*\(|\brequire\s*\(/,
    "no dynamic imports or require",
  );
  for (const file of files) {
    const source = await readFile(join(dist, file), "utf8");
    // Top-level import and export statements (tsc writes them at the start of a line;
    // doc comments quoting an import start with " * ").
    for (const [, specifier] of source.matchAll(/^(?:(?:import|export)\b[^;]*?\bfrom\s*|import\s*)["']([^"']+)["'];/gm)) {
      assert.ok(specifier.startsWith(".") || specifier.startsWith("node:"), `${file} imports ${specifier}`);
    }
  }
});

it("exports the ESM entry point and its types", async () => {
  const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
  assert.equal(pkg.type, "module");
  assert.deepEqual(pkg.exports["."], { types: "./dist/index.d.ts", default: "./dist/index.js" });
  assert.equal(pkg.engines.node, ">=18");
  const entry = await import("strongroom"); // the package resolving itself by name
  assert.equal(entry.Julep, entry.Strongroom);
  await readFile(join(ROOT, "dist", "index.d.ts"), "utf8");
});
