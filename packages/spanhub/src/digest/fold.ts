import { hasErrorTag, type RunEvent, type SpanError, type SpanStatus, type Tags } from "../model/event.js";
import type { Micros } from "../model/time.js";
import {
  type DigestState,
  MAX_OPERATIONS,
  MAX_SAMPLES,
  type ModelUsage,
  OTHER_OPERATION,
  type Outcome,
  type Sample,
  type SpanState,
  type Tally,
  type UsageTags,
} from "./digest.js";
import { addTo, bucketOf } from "./histogram.js";

/** One entry of a run's log as the fold sees it; `event` is null when the stored body could not be read. */
export interface FoldEntry {
  seq: number;
  late: boolean;
  event: RunEvent | null;
}

/**
 * The fold's side state, which grows with the run: one entry per span, spans waiting for their
 * parent, and the union of top-level span intervals. In memory for a full recompute; side tables
 * (read through, written back on commit) for the incremental path.
 */
export interface FoldIndex {
  span(id: string): SpanState | undefined;
  saveSpan(id: string, span: SpanState): void;
  addWait(parentId: string, childId: string, seq: number): void;
  /** Forgets the spans waiting for `parentId` and returns how many there were. */
  takeWaits(parentId: string): number;
  /** Adds [start, end) to the union of top-level intervals; returns the µs it newly covers. */
  cover(start: Micros, end: Micros): number;
  /** The open spans and the spans still waiting for a parent, first seen first. */
  openSamples(limit: number): Sample[];
  waitSamples(limit: number): Sample[];
}

const UNKNOWN_MODEL = "(unknown)";

/**
 * The one fold step, shared by the incremental path and the full recompute so they agree by
 * construction. Deterministic: its only inputs are the digest, the side state and the entry.
 * It mutates both in place (a copy per event would cost more than the fold itself).
 * Entries at or below the watermark are skipped: no event is ever counted twice.
 */
export function foldEntry(digest: DigestState, index: FoldIndex, entry: FoldEntry): void {
  if (entry.seq <= digest.watermarkSeq) return;
  digest.watermarkSeq = entry.seq;
  digest.eventCount += 1;
  const event = entry.event;
  if (!event) {
    note(digest.anomalies, "malformed_event", { spanId: null, seq: entry.seq });
    return;
  }
  const spanId = "spanId" in event ? event.spanId : null;
  if (entry.late) note(digest.anomalies, "late_event", { spanId, seq: entry.seq });
  if ("unknownStatus" in event && event.unknownStatus !== undefined)
    note(digest.anomalies, "unknown_status", { spanId, seq: entry.seq, message: event.unknownStatus });
  widenTimes(digest, event.time);
  switch (event.kind) {
    case "run_start":
    case "run_tag":
    case "run_end":
      return;
    case "span_log":
      touchSpan(digest, index, event.spanId, entry.seq);
      return;
    case "span_tag": {
      const span = touchSpan(digest, index, event.spanId, entry.seq);
      applyTags(digest, span, event.tags, entry.seq, event.spanId);
      index.saveSpan(event.spanId, span);
      return;
    }
    case "span_start":
    case "span": {
      const span = touchSpan(digest, index, event.spanId, entry.seq);
      if (event.name !== undefined && !span.counted) span.name = event.name;
      if (event.parentId !== undefined && span.parentId === undefined) {
        span.parentId = event.parentId;
        if (event.parentId !== null && !index.span(event.parentId)) {
          index.addWait(event.parentId, event.spanId, span.firstSeq);
          digest.waitingForParent += 1;
        }
      }
      const start = event.kind === "span" ? event.startTime : event.time;
      if (span.start === null) {
        span.start = start;
        widenTimes(digest, start);
      }
      if (event.tags) applyTags(digest, span, event.tags, entry.seq, event.spanId);
      if (event.kind === "span") endSpan(digest, index, span, event, entry.seq);
      else if (span.end !== null) countSpan(digest, index, span, event.spanId, entry.seq);
      index.saveSpan(event.spanId, span);
      return;
    }
    case "span_end": {
      const span = touchSpan(digest, index, event.spanId, entry.seq);
      endSpan(digest, index, span, event, entry.seq);
      index.saveSpan(event.spanId, span);
      return;
    }
  }
}

