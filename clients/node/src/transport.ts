/**
 * Sends an {@link Operation} with the global `fetch`: headers, per-attempt timeouts,
 * retries (see `retry.ts`) and turning error answers into the error tree.
 *
 * It never logs: a secrets client should not decide where its calls are written down,
 * and nothing here puts a body, header or key into an error.
 */

import {
  APIConnectionError,
  APIError,
  APITimeoutError,
  ConflictError,
  InternalServerError,
  NotFoundError,
  RateLimitError,
  STATUS_ERRORS,
  StrongroomError,
  type APIErrorClass,
  type ErrorDetail,
} from "./errors.js";
import type { Operation } from "./operation.js";
import { backoff, neverConnected, pause, retryAfter, retryDelayForAnswer } from "./retry.js";
import type { RequestOptions } from "./types.js";
import { VERSION } from "./version.js";

/** The longest delay `setTimeout` takes; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface TransportConfig {
  apiKey: string;
  baseURL: string;
  /** Milliseconds per attempt; `Infinity` for none. */
  timeout: number;
  maxRetries: number;
}

/** What one attempt came back with: an answer, or the error that replaced it. */
type Attempt =
  | { kind: "answer"; status: number; headers: Headers; text: string }
  | { kind: "failed"; error: StrongroomError; retryable: boolean };

export class Transport {
  readonly baseURL: string;
  readonly timeout: number;
  readonly maxRetries: number;
  // Private, so that the key never shows in `console.log(client)` or a debugger's preview.
  readonly #headers: Record<string, string>;

  constructor(config: TransportConfig) {
    this.baseURL = config.baseURL;
    this.timeout = config.timeout;
    this.maxRetries = config.maxRetries;
    this.#headers = {
      Authorization: `Bearer ${config.apiKey}`,
      Accept: "application/json",
      "User-Agent": `strongroom-node/${VERSION}`,
    };
  }

  /** The parsed answer of `op`, after resending what is safe to resend. */
  async send<T>(op: Operation<T>, options: RequestOptions = {}): Promise<T> {
    const maxRetries = options.maxRetries ?? this.maxRetries;
    for (let attempt = 0; ; attempt += 1) {
      const result = await this.#attempt(op, options);
      let error: StrongroomError;
      let delay: number | undefined;
      if (result.kind === "answer") {
        if (result.status >= 200 && result.status < 300) {
          return op.parse(parseSuccess(op, result));
        }
        error = errorFromAnswer(op, result.status, result.headers, result.text);
        delay = retryDelayForAnswer(result.status, result.headers, op.idempotent, attempt);
      } else {
        error = result.error;
        delay = result.retryable ? backoff(attempt) : undefined;
      }
      if (delay === undefined || attempt >= maxRetries) {
        throw error;
      }
      await pause(delay, options.signal);
    }
  }

  /** One request, its whole body read within the timeout. */
  async #attempt(op: Operation<unknown>, options: RequestOptions): Promise<Attempt> {
    const { signal } = options;
    signal?.throwIfAborted();
    const controller = new AbortController();
    const forwardAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener("abort", forwardAbort, { once: true });
    // Serialised before the request starts, so that a body JSON cannot hold (a BigInt, a
    // cycle) throws its own TypeError instead of passing for a connection error.
    const body = op.body === undefined ? undefined : JSON.stringify(op.body);
    const headers: Record<string, string> = { ...this.#headers, ...op.headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    const timeout = options.timeout ?? this.timeout;
    let timedOut = false;
    const timer = Number.isFinite(timeout)
      ? setTimeout(() => {
          timedOut = true;
          controller.abort();
        }, Math.min(timeout, MAX_TIMER_MS))
      : undefined;
    try {
      const response = await fetch(this.baseURL + op.path, {
        method: op.method,
        headers,
        body,
        signal: controller.signal,
        redirect: "error", // a redirect would resend the key to wherever it points
      });
      const text = await response.text();
      return { kind: "answer", status: response.status, headers: response.headers, text };
    } catch (cause) {
      if (signal?.aborted) {
        throw signal.reason; // the caller's own abort: theirs to handle, never retried
      }
      if (timedOut) {
        const error = new APITimeoutError(
          `${op.method} ${pathOnly(op.path)} got no answer within ${timeout} ms`,
        );
        return { kind: "failed", error, retryable: op.idempotent };
      }
      const error = new APIConnectionError(
        `${op.method} ${pathOnly(op.path)} failed: could not reach ${this.baseURL} (${describe(cause)})`,
        { cause },
      );
      return { kind: "failed", error, retryable: op.idempotent || neverConnected(cause) };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", forwardAbort);
    }
  }
}

/** The path without its query string, which may carry a metadata filter. */
function pathOnly(path: string): string {
  const end = path.indexOf("?");
  return end === -1 ? path : path.slice(0, end);
}

/** A transport failure in a few words: `fetch` hides the useful part in its cause. */
function describe(error: unknown): string {
  const inner = (error as { cause?: unknown } | null)?.cause ?? error;
  const code = (inner as { code?: unknown } | null)?.code;
  if (typeof code === "string") {
    return code;
  }
  return inner instanceof Error ? inner.name : "unknown error";
}

function parseSuccess(op: Operation<unknown>, answer: { status: number; text: string }): unknown {
  try {
    return JSON.parse(answer.text);
  } catch {
    throw new APIError(`${op.method} ${pathOnly(op.path)} answered ${answer.status} without JSON`, {
      code: "invalid_response",
      status: answer.status,
    });
  }
}

/** The error an answer stands for, read from the contract's envelope. */
export function errorFromAnswer(
  op: Pick<Operation<unknown>, "notFound" | "conflict">,
  status: number,
  headers: Headers,
  text: string,
): APIError {
  let code: string;
  let message: string;
  let requestId = headers.get("x-request-id") ?? undefined;
  let details: ErrorDetail[] = [];
  let body: unknown;
  try {
    body = JSON.parse(text);
    const envelope = (body as { error: Record<string, unknown> }).error;
    if (typeof envelope?.code !== "string") {
      throw new TypeError("no error envelope");
    }
    code = envelope.code;
    message = typeof envelope.message === "string" && envelope.message ? envelope.message : code;
    if (typeof envelope.request_id === "string" && envelope.request_id) {
      requestId = envelope.request_id;
    }
    if (Array.isArray(envelope.details)) {
      details = envelope.details.map((d: { location?: unknown; message?: unknown }) => ({
        location: String(d?.location ?? ""),
        message: String(d?.message ?? ""),
      }));
    }
  } catch {
    body = undefined;
    code = status >= 500 ? "internal_error" : `http_${status}`;
    message = `HTTP ${status} without an error envelope`;
  }
  let ErrorClass: APIErrorClass;
  if (status === 404) {
    ErrorClass = op.notFound ?? NotFoundError;
  } else if (status === 409) {
    ErrorClass = op.conflict ?? ConflictError;
  } else if (status >= 500) {
    ErrorClass = InternalServerError;
  } else {
    ErrorClass = STATUS_ERRORS[status] ?? APIError;
  }
  const error = new ErrorClass(message, { code, status, requestId, details, body });
  if (error instanceof RateLimitError) {
    error.retryAfter = retryAfter(headers);
  }
  return error;
}
