/**
 * The Node.js client of strongroom, a self-hosted secrets service.
 *
 * `Strongroom` (alias `Julep`, the product guide's name) is the client; the error classes
 * and the types of every answer and parameter are exported alongside it.
 *
 * @packageDocumentation
 */

export { Julep, Strongroom, DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT } from "./client.js";
export type { ClientOptions } from "./client.js";
export * from "./errors.js";
export type {
  ApiKey,
  ApiKeyList,
  AuditList,
  AuditListParams,
  AuditRecord,
  BatchError,
  BatchGetResponse,
  BatchPutItem,
  BatchPutResponse,
  BatchPutResult,
  CreatedApiKey,
  CreatedTask,
  DeletedSecret,
  DeletedTask,
  Execution,
  ExecutionList,
  ExecutionListParams,
  ExecutionStatus,
  ExecutionStep,
  ExecutionStepList,
  JsonValue,
  KeyCreateParams,
  KeyListParams,
  KeyRotateParams,
  KeyRule,
  KeyScope,
  KeyUpdateParams,
  ListParams,
  Metadata,
  Page,
  RequestOptions,
  RotatedApiKey,
  Rotation,
  Secret,
  SecretBatchGetParams,
  SecretBatchPutParams,
  SecretCreateParams,
  SecretDeleteParams,
  SecretGetParams,
  SecretList,
  SecretListAllParams,
  SecretListParams,
  SecretPolicy,
  SecretPolicyParams,
  SecretRef,
  SecretRollbackParams,
  SecretRotateOptions,
  SecretUpdateParams,
  SecretUpsertParams,
  SecretVersion,
  SecretVersionList,
  Task,
  TaskCreateParams,
  TaskDefinition,
  TaskExecuteParams,
  TaskList,
  TaskStep,
  TaskWarning,
  Timestamp,
  WaitOptions,
} from "./types.js";
export { Secrets } from "./resources/secrets.js";
export { Tasks, type TaskRef } from "./resources/tasks.js";
export { Executions, TERMINAL_STATUSES, type ExecutionRef } from "./resources/executions.js";
export { Audit } from "./resources/audit.js";
export { Keys, type KeyRef } from "./resources/keys.js";
export { VERSION } from "./version.js";
