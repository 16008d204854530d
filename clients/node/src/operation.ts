/** One API call before any I/O: what to send, whether resending is safe, how to read it. */

import type { APIErrorClass } from "./errors.js";

export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface Operation<T> {
  method: Method;
  /** The path under the base URL, query string included. */
  path: string;
  /** The JSON body, already in the wire's spelling; none when `undefined`. */
  body?: unknown;
  headers?: Record<string, string>;
  /**
   * Safe to send twice: GET, PUT, DELETE, conditional writes and cancel. Only these are
   * resent after a 5xx answer or a lost connection.
   */
  idempotent: boolean;
  /** Turns the parsed JSON answer into the SDK's shape. */
  parse: (answer: unknown) => T;
  /** The class of a 404 answer (e.g. `SecretNotFoundError` for a secret call). */
  notFound?: APIErrorClass;
  /** The class of a 409 answer (e.g. `SecretAlreadyExistsError`). */
  conflict?: APIErrorClass;
}
