// The guide's examples in TypeScript, type-checked under --strict. The `@ts-expect-error`
// lines are the mistakes the types must catch: each fails the compile if it stops being
// an error.

import { randomUUID } from "node:crypto";

import {
  Julep,
  NotFoundError,
  StrongroomError,
  ValidationError,
  type CreatedTask,
  type Execution,
  type Secret,
  type SecretList,
  type SecretPolicy,
  type SecretPolicyParams,
  type Timestamp,
} from "strongroom";

const julep = new Julep({ apiKey: "your_api_key", baseURL: "http://127.0.0.1:8000", timeout: 10_000, maxRetries: 1 });

// Creating Secrets
const secret: Secret = await julep.secrets.create({
  name: "stripe_api_key",
  value: "sk_test_...",
  description: "Stripe API key for payment processing",
  metadata: { environment: "production", owner: "payments-team" },
});
console.log(`Created secret: ${secret.name}`);

// Listing Secrets
const secrets: SecretList = await julep.secrets.list();
secrets.items.forEach((s) => console.log(`${s.name}: ${s.description}`));
const page2 = await julep.secrets.list({ limit: 10, offset: 10 });
const more: boolean = page2.hasMore;
const team = await julep.secrets.list({ metadata: { environment: "production", owner: "payments-team" } });
for await (const s of julep.secrets.listAll({ pageSize: 50 })) {
  console.log(s.name, more, team.items.length);
}

// Retrieving Secrets: timestamps are the server's ISO strings
const got = await julep.secrets.get({ name: "stripe_api_key" });
const created: Timestamp = got.createdAt;
const asText: string = got.updatedAt;
const asDate = new Date(got.createdAt);
console.log(`Secret: ${got.name}, Created: ${created} ${asText} ${asDate.toISOString()}`);
const older = await julep.secrets.get({ name: "stripe_api_key", version: 1 });
const byName = await julep.secrets.get("stripe_api_key");
console.log(older.value, byName.version);

// Updating and partial updates
await julep.secrets.update({
  name: "stripe_api_key",
  value: "sk_test_new_value...",
  description: "Updated Stripe API key",
  metadata: { environment: "production", owner: "payments-team", rotated: "2025-05-10" },
});
await julep.secrets.update({ name: "stripe_api_key", description: null });
await julep.secrets.update({ name: "stripe_api_key", newName: "stripe_secret_key", expectedVersion: 2 });

// Deleting
const deleted = await julep.secrets.delete({ name: "stripe_secret_key" });
const deletedAt: string = deleted.deletedAt;
console.log(deletedAt);

// Error handling: in TypeScript a caught error is `unknown`; narrow it first.
try {
  await julep.secrets.get({ name: "non_existent_secret" });
} catch (error) {
  if (error instanceof StrongroomError && error.code === "not_found") {
    console.log("Secret not found", error.status, error.requestId);
  } else if (error instanceof ValidationError) {
    const where: string[] = error.details.map((d) => d.location);
    console.log(where, error.status.toFixed());
  } else if (error instanceof NotFoundError) {
    const status: number = error.status;
    console.log(status);
  }
}

// Secret rotation, as the guide writes it, with types
async function rotateSecret(julep: Julep, secretName: string, newValue: string): Promise<Secret> {
  const tempName = `${secretName}_rotation_${randomUUID().substring(0, 8)}`;
  await julep.secrets.create({
    name: tempName,
    value: newValue,
    description: `Temporary rotation for ${secretName}`,
    metadata: { rotationDate: new Date().toISOString() },
  });
  const oldSecret = await julep.secrets.get({ name: secretName });
  const oldMetadata = oldSecret.metadata || {};
  await julep.secrets.update({
    name: secretName,
    metadata: { ...oldMetadata, archived: "true", replacedBy: tempName, archivedDate: new Date().toISOString() },
  });
  await julep.secrets.delete({ name: secretName });
  await julep.secrets.update({
    name: tempName,
    newName: secretName,
    description: oldSecret.description,
    metadata: { lastRotated: new Date().toISOString() },
  });
  return await julep.secrets.get({ name: secretName });
}
await rotateSecret(julep, "stripe_api_key", "sk_test_new_value_after_rotation");
await julep.secrets.rotate("stripe_api_key", "sk_live_new", { check: async (value) => value.startsWith("sk_") });

// Usage policies: set on create, changed field by field, shown in camelCase
const restricted = await julep.secrets.create({
  name: "webhook_secret",
  value: "whsec_...",
  policy: { allowedDestinations: ["*.stripe.com"], allowedTools: ["http/request"], readable: false },
});
const policy: SecretPolicy = restricted.policy;
const destinations: string[] | null = policy.allowedDestinations;
const useOnly: boolean = !policy.readable;
const change: SecretPolicyParams = { allowedTools: null };
await julep.secrets.update({ name: "webhook_secret", policy: change });
await julep.secrets.upsert({ name: "webhook_secret", value: "whsec_new", policy: { readable: false } });
console.log(destinations, useOnly, policy.allowedTools);

// Tasks: definitions written as plain objects, as in the guide
const taskDefinition = {
  steps: [
    {
      kind: "tool_call",
      tool: "openai",
      operation: "chat",
      arguments: { model: "gpt-4", messages: [{ role: "user", content: "What's the weather like?" }] },
      secret_name: "openai_api_key",
    },
  ],
};
const task: CreatedTask = await julep.tasks.create({ task: taskDefinition });
const execution: Execution = await julep.tasks.execute({ taskId: task.id });
const fromSteps = await julep.tasks.create({
  steps: [{ kind: "tool_call", tool: "database", operation: "query", secret_name: "database_password" }],
});
const done = await julep.executions.wait(execution.id, { timeout: 60_000 });
if (done.status === "succeeded") {
  console.log(done.output, done.taskId, fromSteps.warnings.length);
}
const steps = await julep.executions.steps(execution.id);
console.log(steps.items[0]?.startedAt, (await julep.executions.list({ taskId: task.id })).items.length);
await julep.executions.cancel(execution.id);
await julep.tasks.delete(task.id);
const audit = await julep.audit.list({ secret: "stripe_api_key", limit: 5 });
console.log(audit.items[0]?.secretName);

// Mistakes the types catch
// @ts-expect-error -- `name` is required
await julep.secrets.get({ nam: "stripe_api_key" });
// @ts-expect-error -- the value is a string
await julep.secrets.create({ name: "a", value: 42 });
// @ts-expect-error -- Python's spelling; the Node SDK takes newName
await julep.secrets.update({ name: "a", new_name: "b" });
// @ts-expect-error -- a task or steps, not both
await julep.tasks.create({ task: taskDefinition, steps: taskDefinition.steps });
// @ts-expect-error -- execute takes { taskId }
await julep.tasks.execute({ task_id: task.id });
// @ts-expect-error -- timestamps are strings, not Dates
const notADate: Date = got.createdAt;
// @ts-expect-error -- not a status an execution has
if (done.status === "done") console.log(notADate);
// @ts-expect-error -- the wire's spelling; the Node SDK takes allowedDestinations
await julep.secrets.update({ name: "a", policy: { allowed_destinations: ["api.stripe.com"] } });
// @ts-expect-error -- readable is a boolean
await julep.secrets.create({ name: "a", value: "v", policy: { readable: "false" } });
