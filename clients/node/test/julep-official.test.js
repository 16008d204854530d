// The official Julep Node.js client (`@julep/sdk`, pinned as a devDependency) against a
// real strongroom server's `/julep` surface: create, list, update (value, kept
// description, rename) and delete, each checked through `/v1` with strongroom's own SDK.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";

import OfficialJulep, {
  ConflictError,
  NotFoundError as JulepNotFoundError,
  UnprocessableEntityError,
} from "@julep/sdk";

import { SecretNotFoundError, Strongroom } from "../dist/index.js";
import { startServer } from "./helpers/server.js";

const PINNED = "2.7.2"; // package.json's devDependencies
const RFC3339_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe("the official @julep/sdk against /julep", () => {
  let server;
  let julep; // the official client, as a Julep user points it at strongroom
  let own; // strongroom's SDK on /v1, with the same key

  before(async () => {
    server = await startServer();
    julep = new OfficialJulep({ apiKey: server.apiKey, baseURL: `${server.baseURL}/julep` });
    own = new Strongroom({ apiKey: server.apiKey, baseURL: server.baseURL });
  });
  after(() => server?.stop());

  it("is the pinned version", async () => {
    const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
    assert.equal(pkg.devDependencies["@julep/sdk"], PINNED);
    const installed = new URL("../node_modules/@julep/sdk/package.json", import.meta.url);
    assert.equal(JSON.parse(await readFile(installed, "utf8")).version, PINNED);
  });

  it("creates, lists, updates, renames and deletes; /v1 sees each step", async () => {
    const { data: created, response } = await julep.secrets
      .create({
        name: "stripe_api_key",
        value: "sk_test_51abc",
        description: "Stripe API key for payment processing",
        metadata: { environment: "production", owner: "payments-team" },
      })
      .withResponse();
    assert.equal(response.status, 201);
    assert.match(created.id, UUID);
    assert.equal(created.value, "ENCRYPTED");
    assert.equal(created.name, "stripe_api_key");
    assert.equal(created.description, "Stripe API key for payment processing");
    assert.deepEqual(created.metadata, { environment: "production", owner: "payments-team" });
    assert.match(created.created_at, RFC3339_UTC);
    assert.equal(created.updated_at, created.created_at);

    // the value is readable through /v1, by name
    const read = await own.secrets.get({ name: "stripe_api_key" });
    assert.deepEqual([read.id, read.value, read.version], [created.id, "sk_test_51abc", 1]);

    // a secret made on /v1 shows in the official client's list: a bare array, newest first
    const fromV1 = await own.secrets.create({ name: "database_password", value: "complex-password-123" });
    const listed = await julep.secrets.list();
    assert.ok(Array.isArray(listed));
    assert.deepEqual(
      listed.map((s) => [s.id, s.name, s.value]),
      [
        [fromV1.id, "database_password", "ENCRYPTED"],
        [created.id, "stripe_api_key", "ENCRYPTED"],
      ],
    );
    assert.deepEqual((await julep.secrets.list({ limit: 1, offset: 1 })).map((s) => s.id), [created.id]);

    // PUT by id: a new value; the description and metadata left out are kept
    const updated = await julep.secrets.update(created.id, { name: "stripe_api_key", value: "sk_test_new" });
    assert.equal(updated.id, created.id);
    assert.equal(updated.value, "ENCRYPTED");
    assert.equal(updated.description, "Stripe API key for payment processing");
    assert.deepEqual(updated.metadata, { environment: "production", owner: "payments-team" });
    assert.ok(Date.parse(updated.updated_at) > Date.parse(created.updated_at));
    const afterUpdate = await own.secrets.get({ name: "stripe_api_key" });
    assert.deepEqual([afterUpdate.value, afterUpdate.version], ["sk_test_new", 2]);

    // a new name renames: same id, the old name is free at once
    const renamed = await julep.secrets.update(created.id, {
      name: "stripe_secret_key",
      value: "sk_test_renamed",
      description: "Renamed Stripe key",
    });
    assert.deepEqual([renamed.id, renamed.name, renamed.description], [created.id, "stripe_secret_key", "Renamed Stripe key"]);
    await assert.rejects(own.secrets.get({ name: "stripe_api_key" }), SecretNotFoundError);
    const afterRename = await own.secrets.get({ name: "stripe_secret_key" });
    assert.deepEqual([afterRename.id, afterRename.value, afterRename.version], [created.id, "sk_test_renamed", 3]);

    // the /v1 secret is updatable by its id too
    await julep.secrets.update(fromV1.id, { name: "database_password", value: "rotated-by-julep" });
    assert.equal((await own.secrets.get({ name: "database_password" })).value, "rotated-by-julep");

    // DELETE by id: 202 {id, deleted_at}; gone from /v1; a second delete is 404
    const { data: deleted, response: deleteResponse } = await julep.secrets.delete(created.id).withResponse();
    assert.equal(deleteResponse.status, 202);
    assert.equal(deleted.id, created.id);
    assert.match(deleted.deleted_at, RFC3339_UTC);
    await assert.rejects(own.secrets.get({ name: "stripe_secret_key" }), SecretNotFoundError);
    await assert.rejects(julep.secrets.delete(created.id), JulepNotFoundError);
    await julep.secrets.delete(fromV1.id);
    assert.deepEqual((await own.secrets.list()).items, []);

    // every change is in the one audit trail, with /v1's reads
    const trail = [];
    for await (const record of own.audit.listAll({ secret: "stripe_secret_key" })) {
      trail.unshift(`${record.action} ${record.outcome}`);
    }
    assert.deepEqual(trail, [
      "secret.rename success",
      "secret.update success",
      "secret.read success",
      "secret.delete success",
      "secret.read not_found",
    ]);
  });

  it("maps strongroom's statuses to the client's errors, with the envelope as the body", async () => {
    await julep.secrets.create({ name: "taken", value: "x" });
    const conflict = await julep.secrets.create({ name: "taken", value: "y" }).catch((e) => e);
    assert.ok(conflict instanceof ConflictError);
    assert.equal(conflict.error.error.code, "conflict");
    // the client retries a 409 unless told not to; a taken name is told, and tried once
    assert.equal(conflict.headers["x-should-retry"], "false");
    const conflicts = (await own.audit.list({ secret: "taken", action: "secret.create" })).items.filter(
      (record) => record.outcome === "conflict",
    );
    assert.equal(conflicts.length, 1);

    const invalid = await julep.secrets.create({ name: "not a name", value: "x" }).catch((e) => e);
    assert.ok(invalid instanceof UnprocessableEntityError);
    assert.equal(invalid.error.error.code, "validation_error");
    assert.ok(invalid.error.error.details.some((d) => d.location === "body.name"));

    const missing = await julep.secrets
      .update("00000000-0000-7000-8000-000000000000", { name: "taken", value: "z" })
      .catch((e) => e);
    assert.ok(missing instanceof JulepNotFoundError);
    assert.equal(missing.error.error.code, "not_found");
    assert.equal((await own.secrets.get({ name: "taken" })).value, "x");
  });
});
