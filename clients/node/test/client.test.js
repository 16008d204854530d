// The client itself: options and their environment fallbacks, keeping the API key out of
// sight, never logging, paging with listAll, and executions.wait.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { inspect } from "node:util";
import { describe, it } from "node:test";

import {
  APIError,
  DEFAULT_BASE_URL,
  Julep,
  Strongroom,
  StrongroomError,
  VERSION,
  WaitTimeoutError,
} from "../dist/index.js";
import { fakeServer, sendError, sendJson } from "./helpers/fake-http.js";

const KEY = "sr_0123456789abcdefSECRETKEY";

async function fake(t, handler) {
  const server = await fakeServer(handler);
  t.after(() => server.close());
  return server;
}

/** Run `fn` with `STRONGROOM_*` variables set (or, for `undefined`, unset). */
async function withEnv(vars, fn) {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

describe("options", () => {
  it("falls back to STRONGROOM_API_KEY and STRONGROOM_BASE_URL", async (t) => {
    const server = await fake(t, (request, res) => sendJson(res, 200, { items: [], limit: 100, offset: 0, has_more: false }));
    await withEnv({ STRONGROOM_API_KEY: KEY, STRONGROOM_BASE_URL: server.baseURL }, async () => {
      const client = new Strongroom();
      assert.equal(client.baseURL, server.baseURL);
      await client.secrets.list();
    });
    assert.equal(server.requests[0].headers.authorization, `Bearer ${KEY}`);
  });

  it("options win over the environment", async () => {
    await withEnv({ STRONGROOM_API_KEY: "env-key", STRONGROOM_BASE_URL: "http://127.0.0.1:1" }, () => {
      const client = new Strongroom({ apiKey: KEY, baseURL: "http://127.0.0.1:9999///" });
      assert.equal(client.baseURL, "http://127.0.0.1:9999", "without the trailing slashes");
    });
  });

  it("defaults: http://127.0.0.1:8000, 30 s per attempt, 2 resends", async () => {
    await withEnv({ STRONGROOM_BASE_URL: undefined }, () => {
      const client = new Julep({ apiKey: KEY });
      assert.equal(DEFAULT_BASE_URL, "http://127.0.0.1:8000");
      assert.deepEqual([client.baseURL, client.timeout, client.maxRetries], [DEFAULT_BASE_URL, 30_000, 2]);
    });
  });

  it("without an API key anywhere: a StrongroomError that says how to get one", async () => {
    await withEnv({ STRONGROOM_API_KEY: undefined }, () => {
      assert.throws(
        () => new Strongroom(),
        (error) =>
          error instanceof StrongroomError &&
          error.code === "missing_api_key" &&
          /STRONGROOM_API_KEY/.test(error.message),
      );
    });
  });

  it("refuses a timeout or maxRetries that cannot work", () => {
    assert.throws(() => new Strongroom({ apiKey: KEY, timeout: 0 }), RangeError);
    assert.throws(() => new Strongroom({ apiKey: KEY, timeout: -1 }), RangeError);
    assert.throws(() => new Strongroom({ apiKey: KEY, maxRetries: -1 }), RangeError);
    assert.throws(() => new Strongroom({ apiKey: KEY, maxRetries: 1.5 }), RangeError);
    assert.equal(new Strongroom({ apiKey: KEY, timeout: Infinity }).timeout, Infinity);
  });

  it("refuses a base URL that is not http(s)", () => {
    assert.throws(() => new Strongroom({ apiKey: KEY, baseURL: "127.0.0.1:8000" }), TypeError);
    assert.throws(() => new Strongroom({ apiKey: KEY, baseURL: "file:///etc" }), /http:\/\/ or https:\/\//);
    assert.equal(new Strongroom({ apiKey: KEY, baseURL: "https://vault.example/" }).baseURL, "https://vault.example");
  });

  it("VERSION is package.json's", async () => {
    const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
    assert.equal(VERSION, pkg.version);
  });
});

describe("nothing shows the key or a value, nothing is logged", () => {
  it("the API key is not in the client's inspection or JSON", () => {
    const client = new Strongroom({ apiKey: KEY });
    assert.ok(!inspect(client, { depth: Infinity, showHidden: true }).includes(KEY));
    assert.ok(!JSON.stringify(client).includes(KEY));
  });

  it("errors hold neither the key nor what was sent", async (t) => {
    const value = "value-that-must-not-show-SECRET";
    const server = await fake(t, (request, res) => sendError(res, 422, "validation_error", "body.name: invalid"));
    const error = await new Strongroom({ apiKey: KEY, baseURL: server.baseURL })
      .secrets.create({ name: "bad name", value })
      .catch((e) => e);
    assert.ok(error instanceof APIError);
    const shown = inspect(error, { depth: Infinity, showHidden: true }) + String(error) + JSON.stringify(error);
    assert.ok(!shown.includes(KEY), "no API key");
    assert.ok(!shown.includes(value), "no value");
  });

  it("the client never writes to the console", async (t) => {
    const calls = [];
    for (const method of ["log", "info", "warn", "error", "debug", "trace"]) {
      t.mock.method(console, method, (...args) => calls.push([method, args]));
    }
    t.mock.method(Math, "random", () => 0);
    const server = await fake(t, (request, res, index) =>
      index % 2 === 0 ? sendError(res, 503, "unavailable") : sendError(res, 404, "not_found"),
    );
    const client = new Strongroom({ apiKey: KEY, baseURL: server.baseURL });
    await assert.rejects(client.secrets.get("a"));
    await assert.rejects(client.secrets.create({ name: "a", value: "b" }));
    assert.deepEqual(calls, []);
  });
});

describe("paging", () => {
  /** A server with `count` secrets, paged as the API pages. */
  const secretsServer = (t, count) =>
    fake(t, (request, res) => {
      const url = new URL(request.url, "http://x");
      const limit = Number(url.searchParams.get("limit") ?? 100);
      const offset = Number(url.searchParams.get("offset") ?? 0);
      const all = Array.from({ length: count }, (_, i) => ({
        id: `s${i}`,
        name: `secret_${i}`,
        value: "ENCRYPTED",
        created_at: "t",
      }));
      const items = url.pathname === "/v1/audit" ? all.map((s, i) => ({ id: i, action: "secret.read" })) : all;
      sendJson(res, 200, { items: items.slice(offset, offset + limit), limit, offset, has_more: offset + limit < count });
    });

  it("secrets.listAll fetches page after page as the loop goes", async (t) => {
    const server = await secretsServer(t, 5);
    const client = new Strongroom({ apiKey: KEY, baseURL: server.baseURL });
    const names = [];
    for await (const secret of client.secrets.listAll({ pageSize: 2, metadata: { team: "a" } })) {
      names.push(secret.name);
      assert.equal(secret.createdAt, "t");
    }
    assert.deepEqual(names, ["secret_0", "secret_1", "secret_2", "secret_3", "secret_4"]);
    const offsets = server.requests.map((r) => new URL(r.url, "http://x").searchParams.get("offset"));
    assert.deepEqual(offsets, ["0", "2", "4"]);
    assert.ok(server.requests.every((r) => r.url.includes("metadata=")), "the filter is on every page");
  });

  it("a loop that stops early fetches no further page", async (t) => {
    const server = await secretsServer(t, 10);
    const client = new Strongroom({ apiKey: KEY, baseURL: server.baseURL });
    for await (const secret of client.secrets.listAll({ pageSize: 3 })) {
      if (secret.name === "secret_1") break;
    }
    assert.equal(server.requests.length, 1);
  });

  it("audit.listAll pages the same way", async (t) => {
    const server = await secretsServer(t, 3);
    const client = new Strongroom({ apiKey: KEY, baseURL: server.baseURL });
    const ids = [];
    for await (const record of client.audit.listAll({ pageSize: 2, action: "secret.read" })) {
      ids.push(record.id);
    }
    assert.deepEqual(ids, [0, 1, 2]);
  });
});

describe("executions.wait", () => {
  const execution = (status) => ({
    id: "e1",
    task_id: "t1",
    status,
    input: null,
    output: status === "succeeded" ? 42 : null,
    error: null,
  });

  it("polls until the execution has ended, and returns it", async (t) => {
    const statuses = ["queued", "running", "succeeded"];
    const server = await fake(t, (request, res, index) => sendJson(res, 200, execution(statuses[index])));
    const client = new Strongroom({ apiKey: KEY, baseURL: server.baseURL });
    const done = await client.executions.wait("e1");
    assert.deepEqual([done.status, done.output, done.taskId], ["succeeded", 42, "t1"]);
    assert.equal(server.requests.length, 3);
  });

  it("failed and cancelled are ends too", async (t) => {
    for (const status of ["failed", "cancelled"]) {
      const server = await fake(t, (request, res) => sendJson(res, 200, execution(status)));
      const client = new Strongroom({ apiKey: KEY, baseURL: server.baseURL });
      assert.equal((await client.executions.wait({ executionId: "e1" })).status, status);
      assert.equal(server.requests.length, 1);
    }
  });

  it("gives up with WaitTimeoutError after its timeout", async (t) => {
    const server = await fake(t, (request, res) => sendJson(res, 200, execution("running")));
    const client = new Strongroom({ apiKey: KEY, baseURL: server.baseURL });
    const error = await client.executions.wait("e1", { timeout: 150 }).catch((e) => e);
    assert.ok(error instanceof WaitTimeoutError);
    assert.equal(error.code, "wait_timeout");
    assert.match(error.message, /execution e1 is still running after 150 ms/);
  });

  it("stops when its signal aborts", async (t) => {
    const controller = new AbortController();
    const server = await fake(t, (request, res) => {
      sendJson(res, 200, execution("running"));
      controller.abort(new Error("stop waiting"));
    });
    const client = new Strongroom({ apiKey: KEY, baseURL: server.baseURL });
    await assert.rejects(client.executions.wait("e1", { signal: controller.signal }), /stop waiting/);
    assert.equal(server.requests.length, 1);
  });
});
