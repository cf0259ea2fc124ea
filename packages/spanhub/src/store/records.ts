import type { DigestState, Outcome } from "../digest/digest.js";
import type { EndStatus, RunStatus, SpanError, SpanLog, SpanStatus, Tags } from "../model/event.js";
import type { Micros } from "../model/time.js";

/** A run as the store keeps it: the read model over its event log. */
export interface RunRecord {
  id: string;
  app: string | null;
  name: string | null;
  status: RunStatus;
  reason: string | null;
  error: SpanError | null;
  startTime: Micros;
  endTime: Micros | null;
  tags: Tags;
  host: string | null;
  pid: number | null;
  parentRunId: string | null;
  parentSpanId: string | null;
  spanCount: number;
  errorCount: number;
  /** A truthy `error` tag was seen on the run itself. */
  errorTagged: boolean;
  /** The highest event seq appended to the run's log. */
  lastSeq: number;
  /** Server time of the last event, for abandonment. */
  lastEventAt: Micros;
  lateCount: number;
  /** 0 none, 1 first top-level span, 2 first `Controller/` or `Job/` span, 3 explicit. */
  nameRank: number;
  /** Its `run_start` asked for it to end once quiet (an OpenTelemetry trace). */
  endOnIdle: boolean;
  /** From the run's digest, once one was folded (the runs list reads no span rows). */
  digest?: RunDigestSummary;
}

export interface RunDigestSummary {
  /** Stamped when the digest is sealed. */
  outcome: Outcome | null;
  failedSpans: number;
  p95Us: number | null;
}

/** A run's digest as the store reads it; `caughtUp` counts entries folded on the way (a folder had fallen behind). */
export interface DigestRead {
  digest: DigestState;
  caughtUp: number;
  /** Written by an older fold and not recomputed yet (the read path never replays a log). */
  stale: boolean;
}

export interface SpanRecord {
  id: string;
  parentId: string | null;
  name: string | null;
  kind: string | null;
  status: SpanStatus;
  startTime: Micros | null;
  endTime: Micros | null;
  tags: Tags;
  logs: SpanLog[];
  error: SpanError | null;
  rpcService: string | null;
  rpcMethod: string | null;
}

/** A span without its tags, logs and error: what a waterfall draws. */
export type SpanOutline = Pick<SpanRecord, "id" | "parentId" | "name" | "status" | "startTime" | "endTime">;

export interface StoredEvent {
  seq: number;
  /** Server time of the append. */
  ts: Micros;
  kind: string;
  late: boolean;
  body: Record<string, unknown>;
}

export interface AppRecord {
  app: string;
  /** The latest `scout.metadata` value. */
  metadata: unknown;
  /** Latest value of every other application event type (CPU, memory, Register details). */
  latest: Record<string, { value: unknown; time: Micros }>;
  lastSeen: Micros;
}

export interface RunQuery {
  status?: RunStatus;
  /** Substring of the name. */
  name?: string;
  app?: string;
  since?: Micros;
  until?: Micros;
  tag?: { key: string; value: string };
  /** Runs started from this run (their `parentRunId`), and from this span of it (`parentSpanId`). */
  parentRunId?: string;
  parentSpanId?: string;
  limit: number;
  cursor?: string;
}

export interface RunPage {
  runs: RunRecord[];
  /** Pass back as `cursor` for the next page; absent on the last page. */
  nextCursor?: string;
}

export type { EndStatus };
