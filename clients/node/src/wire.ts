/**
 * Between the wire's snake_case and the SDK's camelCase.
 *
 * Only the API's own field names are renamed, and those are always the top-level keys of
 * a resource (`created_at`, `task_id`, `has_more`). Everything nested below them is user
 * data (a secret's metadata, a task's steps, an execution's input and output) and passes
 * through untouched: `secret_name` inside a step, or a metadata key that happens to hold an
 * underscore, reaches the caller exactly as it was stored. So the conversion is shallow on
 * purpose, and never generic-recursive.
 *
 * Requests go the other way without a generic converter: each call's request builder
 * (in `resources/`) spells out its wire body, so a camelCase parameter can only reach the
 * server under its contract name.
 */

import type { Timestamp } from "./types.js";

/** `created_at` -> `createdAt`. */
export function camelCase(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** A resource with its own (top-level) field names in camelCase and its values as sent. */
export function fromWire<T>(record: unknown): T {
  if (record === null || typeof record !== "object" || Array.isArray(record)) {
    return record as T;
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    out[camelCase(key)] = value;
  }
  return out as T;
}

/**
 * A secret: its own fields renamed, and those of its `policy` and `rotation` too. These
 * are not user data but objects of the API's own fields (`allowed_destinations`,
 * `task_id`), so their keys are renamed, one level down and no further: the lists inside
 * are host names and tool names, passed through as they are.
 */
export function secretFromWire<T>(record: unknown): T {
  const secret = fromWire<Record<string, unknown>>(record);
  if (secret !== null && typeof secret === "object") {
    for (const field of ["policy", "rotation"]) {
      if (field in secret) {
        secret[field] = fromWire(secret[field]);
      }
    }
  }
  return secret as T;
}

/** A list of secrets: the page, and each secret as {@link secretFromWire} reads it. */
export function secretListFromWire<T>(answer: unknown): T {
  const page = fromWire<Record<string, unknown>>(answer);
  if (Array.isArray(page.items)) {
    page.items = page.items.map((item) => secretFromWire(item));
  }
  return page as T;
}

/** A `batchGet` answer: each secret as {@link secretFromWire} reads it, each error renamed. */
export function batchGetFromWire<T>(answer: unknown): T {
  const read = fromWire<Record<string, unknown>>(answer);
  if (Array.isArray(read.secrets)) {
    read.secrets = read.secrets.map((item) => secretFromWire(item));
  }
  if (Array.isArray(read.errors)) {
    read.errors = read.errors.map((item) => fromWire(item));
  }
  return read as T;
}

/** A list answer (`{items, limit, offset, has_more}`): the page and each item renamed. */
export function listFromWire<T>(answer: unknown): T {
  const page = fromWire<Record<string, unknown>>(answer);
  if (Array.isArray(page.items)) {
    page.items = page.items.map((item) => fromWire(item));
  }
  return page as T;
}

/** Query parameters as a string; `undefined` and `null` leave a parameter out. */
export function queryString(params: Record<string, unknown> | undefined): string {
  if (!params) {
    return "";
  }
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) {
      search.append(key, String(value));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** A time as the wire takes it: a `Date` as RFC 3339 in UTC, a string as given. */
export function timeToWire(value: Timestamp | Date, what: string): string {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) {
      throw new TypeError(`${what} is an invalid Date`);
    }
    return value.toISOString();
  }
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${what} must be a Date or an RFC 3339 string`);
  }
  return value;
}

/** A path segment: names and ids are escaped so that none can change the route. */
export function segment(value: string): string {
  return encodeURIComponent(value);
}
