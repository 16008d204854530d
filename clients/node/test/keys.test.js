// `client.keys` and the audit trail's filters: what each call sends (against a fake
// server: snake_case, `undefined` left out, `null` sent, a Date as RFC 3339) and what the
// real server does with the keys the SDK makes (against a real one).

import assert from "node:assert/strict";
import { inspect } from "node:util";
import { after, before, beforeEach, describe, it } from "node:test";

import { AuthenticationError, ConflictError, PermissionDeniedError, Strongroom } from "../dist/index.js";
import { fakeServer, sendJson } from "./helpers/fake-http.js";
import { startServer } from "./helpers/server.js";

const AT = "2026-11-28T14:33:00.123456Z";
const KEY = "sr_fakeFakeFakeFakeFakeFakeFakeFakeFake12";
const keyWire = (id = "k1") => ({
  id,
  name: "ci",
  hint: "sr_…ke12",
  scopes: ["secrets:read"],
  rule: { names: ["ci_*"], metadata: { owner_team: "infra" } },
  created_at: AT,
  created_by: null,
  expires_at: null,
  last_used_at: null,
  revoked_at: null,
});

describe("keys on the wire", () => {
  let fake;
  let sdk;

  before(async () => {
    fake = await fakeServer((request, res) => {
      const path = request.url.split("?")[0];
      if (path.endsWith("/rotate")) {
        sendJson(res, 201, { new: { ...keyWire("k2"), key: KEY }, old: { ...keyWire(), expires_at: AT } });
      } else if (path === "/v1/keys" && request.method === "GET") {
        sendJson(res, 200, { items: [keyWire()], limit: 100, offset: 0, has_more: false });
      } else if (path === "/v1/audit") {
        sendJson(res, 200, { items: [], limit: 100, offset: 0, has_more: false });
      } else {
        sendJson(res, request.method === "POST" ? 201 : 200, { ...keyWire(), key: KEY });
      }
    });
    sdk = new Strongroom({ apiKey: "sr_test", baseURL: fake.baseURL, maxRetries: 0 });
  });
  after(async () => {
    await fake?.close();
  });
  beforeEach(() => {
    fake.requests.length = 0;
  });

  it("create sends only the fields given, null included, a Date as RFC 3339", async () => {
    await sdk.keys.create();
    await sdk.keys.create({ name: "ci", scopes: ["secrets:read"], rule: { names: ["ci_*"] } });
    await sdk.keys.create({ rule: null, expiresAt: null, name: undefined });
    await sdk.keys.create({ expiresAt: new Date(Date.UTC(2030, 0, 2, 3, 4, 5)) });
    await sdk.keys.create({ expiresAt: "2030-01-02T05:04:05+02:00", rule: { metadata: { owner_team: "x" } } });
    assert.deepEqual(
      fake.requests.map((r) => [r.method, r.url, r.body]),
      [
        ["POST", "/v1/keys", {}],
        ["POST", "/v1/keys", { name: "ci", scopes: ["secrets:read"], rule: { names: ["ci_*"] } }],
        ["POST", "/v1/keys", { rule: null, expires_at: null }],
        ["POST", "/v1/keys", { expires_at: "2030-01-02T03:04:05.000Z" }],
        ["POST", "/v1/keys", { expires_at: "2030-01-02T05:04:05+02:00", rule: { metadata: { owner_team: "x" } } }],
      ],
    );
  });

  it("answers are camelCase; the rule's selector is the caller's data, not renamed", async () => {
    const created = await sdk.keys.create();
    assert.equal(created.key, KEY);
    assert.equal(created.createdAt, AT);
    assert.equal(created.lastUsedAt, null);
    assert.deepEqual(created.rule, { names: ["ci_*"], metadata: { owner_team: "infra" } });
    const page = await sdk.keys.list({ includeRevoked: true, limit: 5 });
    assert.equal(fake.requests.at(-1).url, "/v1/keys?limit=5&include_revoked=true");
    assert.deepEqual([page.items[0].createdAt, page.items[0].revokedAt], [AT, null]);
    assert.equal(page.hasMore, false);
  });

  it("a created key shows as [hidden] in console.log and util.inspect, not in JSON", async () => {
    const created = await sdk.keys.create();
    const rotated = await sdk.keys.rotate({ keyId: "k1", graceSeconds: 60 });
    for (const shown of [created, rotated, rotated.new]) {
      assert.doesNotMatch(inspect(shown, { depth: 5 }), /sr_fake/);
      assert.match(inspect(shown, { depth: 5 }), /\[hidden\]/);
    }
    assert.match(inspect(created), /name: 'ci'/);
    assert.equal(JSON.parse(JSON.stringify(created)).key, KEY);
    assert.equal({ ...created }.key, KEY);
    assert.equal(rotated.new.key, KEY);
    assert.equal(rotated.old.expiresAt, AT);
  });

  it("get, update, revoke and rotate: paths, bodies, and the id as string or { keyId }", async () => {
    await sdk.keys.get("k/1");
    await sdk.keys.get({ keyId: "k1" });
    await sdk.keys.update({ keyId: "k1", name: null, scopes: ["secrets:read"], expiresAt: undefined });
    await sdk.keys.revoke("k1");
    await sdk.keys.rotate("k1");
    await sdk.keys.rotate({ keyId: "k1", graceSeconds: 3600 });
    assert.deepEqual(
      fake.requests.map((r) => [r.method, r.url, r.body]),
      [
        ["GET", "/v1/keys/k%2F1", undefined],
        ["GET", "/v1/keys/k1", undefined],
        ["PATCH", "/v1/keys/k1", { name: null, scopes: ["secrets:read"] }],
        ["DELETE", "/v1/keys/k1", undefined],
        ["POST", "/v1/keys/k1/rotate", {}],
        ["POST", "/v1/keys/k1/rotate", { grace_seconds: 3600 }],
      ],
    );
    await assert.rejects(sdk.keys.get({}), TypeError);
    await assert.rejects(sdk.keys.update({ name: "x" }), TypeError);
    await assert.rejects(sdk.keys.create({ scopes: "secrets:read" }), TypeError);
    await assert.rejects(sdk.keys.create({ expiresAt: new Date("never") }), TypeError);
  });

  it("audit.list sends its filters in the wire's spelling", async () => {
    const since = new Date(Date.UTC(2026, 10, 28, 9));
    await sdk.audit.list({ since, until: "2026-11-29T00:00:00Z", result: "forbidden", keyId: "k1" });
    const url = new URL(fake.requests[0].url, fake.baseURL);
    assert.deepEqual(Object.fromEntries(url.searchParams), {
      result: "forbidden",
      key_id: "k1",
      since: "2026-11-28T09:00:00.000Z",
      until: "2026-11-29T00:00:00Z",
    });
  });
});

