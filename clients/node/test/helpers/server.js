// A real strongroom server process for the tests: a fresh SQLite database and master key
// in a temporary directory, a free port on 127.0.0.1, and an API key issued by the
// `strongroom` command, as an operator would.

import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

/** The repository's `strongroom` command (`make install` puts it there). */
export const STRONGROOM =
  process.env.STRONGROOM_BIN ?? fileURLToPath(new URL("../../../../.venv/bin/strongroom", import.meta.url));

const READY_TIMEOUT_MS = 30_000;

/** A port nobody listens on right now. */
export async function freePort() {
  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Start `strongroom serve` and issue an API key with every scope for tenant `default`.
 * `env` adds server settings. Returns `{ baseURL, apiKey, stop(), issueKey(scopes) }`.
 */
export async function startServer(env = {}) {
  const dir = await mkdtemp(join(tmpdir(), "strongroom-node-"));
  const settings = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? dir,
    STRONGROOM_DATABASE_URL: `sqlite:///${join(dir, "db.sqlite")}`,
    STRONGROOM_MASTER_KEY: randomBytes(32).toString("base64"),
    ...env,
  };
  const { stdout } = await promisify(execFile)(
    STRONGROOM,
    ["keys", "create", "--tenant", "default", "--quiet"],
    { env: settings, cwd: dir },
  );
  const apiKey = stdout.trim();
  const port = await freePort();
  const logPath = join(dir, "server.log");
  const log = openSync(logPath, "w");
  const child = spawn(STRONGROOM, ["serve", "--port", String(port)], {
    env: settings,
    cwd: dir,
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  const baseURL = `http://127.0.0.1:${port}`;

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
    }
    await exited;
    await rm(dir, { recursive: true, force: true });
  };

  /** Another API key for tenant `default`, with these scopes (every scope when none). */
  const issueKey = async (scopes = []) => {
    const args = ["keys", "create", "--tenant", "default", "--quiet", ...scopes.flatMap((s) => ["--scope", s])];
    const { stdout: issued } = await promisify(execFile)(STRONGROOM, args, { env: settings, cwd: dir });
    return issued.trim();
  };

  try {
    await waitReady(baseURL, exited);
  } catch (error) {
    const output = await readFile(logPath, "utf8").catch(() => "");
    await stop();
    throw new Error(`${error.message}\n--- server log ---\n${output}`);
  }
  return { baseURL, apiKey, stop, logPath, issueKey };
}

/** Poll `/healthz` until it answers 200: readiness, not a guess at how long start-up takes. */
async function waitReady(baseURL, exited) {
  let exitCode;
  exited.then((code) => {
    exitCode = code;
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      throw new Error(`the server exited (${exitCode}) before it was ready`);
    }
    try {
      const response = await fetch(`${baseURL}/healthz`, { signal: AbortSignal.timeout(1_000) });
      if (response.status === 200) {
        return;
      }
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the server at ${baseURL} was not ready within ${READY_TIMEOUT_MS} ms`);
}
