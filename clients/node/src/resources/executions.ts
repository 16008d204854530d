/**
 * `client.executions`: follow, inspect and cancel task runs.
 *
 * The request builders, one per call, then the {@link Executions} resource that sends
 * them, as in the Python SDK's `resources/executions.py`.
 */

import { WaitTimeoutError } from "../errors.js";
import type { Operation } from "../operation.js";
import { pause } from "../retry.js";
import type { Transport } from "../transport.js";
import type {
  Execution,
  ExecutionList,
  ExecutionListParams,
  ExecutionStatus,
  ExecutionStepList,
  RequestOptions,
  WaitOptions,
} from "../types.js";
import { fromWire, listFromWire, queryString, segment } from "../wire.js";
import { refOf } from "./refs.js";

/** An execution by id: the id itself, or `{ executionId }`. */
export type ExecutionRef = string | { executionId: string };

/** The statuses an execution never leaves. */
export const TERMINAL_STATUSES: ReadonlySet<ExecutionStatus> = new Set(["succeeded", "failed", "cancelled"]);

const DEFAULT_WAIT_MS = 300_000;

/** Milliseconds between polls: quickly at first (most runs are short), then every 2 s. */
export function* pollDelays(first = 100, factor = 1.5, cap = 2_000): Generator<number, never> {
  for (let delay = first; ; delay = Math.min(cap, delay * factor)) {
    yield delay;
  }
}

function getExecution(executionId: string): Operation<Execution> {
  return {
    method: "GET",
    path: `/v1/executions/${segment(executionId)}`,
    idempotent: true,
    parse: fromWire<Execution>,
  };
}

function listExecutions(
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

function executionSteps(executionId: string): Operation<ExecutionStepList> {
  return {
    method: "GET",
    path: `/v1/executions/${segment(executionId)}/steps`,
    idempotent: true,
    parse: listFromWire<ExecutionStepList>,
  };
}

function cancelExecution(executionId: string): Operation<Execution> {
  return {
    method: "POST",
    path: `/v1/executions/${segment(executionId)}/cancel`,
    // Cancelling twice is the same as once.
    idempotent: true,
    parse: fromWire<Execution>,
  };
}

/** `client.executions`: follow, inspect and cancel task runs. */
export class Executions {
  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  async get(execution: ExecutionRef, options?: RequestOptions): Promise<Execution> {
    return this.#transport.send(getExecution(refOf(execution, "executionId")), options);
  }

  /** Executions, newest first; `taskId` keeps one task's. */
  async list(params: ExecutionListParams = {}, options?: RequestOptions): Promise<ExecutionList> {
    const { taskId, limit, offset } = params;
    return this.#transport.send(listExecutions(taskId, limit, offset), options);
  }

  /** Each step's status, redacted output or error, and times. */
  async steps(execution: ExecutionRef, options?: RequestOptions): Promise<ExecutionStepList> {
    return this.#transport.send(executionSteps(refOf(execution, "executionId")), options);
  }

  /** Ask the execution to stop; cancelling an ended one changes nothing. */
  async cancel(execution: ExecutionRef, options?: RequestOptions): Promise<Execution> {
    return this.#transport.send(cancelExecution(refOf(execution, "executionId")), options);
  }

  /**
   * Poll until the execution has succeeded, failed or been cancelled, and return it.
   * Rejects with `WaitTimeoutError` (`wait_timeout`) once `timeout` ms have passed; the
   * execution itself goes on.
   */
  async wait(execution: ExecutionRef, options: WaitOptions = {}): Promise<Execution> {
    const id = refOf(execution, "executionId");
    const { timeout = DEFAULT_WAIT_MS, signal } = options;
    const deadline = Date.now() + timeout;
    for (const delay of pollDelays()) {
      const current = await this.get(id, { signal });
      if (TERMINAL_STATUSES.has(current.status)) {
        return current;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new WaitTimeoutError(`execution ${id} is still ${current.status} after ${timeout} ms`);
      }
      await pause(Math.min(delay, remaining) / 1000, signal);
    }
    throw new Error("unreachable");
  }
}