describe("keys against a real server", () => {
  let server;
  let admin;
  const clients = (apiKey) => new Strongroom({ apiKey, baseURL: server.baseURL, maxRetries: 0 });

  before(async () => {
    server = await startServer();
    admin = clients(server.apiKey);
  });
  after(async () => {
    await server?.stop();
  });

  it("create, use, list, rotate with a grace period, revoke", async () => {
    const created = await admin.keys.create({ name: "deploy", scopes: ["secrets:read", "secrets:write"] });
    assert.match(created.key, /^sr_/);
    assert.ok(created.hint.endsWith(created.key.slice(-4)));
    assert.deepEqual([created.rule, created.expiresAt], [null, null]); // the admin's own: none

    const deploy = clients(created.key);
    await deploy.secrets.create({ name: "node_deploy", value: "v" });
    await assert.rejects(deploy.keys.list(), PermissionDeniedError);

    const listed = [];
    for await (const key of admin.keys.listAll({ pageSize: 1 })) {
      listed.push(key);
    }
    const mine = listed.find((k) => k.id === created.id);
    assert.equal(mine.name, "deploy");
    assert.equal(mine.key, undefined);
    assert.deepEqual(await admin.keys.get(created.id), { ...mine, lastUsedAt: (await admin.keys.get(created.id)).lastUsedAt });

    const rotated = await admin.keys.rotate({ keyId: created.id, graceSeconds: 3600 });
    assert.notEqual(rotated.new.key, created.key);
    assert.equal(rotated.old.revokedAt, null);
    assert.ok(Date.parse(rotated.old.expiresAt) > Date.now() + 3500_000);
    const renewed = clients(rotated.new.key);
    assert.equal((await deploy.secrets.get({ name: "node_deploy" })).value, "v"); // still in grace
    assert.equal((await renewed.secrets.get({ name: "node_deploy" })).value, "v");

    const revoked = await admin.keys.revoke(rotated.new.id);
    assert.ok(revoked.revokedAt);
    await assert.rejects(renewed.secrets.list(), AuthenticationError);
    await admin.keys.revoke({ keyId: created.id });
    await assert.rejects(deploy.secrets.list(), AuthenticationError);
    await assert.rejects(admin.keys.rotate(created.id), ConflictError);
    const active = (await admin.keys.list()).items.map((k) => k.id);
    const all = (await admin.keys.list({ includeRevoked: true })).items.map((k) => k.id);
    assert.ok(!active.includes(created.id) && all.includes(created.id));
  });

  it("a key scoped through the SDK sees only its secrets and cannot issue a broader one", async () => {
    for (const [name, env] of [["node_ci_a", "ci"], ["node_ci_b", "prod"], ["node_prod", "prod"]]) {
      await admin.secrets.create({ name, value: `value of ${name}`, metadata: { env } });
    }
    const expiresAt = new Date(Date.now() + 86_400_000);
    const scoped = await admin.keys.create({
      scopes: ["secrets:read", "keys:admin"],
      rule: { names: ["node_ci_*"] },
      expiresAt,
    });
    assert.deepEqual(scoped.rule, { names: ["node_ci_*"], metadata: {} });
    assert.equal(Date.parse(scoped.expiresAt), expiresAt.getTime());
    const ci = clients(scoped.key);
    const names = [];
    for await (const secret of ci.secrets.listAll()) {
      names.push(secret.name);
    }
    assert.deepEqual(names, ["node_ci_a", "node_ci_b"]);
    await assert.rejects(ci.secrets.get({ name: "node_prod" }), PermissionDeniedError);

    const child = await ci.keys.create({ rule: { names: ["node_ci_*"], metadata: { env: "ci" } } });
    assert.equal(child.expiresAt, scoped.expiresAt); // left out: the scoped key's own
    const narrow = clients(child.key);
    assert.deepEqual((await narrow.secrets.list()).items.map((s) => s.name), ["node_ci_a"]);
    for (const wider of [{ rule: null }, { expiresAt: null }, { scopes: ["secrets:write"] }]) {
      await assert.rejects(ci.keys.create(wider), PermissionDeniedError);
    }
    const updated = await ci.keys.update({ keyId: child.id, name: "child", scopes: ["secrets:read"] });
    assert.deepEqual([updated.name, updated.scopes], ["child", ["secrets:read"]]);
  });

  it("audit.list filters by time, result and key, and names the key", async () => {
    const worker = await admin.keys.create({ name: "node-worker", scopes: ["secrets:write"] });
    const client = clients(worker.key);
    const start = new Date();
    await client.secrets.create({ name: "node_audited", value: "v" });
    await assert.rejects(client.secrets.get({ name: "node_audited" }), PermissionDeniedError);
    const page = await admin.audit.list({ keyId: worker.id, since: start });
    assert.deepEqual(
      page.items.map((e) => [e.action, e.outcome, e.keyName]),
      [
        ["secret.read", "forbidden", "node-worker"],
        ["secret.create", "success", "node-worker"],
      ],
    );
    const refused = await admin.audit.list({ keyId: worker.id, result: "forbidden" });
    assert.deepEqual(refused.items.map((e) => e.action), ["secret.read"]);
    const before = await admin.audit.list({ keyId: worker.id, until: start });
    assert.deepEqual(before.items, []);
  });
});
