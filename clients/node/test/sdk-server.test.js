// The SDK's calls beyond the guide, against a real server: rotate, upsert, versions,
// conditional writes, renames, authentication, audit, and the task calls.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  AuthenticationError,
  NotFoundError,
  PreconditionFailedError,
  RotationCheckFailedError,
  SecretAlreadyExistsError,
  Strongroom,
  ValidationError,
} from "../dist/index.js";
import { fakeServer, sendJson } from "./helpers/fake-http.js";
import { startServer } from "./helpers/server.js";

describe("the SDK against a real server", () => {
  let server;
  let client;
  let openai; // an OpenAI-compatible fake that answers when a test lets it
  let release = () => {};
  let arrived = () => {};

  before(async () => {
    openai = await fakeServer(async (request, res) => {
      const released = new Promise((resolve) => (release = resolve));
      arrived();
      await released;
      sendJson(res, 200, { choices: [{ message: { role: "assistant", content: "done" } }] });
    });
    server = await startServer({
      STRONGROOM_OPENAI_BASE_URL: `${openai.baseURL}/v1`,
      STRONGROOM_EGRESS_ALLOW: "127.0.0.1",
    });
    client = new Strongroom({ apiKey: server.apiKey, baseURL: server.baseURL });
  });
  after(async () => {
    release();
    await server?.stop();
    await openai?.close();
  });

  describe("secrets", () => {
    it("rotate: one conditional update; the old value stays as the previous version", async () => {
      await client.secrets.create({ name: "rotate_me", value: "sk-old", metadata: { owner: "a" } });
      const checked = [];
      const rotated = await client.secrets.rotate("rotate_me", "sk-new", {
        check: async (value) => checked.push(value) > 0,
      });
      assert.deepEqual(checked, ["sk-new"]);
      assert.equal(rotated.version, 2);
      assert.equal(rotated.metadata.owner, "a");
      assert.ok(!Number.isNaN(Date.parse(rotated.metadata.lastRotated)));
      assert.equal((await client.secrets.get({ name: "rotate_me" })).value, "sk-new");
      assert.equal((await client.secrets.get({ name: "rotate_me", version: 1 })).value, "sk-old");
    });

    it("rotate: a failed check changes nothing and does not quote the value", async () => {
      await client.secrets.create({ name: "rotate_checked", value: "sk-old" });
      for (const check of [() => false, () => Promise.reject(new Error("bad key sk-new-leaky")), () => {
        throw new TypeError("sk-new-leaky");
      }]) {
        const error = await client.secrets.rotate("rotate_checked", "sk-new-leaky", { check }).catch((e) => e);
        assert.ok(error instanceof RotationCheckFailedError);
        assert.equal(error.code, "rotation_check_failed");
        assert.doesNotMatch(`${error.message} ${String(error.cause)}`, /leaky/);
      }
      const secret = await client.secrets.get({ name: "rotate_checked" });
      assert.deepEqual([secret.value, secret.version], ["sk-old", 1]);
    });

    it("rotate: a change made meanwhile is not overwritten", async () => {
      await client.secrets.create({ name: "rotate_raced", value: "v1" });
      const check = async () => {
        await client.secrets.update({ name: "rotate_raced", value: "someone else's" });
        return true;
      };
      await assert.rejects(client.secrets.rotate("rotate_raced", "mine", { check }), PreconditionFailedError);
      assert.equal((await client.secrets.get("rotate_raced")).value, "someone else's");
    });

    it("upsert creates, then replaces; versions lists each value's version", async () => {
      const first = await client.secrets.upsert({ name: "upserted", value: "a", description: "kept" });
      const second = await client.secrets.upsert({ name: "upserted", value: "b" });
      assert.deepEqual([first.version, second.version], [1, 2]);
      assert.equal(second.description, "kept", "fields left out keep their value");
      const versions = await client.secrets.versions({ name: "upserted" });
      assert.deepEqual(versions.items.map((v) => v.version), [2, 1]);
      assert.ok(versions.items.every((v) => typeof v.createdAt === "string" && !("value" in v)));
    });

    it("expectedVersion makes update, upsert and delete conditional", async () => {
      await client.secrets.create({ name: "conditional", value: "a" });
      await assert.rejects(client.secrets.update({ name: "conditional", value: "b", expectedVersion: 7 }), (error) => {
        assert.ok(error instanceof PreconditionFailedError);
        assert.equal(error.code, "precondition_failed");
        assert.equal(error.status, 412);
        return true;
      });
      await assert.rejects(client.secrets.upsert({ name: "conditional", value: "b", expectedVersion: 7 }), PreconditionFailedError);
      await assert.rejects(client.secrets.delete({ name: "conditional", expectedVersion: 7 }), PreconditionFailedError);
      const updated = await client.secrets.update({ name: "conditional", value: "b", expectedVersion: 1 });
      assert.equal(updated.version, 2);
      await client.secrets.delete({ name: "conditional", expectedVersion: 2 });
    });

    it("renaming onto a taken name is a conflict", async () => {
      await client.secrets.create({ name: "rename_a", value: "a" });
      await client.secrets.create({ name: "rename_b", value: "b" });
      await assert.rejects(client.secrets.update({ name: "rename_a", newName: "rename_b" }), (error) => {
        assert.ok(error instanceof SecretAlreadyExistsError);
        assert.equal(error.code, "conflict");
        return true;
      });
    });

    it("metadata keys are stored and returned as written, snake_case included", async () => {
      const metadata = { owner_team: "payments", nested: { created_at: "not ours" }, lastRotated: "2025-05-10" };
      await client.secrets.create({ name: "with_metadata", value: "v", metadata });
      assert.deepEqual((await client.secrets.get("with_metadata")).metadata, metadata);
      const raw = await fetch(`${server.baseURL}/v1/secrets/with_metadata`, {
        headers: { Authorization: `Bearer ${server.apiKey}` },
      }).then((r) => r.json());
      assert.deepEqual(raw.metadata, metadata, "the server got them unchanged");
      const filtered = await client.secrets.list({ metadata: { owner_team: "payments" } });
      assert.deepEqual(filtered.items.map((s) => s.name), ["with_metadata"]);
    });

    it("a wrong API key is an AuthenticationError", async () => {
      const stranger = new Strongroom({ apiKey: "sr_not_a_key", baseURL: server.baseURL });
      const error = await stranger.secrets.list().catch((e) => e);
      assert.ok(error instanceof AuthenticationError);
      assert.deepEqual([error.code, error.status], ["unauthorized", 401]);
      assert.match(error.requestId, /\S/);
    });

    it("audit.list shows who read which secret, in camelCase", async () => {
      await client.secrets.get("with_metadata");
      const page = await client.audit.list({ secret: "with_metadata", action: "secret.read", limit: 1 });
      const [record] = page.items;
      assert.deepEqual([record.action, record.outcome, record.secretName], ["secret.read", "success", "with_metadata"]);
      assert.ok(record.keyId && record.requestId && record.time);
    });
  });

  describe("tasks and executions", () => {
    it("create warns of a secret that does not exist yet; get, list and delete", async () => {
      const steps = [{ kind: "tool_call", tool: "database", operation: "query", secret_name: "not_yet" }];
      const task = await client.tasks.create({ steps, name: "check the database" });
      assert.equal(task.name, "check the database");
      assert.deepEqual(task.warnings.map((w) => w.location), ["steps[0].secret_name"]);
      assert.deepEqual((await client.tasks.get({ taskId: task.id })).steps, steps);
      assert.ok((await client.tasks.list()).items.some((t) => t.id === task.id));
      const deleted = await client.tasks.delete(task.id);
      assert.equal(deleted.id, task.id);
      assert.equal(typeof deleted.deletedAt, "string");
      await assert.rejects(client.tasks.get(task.id), NotFoundError);
    });

    it("a bad task is a ValidationError with one detail per problem", async () => {
      const error = await client.tasks
        .create({ task: { steps: [{ kind: "transform", expression: "$ 1" }, { kind: "bogus" }] } })
        .catch((e) => e);
      assert.ok(error instanceof ValidationError);
      assert.equal(error.code, "validation_error");
      assert.deepEqual(error.details.map((d) => d.location), ["body.task.steps[1].kind"]);
    });

    it("an unknown task or execution is not_found", async () => {
      await assert.rejects(client.tasks.execute({ taskId: "no-such-task" }), NotFoundError);
      await assert.rejects(client.executions.get("no-such-execution"), NotFoundError);
    });

    it("cancel stops a running execution before its next step", async () => {
      const task = await client.tasks.create({
        steps: [
          {
            kind: "tool_call",
            tool: "openai",
            operation: "chat",
            arguments: { model: "m", messages: [{ role: "user", content: "hi" }] },
          },
          { kind: "transform", expression: "$ _['content']" },
        ],
      });
      const requestArrived = new Promise((resolve) => (arrived = resolve));
      const execution = await client.tasks.execute({ taskId: task.id, input: { some_input: 1 } });
      assert.deepEqual(execution.input, { some_input: 1 });
      await requestArrived; // the first step is running now
      const cancelling = await client.executions.cancel(execution.id);
      assert.equal(cancelling.id, execution.id);
      release();
      const done = await client.executions.wait(execution.id, { timeout: 60_000 });
      assert.equal(done.status, "cancelled");
      const steps = await client.executions.steps(execution.id);
      assert.deepEqual(steps.items.map((s) => s.index), [0], "the second step never ran");
    });
  });
});
