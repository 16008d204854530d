import * as ops from "../operations.js";
import type { Transport } from "../transport.js";
import type {
  CreatedTask,
  DeletedTask,
  Execution,
  ListParams,
  RequestOptions,
  Task,
  TaskCreateParams,
  TaskExecuteParams,
  TaskList,
} from "../types.js";
import { refOf } from "./refs.js";

/** A task by id: the id itself, or `{ taskId }`. */
export type TaskRef = string | { taskId: string };

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
    return this.#transport.send(ops.createTask(task, steps, name, description), options);
  }

  async get(task: TaskRef, options?: RequestOptions): Promise<Task> {
    return this.#transport.send(ops.getTask(refOf(task, "taskId")), options);
  }

  async list(params: ListParams = {}, options?: RequestOptions): Promise<TaskList> {
    return this.#transport.send(ops.listTasks(params.limit, params.offset), options);
  }

  /** Delete the task; its executions stay. */
  async delete(task: TaskRef, options?: RequestOptions): Promise<DeletedTask> {
    return this.#transport.send(ops.deleteTask(refOf(task, "taskId")), options);
  }

  /** Start an execution (status `queued`); `executions.wait` follows it to its end. */
  async execute(params: TaskExecuteParams, options?: RequestOptions): Promise<Execution> {
    const op = ops.executeTask(refOf(params, "taskId"), params.input);
    return this.#transport.send(op, options);
  }
}
