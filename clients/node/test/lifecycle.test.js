// The secret lifecycle against a real server: delete into a recovery window, restore,
// purge, rollback, expiry, scheduled rotation, and the batch calls. The 410 of an expired
// secret comes from a fake server: a real one would need a wait for the expiry to pass.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  APIError,
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  SecretAlreadyExistsError,
  SecretExpiredError,
  SecretNotFoundError,
  Strongroom,
  ValidationError,
} from "../dist/index.js";
import { fakeServer, sendError } from "./helpers/fake-http.js";
import { startServer } from "./helpers/server.js";

const DAY_MS = 24 * 3600 * 1000;
const RFC3339_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$/;

describe("the secret lifecycle against a real server", () => {
  let server;
  let client; // every scope, secrets:admin included
  let writer; // secrets:read and secrets:write, no secrets:admin

  before(async () => {
    server = await startServer();
    client = new Strongroom({ apiKey: server.apiKey, baseURL: server.baseURL });
    writer = new Strongroom({
      apiKey: await server.issueKey(["secrets:read", "secrets:write"]),
      baseURL: server.baseURL,
    });
  });
  after(() => server?.stop());

  const values = async (name) => (await client.secrets.versions({ name })).items.map((v) => v.version);

  describe("delete, restore, purge", () => {
    it("a deleted secret is gone from get but holds its name, and is listed with deleted", async () => {
      await client.secrets.create({ name: "lc_deleted", value: "v1" });
      const deleted = await client.secrets.delete({ name: "lc_deleted" });
      assert.equal(deleted.name, "lc_deleted");
      assert.match(deleted.deletedAt, RFC3339_UTC);
      assert.ok(Date.parse(deleted.purgeAfter) > Date.now(), "restorable for a while");

      await assert.rejects(client.secrets.get({ name: "lc_deleted" }), SecretNotFoundError);
      const taken = await client.secrets.create({ name: "lc_deleted", value: "v2" }).catch((e) => e);
      assert.ok(taken instanceof SecretAlreadyExistsError && taken instanceof ConflictError, taken.name);
      assert.equal(taken.code, "conflict");
      assert.match(taken.message, /restore/);
      await assert.rejects(client.secrets.upsert({ name: "lc_deleted", value: "v2" }), ConflictError);

      const live = (await client.secrets.list()).items.map((s) => s.name);
      assert.ok(!live.includes("lc_deleted"));
      const listed = (await client.secrets.list({ deleted: true })).items.find((s) => s.name === "lc_deleted");
      assert.ok(listed, "list({ deleted: true }) shows it");
      assert.equal(listed.value, "ENCRYPTED");
      assert.equal(listed.deletedAt, deleted.deletedAt);
      assert.equal(listed.purgeAfter, deleted.purgeAfter);
    });

    it("restore brings back the value and every version", async () => {
      await client.secrets.create({ name: "lc_restored", value: "first" });
      await client.secrets.update({ name: "lc_restored", value: "second" });
      await client.secrets.delete("lc_restored");
      const restored = await client.secrets.restore({ name: "lc_restored" });
      assert.equal(restored.name, "lc_restored");
      assert.equal(restored.version, 2);
      assert.equal(restored.deletedAt, null);
      assert.equal(restored.purgeAfter, null);
      assert.equal((await client.secrets.get({ name: "lc_restored" })).value, "second");
      assert.equal((await client.secrets.get({ name: "lc_restored", version: 1 })).value, "first");
      assert.deepEqual(await values("lc_restored"), [2, 1]);
    });

    it("purge needs secrets:admin, destroys the secret and frees its name", async () => {
      await client.secrets.create({ name: "lc_purged", value: "old" });
      await client.secrets.delete({ name: "lc_purged" });
      const refused = await writer.secrets.purge({ name: "lc_purged" }).catch((e) => e);
      assert.ok(refused instanceof PermissionDeniedError, refused.name);
      assert.equal(refused.status, 403);
      await assert.rejects(writer.secrets.delete({ name: "lc_purged", force: true }), PermissionDeniedError);

      const purged = await client.secrets.purge("lc_purged");
      assert.equal(purged.name, "lc_purged");
      assert.equal(purged.purgeAfter, null);
      const listed = (await client.secrets.list({ deleted: true })).items.map((s) => s.name);
      assert.ok(!listed.includes("lc_purged"));
      await assert.rejects(client.secrets.restore({ name: "lc_purged" }), SecretNotFoundError);
      const again = await client.secrets.create({ name: "lc_purged", value: "new" });
      assert.equal(again.version, 1);
    });

    it("delete with force purges a live secret at once", async () => {
      await client.secrets.create({ name: "lc_forced", value: "v" });
      const purged = await client.secrets.delete({ name: "lc_forced", force: true });
      assert.equal(purged.purgeAfter, null);
      assert.ok(!(await client.secrets.list({ deleted: true })).items.some((s) => s.name === "lc_forced"));
      await client.secrets.create({ name: "lc_forced", value: "v" });
    });
  });

  describe("versions", () => {
    it("rollback makes a new version holding the old value", async () => {
      await client.secrets.create({ name: "lc_rollback", value: "good" });
      await client.secrets.update({ name: "lc_rollback", value: "bad" });
      const rolled = await writer.secrets.rollback({ name: "lc_rollback", version: 1, expectedVersion: 2 });
      assert.equal(rolled.version, 3);
      assert.equal(rolled.value, "ENCRYPTED");
      assert.equal((await client.secrets.get({ name: "lc_rollback" })).value, "good");
      // back to the value it already has: no new version
      const same = await client.secrets.rollback({ name: "lc_rollback", version: 1 });
      assert.equal(same.version, 3);
      assert.deepEqual(await values("lc_rollback"), [3, 2, 1]);
      await assert.rejects(client.secrets.rollback({ name: "lc_rollback", version: 9 }), SecretNotFoundError);
    });

    it("an update to the current value makes no version", async () => {
      await client.secrets.create({ name: "lc_same", value: "v" });
      const updated = await client.secrets.update({ name: "lc_same", value: "v" });
      assert.equal(updated.version, 1);
      assert.deepEqual(await values("lc_same"), [1]);
    });
  });

  describe("expiry and rotation", () => {
    it("expiresAt takes a Date or a string, and list({ expiringBefore }) filters by it", async () => {
      const soon = new Date(Date.now() + DAY_MS);
      const created = await client.secrets.create({ name: "lc_expiring_soon", value: "v", expiresAt: soon });
      assert.equal(Date.parse(created.expiresAt), soon.getTime());
      const later = new Date(Date.now() + 30 * DAY_MS).toISOString();
      const upserted = await client.secrets.upsert({ name: "lc_expiring_later", value: "v", expiresAt: later });
      assert.equal(Date.parse(upserted.expiresAt), Date.parse(later));
      await client.secrets.create({ name: "lc_expiring_never", value: "v" });
      assert.equal((await client.secrets.get({ name: "lc_expiring_soon" })).value, "v", "not expired yet");

      const names = async (before) =>
        (await client.secrets.list({ expiringBefore: before })).items
          .map((s) => s.name)
          .filter((n) => n.startsWith("lc_expiring_"));
      assert.deepEqual(await names(new Date(Date.now() + 2 * DAY_MS)), ["lc_expiring_soon"]);
      assert.deepEqual(await names(new Date(Date.now() + 60 * DAY_MS).toISOString()), [
        "lc_expiring_later",
        "lc_expiring_soon",
      ]);

      const cleared = await client.secrets.update({ name: "lc_expiring_soon", expiresAt: null });
      assert.equal(cleared.expiresAt, null);
      assert.deepEqual(await names(new Date(Date.now() + 2 * DAY_MS)), []);
      await assert.rejects(
        client.secrets.update({ name: "lc_expiring_later", expiresAt: new Date(Date.now() - DAY_MS) }),
        ValidationError,
      );
    });

    it("a rotation policy is read back in camelCase; rotateNow makes it due, null ends it", async () => {
      const task = await client.tasks.create({ steps: [{ kind: "transform", expression: "$ 1" }] });
      const rotation = { every: "30d", taskId: task.id };
      const created = await client.secrets.create({ name: "lc_rotated", value: "v", rotation });
      assert.deepEqual(created.rotation, rotation);
      assert.ok(Date.parse(created.nextRotationAt) > Date.now() + 29 * DAY_MS);
      assert.equal(created.lastRotatedAt, null);

      const due = await client.secrets.rotateNow({ name: "lc_rotated" });
      assert.ok(Date.parse(due.nextRotationAt) <= Date.now());

      const ended = await client.secrets.update({ name: "lc_rotated", rotation: null });
      assert.equal(ended.rotation, null);
      assert.equal(ended.nextRotationAt, null);
      const none = await client.secrets.rotateNow("lc_rotated").catch((e) => e);
      assert.ok(none instanceof ConflictError && !(none instanceof SecretAlreadyExistsError), none.name);
    });
  });

  describe("batches", () => {
    it("batchGet returns the values it may read and an error for each other name", async () => {
      await client.secrets.create({ name: "lc_batch_a", value: "a-value" });
      await client.secrets.create({ name: "lc_batch_b", value: "b-value" });
      await client.secrets.create({ name: "lc_batch_use_only", value: "hidden", policy: { readable: false } });
      const read = await client.secrets.batchGet({
        names: ["lc_batch_a", "lc_batch_b", "lc_batch_missing", "lc_batch_use_only"],
      });
      assert.deepEqual(
        Object.fromEntries(read.secrets.map((s) => [s.name, s.value])),
        { lc_batch_a: "a-value", lc_batch_b: "b-value" },
      );
      assert.match(read.secrets[0].createdAt, RFC3339_UTC);
      assert.deepEqual(read.secrets[0].policy, { allowedDestinations: null, allowedTools: null, readable: true });
      const errors = Object.fromEntries(read.errors.map((e) => [e.name, e.code]));
      assert.deepEqual(errors, { lc_batch_missing: "not_found", lc_batch_use_only: "forbidden" });
      assert.ok(read.errors.every((e) => typeof e.message === "string" && e.message));
      assert.doesNotMatch(JSON.stringify(read.errors), /hidden/);
    });

    it("batchPut creates, updates or leaves each secret; dryRun changes nothing", async () => {
      await client.secrets.create({ name: "lc_put_updated", value: "old" });
      await client.secrets.create({ name: "lc_put_unchanged", value: "same", description: "kept" });
      const expiresAt = new Date(Date.now() + DAY_MS);
      const secrets = [
        { name: "lc_put_created", value: "new", metadata: { team: "a" } },
        { name: "lc_put_updated", value: "newer", expiresAt },
        { name: "lc_put_unchanged", value: "same" },
      ];
      const statuses = (answer) => answer.items.map((i) => [i.name, i.status, i.version]);
      const planned = await client.secrets.batchPut({ secrets, dryRun: true });
      assert.equal(planned.dryRun, true);
      const expected = [
        ["lc_put_created", "created", 1],
        ["lc_put_updated", "updated", 2],
        ["lc_put_unchanged", "unchanged", 1],
      ];
      assert.deepEqual(statuses(planned), expected);
      await assert.rejects(client.secrets.get({ name: "lc_put_created" }), SecretNotFoundError);
      assert.equal((await client.secrets.get({ name: "lc_put_updated" })).value, "old");

      const written = await client.secrets.batchPut({ secrets });
      assert.equal(written.dryRun, false);
      assert.deepEqual(statuses(written), expected);
      assert.ok(written.items.every((i) => typeof i.id === "string" && i.id));
      const created = await client.secrets.get({ name: "lc_put_created" });
      assert.deepEqual([created.value, created.metadata], ["new", { team: "a" }]);
      const updated = await client.secrets.get({ name: "lc_put_updated" });
      assert.equal(updated.value, "newer");
      assert.equal(Date.parse(updated.expiresAt), expiresAt.getTime());
      assert.equal((await client.secrets.get({ name: "lc_put_unchanged" })).description, "kept");
    });

    it("batchPut keeps the expiry of a secret it creates", async () => {
      const expiresAt = new Date(Date.now() + DAY_MS);
      await client.secrets.batchPut({ secrets: [{ name: "lc_put_created_expiring", value: "v", expiresAt }] });
      const created = await client.secrets.get({ name: "lc_put_created_expiring" });
      assert.equal(Date.parse(created.expiresAt), expiresAt.getTime());
    });

    it("batchPut is all or nothing: a deleted secret's name refuses the whole batch", async () => {
      await client.secrets.create({ name: "lc_put_held", value: "v" });
      await client.secrets.delete({ name: "lc_put_held" });
      const secrets = [
        { name: "lc_put_first", value: "v" },
        { name: "lc_put_held", value: "v" },
      ];
      await assert.rejects(client.secrets.batchPut({ secrets }), ConflictError);
      await assert.rejects(client.secrets.get({ name: "lc_put_first" }), SecretNotFoundError);
    });
  });
});

describe("an expired secret", () => {
  it("410 expired is a SecretExpiredError", async (t) => {
    const message = "secret 'old_key' expired at 2026-11-28T14:33:00+00:00";
    const fake = await fakeServer((request, res) => sendError(res, 410, "expired", message));
    t.after(() => fake.close());
    const client = new Strongroom({ apiKey: "sr_test_key", baseURL: fake.baseURL, maxRetries: 0 });
    const error = await client.secrets.get({ name: "old_key" }).catch((e) => e);
    assert.ok(error instanceof SecretExpiredError && error instanceof APIError, error.name);
    assert.ok(!(error instanceof NotFoundError));
    assert.equal(error.name, "SecretExpiredError");
    assert.equal(error.code, "expired");
    assert.equal(error.status, 410);
    assert.equal(error.message, message);
    assert.equal(error.requestId, "req_410");
    assert.equal(fake.requests.length, 1, "not resent");
  });
});