/**
 * Seals the digest: records the anomalies of an ended run as they stand now and stamps the
 * outcome. Sealing again (a real end replacing `abandoned`) replaces both.
 */
export function sealDigest(digest: DigestState, index: FoldIndex, outcome: Outcome): void {
  digest.sealSeq = digest.watermarkSeq;
  setTally(digest.anomalies, "unfinished_span", digest.openSpans, index.openSamples(MAX_SAMPLES));
  setTally(digest.anomalies, "orphan_span", digest.waitingForParent, index.waitSamples(MAX_SAMPLES));
  digest.outcome = { status: outcome.status, reason: outcome.reason };
}

/** The full recompute: every entry through the same step, sealing where the stored digest was sealed. */
export function foldAll(
  digest: DigestState,
  index: FoldIndex,
  entries: Iterable<FoldEntry>,
  seal?: { atSeq: number; outcome: Outcome },
): void {
  for (const entry of entries) {
    if (seal && entry.seq > seal.atSeq && digest.watermarkSeq === seal.atSeq) sealDigest(digest, index, seal.outcome);
    foldEntry(digest, index, entry);
  }
  if (seal && digest.watermarkSeq === seal.atSeq) sealDigest(digest, index, seal.outcome);
}

function touchSpan(digest: DigestState, index: FoldIndex, spanId: string, seq: number): SpanState {
  const known = index.span(spanId);
  if (known) return known;
  const span: SpanState = {
    firstSeq: seq,
    name: null,
    start: null,
    end: null,
    status: "running",
    errorTagged: false,
    counted: false,
  };
  digest.spanCount += 1;
  digest.openSpans += 1;
  const waited = index.takeWaits(spanId);
  digest.waitingForParent -= waited;
  index.saveSpan(spanId, span);
  return span;
}

interface EndFields {
  time: Micros;
  status?: Exclude<SpanStatus, "running">;
  error?: SpanError;
}

/** A span's first end counts; a repeated end is a duplicate and changes nothing. */
function endSpan(
  digest: DigestState,
  index: FoldIndex,
  span: SpanState,
  end: EndFields & { spanId: string },
  seq: number,
): void {
  if (span.end !== null) return;
  span.end = end.time;
  digest.openSpans -= 1;
  if (end.error?.type) span.errorType = end.error.type;
  span.status = end.status ?? (end.error || span.errorTagged ? "failed" : "ok");
  if (span.status === "ok" && span.errorTagged) span.status = "failed";
  if (span.start !== null) countSpan(digest, index, span, end.spanId, seq, end.error?.message);
}

/** Enters a span with both ends known into operations, latency and errors, once. */
function countSpan(
  digest: DigestState,
  index: FoldIndex,
  span: SpanState,
  spanId: string,
  seq: number,
  message?: string,
): void {
  if (span.counted || span.start === null || span.end === null) return;
  span.counted = true;
  let duration = span.end - span.start;
  if (duration < 0) {
    note(digest.anomalies, "clock_skew", { spanId, seq });
    duration = 0;
  }
  const operation = operationOf(digest, span.name);
  operation.calls += 1;
  operation.totalUs += duration;
  if (duration > operation.maxUs) operation.maxUs = duration;
  const bucket = bucketOf(duration);
  addTo(operation.histogram, bucket);
  addTo(digest.latency, bucket);
  if (span.parentId === null) digest.activeUs += index.cover(span.start, span.start + duration);
  countFailure(digest, span, spanId, seq, message);
}

function countFailure(digest: DigestState, span: SpanState, spanId: string, seq: number, message?: string): void {
  const status = span.status;
  if (status === "ok" || status === "running") return;
  const sample: Sample = message === undefined ? { spanId, seq } : { spanId, seq, message };
  if (status === "cancelled") {
    note(digest.errors, "cancelled", sample);
    return;
  }
  digest.failedSpans += 1;
  operationOf(digest, span.name).failed += 1;
  if (status === "timed_out") note(digest.errors, "timed_out", sample);
  else note(digest.errors, `span_failed:${span.name ?? "(unnamed)"}`, sample);
  if (span.errorTagged) note(digest.errors, "error_tag", sample);
  if (span.errorType) note(digest.errors, span.errorType, sample);
}

