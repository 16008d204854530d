// The package as published: types that compile in a strict consumer project, no runtime
// dependencies (the global fetch is all it needs), and the tarball `npm pack` makes, installed
// into a project of its own.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
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

it("npm pack makes a tarball of dist alone that a fresh project installs and imports", async () => {
  const run = promisify(execFile);
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const work = await mkdtemp(join(tmpdir(), "strongroom-pack-"));
  try {
    // npm test built dist already; --ignore-scripts keeps prepack from rebuilding it (the
    // build empties dist first) under the test files running beside this one.
    const packed = await run(npm, ["pack", "--ignore-scripts", "--json", "--pack-destination", work], { cwd: ROOT });
    const [{ filename, files }] = JSON.parse(packed.stdout);
    const paths = files.map((f) => f.path);
    assert.ok(paths.includes("dist/index.js") && paths.includes("dist/index.d.ts"), paths.join(" "));
    for (const path of paths) {
      assert.ok(path.startsWith("dist/") || ["package.json", "README.md"].includes(path), `packed ${path}`);
    }

    const project = join(work, "consumer");
    await mkdir(project);
    await writeFile(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    // No dependencies to fetch: --offline proves the tarball is all it takes.
    await run(npm, ["install", "--offline", "--no-audit", "--no-fund", join(work, filename)], { cwd: project });
    const script = [
      'import { Strongroom, Julep, StrongroomError } from "strongroom";',
      'const client = new Strongroom({ apiKey: "sr_x", baseURL: "http://127.0.0.1:9" });',
      "console.log(typeof client.secrets.get, Julep === Strongroom, typeof StrongroomError);",
    ].join("\n");
    const imported = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: project });
    assert.equal(imported.stdout.trim(), "function true function");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
