/**
 * `client.tasks`: define tasks whose steps use secrets, and run them.
 *
 * The request builders, one per call, then the {@link Tasks} resource that sends them, as
 * in the Python SDK's `resources/tasks.py`.
 */

import type { Operation } from "../operation.js";
import type { Transport } from "../transport.js";
import type {
  CreatedTask,
  DeletedTask,
  Execution,
  ListParams,
  RequestOptions,
  Task,
  TaskCreateParams,
  TaskDefinition,
  TaskExecuteParams,
  TaskList,
  TaskStep,
} from "../types.js";
import { fromWire, listFromWire, queryString, segment } from "../wire.js";
import { refOf } from "./refs.js";

/** A task by id: the id itself, or `{ taskId }`. */
export type TaskRef = string | { taskId: string };

/**
 * `POST /v1/tasks` with `{"task": {...}}` whichever way the task was given. The steps are
 * the caller's data and go as written (`secret_name` stays `secret_name`).
 */
function createTask(
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

function listTasks(limit: number | undefined, offset: number | undefined): Operation<TaskList> {
  return {
    method: "GET",
    path: "/v1/tasks" + queryString({ limit, offset }),
    idempotent: true,
    parse: listFromWire<TaskList>,
  };
}

function getTask(taskId: string): Operation<Task> {
  return { method: "GET", path: `/v1/tasks/${segment(taskId)}`, idempotent: true, parse: fromWire<Task> };
}

function deleteTask(taskId: string): Operation<DeletedTask> {
  return {
    method: "DELETE",
    path: `/v1/tasks/${segment(taskId)}`,
    idempotent: true,
    parse: fromWire<DeletedTask>,
  };
}

function executeTask(taskId: string, input: unknown): Operation<Execution> {
  return {
    method: "POST",
    path: `/v1/tasks/${segment(taskId)}/executions`,
    body: input == null ? {} : { input },
    idempotent: false,
    parse: fromWire<Execution>,
  };
}

/** `client.tasks`: define tasks whose steps use secrets, and run them. */
export class Tasks {
  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /**
   * Create a task from `{ task: {...} }` or from `{ steps: [...] }`. The steps are sent
   * exactly as written: they are the task's data, not SDK parameters.
   */
  async create(params: TaskCreateParams, options?: RequestOptions): Promise<CreatedTask> {
    const { task, steps, name, description } = params;
    return this.#transport.send(createTask(task, steps, name, description), options);
  }

  async get(task: TaskRef, options?: RequestOptions): Promise<Task> {
    return this.#transport.send(getTask(refOf(task, "taskId")), options);
  }

  async list(params: ListParams = {}, options?: RequestOptions): Promise<TaskList> {
    return this.#transport.send(listTasks(params.limit, params.offset), options);
  }

  /** Delete the task; its executions stay. */
  async delete(task: TaskRef, options?: RequestOptions): Promise<DeletedTask> {
    return this.#transport.send(deleteTask(refOf(task, "taskId")), options);
  }

  /** Start an execution (status `queued`); `executions.wait` follows it to its end. */
  async execute(params: TaskExecuteParams, options?: RequestOptions): Promise<Execution> {
    const op = executeTask(refOf(params, "taskId"), params.input);
    return this.#transport.send(op, options);
  }
}
