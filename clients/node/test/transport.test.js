// Retries, Retry-After, timeouts and error mapping, against a local HTTP server that
// answers as each test tells it to. Backoff jitter is pinned to 0 (Math.random mocked),
// so resends happen at once and nothing waits on a clock except the Retry-After test.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  APIConnectionError,
  APIError,
  APITimeoutError,
  AuthenticationError,
  ConflictError,
  InternalServerError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  PreconditionFailedError,
  RateLimitError,
  SecretAlreadyExistsError,
  SecretNotFoundError,
  Strongroom,
  StrongroomError,
  ValidationError,
} from "../dist/index.js";
import { neverConnected, retryAfter, retryDelayForAnswer } from "../dist/retry.js";
import { fakeServer, sendError, sendJson } from "./helpers/fake-http.js";
import { freePort } from "./helpers/server.js";

const SECRET = {
  id: "0193",
  name: "stripe_api_key",
  description: null,
  metadata: {},
  value: "ENCRYPTED",
  version: 1,
  created_at: "2026-11-28T14:33:00.123456Z",
  updated_at: "2026-11-28T14:33:00.123456Z",
};

/** A fake server answering with `answers[i]` for the i-th request (the last one repeats). */
async function scripted(t, answers) {
  const fake = await fakeServer((request, res, index) => answers[Math.min(index, answers.length - 1)](res, request));
  t.after(() => fake.close());
  return fake;
}

const ok = (body = SECRET, status = 200) => (res) => sendJson(res, status, body);
const fail = (status, code, headers = {}) => (res) => sendError(res, status, code, code, {}, headers);
const hang = () => () => {}; // never answers
const reset = () => (res) => res.socket.destroy();

function client(fake, options = {}) {
  return new Strongroom({ apiKey: "sr_test_key", baseURL: fake.baseURL, ...options });
}

const noJitter = (t) => t.mock.method(Math, "random", () => 0);

