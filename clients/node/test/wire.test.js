// What each call sends and how its answer reads: the same method, path and body as the
// Python SDK's request builders (strongroom/resources/); camelCase for the API's own
// fields and nothing else (a secret's metadata, a task's steps, an execution's input and
// output are the user's data and pass through untouched, in both directions).

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";

import { Strongroom } from "../dist/index.js";
import { camelCase } from "../dist/wire.js";
import { fakeServer, sendJson } from "./helpers/fake-http.js";

const AT = "2026-11-28T14:33:00.123456Z";
// User data with snake_case keys, camelCase keys and look-alikes of API fields: none of
// it may be renamed.
const USER_DATA = { owner_team: "payments", camelKey: { nested_key: [{ created_at: "x" }] }, has_more: true };

const secretWire = (name = "stripe_api_key") => ({
  id: "s1",
  name,
  description: "d",
  metadata: USER_DATA,
  value: "ENCRYPTED",
  version: 3,
  created_at: AT,
  updated_at: AT,
  some_future_field: { kept_as_is: 1 },
});
const STEPS = [
  { kind: "tool_call", tool: "openai", operation: "chat", arguments: { max_tokens: 5 }, secret_name: "openai_api_key" },
];
const taskWire = { id: "t1", name: null, description: null, steps: STEPS, created_at: AT, updated_at: AT };
const executionWire = {
  id: "e1",
  task_id: "t1",
  status: "succeeded",
  input: USER_DATA,
  output: { row_count: 1, rows: [[1]] },
  error: null,
  created_at: AT,
  updated_at: AT,
};
const auditWire = {
  id: 1,
  time: AT,
  key_id: "k1",
  action: "secret.read",
  outcome: "success",
  secret_name: "a",
  secret_id: "s1",
  request_id: "r1",
  client_addr: "127.0.0.1",
  detail: null,
};
const page = (items) => ({ items, limit: 100, offset: 0, has_more: false });