function applyTags(digest: DigestState, span: SpanState, tags: Tags, seq: number, spanId: string): void {
  if (hasErrorTag(tags) && !span.errorTagged) {
    span.errorTagged = true;
    // A span already counted as ok turns failed, as its row does.
    if (span.status === "ok") {
      span.status = "failed";
      if (span.counted) countFailure(digest, span, spanId, seq);
    }
  }
  const next = usageTagsOf(tags, span.usage);
  if (next !== span.usage) {
    moveUsage(digest, span.usage, next);
    span.usage = next;
  }
}

/** The GenAI usage tags merged with what the span had; the same object when none changed. */
function usageTagsOf(tags: Tags, had: UsageTags | undefined): UsageTags | undefined {
  const requestModel = textTag(tags["gen_ai.request.model"]);
  const responseModel = textTag(tags["gen_ai.response.model"]);
  const inputTokens = numberTag(tags["gen_ai.usage.input_tokens"]);
  const outputTokens = numberTag(tags["gen_ai.usage.output_tokens"]);
  const costUsd = numberTag(tags["spanhub.cost_usd"]) ?? numberTag(tags["gen_ai.usage.cost"]);
  if (
    requestModel === undefined &&
    responseModel === undefined &&
    inputTokens === undefined &&
    outputTokens === undefined &&
    costUsd === undefined
  )
    return had;
  const next: UsageTags = { ...had };
  if (requestModel !== undefined) next.requestModel = requestModel;
  if (responseModel !== undefined) next.responseModel = responseModel;
  if (inputTokens !== undefined) next.inputTokens = inputTokens;
  if (outputTokens !== undefined) next.outputTokens = outputTokens;
  if (costUsd !== undefined) next.costUsd = costUsd;
  return next;
}

function moveUsage(digest: DigestState, from: UsageTags | undefined, to: UsageTags | undefined): void {
  if (from) addUsage(digest, from, -1);
  if (to) addUsage(digest, to, 1);
}

function addUsage(digest: DigestState, usage: UsageTags, sign: 1 | -1): void {
  const model = usage.responseModel ?? usage.requestModel ?? UNKNOWN_MODEL;
  let stats: ModelUsage | undefined = digest.models[model];
  if (!stats) {
    stats = { calls: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 };
    digest.models[model] = stats;
  }
  stats.calls += sign;
  stats.inputTokens += sign * (usage.inputTokens ?? 0);
  stats.outputTokens += sign * (usage.outputTokens ?? 0);
  stats.costUsd += sign * (usage.costUsd ?? 0);
  if (stats.calls === 0) delete digest.models[model];
}

function operationOf(digest: DigestState, name: string | null) {
  let key = name ?? "(unnamed)";
  let stats = digest.operations[key];
  if (stats) return stats;
  if (Object.keys(digest.operations).length >= MAX_OPERATIONS + (digest.operations[OTHER_OPERATION] ? 1 : 0))
    key = OTHER_OPERATION;
  stats = digest.operations[key];
  if (!stats) {
    stats = { calls: 0, failed: 0, totalUs: 0, maxUs: 0, histogram: {} };
    digest.operations[key] = stats;
  }
  return stats;
}

function widenTimes(digest: DigestState, time: Micros): void {
  if (digest.firstTime === null || time < digest.firstTime) digest.firstTime = time;
  if (digest.lastTime === null || time > digest.lastTime) digest.lastTime = time;
}

function note(tallies: Record<string, Tally>, key: string, sample: Sample): void {
  let tally = tallies[key];
  if (!tally) {
    tally = { count: 0, samples: [] };
    tallies[key] = tally;
  }
  tally.count += 1;
  if (tally.samples.length < MAX_SAMPLES) tally.samples.push(sample);
}

function setTally(tallies: Record<string, Tally>, key: string, count: number, samples: Sample[]): void {
  if (count > 0) tallies[key] = { count, samples };
  else delete tallies[key];
}

function textTag(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

function numberTag(value: unknown): number | undefined {
  const number = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof number === "number" && Number.isFinite(number) ? number : undefined;
}
