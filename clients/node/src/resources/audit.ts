/**
 * `client.audit`: the tenant's audit trail. The request builder, then the {@link Audit}
 * resource that sends it, as in the Python SDK's `resources/audit.py`.
 */

import type { Operation } from "../operation.js";
import { walk } from "../pages.js";
import type { Transport } from "../transport.js";
import type { AuditList, AuditListParams, AuditRecord, RequestOptions } from "../types.js";
import { listFromWire, queryString, timeToWire } from "../wire.js";

function listAudit(params: AuditListParams): Operation<AuditList> {
  const { limit, offset, secret, action, result, keyId, since, until } = params;
  const query = {
    limit,
    offset,
    secret,
    action,
    result,
    key_id: keyId,
    since: since === undefined ? undefined : timeToWire(since, "since"),
    until: until === undefined ? undefined : timeToWire(until, "until"),
  };
  return {
    method: "GET",
    path: "/v1/audit" + queryString(query),
    idempotent: true,
    parse: listFromWire<AuditList>,
  };
}

/** `client.audit`: the tenant's audit trail, newest first (needs the `audit:read` scope). */
export class Audit {
  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /**
   * One page of the trail, newest first. Each filter given must hold: `secret`, `action`
   * (`secret.read`), `result` (`success` or an error code), `keyId`, `since` (at or
   * after) and `until` (before), the times as `Date`s or RFC 3339 strings with a zone.
   */
  async list(params: AuditListParams = {}, options?: RequestOptions): Promise<AuditList> {
    return this.#transport.send(listAudit(params), options);
  }

  /** Every matching audit record, fetching the pages as the loop goes. */
  async *listAll(
    params: Omit<AuditListParams, "limit" | "offset"> & { pageSize?: number } = {},
    options?: RequestOptions,
  ): AsyncGenerator<AuditRecord, void, undefined> {
    const { pageSize = 100, ...filters } = params;
    yield* walk((offset) => this.list({ ...filters, limit: pageSize, offset }, options));
  }
}
