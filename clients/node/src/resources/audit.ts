/**
 * `client.audit`: the tenant's audit trail. The request builder, then the {@link Audit}
 * resource that sends it, as in the Python SDK's `resources/audit.py`.
 */

import type { Operation } from "../operation.js";
import { walk } from "../pages.js";
import type { Transport } from "../transport.js";
import type { AuditList, AuditListParams, AuditRecord, RequestOptions } from "../types.js";
import { listFromWire, queryString } from "../wire.js";

function listAudit(
  limit: number | undefined,
  offset: number | undefined,
  secret: string | undefined,
  action: string | undefined,
): Operation<AuditList> {
  return {
    method: "GET",
    path: "/v1/audit" + queryString({ limit, offset, secret, action }),
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

  async list(params: AuditListParams = {}, options?: RequestOptions): Promise<AuditList> {
    const { limit, offset, secret, action } = params;
    return this.#transport.send(listAudit(limit, offset, secret, action), options);
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
