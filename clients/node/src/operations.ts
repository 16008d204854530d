/**
 * Every API call as an {@link Operation}: method, path, wire body and how to read the
 * answer. Mirrors the Python SDK's `_operations.py` call for call, so both SDKs send the
 * same requests and treat the same calls as safe to resend.
 */

import { SecretAlreadyExistsError, SecretNotFoundError } from "./errors.js";
import type { Operation } from "./operation.js";
import type {
  AuditList,
  CreatedTask,
  DeletedSecret,
  DeletedTask,
  Execution,
  ExecutionList,
  ExecutionStepList,
  Metadata,
  Secret,
  SecretList,
  SecretPolicyParams,
  SecretVersionList,
  Task,
  TaskDefinition,
  TaskList,
  TaskStep,
} from "./types.js";
import { fromWire, listFromWire, queryString, secretFromWire, secretListFromWire, segment } from "./wire.js";

const secretPath = (name: string): string => `/v1/secrets/${segment(name)}`;

/** `If-Match: "<version>"`, which makes a PUT or DELETE conditional. */
function ifMatch(version: number | undefined): Record<string, string> {
  return version === undefined ? {} : { "If-Match": `"${version}"` };
}

/** The fields that were given: `undefined` leaves a field out, `null` is sent (it clears). */
function given(fields: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}

// -- secrets --------------------------------------------------------------------------------

/**
 * A policy's wire form: the fields given, in snake_case (`undefined` leaves a field out,
 * `null` is sent: it removes that restriction).
 */
export function policyToWire(policy: SecretPolicyParams): Record<string, unknown> {
  if (policy === null || typeof policy !== "object" || Array.isArray(policy)) {
    throw new TypeError("policy must be an object: { allowedDestinations?, allowedTools?, readable? }");
  }
  return given({
    allowed_destinations: policy.allowedDestinations,
    allowed_tools: policy.allowedTools,
    readable: policy.readable,
  });
}

export function createSecret(
  name: string,
  value: string,
  description: string | null | undefined,
  metadata: Metadata | undefined,
  policy?: SecretPolicyParams,
): Operation<Secret> {
  const wirePolicy = policy === undefined ? undefined : policyToWire(policy);
  const body = Object.fromEntries(
    Object.entries({ name, value, description, metadata, policy: wirePolicy }).filter(([, v]) => v != null),
  );
  return {
    method: "POST",
    path: "/v1/secrets",
    body,
    idempotent: false,
    parse: secretFromWire<Secret>,
    conflict: SecretAlreadyExistsError,
  };
}

export function listSecrets(
  limit: number | undefined,
  offset: number | undefined,
  metadata: Metadata | undefined,
): Operation<SecretList> {
  // The contract's filter form: the whole object as JSON in one parameter.
  const filter = metadata && Object.keys(metadata).length ? JSON.stringify(metadata) : undefined;
  return {
    method: "GET",
    path: "/v1/secrets" + queryString({ limit, offset, metadata: filter }),
    idempotent: true,
    parse: secretListFromWire<SecretList>,
  };
}

export function getSecret(name: string, version: number | undefined): Operation<Secret> {
  return {
    method: "GET",
    path: secretPath(name) + queryString({ version }),
    idempotent: true,
    parse: secretFromWire<Secret>,
    notFound: SecretNotFoundError,
  };
}

export interface SecretChanges {
  value?: string | undefined;
  description?: string | null | undefined;
  metadata?: Metadata | undefined;
  newName?: string | undefined;
  expectedVersion?: number | undefined;
  policy?: SecretPolicyParams | undefined;
}

export function updateSecret(name: string, changes: SecretChanges): Operation<Secret> {
  const { value, description, metadata, newName, expectedVersion, policy } = changes;
  return {
    method: "PATCH",
    path: secretPath(name),
    body: given({
      value,
      description,
      metadata,
      new_name: newName,
      expected_version: expectedVersion ?? undefined,
      policy: policy === undefined ? undefined : policyToWire(policy),
    }),
    // A conditional update cannot apply twice: the second try meets a newer version.
    idempotent: expectedVersion != null,
    parse: secretFromWire<Secret>,
    notFound: SecretNotFoundError,
    conflict: SecretAlreadyExistsError,
  };
}

