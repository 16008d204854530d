/**
 * When to resend a request, and after how long: the Python SDK's rules, so that both
 * clients treat a struggling server the same way.
 *
 * - No answer because the connection could not be made: resend any call (nothing reached
 *   the server). No answer for another reason (reset, timeout): resend only idempotent
 *   calls, because the server may have done the work.
 * - 429: resend any call (the server refused before doing anything), after `Retry-After`.
 * - 5xx: resend idempotent calls only, after `Retry-After` or a backoff.
 * - Anything else is the answer.
 */

/** Longest backoff between attempts, in seconds. */
export const MAX_RETRY_DELAY = 8;
/** Longest `Retry-After` honoured, in seconds: a server asking for more gets this. */
export const MAX_RETRY_AFTER = 60;

/**
 * Exponential backoff with full jitter, in seconds: uniform in
 * `[0, min(8, 0.5 * 2 ** attempt)]`. The jitter spreads clients that failed together so
 * they do not come back together.
 */
export function backoff(attempt: number): number {
  return Math.random() * Math.min(MAX_RETRY_DELAY, 0.5 * 2 ** attempt);
}

/**
 * `Retry-After` in seconds, from either of its forms (delay-seconds or an HTTP date),
 * clamped to `[0, 60]`; `undefined` when absent or unreadable.
 */
export function retryAfter(headers: Headers, now: number = Date.now()): number | undefined {
  const value = headers.get("retry-after")?.trim();
  if (!value) {
    return undefined;
  }
  let seconds = Number(value);
  if (!Number.isFinite(seconds)) {
    const when = Date.parse(value);
    if (Number.isNaN(when)) {
      return undefined;
    }
    seconds = (when - now) / 1000;
  }
  return Math.max(0, Math.min(seconds, MAX_RETRY_AFTER));
}

/** Seconds to wait before resending after an error answer, or `undefined` to give up. */
export function retryDelayForAnswer(
  status: number,
  headers: Headers,
  idempotent: boolean,
  attempt: number,
): number | undefined {
  // 507: the server's disk is full; only its operator can change that, not a retry.
  if (status === 429 || (status >= 500 && status !== 507 && idempotent)) {
    return retryAfter(headers) ?? backoff(attempt);
  }
  return undefined;
}

/**
 * Error codes of a connection that was never made: the request cannot have reached the
 * server, so even a non-idempotent call may be sent again.
 */
const NOT_CONNECTED = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** Whether a `fetch` failure happened before any byte was sent (see `NOT_CONNECTED`). */
export function neverConnected(error: unknown): boolean {
  for (let cause = error, depth = 0; cause && depth < 5; depth += 1) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string" && NOT_CONNECTED.has(code)) {
      return true;
    }
    cause = (cause as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * Resolves after `seconds`, or rejects with the signal's reason once it aborts: a caller
 * that gives up is not kept waiting for a retry it no longer wants.
 */
export function pause(seconds: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, seconds * 1000);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
