/**
 * The shapes of the API's answers and of the calls' parameters, in the SDK's camelCase.
 *
 * Answers keep any field a newer server adds (at runtime; the types list the contract's).
 */

/**
 * An RFC 3339 timestamp in UTC, as the server sent it: `2026-11-28T14:33:00.123456Z`.
 *
 * Kept as a string rather than a `Date`: it is exact (a `Date` drops the microseconds),
 * survives `JSON.stringify` unchanged, sorts correctly as text, and prints the way the API
 * wrote it (the guide prints `secret.createdAt`). `new Date(secret.createdAt)` makes a
 * `Date` when one is needed.
 */
export type Timestamp = string;

/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A secret's metadata: a JSON object, stored and returned exactly as given. */
export type Metadata = { [key: string]: JsonValue };

/** Options every call takes besides its parameters. */
export interface RequestOptions {
  /** Milliseconds to wait for each attempt's answer; overrides the client's `timeout`. */
  timeout?: number;
  /** Resends allowed for this call; overrides the client's `maxRetries`. */
  maxRetries?: number;
  /** Aborts the call (and any wait between retries); the call then rejects with its reason. */
  signal?: AbortSignal;
}

// -- secrets -------------------------------------------------------------------------------

/** A secret's usage policy, as a secret shows it. The default restricts nothing. */
export interface SecretPolicy {
  /**
   * Hosts tasks may send the secret (or anything made from it) to: `api.stripe.com`,
   * `api.stripe.com:443`, `*.stripe.com` (subdomains only), an IP address. `null`: no
   * restriction; `[]`: nowhere.
   */
  allowedDestinations: string[] | null;
  /** Tools (`http`) or tool operations (`http/request`) that may use it; `null`: every tool. */
  allowedTools: string[] | null;
  /** `false`: use-only. Tasks can use it; no API key can read its value (`get` answers 403). */
  readable: boolean;
}

/**
 * A policy to set. Creating a secret, a field left out has its default; updating one (or
 * upserting an existing one), a field left out keeps its value. Loosening a policy
 * (readable again, a list widened or set to `null`) needs the `secrets:admin` scope.
 */
export interface SecretPolicyParams {
  allowedDestinations?: string[] | null;
  allowedTools?: string[] | null;
  readable?: boolean;
}

export interface Secret {
  id: string;
  name: string;
  description: string | null;
  metadata: Metadata;
  /** The plaintext only in the answers of `secrets.get` and `batchGet`; `"ENCRYPTED"` elsewhere. */
  value: string;
  /** Starts at 1 and grows by one each time the value changes. */
  version: number;
  createdAt: Timestamp;
  updatedAt: Timestamp;
  /** How the secret may be used: where tasks may send it, which tools, whether keys may read it. */
  policy: SecretPolicy;
  /** After it, reads reject with `SecretExpiredError` (a key with `secrets:admin` still reads). */
  expiresAt: Timestamp | null;
  /** The scheduled rotation, if any. */
  rotation: Rotation | null;
  lastRotatedAt: Timestamp | null;
  nextRotationAt: Timestamp | null;
  /** Set only on a deleted secret (`list({ deleted: true })`). */
  deletedAt: Timestamp | null;
  /** A deleted secret can be restored until then. */
  purgeAfter: Timestamp | null;
}

/**
 * A rotation policy: task `taskId` makes a new value every `every` (`"30d"`, `"12h"`,
 * `"1h30m"`), run for the key that set it. Given as it is read, so `secret.rotation` can
 * be passed back.
 */
export interface Rotation {
  every: string;
  taskId: string;
}

/** One page of a list; `hasMore` says whether a next page exists. */
export interface Page<T> {
  items: T[];
  limit: number;
  offset: number;
  hasMore: boolean;
}

export type SecretList = Page<Secret>;

export interface DeletedSecret {
  id: string;
  name: string;
  deletedAt: Timestamp;
  /** Restorable (`secrets.restore`) until then; `null`: purged, nothing of it is left. */
  purgeAfter: Timestamp | null;
}