export function putSecret(
  name: string,
  value: string,
  description: string | null | undefined,
  metadata: Metadata | undefined,
  expectedVersion: number | undefined,
  policy?: SecretPolicyParams,
): Operation<Secret> {
  return {
    method: "PUT",
    path: secretPath(name),
    body: given({
      value,
      description,
      metadata,
      policy: policy === undefined ? undefined : policyToWire(policy),
    }),
    headers: ifMatch(expectedVersion),
    idempotent: true,
    parse: secretFromWire<Secret>,
    notFound: SecretNotFoundError,
  };
}

export function deleteSecret(
  name: string,
  expectedVersion: number | undefined,
): Operation<DeletedSecret> {
  return {
    method: "DELETE",
    path: secretPath(name),
    headers: ifMatch(expectedVersion),
    idempotent: true,
    parse: fromWire<DeletedSecret>,
    notFound: SecretNotFoundError,
  };
}

export function secretVersions(name: string): Operation<SecretVersionList> {
  return {
    method: "GET",
    path: `${secretPath(name)}/versions`,
    idempotent: true,
    parse: listFromWire<SecretVersionList>,
    notFound: SecretNotFoundError,
  };
}

// -- tasks and executions -------------------------------------------------------------------

/**
 * `POST /v1/tasks` with `{"task": {...}}` whichever way the task was given. The steps are
 * the caller's data and go as written (`secret_name` stays `secret_name`).
 */
export function createTask(
  task: TaskDefinition | undefined,
  steps: TaskStep[] | undefined,
  name: string | undefined,
  description: string | undefined,
): Operation<CreatedTask> {
  if (task !== undefined && steps !== undefined) {
    throw new TypeError("tasks.create takes either { task } or { steps }, not both");
  }
  if (task === undefined && steps === undefined) {
    throw new TypeError("tasks.create needs { task: {...} } or { steps: [...] }");
  }
  const body: Record<string, unknown> = task !== undefined ? { ...task } : { steps };
  if (name !== undefined) {
    body.name = name;
  }
  if (description !== undefined) {
    body.description = description;
  }
  return {
    method: "POST",
    path: "/v1/tasks",
    body: { task: body },
    idempotent: false,
    parse: fromWire<CreatedTask>,
  };
}

export function listTasks(limit: number | undefined, offset: number | undefined): Operation<TaskList> {
  return {
    method: "GET",
    path: "/v1/tasks" + queryString({ limit, offset }),
    idempotent: true,
    parse: listFromWire<TaskList>,
  };
}

export function getTask(taskId: string): Operation<Task> {
  return { method: "GET", path: `/v1/tasks/${segment(taskId)}`, idempotent: true, parse: fromWire<Task> };
}

export function deleteTask(taskId: string): Operation<DeletedTask> {
  return {
    method: "DELETE",
    path: `/v1/tasks/${segment(taskId)}`,
    idempotent: true,
    parse: fromWire<DeletedTask>,
  };
}

export function executeTask(taskId: string, input: unknown): Operation<Execution> {
  return {
    method: "POST",
    path: `/v1/tasks/${segment(taskId)}/executions`,
    body: input == null ? {} : { input },
    idempotent: false,
    parse: fromWire<Execution>,
  };
}

export function getExecution(executionId: string): Operation<Execution> {
  return {
    method: "GET",
    path: `/v1/executions/${segment(executionId)}`,
    idempotent: true,
    parse: fromWire<Execution>,
  };
}

export function listExecutions(
  taskId: string | undefined,
  limit: number | undefined,
  offset: number | undefined,
): Operation<ExecutionList> {
  return {
    method: "GET",
    path: "/v1/executions" + queryString({ task_id: taskId, limit, offset }),
    idempotent: true,
    parse: listFromWire<ExecutionList>,
  };
}

export function executionSteps(executionId: string): Operation<ExecutionStepList> {
  return {
    method: "GET",
    path: `/v1/executions/${segment(executionId)}/steps`,
    idempotent: true,
    parse: listFromWire<ExecutionStepList>,
  };
}

export function cancelExecution(executionId: string): Operation<Execution> {
  return {
    method: "POST",
    path: `/v1/executions/${segment(executionId)}/cancel`,
    // Cancelling twice is the same as once.
    idempotent: true,
    parse: fromWire<Execution>,
  };
}

// -- audit ----------------------------------------------------------------------------------

export function listAudit(
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