describe("retries", () => {
  it("resends a GET after a 5xx, then returns the answer", async (t) => {
    noJitter(t);
    const fake = await scripted(t, [fail(503, "unavailable"), ok()]);
    const secret = await client(fake).secrets.get({ name: "stripe_api_key" });
    assert.equal(secret.name, "stripe_api_key");
    assert.equal(fake.requests.length, 2);
  });

  it("gives up after maxRetries resends with the last error", async (t) => {
    noJitter(t);
    const fake = await scripted(t, [fail(500, "internal_error")]);
    await assert.rejects(client(fake, { maxRetries: 3 }).secrets.list(), InternalServerError);
    assert.equal(fake.requests.length, 4);
  });

  it("a call's maxRetries overrides the client's", async (t) => {
    noJitter(t);
    const fake = await scripted(t, [fail(500, "internal_error")]);
    await assert.rejects(client(fake).secrets.list({}, { maxRetries: 0 }), InternalServerError);
    assert.equal(fake.requests.length, 1);
  });

  it("never resends a POST after a 5xx: the server may have done the work", async (t) => {
    noJitter(t);
    const fake = await scripted(t, [fail(503, "unavailable"), ok(SECRET, 201)]);
    await assert.rejects(client(fake).secrets.create({ name: "a", value: "b" }), InternalServerError);
    assert.equal(fake.requests.length, 1);
  });

  it("resends a PATCH after a 5xx only when it is conditional", async (t) => {
    noJitter(t);
    const fake = await scripted(t, [fail(502, "unavailable"), fail(502, "unavailable"), ok()]);
    const secrets = client(fake).secrets;
    await assert.rejects(secrets.update({ name: "a", value: "b" }), InternalServerError);
    assert.equal(fake.requests.length, 1);
    await secrets.update({ name: "a", value: "b", expectedVersion: 1 });
    assert.equal(fake.requests.length, 3);
  });

  it("resends even a POST after 429, waiting as long as Retry-After says", async (t) => {
    noJitter(t); // a backoff would be 0 s: any wait comes from Retry-After
    const fake = await scripted(t, [fail(429, "rate_limited", { "Retry-After": "1" }), ok(SECRET, 201)]);
    const secret = await client(fake).secrets.create({ name: "a", value: "b" });
    assert.equal(secret.id, "0193");
    assert.equal(fake.requests.length, 2);
    const waited = fake.requests[1].at - fake.requests[0].at;
    assert.ok(waited >= 950, `resent after ${waited} ms`);
  });

  it("a RateLimitError carries Retry-After once resends are used up", async (t) => {
    const fake = await scripted(t, [fail(429, "rate_limited", { "Retry-After": "7" })]);
    const error = await client(fake, { maxRetries: 0 }).secrets.list().catch((e) => e);
    assert.ok(error instanceof RateLimitError);
    assert.equal(error.code, "rate_limited");
    assert.equal(error.retryAfter, 7);
  });

  it("a lost connection: GET resent, POST not (it may have been processed)", async (t) => {
    noJitter(t);
    const fake = await scripted(t, [reset(), ok(), reset(), ok(SECRET, 201)]);
    const sdk = client(fake);
    assert.equal((await sdk.secrets.get("stripe_api_key")).name, "stripe_api_key");
    assert.equal(fake.requests.length, 2);
    const error = await sdk.secrets.create({ name: "a", value: "b" }).catch((e) => e);
    assert.ok(error instanceof APIConnectionError);
    assert.equal(error.code, "connection_error");
    assert.equal(fake.requests.length, 3);
  });

  it("a refused connection is resent even for a POST: nothing reached the server", async (t) => {
    noJitter(t);
    let calls = 0;
    t.mock.method(globalThis, "fetch", async () => {
      calls += 1;
      if (calls === 1) {
        throw new TypeError("fetch failed", { cause: Object.assign(new Error("refused"), { code: "ECONNREFUSED" }) });
      }
      return new Response(JSON.stringify(SECRET), { status: 201, headers: { "Content-Type": "application/json" } });
    });
    const secret = await new Strongroom({ apiKey: "k" }).secrets.create({ name: "a", value: "b" });
    assert.equal(secret.id, "0193");
    assert.equal(calls, 2);
  });

  it("no server at all: APIConnectionError naming the server, never the key", async (t) => {
    noJitter(t);
    const baseURL = `http://127.0.0.1:${await freePort()}`;
    const sdk = new Strongroom({ apiKey: "sr_never_shown", baseURL });
    const error = await sdk.secrets.create({ name: "a", value: "v_never_shown" }).catch((e) => e);
    assert.ok(error instanceof APIConnectionError && !(error instanceof APITimeoutError));
    assert.equal(error.code, "connection_error");
    assert.equal(error.status, undefined);
    assert.match(error.message, /POST \/v1\/secrets failed: could not reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    assert.doesNotMatch(error.message, /never_shown/);
  });

  it("the caller's abort ends the call at once, unretried, with the caller's reason", async (t) => {
    let arrived;
    const requestArrived = new Promise((resolve) => (arrived = resolve));
    const fake = await fakeServer(() => arrived());
    t.after(() => fake.close());
    const controller = new AbortController();
    const call = client(fake).secrets.list({}, { signal: controller.signal });
    await requestArrived;
    const reason = new Error("the caller gave up");
    controller.abort(reason);
    await assert.rejects(call, (error) => error === reason);
    assert.equal(fake.requests.length, 1);
  });
});

describe("Retry-After and backoff rules", () => {
  const headers = (value) => new Headers(value === undefined ? {} : { "Retry-After": value });

  it("reads seconds and HTTP dates, clamped to [0, 60]", () => {
    const now = Date.parse("2026-11-28T14:33:00Z");
    assert.equal(retryAfter(headers("3"), now), 3);
    assert.equal(retryAfter(headers("0.5"), now), 0.5);
    assert.equal(retryAfter(headers("3600"), now), 60);
    assert.equal(retryAfter(headers("-4"), now), 0);
    assert.equal(retryAfter(headers("Sat, 28 Nov 2026 14:33:10 GMT"), now), 10);
    assert.equal(retryAfter(headers("Sat, 28 Nov 2026 14:00:00 GMT"), now), 0);
    assert.equal(retryAfter(headers("soon"), now), undefined);
    assert.equal(retryAfter(headers(undefined), now), undefined);
  });

  it("429 always, 5xx only when idempotent, nothing else", (t) => {
    t.mock.method(Math, "random", () => 1);
    assert.equal(retryDelayForAnswer(429, headers("2"), false, 0), 2);
    assert.equal(retryDelayForAnswer(429, headers(), false, 0), 0.5);
    assert.equal(retryDelayForAnswer(503, headers("4"), true, 0), 4);
    assert.equal(retryDelayForAnswer(503, headers(), true, 2), 2);
    assert.equal(retryDelayForAnswer(503, headers(), true, 10), 8, "backoff is capped at 8 s");
    assert.equal(retryDelayForAnswer(503, headers(), false, 0), undefined);
    assert.equal(retryDelayForAnswer(507, headers("1"), true, 0), undefined, "a full disk waits for its operator");
    for (const status of [400, 401, 403, 404, 409, 412, 413, 422]) {
      assert.equal(retryDelayForAnswer(status, headers("1"), true, 0), undefined, String(status));
    }
  });

  it("a connection that was never made is told apart from one that broke", () => {
    const wrapped = (code) => new TypeError("fetch failed", { cause: Object.assign(new Error(), { code }) });
    assert.ok(neverConnected(wrapped("ECONNREFUSED")));
    assert.ok(neverConnected(wrapped("ENOTFOUND")));
    assert.ok(!neverConnected(wrapped("ECONNRESET")));
    assert.ok(!neverConnected(wrapped("UND_ERR_SOCKET")));
    assert.ok(!neverConnected(new Error("no code")));
  });
});

describe("timeouts", () => {
  it("no answer in time: APITimeoutError, a kind of APIConnectionError", async (t) => {
    const fake = await scripted(t, [hang()]);
    const error = await client(fake, { timeout: 100, maxRetries: 0 }).secrets.list().catch((e) => e);
    assert.ok(error instanceof APITimeoutError);
    assert.ok(error instanceof APIConnectionError);
    assert.equal(error.code, "timeout");
    assert.match(error.message, /GET \/v1\/secrets got no answer within 100 ms/);
  });

  it("a GET that timed out is resent; a POST is not", async (t) => {
    noJitter(t);
    const fake = await scripted(t, [hang()]);
    const sdk = client(fake, { timeout: 100, maxRetries: 1 });
    await assert.rejects(sdk.secrets.list(), APITimeoutError);
    assert.equal(fake.requests.length, 2);
    await assert.rejects(sdk.tasks.execute({ taskId: "t1" }), APITimeoutError);
    assert.equal(fake.requests.length, 3);
  });

  it("a call's timeout overrides the client's", async (t) => {
    const fake = await scripted(t, [hang()]);
    const sdk = client(fake, { maxRetries: 0 }); // 30 s by default
    await assert.rejects(sdk.secrets.get({ name: "a" }, { timeout: 50 }), APITimeoutError);
  });

  it("the timeout covers the body too, not just the headers", async (t) => {
    const fake = await scripted(t, [
      (res) => {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.write('{"id": "0193", '); // and never the rest
      },
    ]);
    await assert.rejects(client(fake, { timeout: 100, maxRetries: 0 }).secrets.get("a"), APITimeoutError);
  });
});

describe("error mapping", () => {
  const cases = [
    [401, "unauthorized", AuthenticationError],
    [403, "forbidden", PermissionDeniedError],
    [404, "not_found", SecretNotFoundError],
    [405, "method_not_allowed", MethodNotAllowedError],
    [409, "conflict", SecretAlreadyExistsError],
    [412, "precondition_failed", PreconditionFailedError],
    [413, "payload_too_large", PayloadTooLargeError],
    [422, "validation_error", ValidationError],
    [429, "rate_limited", RateLimitError],
    [500, "internal_error", InternalServerError],
  ];
  for (const [status, code, ErrorClass] of cases) {
    it(`${status} ${code} -> ${ErrorClass.name}`, async (t) => {
      const fake = await scripted(t, [fail(status, code)]);
      const error = await client(fake, { maxRetries: 0 }).secrets.update({ name: "a", newName: "b" }).catch((e) => e);
      assert.ok(error instanceof ErrorClass, error.name);
      assert.ok(error instanceof APIError && error instanceof StrongroomError);
      assert.equal(error.name, ErrorClass.name);
      assert.equal(error.code, code);
      assert.equal(error.status, status);
      assert.equal(error.requestId, `req_${status}`);
      assert.equal(error.message, code);
    });
  }

  it("404 and 409 outside secrets are the general classes", async (t) => {
    const fake = await scripted(t, [fail(404, "not_found"), fail(409, "conflict")]);
    const sdk = client(fake, { maxRetries: 0 });
    const missing = await sdk.tasks.get("t1").catch((e) => e);
    assert.ok(missing instanceof NotFoundError && !(missing instanceof SecretNotFoundError));
    const taken = await sdk.tasks.create({ steps: [] }).catch((e) => e);
    assert.ok(taken instanceof ConflictError && !(taken instanceof SecretAlreadyExistsError));
  });

  it("keeps the envelope's message, details and request id", async (t) => {
    const details = [{ location: "body.name", message: "name must be a valid identifier" }];
    const fake = await scripted(t, [
      (res) =>
        sendJson(res, 422, {
          error: { code: "validation_error", message: "body.name: invalid", request_id: "req_abc", details },
        }, { "X-Request-Id": "req_abc" }),
    ]);
    const error = await client(fake).secrets.create({ name: "invalid name", value: "v" }).catch((e) => e);
    assert.ok(error instanceof ValidationError);
    assert.equal(error.message, "body.name: invalid");
    assert.equal(error.requestId, "req_abc");
    assert.deepEqual(error.details, details);
    assert.deepEqual(error.body.error.details, details);
  });

  it("takes the request id from X-Request-Id when the envelope has none", async (t) => {
    const fake = await scripted(t, [
      (res) => sendJson(res, 404, { error: { code: "not_found", message: "gone" } }, { "X-Request-Id": "req_hdr" }),
    ]);
    const error = await client(fake).secrets.get("a").catch((e) => e);
    assert.equal(error.requestId, "req_hdr");
    assert.deepEqual(error.details, []);
  });

  it("an answer without an envelope still maps by status", async (t) => {
    const html = (status) => (res) => {
      res.writeHead(status, { "Content-Type": "text/html" });
      res.end("<h1>Bad Gateway</h1>");
    };
    const fake = await scripted(t, [html(502), html(400), (res) => res.end("not json")]);
    const sdk = client(fake, { maxRetries: 0 });
    const gateway = await sdk.secrets.list().catch((e) => e);
    assert.ok(gateway instanceof InternalServerError);
    assert.equal(gateway.code, "internal_error");
    assert.equal(gateway.message, "HTTP 502 without an error envelope");
    const bad = await sdk.secrets.list().catch((e) => e);
    assert.equal(bad.constructor, APIError);
    assert.equal(bad.code, "http_400");
    const garbled = await sdk.secrets.list().catch((e) => e);
    assert.ok(garbled instanceof APIError);
    assert.equal(garbled.code, "invalid_response");
    assert.equal(garbled.status, 200);
  });
});
