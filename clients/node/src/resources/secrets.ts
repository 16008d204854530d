/**
 * `client.secrets`: create, list, read, update, rotate and delete secrets; restore or purge
 * a deleted one, roll back to an earlier value, make a scheduled rotation due now, and
 * read or write many at once (`batchGet`, `batchPut`).
 *
 * The request builders come first, one per call (method, path, wire body, how to read the
 * answer), then the {@link Secrets} resource that sends them, as in the Python SDK's
 * `resources/secrets.py`.
 */

import { RotationCheckFailedError, SecretAlreadyExistsError, SecretNotFoundError } from "../errors.js";
import type { Operation } from "../operation.js";
import { walk } from "../pages.js";
import type { Transport } from "../transport.js";
import type {
  BatchGetResponse,
  BatchPutItem,
  BatchPutResponse,
  DeletedSecret,
  Metadata,
  RequestOptions,
  Rotation,
  Secret,
  SecretBatchGetParams,
  SecretBatchPutParams,
  SecretCreateParams,
  SecretDeleteParams,
  SecretGetParams,
  SecretList,
  SecretListAllParams,
  SecretListParams,
  SecretPolicyParams,
  SecretRef,
  SecretRollbackParams,
  SecretRotateOptions,
  SecretUpdateParams,
  SecretUpsertParams,
  SecretVersionList,
  Timestamp,
} from "../types.js";
import {
  batchGetFromWire,
  fromWire,
  listFromWire,
  queryString,
  secretFromWire,
  secretListFromWire,
  segment,
  timeToWire,
} from "../wire.js";
import { refOf, requireString } from "./refs.js";

const secretPath = (name: string): string => `/v1/secrets/${segment(name)}`;

/** `If-Match: "<version>"`, which makes a PUT or DELETE conditional. */
function ifMatch(version: number | undefined): Record<string, string> {
  return version === undefined ? {} : { "If-Match": `"${version}"` };
}

/** The fields that were given: `undefined` leaves a field out, `null` is sent (it clears). */
function given(fields: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}

/**
 * A policy's wire form: the fields given, in snake_case (`undefined` leaves a field out,
 * `null` is sent: it removes that restriction).
 */
function policyToWire(policy: SecretPolicyParams): Record<string, unknown> {
  if (policy === null || typeof policy !== "object" || Array.isArray(policy)) {
    throw new TypeError("policy must be an object: { allowedDestinations?, allowedTools?, readable? }");
  }
  return given({
    allowed_destinations: policy.allowedDestinations,
    allowed_tools: policy.allowedTools,
    readable: policy.readable,
  });
}

/** An expiry's wire form: `undefined` leaves it out, `null` is sent (it clears). */
function expiryToWire(expiresAt: Timestamp | Date | null | undefined): string | null | undefined {
  return expiresAt == null ? expiresAt : timeToWire(expiresAt, "expiresAt");
}

/** A rotation policy's wire form: `undefined` leaves it out, `null` is sent (it ends rotation). */
function rotationToWire(rotation: Rotation | null | undefined): Record<string, unknown> | null | undefined {
  if (rotation == null) {
    return rotation;
  }
  if (typeof rotation !== "object" || Array.isArray(rotation)) {
    throw new TypeError('rotation must be an object ({ every: "30d", taskId }) or null');
  }
  return { every: rotation.every, task_id: rotation.taskId };
}

/** The expiry and rotation given, in the wire's spelling. */
interface Lifecycle {
  expiresAt?: Timestamp | Date | null | undefined;
  rotation?: Rotation | null | undefined;
}

function lifecycleToWire({ expiresAt, rotation }: Lifecycle): Record<string, unknown> {
  return given({ expires_at: expiryToWire(expiresAt), rotation: rotationToWire(rotation) });
}

function createSecret(
  name: string,
  value: string,
  description: string | null | undefined,
  metadata: Metadata | undefined,
  policy?: SecretPolicyParams,
  lifecycle: Lifecycle = {},
): Operation<Secret> {
  const wirePolicy = policy === undefined ? undefined : policyToWire(policy);
  const fields = { name, value, description, metadata, policy: wirePolicy, ...lifecycleToWire(lifecycle) };
  // null is "none" for every field of a new secret: left out, it is the default anyway.
  const body = Object.fromEntries(Object.entries(fields).filter(([, v]) => v != null));
  return {
    method: "POST",
    path: "/v1/secrets",
    body,
    idempotent: false,
    parse: secretFromWire<Secret>,
    conflict: SecretAlreadyExistsError,
  };
}

