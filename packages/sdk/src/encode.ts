import { type Dialect, errorObject, outcomeTags, type RequestRecord, type SpanRecord, type Status } from "./records.js";
import { isoMicros } from "./time.js";

/**
 * Turns what a request has not sent yet into one `BatchCommand` body. Written by hand, not
 * through one big `JSON.stringify`, because this is the SDK's hot path: ids are hex and times
 * are generated, so only names and tag values need escaping.
 *
 * For spanhub's agent 0.2.0 or newer (`extended`), with spanhub's extensions to Scout commands:
 * StartRequest carrying name, tags and parent link; for each span (parents before children)
 * StartSpan carrying its tags, kind and rpc fields, a LogSpan per log line, StopSpan carrying
 * status and error; then FinishRequest carrying status and error. A request is one frame.
 *
 * For older agents, plain Scout: StartRequest and TagRequests (the first is `spanhub.name`), for
 * each span StartSpan, TagSpans (logs as one `logs` tag, the outcome as `error.*` tags) and
 * StopSpan, then FinishRequest; spanhub 0.1 agents get a parent link as an `Events` frame first.
 */
export interface EncodedBatch {
  /** The frame bodies, in order; the agent answers each. */
  bodies: string[];
  /** Whether this batch ends its request. */
  final: boolean;
  spans: number;
}

/** Encodes what is unsent; `undefined` when there is nothing new. Marks what it encodes as sent. */
export function encodeRequest(
  request: RequestRecord,
  app: string,
  nowMs: number,
  dialect: Dialect = "extended",
): EncodedBatch | undefined {
  const extended = dialect === "extended";
  const ended = request.endMs !== undefined;
  const parts: string[] = [];
  const head = `{"request_id":"${request.id}"`;
  const bodies: string[] = [];
  let requestTags = request.tags;
  request.tags = undefined;
  if (!request.startSent) {
    request.startSent = true;
    const parent = request.parent;
    if (extended) {
      let start = `{"StartRequest":${head},"timestamp":"${isoMicros(request.startMs)}","name":${json(request.name)}`;
      if (requestTags) start += `,"tags":${tagObject(requestTags)}`;
      requestTags = undefined;
      if (parent) start += `,"parent_run_id":"${parent.runId}","parent_span_id":"${parent.spanId}"`;
      parts.push(`${start}}}`);
    } else {
      parts.push(`{"StartRequest":${head},"timestamp":"${isoMicros(request.startMs)}"}}`);
      parts.push(`{"TagRequest":${head},"tag":"spanhub.name","value":${json(request.name)}}}`);
      if (parent && dialect === "spanhub") bodies.push(linkBody(request, app));
      else if (parent) {
        parts.push(`{"TagRequest":${head},"tag":"spanhub.parent_run_id","value":"${parent.runId}"}}`);
        parts.push(`{"TagRequest":${head},"tag":"spanhub.parent_span_id","value":"${parent.spanId}"}}`);
      }
    }
  }
  if (requestTags)
    for (let index = 0; index < requestTags.length; index += 2)
      parts.push(`{"TagRequest":${head},"tag":${json(requestTags[index])},"value":${json(requestTags[index + 1])}}}`);
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
    if (extended) encodeSpanExtended(span, spanHead, parts);
    else encodeSpanPlain(span, spanHead, parts);
    if (!span.startSent) {
      span.startSent = true;
      spans += 1;
    }
    if (span.endMs === undefined) open.push(span);
  }
  request.spans = open;
  if (ended) {
    const end = `{"FinishRequest":${head},"timestamp":"${isoMicros(request.endMs as number)}"`;
    if (extended) parts.push(`${end}${outcomeFields(request.status, request.error)}}}`);
    else {
      for (const [key, value] of outcomeTags(request.status, request.error))
        parts.push(`{"TagRequest":${head},"tag":${json(key)},"value":${json(value)}}}`);
      parts.push(`${end}}}`);
    }
  }
  request.lastSentMs = nowMs;
  if (parts.length === 0) return bodies.length ? { bodies, final: ended, spans } : undefined;
  request.batches += 1;
  bodies.push(`{"BatchCommand":{"batch_id":"${request.id}-${request.batches}","commands":[${parts.join(",")}]}}`);
  return { bodies, final: ended, spans };
}

