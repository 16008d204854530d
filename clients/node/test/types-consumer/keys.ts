// `client.keys` and the audit filters in TypeScript, type-checked under --strict. The
// `@ts-expect-error` lines are the mistakes the types must catch.

import { Strongroom, type ApiKey, type CreatedApiKey, type KeyRule, type RotatedApiKey } from "strongroom";

const client = new Strongroom({ apiKey: "sr_...", baseURL: "http://127.0.0.1:8000" });

const rule: KeyRule = { names: ["ci_*"], metadata: { environment: "ci", tier: 2, live: true } };
const created: CreatedApiKey = await client.keys.create({
  name: "ci",
  scopes: ["secrets:read", "tasks:run"],
  rule,
  expiresAt: new Date(Date.now() + 30 * 86_400_000),
});
const key: string = created.key;
const inherited: CreatedApiKey = await client.keys.create(); // every field the calling key's
const forever: ApiKey = await client.keys.update({ keyId: created.id, name: null, rule: null, expiresAt: null });
const rotated: RotatedApiKey = await client.keys.rotate({ keyId: created.id, graceSeconds: 3600 });
const revoked: ApiKey = await client.keys.revoke(rotated.old.id);
for await (const listed of client.keys.listAll({ includeRevoked: true })) {
  const hint: string = listed.hint;
  console.log(hint, listed.expiresAt ?? "never");
}
const events = await client.audit.list({ since: new Date(), until: "2026-12-01T00:00:00Z", result: "forbidden", keyId: created.id });
const who: string | null | undefined = events.items[0]?.keyName;

// @ts-expect-error: not a scope
await client.keys.create({ scopes: ["secrets:everything"] });
// @ts-expect-error: update needs the key's id
await client.keys.update({ name: "x" });
// @ts-expect-error: a listed key has no key
console.log((await client.keys.get(created.id)).key);
// @ts-expect-error: selector values are scalars
await client.keys.create({ rule: { metadata: { nested: { no: 1 } } } });

console.log(key, inherited.id, forever.id, revoked.revokedAt, who);