/** Answers every route with a wire-shaped body, by the request's method and path. */
function answer(request, res) {
  const path = request.url.split("?")[0];
  const routes = [
    [/^GET \/v1\/secrets$/, () => page([secretWire()])],
    [/^GET \/v1\/secrets\/[^/]+\/versions$/, () => ({ items: [{ version: 1, created_at: AT, created_by: "k1" }] })],
    [/^DELETE \/v1\/secrets\//, () => ({ id: "s1", name: "stripe_api_key", deleted_at: AT })],
    [/^\w+ \/v1\/secrets/, () => secretWire()],
    [/^POST \/v1\/tasks$/, () => ({ ...taskWire, warnings: [] })],
    [/^GET \/v1\/tasks$/, () => page([taskWire])],
    [/^DELETE \/v1\/tasks\//, () => ({ id: "t1", deleted_at: AT })],
    [/^GET \/v1\/tasks\//, () => taskWire],
    [/^GET \/v1\/executions$/, () => page([executionWire])],
    [/^GET \/v1\/executions\/[^/]+\/steps$/, () => ({
      items: [{ index: 0, kind: "tool_call", status: "succeeded", output: USER_DATA, error: null, started_at: AT, finished_at: AT }],
    })],
    [/^\w+ \/v1\/(tasks\/[^/]+\/)?executions/, () => executionWire],
    [/^GET \/v1\/audit$/, () => page([auditWire])],
  ];
  const route = routes.find(([pattern]) => pattern.test(`${request.method} ${path}`));
  sendJson(res, route ? 200 : 404, route ? route[1]() : { error: { code: "not_found", message: path } });
}

describe("requests and answers", () => {
  let fake;
  let sdk;
  before(async () => {
    fake = await fakeServer(answer);
    sdk = new Strongroom({ apiKey: "sr_test_key", baseURL: `${fake.baseURL}/` });
  });
  after(() => fake.close());
  beforeEach(() => {
    fake.requests.length = 0;
  });

  /** The one request the last call made: `{ method, url, body, headers }`. */
  const sent = () => {
    assert.equal(fake.requests.length, 1);
    return fake.requests[0];
  };

  it("every request carries the key, JSON headers and the SDK's user agent", async () => {
    await sdk.secrets.create({ name: "a", value: "v" });
    const { headers } = sent();
    assert.equal(headers.authorization, "Bearer sr_test_key");
    assert.equal(headers.accept, "application/json");
    assert.equal(headers["content-type"], "application/json");
    assert.match(headers["user-agent"], /^strongroom-node\/\d+\.\d+\.\d+/);
  });

  it("secrets.create: POST /v1/secrets, fields left out are not sent", async () => {
    await sdk.secrets.create({ name: "a", value: "v", metadata: USER_DATA });
    assert.deepEqual(sent().body, { name: "a", value: "v", metadata: USER_DATA });
    assert.equal(sent().method, "POST");
    assert.equal(sent().url, "/v1/secrets");
  });

  it("secrets.list: limit, offset and the metadata filter as one JSON parameter", async () => {
    await sdk.secrets.list({ limit: 10, offset: 20, metadata: { environment: "production", owner_team: "a" } });
    const url = new URL(sent().url, fake.baseURL);
    assert.equal(url.pathname, "/v1/secrets");
    assert.equal(url.searchParams.get("limit"), "10");
    assert.equal(url.searchParams.get("offset"), "20");
    assert.deepEqual(JSON.parse(url.searchParams.get("metadata")), { environment: "production", owner_team: "a" });
    fake.requests.length = 0;
    await sdk.secrets.list();
    assert.equal(sent().url, "/v1/secrets");
    assert.equal(sent().text, "", "a GET has no body");
  });

  it("secrets.get: by { name } or name, an older version, names escaped", async () => {
    await sdk.secrets.get({ name: "stripe_api_key", version: 2 });
    assert.equal(sent().url, "/v1/secrets/stripe_api_key?version=2");
    fake.requests.length = 0;
    await sdk.secrets.get("../audit?x=1");
    assert.equal(sent().url, "/v1/secrets/..%2Faudit%3Fx%3D1");
  });

  it("secrets.update: newName and expectedVersion go as new_name and expected_version", async () => {
    await sdk.secrets.update({ name: "a", newName: "b", expectedVersion: 3, description: null, metadata: USER_DATA });
    const { method, url, body } = sent();
    assert.equal(method, "PATCH");
    assert.equal(url, "/v1/secrets/a");
    assert.deepEqual(body, { new_name: "b", expected_version: 3, description: null, metadata: USER_DATA });
  });

  it("secrets.update: only the fields given are sent", async () => {
    await sdk.secrets.update({ name: "a", description: "only this" });
    assert.deepEqual(sent().body, { description: "only this" });
  });

  it("secrets.upsert and delete: expectedVersion as If-Match", async () => {
    await sdk.secrets.upsert({ name: "a", value: "v", expectedVersion: 2 });
    assert.equal(sent().method, "PUT");
    assert.equal(sent().headers["if-match"], '"2"');
    assert.deepEqual(sent().body, { value: "v" });
    fake.requests.length = 0;
    await sdk.secrets.delete({ name: "a", expectedVersion: 4 });
    assert.equal(sent().method, "DELETE");
    assert.equal(sent().headers["if-match"], '"4"');
    fake.requests.length = 0;
    await sdk.secrets.delete("a");
    assert.equal(sent().headers["if-match"], undefined);
  });

  it("tasks.create({ task }) sends {task: {...}} with the steps as written", async () => {
    await sdk.tasks.create({ task: { name: "weather", steps: STEPS } });
    assert.equal(sent().url, "/v1/tasks");
    assert.deepEqual(sent().body, { task: { name: "weather", steps: STEPS } });
  });

  it("tasks.create({ steps }) sends the same wrapper", async () => {
    await sdk.tasks.create({ steps: STEPS, description: "d" });
    assert.deepEqual(sent().body, { task: { steps: STEPS, description: "d" } });
  });

  it("tasks.create wants exactly one of task and steps", async () => {
    await assert.rejects(sdk.tasks.create({ task: { steps: STEPS }, steps: STEPS }), TypeError);
    await assert.rejects(sdk.tasks.create({}), TypeError);
    assert.equal(fake.requests.length, 0);
  });

  it("tasks.execute: taskId in the path, input untouched in the body", async () => {
    await sdk.tasks.execute({ taskId: "t/1", input: USER_DATA });
    assert.equal(sent().url, "/v1/tasks/t%2F1/executions");
    assert.deepEqual(sent().body, { input: USER_DATA });
    fake.requests.length = 0;
    await sdk.tasks.execute({ taskId: "t1" });
    assert.deepEqual(sent().body, {});
  });

  it("tasks.get, list and delete; executions.get, list, steps, cancel; audit.list", async () => {
    const calls = [
      [() => sdk.tasks.get("t1"), "GET", "/v1/tasks/t1"],
      [() => sdk.tasks.get({ taskId: "t1" }), "GET", "/v1/tasks/t1"],
      [() => sdk.tasks.list({ limit: 5 }), "GET", "/v1/tasks?limit=5"],
      [() => sdk.tasks.delete("t1"), "DELETE", "/v1/tasks/t1"],
      [() => sdk.executions.get("e1"), "GET", "/v1/executions/e1"],
      [() => sdk.executions.list({ taskId: "t1", offset: 2 }), "GET", "/v1/executions?task_id=t1&offset=2"],
      [() => sdk.executions.steps({ executionId: "e1" }), "GET", "/v1/executions/e1/steps"],
      [() => sdk.executions.cancel("e1"), "POST", "/v1/executions/e1/cancel"],
      [() => sdk.secrets.versions("a"), "GET", "/v1/secrets/a/versions"],
      [() => sdk.audit.list({ secret: "a", action: "secret.read" }), "GET", "/v1/audit?secret=a&action=secret.read"],
    ];
    for (const [call, method, url] of calls) {
      fake.requests.length = 0;
      await call();
      assert.deepEqual([sent().method, sent().url], [method, url]);
    }
  });

  it("a missing name or id is refused (a rejection, as every failure) before anything is sent", async () => {
    await assert.rejects(sdk.secrets.get({}), /name must be a non-empty string/);
    await assert.rejects(sdk.secrets.get(), TypeError);
    await assert.rejects(sdk.secrets.delete({ name: undefined }), TypeError);
    await assert.rejects(sdk.secrets.update({ value: "v" }), TypeError);
    await assert.rejects(sdk.tasks.execute({ task_id: "t1" }), /taskId/);
    await assert.rejects(sdk.executions.get(""), TypeError);
    assert.equal(fake.requests.length, 0);
  });

  it("metadata that is not JSON is a TypeError, not a connection error", async () => {
    await assert.rejects(sdk.secrets.create({ name: "a", value: "v", metadata: { n: 1n } }), TypeError);
    assert.equal(fake.requests.length, 0);
  });

  it("a secret reads in camelCase, its metadata exactly as stored", async () => {
    const secret = await sdk.secrets.get("a");
    assert.deepEqual(secret, {
      id: "s1",
      name: "stripe_api_key",
      description: "d",
      metadata: USER_DATA,
      value: "ENCRYPTED",
      version: 3,
      createdAt: AT,
      updatedAt: AT,
      someFutureField: { kept_as_is: 1 },
    });
  });

  it("lists read in camelCase, page and items", async () => {
    const list = await sdk.secrets.list();
    assert.equal(list.hasMore, false);
    assert.equal(list.items[0].createdAt, AT);
    assert.deepEqual(list.items[0].metadata, USER_DATA);
    assert.equal((await sdk.secrets.versions("a")).items[0].createdBy, "k1");
    const [record] = (await sdk.audit.list()).items;
    assert.deepEqual(
      [record.keyId, record.secretName, record.secretId, record.requestId, record.clientAddr],
      ["k1", "a", "s1", "r1", "127.0.0.1"],
    );
    assert.equal((await sdk.secrets.delete("a")).deletedAt, AT);
  });

  it("a task's steps come back as written (secret_name stays)", async () => {
    const task = await sdk.tasks.create({ steps: STEPS });
    assert.deepEqual(task.steps, STEPS);
    assert.deepEqual(task.warnings, []);
    assert.equal(task.createdAt, AT);
    assert.equal((await sdk.tasks.list()).items[0].steps[0].secret_name, "openai_api_key");
    assert.equal((await sdk.tasks.delete("t1")).deletedAt, AT);
  });

  it("an execution's input and output come back untouched", async () => {
    const execution = await sdk.tasks.execute({ taskId: "t1", input: USER_DATA });
    assert.equal(execution.taskId, "t1");
    assert.deepEqual(execution.input, USER_DATA);
    assert.deepEqual(execution.output, { row_count: 1, rows: [[1]] });
    const [step] = (await sdk.executions.steps("e1")).items;
    assert.deepEqual([step.startedAt, step.finishedAt], [AT, AT]);
    assert.deepEqual(step.output, USER_DATA);
    assert.equal((await sdk.executions.list()).items[0].taskId, "t1");
  });

  it("camelCase renames snake_case names only", () => {
    assert.equal(camelCase("created_at"), "createdAt");
    assert.equal(camelCase("has_more"), "hasMore");
    assert.equal(camelCase("id"), "id");
    assert.equal(camelCase("lastRotated"), "lastRotated");
  });
});
