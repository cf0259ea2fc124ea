import type { Submission, SubmitResult } from "../model/event.js";
import type { Micros } from "../model/time.js";
import type {
  AppRecord,
  DigestRead,
  RunPage,
  RunQuery,
  RunRecord,
  SpanOutline,
  SpanRecord,
  StoredEvent,
} from "./records.js";

/**
 * The one storage contract. SQLite and (later) PostgreSQL implement it and run the
 * same conformance suite (`test/storeConformance.ts`).
 *
 * Writes:
 * - `append` commits all its submissions in one transaction and resolves only once
 *   that transaction is durable; it rejects when nothing was committed.
 * - Each event gets the next `seq` of its run inside that transaction, so no
 *   committed seq can later appear below one a reader has seen.
 * - A submission whose `batchId` was committed before is reported as a duplicate
 *   and not applied again (the window is `batchRetentionMs`).
 * - Events for an ended run are appended marked late; they never start a new run.
 *
 * Reads return copies; callers may mutate them.
 */
export interface Store {
  readonly engine: string;
  append(submissions: Submission[]): Promise<SubmitResult[]>;
  getRun(id: string): Promise<RunRecord | undefined>;
  listRuns(query: RunQuery): Promise<RunPage>;
  /** Every span of the run, in start order; empty when the run is unknown. */
  listSpans(runId: string): Promise<SpanRecord[]>;
  /** One span of the run; undefined when the run or the span is unknown. */
  getSpan(runId: string, spanId: string): Promise<SpanRecord | undefined>;
  /**
   * What a waterfall draws (id, parent, name, status, times) of every span of the run, or only of
   * `spanIds`, in start order, without tags and logs; empty when the run is unknown.
   */
  listSpanOutlines(runId: string, spanIds?: string[]): Promise<SpanOutline[]>;
  /**
   * Ids of the run's spans, in start order, up to `limit`, whose name or tags (as JSON text) contain
   * `text` (ASCII letters compare case-insensitively), or, for `key:value`, whose tag `key` equals
   * `value` compared as text like `RunQuery.tag`.
   */
  searchSpans(runId: string, text: string, limit: number): Promise<string[]>;
  /** The run's log from `afterSeq` (exclusive), in seq order. */
  listEvents(runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]>;
  listApps(): Promise<AppRecord[]>;
  /**
   * The run's digest: one row, whatever the run's size. When the digest is behind the log (a
   * folder died) the tail is folded first; undefined when the run is unknown.
   */
  getDigest(runId: string): Promise<DigestRead | undefined>;
  /** Ids of running runs with no event since `before`, oldest first. */
  findIdleRuns(before: Micros, limit: number): Promise<string[]>;
  /**
   * Ids of running runs whose `run_start` asked to end once quiet (`endOnIdle`) and that
   * had no event since `before`, oldest first.
   */
  findIdleRunsEndingOnIdle(before: Micros, limit: number): Promise<string[]>;
  /** Forgets batch ids committed before `before`. */
  pruneBatches(before: Micros): Promise<number>;
  /**
   * Starts the engine's background work (the digest folder) now, in a serving process, rather
   * than at its first write: a hub beside an agent running `--fold off` may never write itself.
   * Read-only users (the CLI) never call it.
   */
  startBackground(): void;
  /** A value that changes whenever any process commits to the store. */
  changeToken(): Promise<string>;
  close(): Promise<void>;
}

export type FoldMode = "all" | "seal-only" | "off";

export interface StoreConfig {
  /** `sqlite` (default). */
  engine?: string;
  /** The data directory of the SQLite engine. */
  dataDir: string;
  /** `full` (default): an acknowledged commit survives power loss. `normal` survives process crashes only. */
  durability?: "full" | "normal";
  /**
   * `all` (default): seal at every run end and fold in the background; `seal-only`: no
   * background folding; `off`: this process keeps no digests (another process's folder does).
   */
  fold?: FoldMode;
  /** Failures of background work (the digest fold); they never fail a write. Default: stderr. */
  onBackgroundError?: (error: Error) => void;
}
