import { formatMicros } from "../model/time.js";
import type { RunRecord, SpanRecord } from "../store/records.js";

/** How runs and spans look in the API: RFC 3339 times with microseconds, durations in ms. */
export function runView(run: RunRecord) {
  return {
    id: run.id,
    app: run.app,
    name: run.name,
    status: run.status,
    reason: run.reason,
    error: run.error,
    startTime: formatMicros(run.startTime),
    endTime: run.endTime === null ? null : formatMicros(run.endTime),
    durationMs: run.endTime === null ? null : (run.endTime - run.startTime) / 1000,
    spanCount: run.spanCount,
    errorCount: run.digest?.failedSpans ?? run.errorCount,
    outcome: run.digest?.outcome ?? null,
    p95Ms: run.digest?.p95Us == null ? null : Math.round(run.digest.p95Us) / 1000,
    tags: run.tags,
    host: run.host,
    pid: run.pid,
    parentRunId: run.parentRunId,
    parentSpanId: run.parentSpanId,
    lastSeq: run.lastSeq,
    lateEvents: run.lateCount,
  };
}

export function spanView(span: SpanRecord) {
  return {
    id: span.id,
    parentId: span.parentId,
    name: span.name,
    kind: span.kind,
    status: span.status,
    startTime: span.startTime === null ? null : formatMicros(span.startTime),
    endTime: span.endTime === null ? null : formatMicros(span.endTime),
    durationMs: span.startTime === null || span.endTime === null ? null : (span.endTime - span.startTime) / 1000,
    tags: span.tags,
    logs: span.logs.map((log) => ({ time: formatMicros(log.time), text: log.text })),
    error: span.error,
    ...(span.rpcService === null ? {} : { rpcService: span.rpcService }),
    ...(span.rpcMethod === null ? {} : { rpcMethod: span.rpcMethod }),
  };
}