function listSecrets(params: SecretListParams): Operation<SecretList> {
  const { limit, offset, metadata, deleted, expiringBefore } = params;
  // The contract's filter form: the whole object as JSON in one parameter.
  const filter = metadata && Object.keys(metadata).length ? JSON.stringify(metadata) : undefined;
  const query = {
    limit,
    offset,
    metadata: filter,
    deleted: deleted ? true : undefined,
    expiring_before: expiringBefore === undefined ? undefined : timeToWire(expiringBefore, "expiringBefore"),
  };
  return {
    method: "GET",
    path: "/v1/secrets" + queryString(query),
    idempotent: true,
    parse: secretListFromWire<SecretList>,
  };
}

function getSecret(name: string, version: number | undefined): Operation<Secret> {
  return {
    method: "GET",
    path: secretPath(name) + queryString({ version }),
    idempotent: true,
    parse: secretFromWire<Secret>,
    notFound: SecretNotFoundError,
  };
}

interface SecretChanges extends Lifecycle {
  value?: string | undefined;
  description?: string | null | undefined;
  metadata?: Metadata | undefined;
  newName?: string | undefined;
  expectedVersion?: number | undefined;
  policy?: SecretPolicyParams | undefined;
}

function updateSecret(name: string, changes: SecretChanges): Operation<Secret> {
  const { value, description, metadata, newName, expectedVersion, policy } = changes;
  return {
    method: "PATCH",
    path: secretPath(name),
    body: given({
      value,
      description,
      metadata,
      new_name: newName,
      expected_version: expectedVersion ?? undefined,
      policy: policy === undefined ? undefined : policyToWire(policy),
      ...lifecycleToWire(changes),
    }),
    // A conditional update cannot apply twice: the second try meets a newer version.
    idempotent: expectedVersion != null,
    parse: secretFromWire<Secret>,
    notFound: SecretNotFoundError,
    conflict: SecretAlreadyExistsError,
  };
}

function upsertSecret(
  name: string,
  value: string,
  description: string | null | undefined,
  metadata: Metadata | undefined,
  expectedVersion: number | undefined,
  policy?: SecretPolicyParams,
  lifecycle: Lifecycle = {},
): Operation<Secret> {
  return {
    method: "PUT",
    path: secretPath(name),
    body: given({
      value,
      description,
      metadata,
      policy: policy === undefined ? undefined : policyToWire(policy),
      ...lifecycleToWire(lifecycle),
    }),
    headers: ifMatch(expectedVersion),
    idempotent: true,
    parse: secretFromWire<Secret>,
    notFound: SecretNotFoundError,
  };
}

function deleteSecret(
  name: string,
  expectedVersion: number | undefined,
  force: boolean | undefined,
): Operation<DeletedSecret> {
  return {
    method: "DELETE",
    path: secretPath(name) + queryString({ force: force ? true : undefined }),
    headers: ifMatch(expectedVersion),
    idempotent: true,
    parse: fromWire<DeletedSecret>,
    notFound: SecretNotFoundError,
  };
}

/** A POST to one of the secret's actions (`restore`, `rotate`), answered by the secret. */
function secretAction(name: string, action: string): Operation<Secret> {
  return {
    method: "POST",
    path: `${secretPath(name)}/${action}`,
    // Doing either twice ends as doing it once.
    idempotent: true,
    parse: secretFromWire<Secret>,
    notFound: SecretNotFoundError,
  };
}

function rollbackSecret(name: string, version: number, expectedVersion: number | undefined): Operation<Secret> {
  return {
    method: "POST",
    path: `${secretPath(name)}/rollback`,
    body: given({ version, expected_version: expectedVersion ?? undefined }),
    // An unconditional one, sent twice, would make two versions.
    idempotent: expectedVersion != null,
    parse: secretFromWire<Secret>,
    notFound: SecretNotFoundError,
  };
}

function batchGetSecrets(names: string[]): Operation<BatchGetResponse> {
  if (!Array.isArray(names)) {
    throw new TypeError("names must be an array of secret names");
  }
  return {
    method: "POST",
    path: "/v1/secrets:batchGet",
    body: { names },
    idempotent: true,
    parse: batchGetFromWire<BatchGetResponse>,
  };
}