export interface SecretVersion {
  version: number;
  createdAt: Timestamp;
  /** The API key id that wrote this version. */
  createdBy: string | null;
}

export interface SecretVersionList {
  items: SecretVersion[];
}

/** A secret by name: `{ name }` as in the guide, or the name itself. */
export type SecretRef = string | { name: string };

export interface SecretCreateParams {
  /** A valid identifier (`^[A-Za-z_][A-Za-z0-9_]*$`), at most 128 characters. */
  name: string;
  value: string;
  description?: string | null;
  metadata?: Metadata;
  /** Restricts the new secret's use; fields left out have their defaults. */
  policy?: SecretPolicyParams;
  /** A `Date` or an RFC 3339 string with its zone; after it, reads are refused. `null`: never. */
  expiresAt?: Timestamp | Date | null;
  /** Have a task make a new value on schedule. */
  rotation?: Rotation | null;
}

export interface SecretListParams {
  /** 1 to 1000; the server's default is 100. */
  limit?: number;
  offset?: number;
  /** Only secrets whose metadata holds every one of these keys with an equal value. */
  metadata?: Metadata;
  /** List the deleted secrets waiting for their purge instead of the live ones. */
  deleted?: boolean;
  /** Only secrets that expire before this time (or have): a `Date` or an RFC 3339 string. */
  expiringBefore?: Timestamp | Date;
}

export interface SecretListAllParams {
  metadata?: Metadata;
  /** Secrets fetched per request (default 100). */
  pageSize?: number;
}

export interface SecretGetParams {
  name: string;
  /** An older version (its value included); the newest when left out. */
  version?: number;
}

export interface SecretUpdateParams {
  name: string;
  value?: string;
  /** `null` clears the description; leaving it out keeps it. */
  description?: string | null;
  /** Replaces the whole metadata object. */
  metadata?: Metadata;
  /** Renames the secret atomically; the old name is free afterwards. */
  newName?: string;
  /** Update only if the secret is still at this version (else `precondition_failed`). */
  expectedVersion?: number;
  /** Changes the policy fields given; the others keep their values. */
  policy?: SecretPolicyParams;
  /** A `Date` or an RFC 3339 string with its zone; `null`: never expires. */
  expiresAt?: Timestamp | Date | null;
  /** Replaces the rotation policy; `null` ends rotation. */
  rotation?: Rotation | null;
}

export interface SecretUpsertParams {
  name: string;
  value: string;
  description?: string | null;
  metadata?: Metadata;
  /** Replace only if the secret is at this version (`If-Match`). */
  expectedVersion?: number;
  /** The policy fields to set; the others keep their values (their defaults when creating). */
  policy?: SecretPolicyParams;
  /** A `Date` or an RFC 3339 string with its zone; `null`: never expires. */
  expiresAt?: Timestamp | Date | null;
  /** Replaces the rotation policy; `null` ends rotation. */
  rotation?: Rotation | null;
}

export interface SecretDeleteParams {
  name: string;
  /** Delete only if the secret is at this version (`If-Match`). */
  expectedVersion?: number;
  /**
   * Purge now instead of keeping it restorable: every version destroyed (needs
   * `secrets:admin`). Also purges a secret already deleted.
   */
  force?: boolean;
}

export interface SecretRollbackParams {
  name: string;
  /** The version whose value becomes current again, as a new version. */
  version: number;
  /** Roll back only if the secret is still at this version (else `precondition_failed`). */
  expectedVersion?: number;
}

export interface SecretBatchGetParams {
  /** At most 1000 names. */
  names: string[];
}

/** One secret of a `batchPut`: fields left out keep an existing secret's own. */
export interface BatchPutItem {
  name: string;
  value: string;
  description?: string | null;
  metadata?: Metadata;
  policy?: SecretPolicyParams;
  /** A `Date` or an RFC 3339 string with its zone; `null`: never expires. */
  expiresAt?: Timestamp | Date | null;
}

