/**
 * `client.keys`: issue, list, change, rotate and revoke API keys (needs `keys:admin`).
 *
 * A key manages only keys no more powerful than itself: a key it issues or changes has no
 * scope it lacks, reaches no secret beyond its rule and expires no later than it does; the
 * server answers anything more with 403 (`PermissionDeniedError`). The request builders,
 * then the {@link Keys} resource that sends them, as in the Python SDK's `resources/keys.py`.
 */

import type { Operation } from "../operation.js";
import { walk } from "../pages.js";
import type { Transport } from "../transport.js";
import type {
  ApiKey,
  ApiKeyList,
  CreatedApiKey,
  KeyCreateParams,
  KeyListParams,
  KeyRotateParams,
  KeyRule,
  KeyScope,
  KeyUpdateParams,
  RequestOptions,
  RotatedApiKey,
  Timestamp,
} from "../types.js";
import { fromWire, listFromWire, queryString, segment, timeToWire } from "../wire.js";
import { refOf, requireString } from "./refs.js";

/** A key by id: the id itself, or `{ keyId }`. */
export type KeyRef = string | { keyId: string };

const keyPath = (keyId: string): string => `/v1/keys/${segment(keyId)}`;

const INSPECT = Symbol.for("nodejs.util.inspect.custom");

/**
 * A new key as the SDK hands it out: `key` is there for the caller (and for
 * `JSON.stringify`), but `console.log` and `util.inspect` show `[hidden]`, so that a debug
 * line or a logged object does not print the one copy of the key there is.
 */
function createdFromWire(answer: unknown): CreatedApiKey {
  const created = fromWire<CreatedApiKey>(answer);
  if (created !== null && typeof created === "object") {
    Object.defineProperty(created, INSPECT, {
      enumerable: false,
      value(this: CreatedApiKey, _depth: number, options: object, inspect: (value: unknown, options: object) => string) {
        return `CreatedApiKey ${inspect({ ...this, key: "[hidden]" }, options)}`;
      },
    });
  }
  return created;
}

function rotatedFromWire(answer: unknown): RotatedApiKey {
  const rotated = answer as { new?: unknown; old?: unknown };
  return { ...fromWire<RotatedApiKey>(answer), new: createdFromWire(rotated.new), old: fromWire<ApiKey>(rotated.old) };
}

function ruleToWire(rule: KeyRule | null): Record<string, unknown> | null {
  if (rule === null) {
    return null;
  }
  if (typeof rule !== "object" || Array.isArray(rule)) {
    throw new TypeError("rule must be an object ({ names?, metadata? }) or null");
  }
  const body: Record<string, unknown> = {};
  if (rule.names !== undefined) {
    body.names = rule.names;
  }
  if (rule.metadata !== undefined) {
    body.metadata = rule.metadata; // the caller's selector: keys sent as given
  }
  return body;
}

interface KeyPower {
  name?: string | null | undefined;
  scopes?: KeyScope[] | undefined;
  rule?: KeyRule | null | undefined;
  expiresAt?: Timestamp | Date | null | undefined;
}

/** The fields given, in the wire's spelling: `undefined` leaves one out, `null` is sent. */
function powerToWire({ name, scopes, rule, expiresAt }: KeyPower): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (name !== undefined) {
    body.name = name;
  }
  if (scopes !== undefined) {
    if (!Array.isArray(scopes)) {
      throw new TypeError('scopes must be an array of scopes, e.g. ["secrets:read"]');
    }
    body.scopes = scopes;
  }
  if (rule !== undefined) {
    body.rule = ruleToWire(rule);
  }
  if (expiresAt !== undefined) {
    body.expires_at = expiresAt === null ? null : timeToWire(expiresAt, "expiresAt");
  }
  return body;
}

function createKey(params: KeyCreateParams): Operation<CreatedApiKey> {
  return { method: "POST", path: "/v1/keys", body: powerToWire(params), idempotent: false, parse: createdFromWire };
}

