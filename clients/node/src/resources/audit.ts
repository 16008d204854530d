import * as ops from "../operations.js";
import type { Transport } from "../transport.js";
import type { AuditList, AuditListParams, AuditRecord, RequestOptions } from "../types.js";

/** `client.audit`: the tenant's audit trail, newest first (needs the `audit:read` scope). */
export class Audit {
  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  async list(params: AuditListParams = {}, options?: RequestOptions): Promise<AuditList> {
    const { limit, offset, secret, action } = params;
    return this.#transport.send(ops.listAudit(limit, offset, secret, action), options);
  }

  /** Every matching audit record, fetching the pages as the loop goes. */
  async *listAll(
    params: Omit<AuditListParams, "limit" | "offset"> & { pageSize?: number } = {},
    options?: RequestOptions,
  ): AsyncGenerator<AuditRecord, void, undefined> {
    const { pageSize = 100, ...filters } = params;
    let offset = 0;
    for (;;) {
      const page = await this.list({ ...filters, limit: pageSize, offset }, options);
      yield* page.items;
      if (!page.hasMore || page.items.length === 0) {
        return;
      }
      offset += page.items.length;
    }
  }
}
