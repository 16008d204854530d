import { StrongroomError } from "./errors.js";
import { Audit } from "./resources/audit.js";
import { Executions } from "./resources/executions.js";
import { Keys } from "./resources/keys.js";
import { Secrets } from "./resources/secrets.js";
import { Tasks } from "./resources/tasks.js";
import { Transport } from "./transport.js";

export const DEFAULT_BASE_URL = "http://127.0.0.1:8000";
/** Milliseconds each attempt may take. */
export const DEFAULT_TIMEOUT = 30_000;
/** Resends after the first attempt, for the failures that are safe to resend. */
export const DEFAULT_MAX_RETRIES = 2;

export interface ClientOptions {
  /** Defaults to `STRONGROOM_API_KEY`; `strongroom keys create` makes one. */
  apiKey?: string | undefined;
  /** Defaults to `STRONGROOM_BASE_URL`, else `http://127.0.0.1:8000`. */
  baseURL?: string | undefined;
  /**
   * Milliseconds to wait for each attempt's answer (default 30 000), body included;
   * `Infinity` waits forever. A call may override it.
   */
  timeout?: number | undefined;
  /**
   * How many times a failed call is resent (default 2): connection failures and 429 for
   * every call, lost answers and 5xx only for calls that are safe to send twice.
   */
  maxRetries?: number | undefined;
}

/**
 * A client of a strongroom server.
 *
 * ```js
 * import { Strongroom } from "strongroom";
 * const client = new Strongroom({ apiKey: process.env.STRONGROOM_API_KEY });
 * const secret = await client.secrets.get({ name: "stripe_api_key" });
 * ```
 *
 * Every call returns a Promise and rejects with a {@link StrongroomError} whose `code` is
 * the API's error code. The client keeps no connection state of its own (the global
 * `fetch` pools connections), so there is nothing to close.
 */
export class Strongroom {
  readonly secrets: Secrets;
  readonly tasks: Tasks;
  readonly executions: Executions;
  readonly audit: Audit;
  readonly keys: Keys;
  readonly #transport: Transport;

  constructor(options: ClientOptions = {}) {
    const apiKey = options.apiKey ?? process.env.STRONGROOM_API_KEY;
    if (!apiKey) {
      throw new StrongroomError(
        "no API key: pass { apiKey } or set STRONGROOM_API_KEY (`strongroom keys create` makes one)",
        { code: "missing_api_key" },
      );
    }
    const baseURL = options.baseURL || process.env.STRONGROOM_BASE_URL || DEFAULT_BASE_URL;
    if (!/^https?:$/.test(new URL(baseURL).protocol)) {
      throw new TypeError(`baseURL must be an http:// or https:// URL, not ${JSON.stringify(baseURL)}`);
    }
    const timeout = options.timeout ?? DEFAULT_TIMEOUT;
    if (typeof timeout !== "number" || !(timeout > 0)) {
      throw new RangeError("timeout must be a number of milliseconds above 0 (or Infinity)");
    }
    const maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    if (!Number.isInteger(maxRetries) || maxRetries < 0) {
      throw new RangeError("maxRetries must be an integer, 0 or more");
    }
    this.#transport = new Transport({ apiKey, baseURL: baseURL.replace(/\/+$/, ""), timeout, maxRetries });
    this.secrets = new Secrets(this.#transport);
    this.tasks = new Tasks(this.#transport);
    this.executions = new Executions(this.#transport);
    this.audit = new Audit(this.#transport);
    this.keys = new Keys(this.#transport);
  }

  /** The server this client talks to, without a trailing slash. */
  get baseURL(): string {
    return this.#transport.baseURL;
  }

  get timeout(): number {
    return this.#transport.timeout;
  }

  get maxRetries(): number {
    return this.#transport.maxRetries;
  }
}

/** The product guide's name for {@link Strongroom}, so that its examples run as written. */
export { Strongroom as Julep };
