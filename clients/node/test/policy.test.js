// Usage policies through the SDK: how a policy is sent (snake_case, only the fields given)
// and read (camelCase), against a fake server; and what the real server does with them: a
// use-only secret is read by nobody, and loosening a policy needs `secrets:admin`.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";

import { PermissionDeniedError, Strongroom, ValidationError } from "../dist/index.js";
import { fakeServer, sendJson } from "./helpers/fake-http.js";
import { startServer } from "./helpers/server.js";

const AT = "2026-11-28T14:33:00.123456Z";
const POLICY_WIRE = { allowed_destinations: ["*.stripe.com"], allowed_tools: ["http/request"], readable: false };
const POLICY = { allowedDestinations: ["*.stripe.com"], allowedTools: ["http/request"], readable: false };
const secretWire = {
  id: "s1",
  name: "stripe_api_key",
  description: null,
  metadata: { owner_team: "payments" },
  value: "ENCRYPTED",
  version: 1,
  created_at: AT,
  updated_at: AT,
  policy: POLICY_WIRE,
};

describe("policies on the wire", () => {
  let fake;
  let sdk;

  before(async () => {
    fake = await fakeServer((request, res) => {
      const listed = request.method === "GET" && request.url.split("?")[0] === "/v1/secrets";
      const body = listed ? { items: [secretWire], limit: 100, offset: 0, has_more: false } : secretWire;
      sendJson(res, request.method === "POST" ? 201 : 200, body);
    });
    sdk = new Strongroom({ apiKey: "sr_test", baseURL: fake.baseURL, maxRetries: 0 });
  });
  after(async () => {
    await fake?.close();
  });
  beforeEach(() => {
    fake.requests.length = 0;
  });

  it("create sends the policy in snake_case and reads it back in camelCase", async () => {
    const created = await sdk.secrets.create({ name: "stripe_api_key", value: "v", policy: POLICY });
    assert.deepEqual(fake.requests[0].body, { name: "stripe_api_key", value: "v", policy: POLICY_WIRE });
    assert.deepEqual(created.policy, POLICY);
    assert.deepEqual(created.metadata, { owner_team: "payments" }, "user data is not renamed");
  });

  it("update and upsert send only the policy fields given; null is sent", async () => {
    await sdk.secrets.update({ name: "a", policy: { readable: false } });
    await sdk.secrets.update({ name: "a", policy: { allowedTools: null } });
    await sdk.secrets.upsert({ name: "a", value: "v", policy: { allowedDestinations: ["api.stripe.com:443"] } });
    await sdk.secrets.update({ name: "a", description: "no policy" });
    assert.deepEqual(
      fake.requests.map((r) => r.body),
      [
        { policy: { readable: false } },
        { policy: { allowed_tools: null } },
        { value: "v", policy: { allowed_destinations: ["api.stripe.com:443"] } },
        { description: "no policy" },
      ],
    );
  });

  it("get and list read the policy in camelCase", async () => {
    assert.deepEqual((await sdk.secrets.get("a")).policy, POLICY);
    assert.deepEqual((await sdk.secrets.list()).items[0].policy, POLICY);
    for await (const secret of sdk.secrets.listAll()) {
      assert.deepEqual(secret.policy, POLICY);
    }
  });

  it("a policy that is not an object is a TypeError, before anything is sent", async () => {
    await assert.rejects(sdk.secrets.create({ name: "a", value: "v", policy: ["readable"] }), TypeError);
    await assert.rejects(sdk.secrets.update({ name: "a", policy: "use-only" }), TypeError);
    assert.equal(fake.requests.length, 0);
  });
});

describe("policies against a real server", () => {
  let server;
  let owner;
  let writer;
  let admin;

  before(async () => {
    server = await startServer();
    owner = new Strongroom({ apiKey: server.apiKey, baseURL: server.baseURL });
    const [writerKey, adminKey] = await Promise.all([
      server.issueKey(["secrets:read", "secrets:write"]),
      server.issueKey(["secrets:write", "secrets:admin"]),
    ]);
    writer = new Strongroom({ apiKey: writerKey, baseURL: server.baseURL });
    admin = new Strongroom({ apiKey: adminKey, baseURL: server.baseURL });
  });
  after(async () => {
    await server?.stop();
  });

  it("a new secret has the default policy; a given one is kept field by field", async () => {
    const plain = await owner.secrets.create({ name: "plain", value: "v" });
    assert.deepEqual(plain.policy, { allowedDestinations: null, allowedTools: null, readable: true });
    const restricted = await owner.secrets.create({
      name: "restricted",
      value: "v",
      policy: { allowedDestinations: ["API.stripe.com", "*.stripe.com:443"], allowedTools: ["http"] },
    });
    assert.deepEqual(restricted.policy, {
      allowedDestinations: ["api.stripe.com", "*.stripe.com:443"],
      allowedTools: ["http"],
      readable: true,
    });
    const narrowed = await writer.secrets.update({ name: "restricted", policy: { allowedTools: ["http/request"] } });
    assert.deepEqual(narrowed.policy.allowedTools, ["http/request"]);
    assert.deepEqual(narrowed.policy.allowedDestinations, ["api.stripe.com", "*.stripe.com:443"]);
  });

  it("a use-only secret's value is refused to every key, 403 forbidden", async () => {
    const value = `canary-${Date.now()}-SECRET`;
    await owner.secrets.create({ name: "vault", value, policy: { readable: false } });
    for (const client of [owner, writer]) {
      const error = await client.secrets.get({ name: "vault" }).catch((e) => e);
      assert.ok(error instanceof PermissionDeniedError, String(error));
      assert.equal(error.code, "forbidden");
      assert.match(error.message, /use-only/);
      assert.doesNotMatch(`${error.message} ${JSON.stringify(error)}`, new RegExp(value));
      await assert.rejects(client.secrets.versions("vault"), PermissionDeniedError);
    }
    const listed = (await owner.secrets.list()).items.find((s) => s.name === "vault");
    assert.equal(listed.value, "ENCRYPTED");
    assert.equal(listed.policy.readable, false);
  });

  it("loosening needs secrets:admin; without it nothing changes", async () => {
    await owner.secrets.create({ name: "guarded", value: "v", policy: { readable: false, allowedTools: ["http"] } });
    for (const policy of [{ readable: true }, { allowedTools: null }, { allowedTools: ["http", "openai"] }]) {
      const error = await writer.secrets.update({ name: "guarded", policy }).catch((e) => e);
      assert.ok(error instanceof PermissionDeniedError, String(error));
      assert.match(error.message, /secrets:admin/);
    }
    const kept = (await owner.secrets.list()).items.find((s) => s.name === "guarded");
    assert.deepEqual(kept.policy, { allowedDestinations: null, allowedTools: ["http"], readable: false });
    const loosened = await admin.secrets.update({ name: "guarded", policy: { readable: true, allowedTools: null } });
    assert.deepEqual(loosened.policy, { allowedDestinations: null, allowedTools: null, readable: true });
  });

  it("a bad policy is a ValidationError located at the entry", async () => {
    const error = await owner.secrets
      .create({ name: "bad", value: "v", policy: { allowedDestinations: ["ok.example", "https://x.example"] } })
      .catch((e) => e);
    assert.ok(error instanceof ValidationError, String(error));
    assert.deepEqual(
      error.details.map((d) => d.location),
      ["body.policy.allowed_destinations[1]"],
    );
  });
});
