import { hasErrorTag, type RunEvent, type SpanEndFields, type SpanFields, type SpanStatus } from "../model/event.js";
import type { Micros } from "../model/time.js";
import type { RunRecord, SpanRecord } from "./records.js";

/**
 * The rules that turn events into run and span rows, shared by every store engine.
 * They mutate the rows they are given; engines load and save the rows.
 */

export function newRun(id: string, app: string | undefined, firstEventTime: Micros, now: Micros): RunRecord {
  return {
    id,
    app: app ?? null,
    name: null,
    status: "running",
    reason: null,
    error: null,
    startTime: firstEventTime,
    endTime: null,
    tags: {},
    host: null,
    pid: null,
    parentRunId: null,
    parentSpanId: null,
    spanCount: 0,
    errorCount: 0,
    errorTagged: false,
    lastSeq: 0,
    lastEventAt: now,
    lateCount: 0,
    nameRank: 0,
    endOnIdle: false,
  };
}

/** An abandoned run is ended, but a real end still replaces that outcome. */
export function isAbandoned(run: RunRecord): boolean {
  return run.status === "crashed" && run.reason === "abandoned";
}

/** Whether the event arrives after its run ended (it is kept, marked late). */
export function isLate(run: RunRecord, event: RunEvent): boolean {
  if (run.status === "running") return false;
  return !(event.kind === "run_end" && isAbandoned(run) && event.reason !== "abandoned");
}

/** Applies a run-level event to its run. Returns false for a run end that came too late to count. */
export function applyRunEvent(run: RunRecord, event: RunEvent, late: boolean): boolean {
  switch (event.kind) {
    case "run_start":
      if (event.name !== undefined) setName(run, event.name, 3);
      if (event.app !== undefined) run.app = event.app;
      if (event.tags) mergeRunTags(run, event.tags);
      if (!late) run.startTime = event.time;
      if (event.host !== undefined) run.host = event.host;
      if (event.pid !== undefined) run.pid = event.pid;
      if (event.parentRunId !== undefined) run.parentRunId = event.parentRunId;
      if (event.parentSpanId !== undefined) run.parentSpanId = event.parentSpanId;
      if (event.endOnIdle) run.endOnIdle = true;
      return true;
    case "run_tag":
      if (event.name !== undefined) setName(run, event.name, 3);
      mergeRunTags(run, event.tags);
      return true;
    case "run_end":
      if (late) return false;
      run.status = event.status ?? (event.error || run.errorTagged || run.errorCount > 0 ? "failed" : "ok");
      run.reason = event.reason ?? null;
      run.error = event.error ?? null;
      run.endTime = Math.max(event.time, run.startTime);
      return true;
    default:
      return true;
  }
}

function mergeRunTags(run: RunRecord, tags: Record<string, unknown>): void {
  run.tags = { ...run.tags, ...tags };
  if (hasErrorTag(tags)) run.errorTagged = true;
}

function setName(run: RunRecord, name: string, rank: number): void {
  if (rank < run.nameRank || (rank < 3 && rank === run.nameRank)) return;
  run.name = name;
  run.nameRank = rank;
}

export function newSpan(id: string): SpanRecord {
  return {
    id,
    parentId: null,
    name: null,
    kind: null,
    status: "running",
    startTime: null,
    endTime: null,
    tags: {},
    logs: [],
    error: null,
    rpcService: null,
    rpcMethod: null,
  };
}

const ERROR_STATUSES = new Set<SpanStatus>(["failed", "timed_out"]);

export function isErrorStatus(status: SpanStatus): boolean {
  return ERROR_STATUSES.has(status);
}

/**
 * Applies a span event to its span row (a fresh `newSpan` when the span is new) and
 * keeps the run's span and error counts and derived name in step.
 */
export function applySpanEvent(run: RunRecord, span: SpanRecord, isNew: boolean, event: RunEvent): void {
  const wasError = isErrorStatus(span.status);
  switch (event.kind) {
    case "span_start":
      applySpanFields(span, event);
      // A repeated start updates the span but keeps its first start time.
      span.startTime ??= event.time;
      break;
    case "span":
      applySpanFields(span, event);
      span.startTime ??= event.startTime;
      applySpanEnd(span, event, event.time);
      break;
    case "span_tag":
      span.tags = { ...span.tags, ...event.tags };
      if (span.status === "ok" && hasErrorTag(event.tags)) span.status = "failed";
      break;
    case "span_log":
      span.logs.push({ time: event.time, text: event.text });
      break;
    case "span_end":
      applySpanEnd(span, event, event.time);
      break;
    default:
      return;
  }
  if (isNew) run.spanCount += 1;
  if (!wasError && isErrorStatus(span.status)) run.errorCount += 1;
  else if (wasError && !isErrorStatus(span.status)) run.errorCount -= 1;
  if (span.name !== null) {
    if (/^(Controller|Job)\//.test(span.name)) setName(run, span.name, 2);
    else if (span.parentId === null) setName(run, span.name, 1);
  }
}

function applySpanFields(span: SpanRecord, fields: SpanFields): void {
  if (fields.parentId !== undefined) span.parentId = fields.parentId;
  if (fields.name !== undefined) span.name = fields.name;
  if (fields.spanKind !== undefined) span.kind = fields.spanKind;
  // A fresh span takes the event's tags as they are (no copy): tags are replaced, never mutated.
  if (fields.tags) span.tags = isEmpty(span.tags) ? fields.tags : { ...span.tags, ...fields.tags };
  if (fields.rpcService !== undefined) span.rpcService = fields.rpcService;
  if (fields.rpcMethod !== undefined) span.rpcMethod = fields.rpcMethod;
  if (fields.logs) span.logs.push(...fields.logs);
}

function applySpanEnd(span: SpanRecord, end: SpanEndFields, time: Micros): void {
  span.endTime = time;
  span.status = end.status ?? (end.error || hasErrorTag(span.tags) ? "failed" : "ok");
  if (span.status === "ok" && hasErrorTag(span.tags)) span.status = "failed";
  if (end.error) span.error = end.error;
}

function isEmpty(tags: Record<string, unknown>): boolean {
  for (const _key in tags) return false;
  return true;
}