function listKeys(
  limit: number | undefined,
  offset: number | undefined,
  includeRevoked: boolean | undefined,
): Operation<ApiKeyList> {
  return {
    method: "GET",
    path: "/v1/keys" + queryString({ limit, offset, include_revoked: includeRevoked }),
    idempotent: true,
    parse: listFromWire<ApiKeyList>,
  };
}

function getKey(keyId: string): Operation<ApiKey> {
  return { method: "GET", path: keyPath(keyId), idempotent: true, parse: fromWire<ApiKey> };
}

function updateKey(keyId: string, changes: KeyPower): Operation<ApiKey> {
  return {
    method: "PATCH",
    path: keyPath(keyId),
    body: powerToWire(changes),
    // The fields are set, not added to: sending it twice ends the same.
    idempotent: true,
    parse: fromWire<ApiKey>,
  };
}

function revokeKey(keyId: string): Operation<ApiKey> {
  return { method: "DELETE", path: keyPath(keyId), idempotent: true, parse: fromWire<ApiKey> };
}

function rotateKey(keyId: string, graceSeconds: number | undefined): Operation<RotatedApiKey> {
  return {
    method: "POST",
    path: `${keyPath(keyId)}/rotate`,
    body: graceSeconds === undefined ? {} : { grace_seconds: graceSeconds },
    idempotent: false,
    parse: rotatedFromWire,
  };
}

/** `client.keys`: issue, list, change, rotate and revoke API keys (needs `keys:admin`). */
export class Keys {
  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /**
   * Issue a new key of the calling key's tenant; its `key` is shown only now. Scopes, rule
   * and expiry left out are the calling key's own; given, they may only narrow them.
   */
  async create(params: KeyCreateParams = {}, options?: RequestOptions): Promise<CreatedApiKey> {
    return this.#transport.send(createKey(params), options);
  }

  /** One page of the keys this key may manage, oldest first (revoked ones with `includeRevoked`). */
  async list(params: KeyListParams = {}, options?: RequestOptions): Promise<ApiKeyList> {
    const { limit, offset, includeRevoked } = params;
    return this.#transport.send(listKeys(limit, offset, includeRevoked), options);
  }

  /** Every key this key may manage, fetching the pages as the loop goes. */
  async *listAll(
    params: { includeRevoked?: boolean; pageSize?: number } = {},
    options?: RequestOptions,
  ): AsyncGenerator<ApiKey, void, undefined> {
    const { includeRevoked, pageSize = 100 } = params;
    yield* walk((offset) => this.list({ limit: pageSize, offset, includeRevoked }, options));
  }

  /** One key (never the key itself). */
  async get(key: KeyRef, options?: RequestOptions): Promise<ApiKey> {
    return this.#transport.send(getKey(refOf(key, "keyId")), options);
  }

  /**
   * Change only the fields given: `name: null` clears the name, `rule: null` reaches every
   * secret, `expiresAt: null` never expires; the key as changed must stay within the
   * calling key's power (a key may narrow itself).
   */
  async update(params: KeyUpdateParams, options?: RequestOptions): Promise<ApiKey> {
    const { keyId, ...changes } = params;
    return this.#transport.send(updateKey(requireString(keyId, "keyId"), changes), options);
  }

  /** Revoke a key: it stops working at once (revoking a revoked key changes nothing). */
  async revoke(key: KeyRef, options?: RequestOptions): Promise<ApiKey> {
    return this.#transport.send(revokeKey(refOf(key, "keyId")), options);
  }

  /**
   * Replace a key by a new one with its name, scopes, rule and expiry. The old one keeps
   * working for `graceSeconds`, or is revoked at once without.
   */
  async rotate(params: string | KeyRotateParams, options?: RequestOptions): Promise<RotatedApiKey> {
    const grace = typeof params === "string" ? undefined : (params as KeyRotateParams | undefined)?.graceSeconds;
    return this.#transport.send(rotateKey(refOf(params, "keyId"), grace), options);
  }
}
