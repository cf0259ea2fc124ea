import { Worker } from "node:worker_threads";
import type { SubmitResult } from "../../model/event.js";
import type { Micros } from "../../model/time.js";
import type { FoldMode } from "../store.js";
import type { WireSubmission } from "./writerWire.js";

export type WriterRequest =
  | { id: number; type: "append"; submissions: WireSubmission[] }
  | { id: number; type: "prune"; before: Micros }
  | { id: number; type: "catchUp"; rid: number }
  | { id: number; type: "close" };

/** A response to a request by id, or (`background`) a failure of the thread's own fold work. */
export type WriterMessage =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; message: string; code?: string; background?: boolean };

/** How often the checkpoint thread copies the WAL into the database file. */
const CHECKPOINT_EVERY_MS = 250;

interface Waiter {
  resolve: (value: never) => void;
  reject: (error: Error) => void;
}

/** The client side of the SQLite writer thread (`writerMain.ts`): one request in, one response out, by id. */
export class WriterThread {
  private readonly worker: Worker;
  private readonly checkpointer: Worker;
  private readonly waiting = new Map<number, Waiter>();
  private nextId = 1;
  private exited: Promise<void>;
  dead = false;

  constructor(
    dbPath: string,
    durability: "full" | "normal",
    fold: FoldMode,
    onBackgroundError: (error: Error) => void,
  ) {
    this.worker = new Worker(new URL("./writerMain.js", import.meta.url), {
      workerData: { dbPath, durability, fold },
    });
    this.checkpointer = new Worker(new URL("./checkpointMain.js", import.meta.url), {
      workerData: { dbPath, durability, everyMs: CHECKPOINT_EVERY_MS },
    });
    this.worker.on("message", (response: WriterMessage) => {
      if (!response.ok && response.background) return onBackgroundError(new Error(response.message));
      const waiter = this.waiting.get(response.id);
      this.waiting.delete(response.id);
      if (!waiter) return;
      if (response.ok) waiter.resolve(response.value as never);
      else waiter.reject(Object.assign(new Error(response.message), { code: response.code }));
    });
    this.exited = new Promise((resolve) => {
      this.worker.once("exit", () => {
        this.dead = true;
        this.failAll(new Error("the SQLite writer thread stopped"));
        resolve();
      });
    });
    this.worker.on("error", (error) => this.failAll(error));
  }

  append(submissions: WireSubmission[]): Promise<SubmitResult[]> {
    return this.call({ id: 0, type: "append", submissions });
  }

  /** Folds the run's digest up to its log; resolves to the entries folded. */
  catchUp(rid: number): Promise<number> {
    return this.call({ id: 0, type: "catchUp", rid });
  }

  pruneBatches(before: Micros): Promise<number> {
    return this.call({ id: 0, type: "prune", before });
  }

  async close(): Promise<void> {
    const checkpointerExited = new Promise((resolve) => this.checkpointer.once("exit", resolve));
    this.checkpointer.postMessage("close");
    if (!this.dead) await this.call({ id: 0, type: "close" }).catch(() => undefined);
    await Promise.all([this.exited, checkpointerExited]);
  }

  private call<T>(request: WriterRequest): Promise<T> {
    if (this.dead) return Promise.reject(new Error("the SQLite writer thread stopped"));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (value: never) => void, reject });
      this.worker.postMessage({ ...request, id });
    });
  }

  private failAll(error: Error): void {
    for (const waiter of this.waiting.values()) waiter.reject(error);
    this.waiting.clear();
  }
}
