// The product guide's task sections, run against a real server whose `openai` tool talks
// to a local OpenAI-compatible fake on 127.0.0.1 (the only destination its egress guard
// is told to allow).
//
// As in guide-secrets.test.js, each block between `guide:begin` and `guide:end` is the
// guide's code as written; only the import line and the client's options differ. The
// guide's expression and database sections only define `taskDefinition`: the tests create
// and run what they define, and check the result through the SDK.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";

import { Julep } from "../dist/index.js"; // the guide: import { Julep } from '@julep/sdk' ;

import { runBlock } from "./helpers/console.js";
import { fakeServer, sendJson } from "./helpers/fake-http.js";
import { startServer } from "./helpers/server.js";

const WAIT = { timeout: 60_000 };
const canary = (label) => `${label}-${randomBytes(12).toString("hex")}-SECRET`;

/** Whether `value` shows anywhere in `data`, plainly or in the usual encodings. */
function leaks(data, value) {
  const text = JSON.stringify(data);
  const forms = [value, encodeURIComponent(value), Buffer.from(value).toString("base64")];
  return forms.some((form) => text.includes(form));
}

describe("the guide's task sections", () => {
  let openai; // the fake OpenAI-compatible endpoint
  let server;
  let admin; // a client for setting up and checking, besides the guide's own

  before(async () => {
    openai = await fakeServer((request, res) => {
      const key = (request.headers.authorization ?? "").replace(/^Bearer /, "");
      sendJson(res, 200, {
        id: "chatcmpl-test",
        object: "chat.completion",
        model: request.body?.model,
        // An upstream that quotes the key back: the execution must not show it.
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: `Sunny, 21 degrees (asked with ${key})` },
            finish_reason: "stop",
          },
        ],
        usage: { prompt_tokens: 7, completion_tokens: 9, total_tokens: 16 },
      });
    });
    server = await startServer({
      STRONGROOM_OPENAI_BASE_URL: `${openai.baseURL}/v1`,
      STRONGROOM_EGRESS_ALLOW: "127.0.0.1",
    });
    admin = new Julep({ apiKey: server.apiKey, baseURL: server.baseURL });
  });
  after(async () => {
    await server?.stop();
    await openai?.close();
  });

  it("Using Secrets in Tasks: a tool_call step with secret_name", async () => {
    const openaiKey = canary("sk-test");
    await admin.secrets.create({ name: "openai_api_key", value: openaiKey });
    const { value } = await runBlock(async () => {
      // the guide: const julep = new Julep ({ apiKey: 'your_api_key' });
      const julep = new Julep({ apiKey: server.apiKey, baseURL: server.baseURL });
      // guide:begin Using Secrets in Tasks
      // Define a task that uses a secret
      const taskDefinition = {
        steps: [
          {
            kind: 'tool_call',
            tool: 'openai',
            operation: 'chat',
            arguments: {
              model: 'gpt-4',
              messages: [
                { role: 'user', content: 'What\'s the weather like?' }
              ]
            },
            secret_name: 'openai_api_key'
          }
        ]
      };
      // Create and execute the task
      const task = await julep.tasks.create({ task: taskDefinition });
      const execution = await julep.tasks.execute({ taskId: task.id });
      // guide:end
      return { taskDefinition, task, execution };
    });
    const { taskDefinition, task, execution } = value;
    assert.deepEqual(task.steps, taskDefinition.steps, "steps come back as written (secret_name too)");
    assert.deepEqual(task.warnings, []);
    assert.equal(execution.taskId, task.id);
    assert.equal(execution.status, "queued");

    const done = await admin.executions.wait(execution.id, WAIT);
    assert.equal(done.status, "succeeded", JSON.stringify(done.error));
    assert.equal(openai.requests.length, 1);
    const [call] = openai.requests;
    assert.equal(call.url, "/v1/chat/completions");
    assert.equal(call.headers.authorization, `Bearer ${openaiKey}`, "secret_name is the API key");
    assert.deepEqual(call.body, {
      model: "gpt-4",
      messages: [{ role: "user", content: "What's the weather like?" }],
    });
    assert.equal(done.output.content, "Sunny, 21 degrees (asked with [REDACTED:openai_api_key])");

    const steps = await admin.executions.steps(execution.id);
    assert.equal(steps.items.length, 1);
    assert.equal(steps.items[0].status, "succeeded");
    assert.ok(steps.items[0].startedAt && steps.items[0].finishedAt);
    assert.ok(!leaks([done, steps], openaiKey), "the key never comes back");
    const listed = await admin.executions.list({ taskId: task.id });
    assert.deepEqual(listed.items.map((e) => e.id), [execution.id]);
  });

  it("Using Secrets in Expressions: a transform step", async () => {
    const apiKey = canary("key");
    await admin.secrets.create({ name: "api_key", value: apiKey });
    const { value: taskDefinition } = await runBlock(async () => {
      // guide:begin Using Secrets in Expressions
      const taskDefinition = {
        steps: [
          {
            kind: 'transform',
            expression: "$ f'https://api.example.com/v1?api_key={secrets.api_key}&query={input}'",
            input: 'search query',
            output: 'api_url'
          }
        ]
      };
      // guide:end
      return taskDefinition;
    });
    const task = await admin.tasks.create({ task: taskDefinition });
    assert.deepEqual(task.steps, taskDefinition.steps);
    const execution = await admin.tasks.execute({ taskId: task.id });
    const done = await admin.executions.wait(execution.id, WAIT);
    assert.equal(done.status, "succeeded", JSON.stringify(done.error));
    assert.ok(!leaks(done, apiKey), "the URL is built from the secret, which never shows");
    // The contract allows the key replaced inside the URL or, as the server does now, the
    // whole value built from it.
    assert.ok(
      [
        "[REDACTED:api_key]",
        "https://api.example.com/v1?api_key=[REDACTED:api_key]&query=search query",
      ].includes(done.output),
      JSON.stringify(done.output),
    );
  });

  it("Using Multiple Secrets: a database step whose connection is four secrets", async () => {
    const password = canary("db-password");
    // 127.0.0.2 is loopback but not allowed: the run fails at the egress guard, reliably,
    // after every secret has been resolved.
    const values = { db_host: "127.0.0.2", db_username: "app", db_password: password, db_name: "app" };
    for (const [name, value] of Object.entries(values)) {
      await admin.secrets.create({ name, value });
    }
    const { value: taskDefinition } = await runBlock(async () => {
      // guide:begin Using Multiple Secrets
      const taskDefinition = {
        steps: [
          {
            kind: 'tool_call',
            tool: 'database',
            operation: 'query',
            arguments: {
              query: 'SELECT * FROM users',
              connection: {
                host: '$ secrets.db_host',
                user: '$ secrets.db_username',
                password: '$ secrets.db_password',
                database: '$ secrets.db_name'
              }
            }
          }
        ]
      };
      // guide:end
      return taskDefinition;
    });
    const task = await admin.tasks.create({ task: taskDefinition });
    assert.deepEqual(task.steps, taskDefinition.steps, "the '$ secrets.x' strings are kept as written");
    assert.deepEqual(task.warnings, [], "all four secrets exist");
    const execution = await admin.tasks.execute({ taskId: task.id });
    const done = await admin.executions.wait(execution.id, WAIT);
    assert.equal(done.status, "failed");
    assert.equal(done.error.step, 0);
    assert.equal(done.error.code, "egress_refused");
    const steps = await admin.executions.steps(execution.id);
    assert.equal(steps.items[0].status, "failed");
    assert.ok(!leaks([done, steps], password), "the password never comes back");
  });

  it("Working with Async/Await: manageSecrets", async () => {
    const { value, errors } = await runBlock(async (console) => {
      const julep = admin;
      // guide:begin Working with Async/Await
      async function manageSecrets() {
        try {
          // Create a secret
          const secret = await julep.secrets.create({
            name: 'database_password',
            value: 'complex-password-123',
            description: 'Production database password'
          });

          // List all secrets
          const secrets = await julep.secrets.list();

          // Create task using the secret
          const task = await julep.tasks.create({
            steps: [
              {
                kind: 'tool_call',
                tool: 'database',
                operation: 'query',
                secret_name: 'database_password'
              }
            ]
          });

          return { secret, secrets, task };
        } catch (error) {
          console.error('Error managing secrets:', error);
          throw error;
        }
      }
      // guide:end
      return manageSecrets();
    });
    assert.deepEqual(errors, []);
    const { secret, secrets, task } = value;
    assert.equal(secret.name, "database_password");
    assert.equal(secret.description, "Production database password");
    assert.ok(secrets.items.some((s) => s.name === "database_password"));
    assert.deepEqual(task.steps, [
      { kind: "tool_call", tool: "database", operation: "query", secret_name: "database_password" },
    ]);
    assert.deepEqual(task.warnings, []);
    assert.deepEqual(await admin.tasks.get(task.id), (({ warnings, ...rest }) => rest)(task));
  });
});