function batchItemToWire(item: BatchPutItem): Record<string, unknown> {
  if (item === null || typeof item !== "object" || Array.isArray(item)) {
    throw new TypeError("each secret must be an object: { name, value, ... }");
  }
  const { name, value, description, metadata, policy, expiresAt } = item;
  return given({
    name,
    value,
    description,
    metadata,
    policy: policy === undefined ? undefined : policyToWire(policy),
    expires_at: expiryToWire(expiresAt),
  });
}

function batchPutSecrets(secrets: BatchPutItem[], dryRun: boolean | undefined): Operation<BatchPutResponse> {
  if (!Array.isArray(secrets)) {
    throw new TypeError("secrets must be an array of { name, value, ... }");
  }
  return {
    method: "PUT",
    path: "/v1/secrets:batch",
    body: { secrets: secrets.map(batchItemToWire), dry_run: dryRun ?? false },
    // Sent again, every item is already as asked: the second answer says "unchanged".
    idempotent: true,
    parse: listFromWire<BatchPutResponse>,
  };
}

function secretVersions(name: string): Operation<SecretVersionList> {
  return {
    method: "GET",
    path: `${secretPath(name)}/versions`,
    idempotent: true,
    parse: listFromWire<SecretVersionList>,
    notFound: SecretNotFoundError,
  };
}

/**
 * `client.secrets`: create, list, read, update, rotate and delete secrets; restore, purge,
 * roll back, and read or write many at once.
 */
export class Secrets {
  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /**
   * Create a secret; `SecretAlreadyExistsError` (`conflict`) if the name is taken, by a
   * deleted secret too until it is restored or purged. `expiresAt` ends its reads;
   * `rotation` has a task make a new value on schedule.
   */
  async create(params: SecretCreateParams, options?: RequestOptions): Promise<Secret> {
    const { name, value, description, metadata, policy, expiresAt, rotation } = params;
    const op = createSecret(requireString(name, "name"), value, description, metadata, policy, {
      expiresAt,
      rotation,
    });
    return this.#transport.send(op, options);
  }

  /**
   * One page of secrets, ordered by name; each `value` is `"ENCRYPTED"`. `deleted: true`
   * lists the deleted ones waiting for their purge instead; `expiringBefore` only those
   * that expire before then (or have).
   */
  async list(params: SecretListParams = {}, options?: RequestOptions): Promise<SecretList> {
    return this.#transport.send(listSecrets(params ?? {}), options);
  }

  /**
   * Every secret (matching `metadata`), fetching the pages as the loop goes:
   * `for await (const secret of client.secrets.listAll()) { ... }`.
   */
  async *listAll(
    params: SecretListAllParams = {},
    options?: RequestOptions,
  ): AsyncGenerator<Secret, void, undefined> {
    const { metadata, pageSize = 100 } = params;
    yield* walk((offset) => this.list({ limit: pageSize, offset, metadata }, options));
  }

  /** The secret with its plaintext value (of `version`, else the newest). */
  async get(params: SecretRef | SecretGetParams, options?: RequestOptions): Promise<Secret> {
    const version = typeof params === "string" ? undefined : (params as SecretGetParams | undefined)?.version;
    return this.#transport.send(getSecret(refOf(params, "name"), version), options);
  }

  /**
   * Change only the fields given: `description: null` clears it, `metadata` replaces the
   * whole object, `newName` renames, `expectedVersion` makes it conditional, `policy`
   * changes the policy fields it gives (loosening needs the `secrets:admin` scope),
   * `expiresAt` and `rotation` replace theirs (`null`: none). A value equal to the current
   * one makes no version (for a key that may read it).
   */
  async update(params: SecretUpdateParams, options?: RequestOptions): Promise<Secret> {
    const { name, ...changes } = params;
    return this.#transport.send(updateSecret(requireString(name, "name"), changes), options);
  }

  /** Create the secret, or give it a new value (fields left out keep theirs). */
  async upsert(params: SecretUpsertParams, options?: RequestOptions): Promise<Secret> {
    const { name, value, description, metadata, expectedVersion, policy, expiresAt, rotation } = params;
    const op = upsertSecret(
      requireString(name, "name"),
      value,
      description,
      metadata,
      expectedVersion,
      policy,
      { expiresAt, rotation },
    );
    return this.#transport.send(op, options);
  }