/** StartSpan with tags, kind and rpc fields; later tags as one TagSpan; a LogSpan per log; StopSpan with the outcome. */
function encodeSpanExtended(span: SpanRecord, spanHead: string, parts: string[]): void {
  const tags = span.tags;
  span.tags = undefined;
  if (!span.startSent) {
    const parent = span.parentId === null ? "null" : `"${span.parentId}"`;
    let start = `{"StartSpan":${spanHead},"parent_id":${parent},"operation":${json(span.name)},"timestamp":"${isoMicros(span.startMs)}"`;
    if (span.kind !== undefined) start += `,"kind":"${span.kind}"`;
    if (span.rpcService !== undefined)
      start += `,"rpc_service":${json(span.rpcService)},"rpc_method":${json(span.rpcMethod)}`;
    if (tags) start += `,"tags":${tagObject(tags)}`;
    parts.push(`${start}}}`);
  } else if (tags) parts.push(`{"TagSpan":${spanHead},"tags":${tagObject(tags)}}}`);
  const logs = span.logs;
  if (logs && span.logsSent < logs.length) {
    for (let index = span.logsSent; index < logs.length; index++) {
      const entry = logs[index] as { time: number; text: string };
      parts.push(`{"LogSpan":${spanHead},"text":${json(entry.text)},"timestamp":"${isoMicros(entry.time)}"}}`);
    }
    span.logsSent = logs.length;
  }
  if (span.endMs !== undefined)
    parts.push(
      `{"StopSpan":${spanHead},"timestamp":"${isoMicros(span.endMs)}"${outcomeFields(span.status, span.error)}}}`,
    );
}

/** Plain Scout: StartSpan, a TagSpan per tag (logs and outcome as tags too), StopSpan. */
function encodeSpanPlain(span: SpanRecord, spanHead: string, parts: string[]): void {
  if (!span.startSent) {
    const parent = span.parentId === null ? "null" : `"${span.parentId}"`;
    parts.push(
      `{"StartSpan":${spanHead},"parent_id":${parent},"operation":${json(span.name)},"timestamp":"${isoMicros(span.startMs)}"}}`,
    );
    if (span.rpcService !== undefined) {
      parts.push(`{"TagSpan":${spanHead},"tag":"rpc_service","value":${json(span.rpcService)}}}`);
      parts.push(`{"TagSpan":${spanHead},"tag":"rpc_method","value":${json(span.rpcMethod)}}}`);
    }
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
  if (span.endMs !== undefined) {
    for (const [key, value] of outcomeTags(span.status, span.error))
      parts.push(`{"TagSpan":${spanHead},"tag":${json(key)},"value":${json(value)}}}`);
    parts.push(`{"StopSpan":${spanHead},"timestamp":"${isoMicros(span.endMs)}"}}`);
  }
}

/** `,"status":...,"error":...` for StopSpan/FinishRequest (spanhub's extension), or "". */
function outcomeFields(status: Status | undefined, error: unknown): string {
  let fields = status === undefined ? "" : `,"status":${json(status)}`;
  if (error !== undefined) fields += `,"error":${json(errorObject(error))}`;
  return fields;
}

/** Flattened tag pairs as one JSON object (a repeated key: the last value wins, as with TagSpans). */
function tagObject(tags: unknown[]): string {
  let text = "{";
  for (let index = 0; index < tags.length; index += 2) {
    if (index > 0) text += ",";
    text += `${json(tags[index])}:${json(tags[index + 1])}`;
  }
  return `${text}}`;
}

/**
 * The run's parent link for a spanhub agent before 0.2.0, whose Scout commands cannot carry
 * it: spanhub's own `Events` frame with a `run_start`, sent just before the request's first batch.
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

/** What JSON.stringify would escape in a string: quotes, backslashes, control characters, lone surrogates. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: JSON escapes exactly these characters.
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** Any value as JSON: `undefined` becomes null, and what JSON cannot say (BigInt, cycles) its text. */
function json(value: unknown): string {
  if (typeof value === "string") return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`;
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  try {
    return JSON.stringify(value) ?? "null";
  } catch {
    return JSON.stringify(String(value));
  }
}
