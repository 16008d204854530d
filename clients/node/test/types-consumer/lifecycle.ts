// The secret lifecycle in TypeScript, type-checked under --strict. The `@ts-expect-error`
// lines are the mistakes the types must catch.

import {
  SecretExpiredError,
  Strongroom,
  type BatchGetResponse,
  type BatchPutResponse,
  type DeletedSecret,
  type Rotation,
  type Secret,
} from "strongroom";

const client = new Strongroom({ apiKey: "sr_...", baseURL: "http://127.0.0.1:8000" });

const rotation: Rotation = { every: "30d", taskId: "task_1" };
const created: Secret = await client.secrets.create({
  name: "db_password",
  value: "...",
  expiresAt: new Date(Date.now() + 86_400_000),
  rotation,
});
const next: string | null = created.nextRotationAt;
await client.secrets.update({ name: "db_password", expiresAt: "2027-01-01T00:00:00Z", rotation: created.rotation });
await client.secrets.upsert({ name: "db_password", value: "...", expiresAt: null, rotation: null });

const deleted: DeletedSecret = await client.secrets.delete({ name: "db_password" });
const until: string | null = deleted.purgeAfter;
for (const gone of (await client.secrets.list({ deleted: true, expiringBefore: new Date() })).items) {
  console.log(gone.name, gone.deletedAt, gone.purgeAfter);
}
const restored: Secret = await client.secrets.restore({ name: "db_password" });
await client.secrets.rollback({ name: "db_password", version: 1, expectedVersion: restored.version });
await client.secrets.rotateNow("db_password");
await client.secrets.delete({ name: "db_password", force: true });
const purged: DeletedSecret = await client.secrets.purge({ name: "db_password" });

const read: BatchGetResponse = await client.secrets.batchGet({ names: ["a", "b"] });
const values: Record<string, string> = Object.fromEntries(read.secrets.map((s) => [s.name, s.value]));
const codes: string[] = read.errors.map((e) => e.code);
const written: BatchPutResponse = await client.secrets.batchPut({
  secrets: [{ name: "a", value: "1", expiresAt: new Date() }, { name: "b", value: "2", policy: { readable: false } }],
  dryRun: true,
});
const dry: boolean = written.dryRun;

try {
  await client.secrets.get({ name: "a" });
} catch (error) {
  if (error instanceof SecretExpiredError) {
    const status: number = error.status;
    console.log(status);
  }
}

// @ts-expect-error: an expiry is a Date or a string, not a number
await client.secrets.create({ name: "x", value: "v", expiresAt: Date.now() });
// @ts-expect-error: a rotation names its task as taskId
await client.secrets.create({ name: "x", value: "v", rotation: { every: "30d", task_id: "t" } });
// @ts-expect-error: rollback needs the version to go back to
await client.secrets.rollback({ name: "x" });
// @ts-expect-error: batchGet takes names
await client.secrets.batchGet(["a"]);

console.log(next, until, purged.id, values, codes, dry);
