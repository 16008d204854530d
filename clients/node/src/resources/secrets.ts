import { RotationCheckFailedError } from "../errors.js";
import * as ops from "../operations.js";
import type { Transport } from "../transport.js";
import type {
  DeletedSecret,
  RequestOptions,
  Secret,
  SecretCreateParams,
  SecretDeleteParams,
  SecretGetParams,
  SecretList,
  SecretListAllParams,
  SecretListParams,
  SecretRef,
  SecretRotateOptions,
  SecretUpdateParams,
  SecretUpsertParams,
  SecretVersionList,
} from "../types.js";
import { refOf, requireString } from "./refs.js";

/** `client.secrets`: create, list, read, update, rotate and delete secrets. */
export class Secrets {
  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /** Create a secret; `SecretAlreadyExistsError` (`conflict`) if the name is taken. */
  async create(params: SecretCreateParams, options?: RequestOptions): Promise<Secret> {
    const { name, value, description, metadata, policy } = params;
    const op = ops.createSecret(requireString(name, "name"), value, description, metadata, policy);
    return this.#transport.send(op, options);
  }

  /** One page of secrets, ordered by name; each `value` is `"ENCRYPTED"`. */
  async list(params: SecretListParams = {}, options?: RequestOptions): Promise<SecretList> {
    const { limit, offset, metadata } = params;
    return this.#transport.send(ops.listSecrets(limit, offset, metadata), options);
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
    let offset = 0;
    for (;;) {
      const page = await this.list({ limit: pageSize, offset, metadata }, options);
      yield* page.items;
      if (!page.hasMore || page.items.length === 0) {
        return;
      }
      offset += page.items.length;
    }
  }

  /** The secret with its plaintext value (of `version`, else the newest). */
  async get(params: SecretRef | SecretGetParams, options?: RequestOptions): Promise<Secret> {
    const version = typeof params === "string" ? undefined : (params as SecretGetParams | undefined)?.version;
    return this.#transport.send(ops.getSecret(refOf(params, "name"), version), options);
  }

  /**
   * Change only the fields given: `description: null` clears it, `metadata` replaces the
   * whole object, `newName` renames, `expectedVersion` makes it conditional, `policy`
   * changes the policy fields it gives (loosening needs the `secrets:admin` scope).
   */
  async update(params: SecretUpdateParams, options?: RequestOptions): Promise<Secret> {
    const { name, ...changes } = params;
    return this.#transport.send(ops.updateSecret(requireString(name, "name"), changes), options);
  }

  /** Create the secret, or give it a new value (fields left out keep theirs). */
  async upsert(params: SecretUpsertParams, options?: RequestOptions): Promise<Secret> {
    const { name, value, description, metadata, expectedVersion, policy } = params;
    const op = ops.putSecret(
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
    return this.#transport.send(ops.deleteSecret(refOf(params, "name"), expected), options);
  }

  /** The secret's versions, newest first (never their values). */
  async versions(params: SecretRef, options?: RequestOptions): Promise<SecretVersionList> {
    return this.#transport.send(ops.secretVersions(refOf(params, "name")), options);
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