export interface SecretBatchPutParams {
  /** At most 1000; all are written or none is. */
  secrets: BatchPutItem[];
  /** Say what would change, and change nothing. */
  dryRun?: boolean;
}

/** A name `batchGet` read no value for: `code` is what a `get` of it alone would reject with. */
export interface BatchError {
  name: string;
  /** `not_found`, `forbidden`, `expired` or `internal_error`. */
  code: string;
  message: string;
}

export interface BatchGetResponse {
  /** The secrets read, with their values. */
  secrets: Secret[];
  /** The names read no value for, and why. */
  errors: BatchError[];
}

export interface BatchPutResult {
  name: string;
  id: string;
  /** `created`, `updated`, or `unchanged` (no new version). */
  status: string;
  version: number;
}

/** What a `batchPut` did (or, with `dryRun`, would do) to each secret, in the order given. */
export interface BatchPutResponse {
  items: BatchPutResult[];
  dryRun: boolean;
}

export interface SecretRotateOptions {
  /**
   * Runs before anything changes, with the new value: return false (or throw, or reject)
   * to stop the rotation with a `RotationCheckFailedError`. E.g. one test call to the
   * third-party API with the new key.
   */
  check?: (newValue: string) => unknown;
  /** The metadata after the rotation; by default the current one plus `lastRotated`. */
  metadata?: Metadata;
}

// -- tasks and executions ------------------------------------------------------------------

/**
 * A step of a task: `transform` or `tool_call` and their fields, in the wire's spelling
 * (`secret_name`), sent and returned untouched.
 */
export interface TaskStep {
  kind: string;
  [field: string]: unknown;
}

/** A task's definition, as `tasks.create({ task })` takes it. */
export interface TaskDefinition {
  name?: string | null;
  description?: string | null;
  steps: TaskStep[];
}

/** `tasks.create({ task })` or `tasks.create({ steps })` (the guide shows both). */
export type TaskCreateParams =
  | { task: TaskDefinition; steps?: never; name?: string; description?: string }
  | { steps: TaskStep[]; task?: never; name?: string; description?: string };

export interface Task {
  id: string;
  name: string | null;
  description: string | null;
  steps: TaskStep[];
  createdAt: Timestamp;
  updatedAt: Timestamp;
}

/** `tasks.create`'s answer: the task, and what to fix that does not stop it. */
export interface CreatedTask extends Task {
  /** E.g. `{ location: "body.task.steps[0].secret_name", message: "secret 'x' does not exist yet" }`. */
  warnings: TaskWarning[];
}

export interface TaskWarning {
  location: string;
  message: string;
}

export type TaskList = Page<Task>;

export interface DeletedTask {
  id: string;
  deletedAt: Timestamp;
}

export interface ListParams {
  limit?: number;
  offset?: number;
}

export interface TaskExecuteParams {
  taskId: string;
  /** The execution's input (`inputs` in expressions), passed through untouched. */
  input?: unknown;
}

export type ExecutionStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";

export interface Execution {
  id: string;
  taskId: string;
  status: ExecutionStatus;
  input: JsonValue;
  /** The last step's result, redacted: a secret value shows as `[REDACTED:<name>]`. */
  output: JsonValue;
  /** `{ step, code, message }` when it failed (redacted too); `null` otherwise. */
  error: JsonValue;
  createdAt: Timestamp;
  updatedAt: Timestamp;
}

export type ExecutionList = Page<Execution>;

export interface ExecutionListParams extends ListParams {
  /** Only this task's executions. */
  taskId?: string;
}

export interface ExecutionStep {
  index: number;
  kind: string;
  status: "running" | "succeeded" | "failed";
  output: JsonValue;
  error: JsonValue;
  startedAt: Timestamp | null;
  finishedAt: Timestamp | null;
}

export interface ExecutionStepList {
  items: ExecutionStep[];
}

export interface WaitOptions {
  /** Milliseconds to wait in all (default 300 000). */
  timeout?: number;
  /** Stops the wait; it then rejects with the signal's reason. */
  signal?: AbortSignal;
}

// -- audit ---------------------------------------------------------------------------------

