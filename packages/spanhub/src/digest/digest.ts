import type { EndStatus, SpanStatus } from "../model/event.js";
import type { Micros } from "../model/time.js";
import type { SparseCounts } from "./histogram.js";

/** Bump when the fold changes: the background folder recomputes older digests. */
export const DIGEST_SCHEMA_VERSION = 1;
/** Names past this many go to `(other)`, so a digest stays small whatever the run. */
export const MAX_OPERATIONS = 200;
export const OTHER_OPERATION = "(other)";
export const MAX_SAMPLES = 5;

export interface Sample {
  spanId: string | null;
  seq: number;
  message?: string;
}

export interface Tally {
  count: number;
  samples: Sample[];
}

export interface OperationStats {
  calls: number;
  failed: number;
  totalUs: number;
  maxUs: number;
  histogram: SparseCounts;
}

export interface ModelUsage {
  calls: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

export interface Outcome {
  status: EndStatus;
  reason: string | null;
}

/**
 * A run's digest: small, one row, whatever the run's size. Everything that grows with the
 * run lives in the fold's side state (`FoldIndex`), never here.
 */
export interface DigestState {
  schemaVersion: number;
  watermarkSeq: number;
  /** The watermark at the latest seal; a recompute seals again at the same place. */
  sealSeq: number | null;
  eventCount: number;
  spanCount: number;
  openSpans: number;
  failedSpans: number;
  /** Spans whose parent has not appeared (yet). */
  waitingForParent: number;
  firstTime: Micros | null;
  lastTime: Micros | null;
  activeUs: number;
  errors: Record<string, Tally>;
  operations: Record<string, OperationStats>;
  latency: SparseCounts;
  models: Record<string, ModelUsage>;
  anomalies: Record<string, Tally>;
  outcome: Outcome | null;
}

export function emptyDigest(): DigestState {
  return {
    schemaVersion: DIGEST_SCHEMA_VERSION,
    watermarkSeq: 0,
    sealSeq: null,
    eventCount: 0,
    spanCount: 0,
    openSpans: 0,
    failedSpans: 0,
    waitingForParent: 0,
    firstTime: null,
    lastTime: null,
    activeUs: 0,
    errors: {},
    operations: {},
    latency: {},
    models: {},
    anomalies: {},
    outcome: null,
  };
}

/** What the fold remembers of one span between batches: enough to count it once and adjust it later. */
export interface SpanState {
  /** The seq that first mentioned the span: orders samples the same way on every path. */
  firstSeq: number;
  name: string | null;
  /** undefined until an event says (null: top-level). */
  parentId?: string | null;
  start: Micros | null;
  end: Micros | null;
  status: SpanStatus;
  errorTagged: boolean;
  errorType?: string;
  /** Its duration entered operations and latency (needs both start and end). */
  counted: boolean;
  /** The GenAI tags seen so far, to move its usage when they change. */
  usage?: UsageTags;
}

export interface UsageTags {
  requestModel?: string;
  responseModel?: string;
  inputTokens?: number;
  outputTokens?: number;
  costUsd?: number;
}
