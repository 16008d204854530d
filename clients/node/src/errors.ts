/**
 * Errors the client throws.
 *
 * ```text
 * StrongroomError                  anything the client throws on purpose (.code always set)
 * ├── RotationCheckFailedError     secrets.rotate: the new value failed its check
 * ├── WaitTimeoutError             executions.wait: still running when the wait ended
 * ├── APIConnectionError           no answer: refused, reset, DNS (.code "connection_error")
 * │   └── APITimeoutError          no answer in time (.code "timeout")
 * └── APIError                     the server answered with an error envelope
 *     ├── ValidationError              422 validation_error (.details name each problem)
 *     ├── AuthenticationError          401 unauthorized
 *     ├── PermissionDeniedError        403 forbidden
 *     ├── NotFoundError                404 not_found
 *     │   └── SecretNotFoundError          ... for a secret
 *     ├── MethodNotAllowedError        405 method_not_allowed
 *     ├── ConflictError                409 conflict
 *     │   └── SecretAlreadyExistsError     ... a secret's name is taken
 *     ├── SecretExpiredError           410 expired: past the secret's expiresAt
 *     ├── PreconditionFailedError      412 precondition_failed
 *     ├── PayloadTooLargeError         413 payload_too_large
 *     ├── RateLimitError               429 rate_limited (.retryAfter)
 *     └── InternalServerError          5xx internal_error, unavailable, insufficient_storage
 * ```
 *
 * The guide branches on `error.code` (the wire code), so every error has one; the classes
 * are there for `instanceof`. Messages come from the server, which never puts a secret
 * value in one, and the client adds only the method and path: never a request body,
 * header or API key.
 */

/** One problem of a refused request, e.g. `{ location: "body.name", message: "..." }`. */
export interface ErrorDetail {
  location: string;
  message: string;
}

/** What an error is made of; every field but the message is optional. */
export interface ErrorFields {
  code?: string;
  status?: number;
  requestId?: string;
  details?: ErrorDetail[];
  body?: unknown;
  cause?: unknown;
}

/** Base class of every error the client throws on purpose. */
export class StrongroomError extends Error {
  /** The wire code (`not_found`, `validation_error`, ...) or a client-side one. */
  readonly code: string;
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined;
  /** The server's request id (`X-Request-Id`): quote it to find the call in its logs. */
  readonly requestId: string | undefined;
  /** One entry per problem, for `validation_error`; empty otherwise. */
  readonly details: ErrorDetail[];

  constructor(message: string, fields: ErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = new.target.name;
    this.code = fields.code ?? (new.target as unknown as { defaultCode: string }).defaultCode;
    this.status = fields.status;
    this.requestId = fields.requestId;
    this.details = fields.details ?? [];
  }

  /** The code a class gives its errors when the server did not name one. */
  static defaultCode = "error";
}

/** `secrets.rotate`: the check refused the new value; nothing was changed. */
export class RotationCheckFailedError extends StrongroomError {
  static override defaultCode = "rotation_check_failed";
}

/** `executions.wait`: the execution was still running when the wait ran out. */
export class WaitTimeoutError extends StrongroomError {
  static override defaultCode = "wait_timeout";
}

/** The request got no answer (connection refused or reset, DNS failure, ...). */
export class APIConnectionError extends StrongroomError {
  static override defaultCode = "connection_error";
}

/** The request got no answer within its timeout. */
export class APITimeoutError extends APIConnectionError {
  static override defaultCode = "timeout";
}

/** The server answered with an error. */
export class APIError extends StrongroomError {
  declare readonly status: number;
  /** The parsed error answer, as the server sent it (no secret is ever in it). */
  readonly body: unknown;

  constructor(message: string, fields: ErrorFields & { code: string; status: number }) {
    super(message, fields);
    this.body = fields.body;
  }
}

/** 422: the request was refused as invalid; `details` name each problem. */
export class ValidationError extends APIError {}
/** 401: no API key, or a malformed, unknown or revoked one. */
export class AuthenticationError extends APIError {}
/** 403: the API key lacks the scope the call needs, or a policy forbids the use. */
export class PermissionDeniedError extends APIError {}
/** 404: no such resource in the API key's tenant. */
export class NotFoundError extends APIError {}
/** 404 for a secret: no secret of that name (or version) in the tenant. */
export class SecretNotFoundError extends NotFoundError {}
/** 405: the route exists but not for this method. */
export class MethodNotAllowedError extends APIError {}
/** 409: the name is already taken. */
export class ConflictError extends APIError {}
/** 409 for a secret: the tenant already has a secret of that name. */
export class SecretAlreadyExistsError extends ConflictError {}
/**
 * 410: the secret is past its `expiresAt`. It is still there: give it a new value and
 * expiry (a key with `secrets:admin` can still read it).
 */
export class SecretExpiredError extends APIError {}
/** 412: the secret is not at the expected version. */
export class PreconditionFailedError extends APIError {}
/** 413: the request body is over the server's limit. */
export class PayloadTooLargeError extends APIError {}
/** 5xx: the server failed; `requestId` finds it in the server's logs. */
export class InternalServerError extends APIError {}

/** 429: too many requests. */
export class RateLimitError extends APIError {
  /** How long the server asked to wait, in seconds (`Retry-After`), when it said. */
  retryAfter: number | undefined;
}

export type APIErrorClass = new (
  message: string,
  fields: ErrorFields & { code: string; status: number },
) => APIError;

/** The class for an error status, before a call narrows 404 and 409 to its resource's. */
export const STATUS_ERRORS: Readonly<Record<number, APIErrorClass>> = {
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  405: MethodNotAllowedError,
  409: ConflictError,
  410: SecretExpiredError,
  412: PreconditionFailedError,
  413: PayloadTooLargeError,
  422: ValidationError,
  429: RateLimitError,
};
