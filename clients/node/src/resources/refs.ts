/**
 * Reading the "which one" argument of a call. The guide passes objects (`get({ name })`,
 * `execute({ taskId })`); a bare string works too. Either way it is checked here, because a
 * missing name would otherwise become the path `/v1/secrets/undefined` and act on a secret
 * nobody meant.
 */

export function requireString(value: unknown, what: string): string {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${what} must be a non-empty string`);
  }
  return value;
}

/** The `key` field of `ref`, or `ref` itself when it is a string. */
export function refOf<K extends string>(ref: string | { [key in K]: string }, key: K): string {
  const value = typeof ref === "string" ? ref : (ref as Record<K, unknown> | undefined)?.[key];
  return requireString(value, key);
}
