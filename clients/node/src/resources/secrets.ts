/**
 * `client.secrets`: create, list, read, update, rotate and delete secrets.
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
  DeletedSecret,
  Metadata,
  RequestOptions,
  Secret,
  SecretCreateParams,
  SecretDeleteParams,
  SecretGetParams,
  SecretList,
  SecretListAllParams,
  SecretListParams,
  SecretPolicyParams,
  SecretRef,
  SecretRotateOptions,
  SecretUpdateParams,
  SecretUpsertParams,
  SecretVersionList,
} from "../types.js";
import { fromWire, listFromWire, queryString, secretFromWire, secretListFromWire, segment } from "../wire.js";
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

function createSecret(
  name: string,
  value: string,
  description: string | null | undefined,
  metadata: Metadata | undefined,
  policy?: SecretPolicyParams,
): Operation<Secret> {
  const wirePolicy = policy === undefined ? undefined : policyToWire(policy);
  const body = Object.fromEntries(
    Object.entries({ name, value, description, metadata, policy: wirePolicy }).filter(([, v]) => v != null),
  );
  return {
    method: "POST",
    path: "/v1/secrets",
    body,
    idempotent: false,
    parse: secretFromWire<Secret>,
    conflict: SecretAlreadyExistsError,
  };
}

function listSecrets(
  limit: number | undefined,
  offset: number | undefined,
  metadata: Metadata | undefined,
): Operation<SecretList> {
  // The contract's filter form: the whole object as JSON in one parameter.
  const filter = metadata && Object.keys(metadata).length ? JSON.stringify(metadata) : undefined;
  return {
    method: "GET",
    path: "/v1/secrets" + queryString({ limit, offset, metadata: filter }),
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

interface SecretChanges {
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
): Operation<Secret> {
  return {
    method: "PUT",
    path: secretPath(name),
    body: given({
      value,
      description,
      metadata,
      policy: policy === undefined ? undefined : policyToWire(policy),
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
): Operation<DeletedSecret> {
  return {
    method: "DELETE",
    path: secretPath(name),
    headers: ifMatch(expectedVersion),
    idempotent: true,
    parse: fromWire<DeletedSecret>,
    notFound: SecretNotFoundError,
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

/** `client.secrets`: create, list, read, update, rotate and delete secrets. */
export class Secrets {
  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /** Create a secret; `SecretAlreadyExistsError` (`conflict`) if the name is taken. */
  async create(params: SecretCreateParams, options?: RequestOptions): Promise<Secret> {
    const { name, value, description, metadata, policy } = params;
    const op = createSecret(requireString(name, "name"), value, description, metadata, policy);
    return this.#transport.send(op, options);
  }

  /** One page of secrets, ordered by name; each `value` is `"ENCRYPTED"`. */
  async list(params: SecretListParams = {}, options?: RequestOptions): Promise<SecretList> {
    const { limit, offset, metadata } = params;
    return this.#transport.send(listSecrets(limit, offset, metadata), options);
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
   * changes the policy fields it gives (loosening needs the `secrets:admin` scope).
   */
  async update(params: SecretUpdateParams, options?: RequestOptions): Promise<Secret> {
    const { name, ...changes } = params;
    return this.#transport.send(updateSecret(requireString(name, "name"), changes), options);
  }

  /** Create the secret, or give it a new value (fields left out keep theirs). */
  async upsert(params: SecretUpsertParams, options?: RequestOptions): Promise<Secret> {
    const { name, value, description, metadata, expectedVersion, policy } = params;
    const op = upsertSecret(
      requireString(name, "name"),
      value,
      description,
      metadata,
      expectedVersion,
      policy,
    );
    return this.#transport.send(op, options);
  }

  /** Delete the secret and its history; the name is free at once. */
  async delete(params: SecretRef | SecretDeleteParams, options?: RequestOptions): Promise<DeletedSecret> {
    const expected =
      typeof params === "string" ? undefined : (params as SecretDeleteParams | undefined)?.expectedVersion;
    return this.#transport.send(deleteSecret(refOf(params, "name"), expected), options);
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
