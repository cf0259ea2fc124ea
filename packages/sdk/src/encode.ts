import type { RequestRecord, SpanRecord } from "./records.js";
import { isoMicros } from "./time.js";

/**
 * Turns what a request has not sent yet into one `BatchCommand` body: StartRequest and
 * TagRequests, then for each span (parents before children) StartSpan, TagSpans and StopSpan,
 * then FinishRequest once the request has ended. Written by hand, not through one big
 * `JSON.stringify`, because this is the SDK's hot path: ids are hex and times are generated,
 * so only names and tag values need escaping.
 */
export interface EncodedBatch {
  /** The frame bodies, in order; the agent answers each. */
  bodies: string[];
  /** Whether this batch ends its request. */
  final: boolean;
  spans: number;
}

/** Encodes what is unsent; `undefined` when there is nothing new. Marks what it encodes as sent. */
export function encodeRequest(request: RequestRecord, app: string, nowMs: number): EncodedBatch | undefined {
  const ended = request.endMs !== undefined;
  const parts: string[] = [];
  const head = `{"request_id":"${request.id}"`;
  const bodies: string[] = [];
  if (!request.startSent) {
    request.startSent = true;
    parts.push(`{"StartRequest":${head},"timestamp":"${isoMicros(request.startMs)}"}}`);
    parts.push(`{"TagRequest":${head},"tag":"spanhub.name","value":${json(request.name)}}}`);
    if (request.parent) bodies.push(linkBody(request, app));
  }
  const requestTags = request.tags;
  if (requestTags) {
    request.tags = undefined;
    for (let index = 0; index < requestTags.length; index += 2)
      parts.push(`{"TagRequest":${head},"tag":${json(requestTags[index])},"value":${json(requestTags[index + 1])}}}`);
  }
  if (request.droppedSpans !== request.droppedSent) {
    request.droppedSent = request.droppedSpans;
    parts.push(`{"TagRequest":${head},"tag":"spanhub.dropped_spans","value":${request.droppedSpans}}}`);
  }
  let spans = 0;
  const open: SpanRecord[] = [];
  for (const span of request.spans) {
    if (ended && span.endMs === undefined) {
      // Still open when its request ended: closed here, and marked, so the run is complete.
      span.tag("spanhub.unfinished", true);
      span.endMs = request.endMs;
    }
    const spanHead = `${head},"span_id":"${span.id}"`;
    if (!span.startSent) {
      span.startSent = true;
      spans += 1;
      const parent = span.parentId === null ? "null" : `"${span.parentId}"`;
      parts.push(
        `{"StartSpan":${spanHead},"parent_id":${parent},"operation":${json(span.name)},"timestamp":"${isoMicros(span.startMs)}"}}`,
      );
    }
    const tags = span.tags;
    if (tags) {
      span.tags = undefined;
      for (let index = 0; index < tags.length; index += 2)
        parts.push(`{"TagSpan":${spanHead},"tag":${json(tags[index])},"value":${json(tags[index + 1])}}}`);
    }
    if (span.logsChanged && span.logs) {
      span.logsChanged = false;
      const logs = span.logs.map((entry) => ({ time: isoMicros(entry.time), text: entry.text }));
      parts.push(`{"TagSpan":${spanHead},"tag":"logs","value":${json(logs)}}}`);
    }
    if (span.endMs !== undefined) parts.push(`{"StopSpan":${spanHead},"timestamp":"${isoMicros(span.endMs)}"}}`);
    else open.push(span);
  }
  request.spans = open;
  if (ended) parts.push(`{"FinishRequest":${head},"timestamp":"${isoMicros(request.endMs as number)}"}}`);
  request.lastSentMs = nowMs;
  if (parts.length === 0) return bodies.length ? { bodies, final: ended, spans } : undefined;
  request.batches += 1;
  bodies.push(`{"BatchCommand":{"batch_id":"${request.id}-${request.batches}","commands":[${parts.join(",")}]}}`);
  return { bodies, final: ended, spans };
}

/**
 * The run's parent link, which Scout commands cannot carry: spanhub's own `Events` frame with a
 * `run_start`, sent just before the request's first batch.
 */
function linkBody(request: RequestRecord, app: string): string {
  const parent = request.parent as { runId: string; spanId: string };
  const event = {
    type: "run_start",
    run_id: request.id,
    app,
    name: request.name,
    ts_ms: request.startMs,
    parent_run_id: parent.runId,
    parent_span_id: parent.spanId,
  };
  return JSON.stringify({ Events: { batch_id: `${request.id}-link`, events: [event] } });
}

/** Any value as JSON: `undefined` becomes null, and what JSON cannot say (BigInt, cycles) its text. */
function json(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  try {
    return JSON.stringify(value) ?? "null";
  } catch {
    return JSON.stringify(String(value));
  }
}