  /**
   * Delete the secret: restorable (`restore`) until its `purgeAfter`, its name held
   * meanwhile so that no new secret takes it by mistake. `force: true` purges it now
   * (needs `secrets:admin`).
   */
  async delete(params: SecretRef | SecretDeleteParams, options?: RequestOptions): Promise<DeletedSecret> {
    const { expectedVersion, force } =
      typeof params === "string" ? ({} as Partial<SecretDeleteParams>) : ((params ?? {}) as SecretDeleteParams);
    return this.#transport.send(deleteSecret(refOf(params, "name"), expectedVersion, force), options);
  }

  /** Destroy the secret, live or deleted, and every version now (needs `secrets:admin`). */
  async purge(params: SecretRef, options?: RequestOptions): Promise<DeletedSecret> {
    return this.#transport.send(deleteSecret(refOf(params, "name"), undefined, true), options);
  }

  /** Bring a deleted secret back, every version with it, before its purge. */
  async restore(params: SecretRef, options?: RequestOptions): Promise<Secret> {
    return this.#transport.send(secretAction(refOf(params, "name"), "restore"), options);
  }

  /**
   * Make `version`'s value current again, as a new version. The value never leaves the
   * server, so this needs only `secrets:write`.
   */
  async rollback(params: SecretRollbackParams, options?: RequestOptions): Promise<Secret> {
    const { name, version, expectedVersion } = params;
    return this.#transport.send(rollbackSecret(requireString(name, "name"), version, expectedVersion), options);
  }

  /**
   * Make the secret's scheduled rotation due now (`ConflictError` without a rotation
   * policy). Not {@link Secrets.rotate}, which sets a value you give.
   */
  async rotateNow(params: SecretRef, options?: RequestOptions): Promise<Secret> {
    return this.#transport.send(secretAction(refOf(params, "name"), "rotate"), options);
  }

  /**
   * The values of up to 1000 secrets in one request (one audit record each). The names
   * without one are in `errors`, each with the code a `get` of it would reject with.
   */
  async batchGet(params: SecretBatchGetParams, options?: RequestOptions): Promise<BatchGetResponse> {
    return this.#transport.send(batchGetSecrets(params?.names), options);
  }

  /**
   * Create or update up to 1000 secrets, all or nothing; fields an item leaves out keep an
   * existing secret's own. `dryRun` says what would change and changes nothing.
   */
  async batchPut(params: SecretBatchPutParams, options?: RequestOptions): Promise<BatchPutResponse> {
    return this.#transport.send(batchPutSecrets(params?.secrets, params?.dryRun), options);
  }

  /** The secret's versions, newest first (never their values). */
  async versions(params: SecretRef, options?: RequestOptions): Promise<SecretVersionList> {
    return this.#transport.send(secretVersions(refOf(params, "name")), options);
  }

  /**
   * Replace the value once `check(newValue)` passes, in one conditional update.
   *
   * Safer than the guide's create-temporary, delete and rename recipe: the secret exists
   * throughout (readers never meet `not_found`), the previous value stays readable as
   * `get({ name, version: rotated.version - 1 })`, and a concurrent change makes this
   * reject with `PreconditionFailedError` instead of being overwritten. `check` fails by
   * returning a false value, throwing or rejecting; then nothing changes.
   */
  async rotate(
    name: string,
    newValue: string,
    options: SecretRotateOptions & RequestOptions = {},
  ): Promise<Secret> {
    const { check, metadata, ...requestOptions } = options;
    const current = await this.get({ name }, requestOptions);
    await runCheck(check, newValue);
    return this.update(
      {
        name,
        value: newValue,
        metadata: metadata ?? { ...current.metadata, lastRotated: new Date().toISOString() },
        expectedVersion: current.version,
      },
      requestOptions,
    );
  }
}

/**
 * Run the caller's check. Its error is named but not kept: its message could quote the
 * value it was checking, and this error may well end up in a log.
 */
async function runCheck(check: SecretRotateOptions["check"], value: string): Promise<void> {
  if (!check) {
    return;
  }
  let passed: unknown;
  try {
    passed = await check(value);
  } catch (error) {
    const kind = error instanceof Error ? error.name : typeof error;
    throw new RotationCheckFailedError(`the new value failed its check (${kind}); nothing was changed`);
  }
  if (!passed) {
    throw new RotationCheckFailedError("the new value failed its check; nothing was changed");
  }
}