export interface AuditRecord {
  id: number;
  time: Timestamp;
  /** The API key that acted; `null` when none did (a refused request without a key). */
  keyId: string | null;
  /** That key's name when the event happened (a renamed key's older events keep the old one). */
  keyName: string | null;
  action: string;
  outcome: string;
  secretName: string | null;
  secretId: string | null;
  requestId: string | null;
  clientAddr: string | null;
  detail: string | null;
}

export type AuditList = Page<AuditRecord>;

export interface AuditListParams extends ListParams {
  /** Only events about this secret name. */
  secret?: string;
  /** Only events of this action (e.g. `secret.read`). */
  action?: string;
  /** Only events that ended so: `success`, or an error code (`forbidden`, `not_found`...). */
  result?: string;
  /** Only events of this API key. */
  keyId?: string;
  /** Only events at or after this time: a `Date`, or an RFC 3339 string with its time zone. */
  since?: Timestamp | Date;
  /** Only events before this time: a `Date`, or an RFC 3339 string with its time zone. */
  until?: Timestamp | Date;
}

// -- API keys ------------------------------------------------------------------------------

/** What an API key may do; `*` is every scope. */
export type KeyScope =
  | "secrets:read"
  | "secrets:write"
  | "secrets:admin"
  | "tasks:run"
  | "audit:read"
  | "keys:admin"
  | "*";

/**
 * Which of the tenant's secrets a key reaches: a name matching one of `names` (`ci_*`:
 * `*` any run of characters, `?` one; any name when empty or left out) whose metadata holds
 * every entry of `metadata`. A key whose `rule` is `null` reaches every secret.
 */
export interface KeyRule {
  names?: string[];
  metadata?: { [key: string]: string | number | boolean };
}

/** An API key as the server keeps it: never the key itself, only its `hint`. */
export interface ApiKey {
  id: string;
  name: string | null;
  /** The key's prefix and last four characters. */
  hint: string;
  scopes: string[];
  rule: KeyRule | null;
  createdAt: Timestamp;
  /** The key that issued it; `null` when it was made from a shell. */
  createdBy: string | null;
  expiresAt: Timestamp | null;
  /** Exact to a minute. */
  lastUsedAt: Timestamp | null;
  revokedAt: Timestamp | null;
}

/**
 * A new API key: `key` is the key itself, shown this once and never again. `console.log`
 * and `util.inspect` show it as `[hidden]`; `JSON.stringify` and `created.key` give it.
 */
export interface CreatedApiKey extends ApiKey {
  key: string;
}

/** A rotation: the `new` key, and the `old` one as changed (its grace as its `expiresAt`). */
export interface RotatedApiKey {
  new: CreatedApiKey;
  old: ApiKey;
}

export type ApiKeyList = Page<ApiKey>;

/**
 * A new key. Scopes, rule and expiry left out are the calling key's own; given, they may
 * only narrow them (else `PermissionDeniedError`).
 */
export interface KeyCreateParams {
  name?: string | null;
  scopes?: KeyScope[];
  /** `null`: every secret of the tenant (only for a calling key without a rule). */
  rule?: KeyRule | null;
  /** A `Date` or an RFC 3339 string with its zone; `null`: never (only for a calling key that never expires). */
  expiresAt?: Timestamp | Date | null;
}

export interface KeyListParams extends ListParams {
  /** List revoked keys too. */
  includeRevoked?: boolean;
}

/** The fields to change (those left out keep their values), within the calling key's power. */
export interface KeyUpdateParams {
  keyId: string;
  /** `null` clears the name. */
  name?: string | null;
  scopes?: KeyScope[];
  /** Replaces the whole rule; `null`: every secret of the tenant. */
  rule?: KeyRule | null;
  /** `null`: never expires. */
  expiresAt?: Timestamp | Date | null;
}

export interface KeyRotateParams {
  keyId: string;
  /** Seconds the old key keeps working (0 to 2 592 000, 30 days); without, it is revoked at once. */
  graceSeconds?: number;
}
