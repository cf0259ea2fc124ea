import {
  type RunEndEvent,
  type RunEvent,
  type RunStartEvent,
  runEndStatus,
  type SpanError,
  type SpanEvent,
  type SpanLog,
  type Submission,
  setTag,
  spanEndStatus,
  type Tags,
} from "../model/event.js";
import type { Micros } from "../model/time.js";
import { DecodeError, dropUndefined } from "./jsonLines.js";
import {
  type AnyValue,
  ExportTraceServiceRequest,
  type Int64,
  type KeyValue,
  type OtlpSpan,
  STATUS_CODE,
} from "./otlpProto.js";

/**
 * OTLP trace export requests (protobuf or OTLP/JSON) decoded into the event model.
 * Pure: the caller commits the submission and answers only after the commit.
 *
 * A trace is a run: the trace id in hex is the run id, span ids are hex, and each span
 * becomes one coalesced `span` event tagged with its `service.name`. The root span also
 * starts the run (its service is the run's app, its resource attributes the run's tags). OTLP has no end message, so
 * that start asks for the run to end once it has gone quiet (`endOnIdle`), unless the
 * root carries `spanhub.run.status`. Attributes under `spanhub.` (written by spanhub's
 * own exporter, see otlpExport.ts) restore ids and run fields that OTLP cannot hold.
 */

/** Attributes spanhub's exporter writes and its decoder reads back (never kept as tags). */
export const SPANHUB_ATTRIBUTES = {
  runId: "spanhub.run_id",
  spanId: "spanhub.span_id",
  /** The original parent span id; "" for a top-level span under the run's own span. */
  parentId: "spanhub.parent_id",
  spanKind: "spanhub.span.kind",
  spanStatus: "spanhub.span.status",
  /** `true` on the span that stands for the run itself: it becomes the run's start and end, not a span. */
  runSpan: "spanhub.run.span",
  runName: "spanhub.run.name",
  runStatus: "spanhub.run.status",
  runReason: "spanhub.run.reason",
  runHost: "spanhub.run.host",
  runPid: "spanhub.run.pid",
  runParentRunId: "spanhub.run.parent_run_id",
  runParentSpanId: "spanhub.run.parent_span_id",
} as const;

const SPANHUB_PREFIX = "spanhub.";
/** OpenTelemetry semantic-convention attributes that have fields of their own in spanhub. */
const RPC_SERVICE = "rpc.service";
const RPC_METHOD = "rpc.method";
const SERVICE_NAME = "service.name";
const LINKS_TAG = "otel.links";

const KIND_NAMES = [undefined, "internal", "server", "client", "producer", "consumer"] as const;

export interface OtlpDecoded {
  submission: Submission;
  /** Spans read (the run spans of spanhub's exporter included). */
  accepted: number;
  /** Spans refused (bad ids); the rest are committed. */
  rejected: number;
  /** The first refusal's reason, for `partial_success.error_message`. */
  errorMessage?: string;
}

/** Decodes a protobuf `ExportTraceServiceRequest`. Throws DecodeError when the bytes are not one. */
export function decodeOtlpProtobuf(bytes: Uint8Array, receivedAt: Micros): OtlpDecoded {
  let request: ExportTraceServiceRequest;
  try {
    request = ExportTraceServiceRequest.decode(bytes);
  } catch (error) {
    throw new DecodeError(`not an OTLP ExportTraceServiceRequest: ${(error as Error).message}`);
  }
  return requestToEvents(request, receivedAt);
}

/**
 * Decodes OTLP/JSON: lowerCamelCase field names, trace and span ids in hex, 64-bit
 * integers as decimal strings or numbers, enums as numbers or names. Throws DecodeError.
 */
export function decodeOtlpJson(text: string, receivedAt: Micros): OtlpDecoded {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new DecodeError(`not JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new DecodeError('an OTLP/JSON body must be an object with "resourceSpans"');
  let request: ExportTraceServiceRequest;
  try {
    hexIdsToBytes(parsed as Record<string, unknown>);
    request = ExportTraceServiceRequest.fromObject(parsed as Record<string, unknown>);
  } catch (error) {
    throw new DecodeError(`not an OTLP/JSON ExportTraceServiceRequest: ${(error as Error).message}`);
  }
  return requestToEvents(request, receivedAt);
}

/** OTLP/JSON writes ids as hex where protobuf's JSON mapping would use base64: turn them into bytes first. */
function hexIdsToBytes(request: Record<string, unknown>): void {
  for (const resourceSpans of arrayOf(request.resourceSpans))
    for (const scopeSpans of arrayOf(resourceSpans?.scopeSpans))
      for (const span of arrayOf(scopeSpans?.spans)) {
        if (!span) continue;
        for (const key of ["traceId", "spanId", "parentSpanId"]) span[key] = hexToBytes(span[key]);
        for (const link of arrayOf(span.links))
          if (link) for (const key of ["traceId", "spanId"]) link[key] = hexToBytes(link[key]);
      }
}

function arrayOf(value: unknown): (Record<string, unknown> | undefined)[] {
  return Array.isArray(value) ? value : [];
}

/** Hex text to bytes; anything else is left for the generated code to judge (and bad hex to an empty id). */
function hexToBytes(value: unknown): unknown {
  if (typeof value !== "string") return value;
  return /^(?:[0-9a-fA-F]{2})*$/.test(value) ? Buffer.from(value, "hex") : Buffer.alloc(0);
}

function requestToEvents(request: ExportTraceServiceRequest, receivedAt: Micros): OtlpDecoded {
  const events: RunEvent[] = [];
  let accepted = 0;
  let rejected = 0;
  let errorMessage: string | undefined;
  const resources = request.resourceSpans ?? [];
  for (const resourceSpans of resources) {
    const resourceTags = toTags(resourceSpans.resource?.attributes);
    const service = typeof resourceTags[SERVICE_NAME] === "string" ? resourceTags[SERVICE_NAME] : undefined;
    for (const scopeSpans of resourceSpans.scopeSpans ?? [])
      for (const span of scopeSpans.spans ?? []) {
        try {
          spanToEvents(span, { service, resourceTags, receivedAt }, events);
          accepted += 1;
        } catch (error) {
          if (!(error instanceof DecodeError)) throw error;
          rejected += 1;
          errorMessage ??= error.message;
        }
      }
  }
  return dropUndefined({ submission: { events }, accepted, rejected, errorMessage });
}

interface SpanContext {
  service: string | undefined;
  resourceTags: Tags;
  receivedAt: Micros;
}

function spanToEvents(span: OtlpSpan, context: SpanContext, events: RunEvent[]): void {
  const traceId = validId(span.traceId, 16, "trace_id");
  const otlpSpanId = validId(span.spanId, 8, "span_id");
  const { tags, spanhub } = splitAttributes(span.attributes);
  const runId = stringOf(spanhub[SPANHUB_ATTRIBUTES.runId]) ?? traceId;
  const startTime = nanosToMicros(span.startTimeUnixNano) ?? context.receivedAt;
  const endTime = Math.max(nanosToMicros(span.endTimeUnixNano) ?? context.receivedAt, startTime);
  const { logs, error } = eventsOf(span, startTime);
  const status = spanStatus(span, spanhub, error);
  const fromSpanhub = spanhub[SPANHUB_ATTRIBUTES.runId] !== undefined;

  if (spanhub[SPANHUB_ATTRIBUTES.runSpan] === true) {
    events.push(runStartOf(runId, startTime, context, spanhub, tags), runEndOf(runId, endTime, spanhub, status.error));
    return;
  }

  const parentId =
    SPANHUB_ATTRIBUTES.parentId in spanhub
      ? stringOf(spanhub[SPANHUB_ATTRIBUTES.parentId]) || null
      : isEmpty(span.parentSpanId)
        ? null
        : hex(span.parentSpanId as Uint8Array);
  if (parentId === null && !fromSpanhub) {
    // The trace's root: it starts the run (app, resource attributes as tags) and says how the run ends.
    const { [SERVICE_NAME]: _service, ...runTags } = context.resourceTags;
    const explicitEnd = spanhub[SPANHUB_ATTRIBUTES.runStatus] !== undefined;
    events.push({
      ...runStartOf(runId, startTime, context, spanhub, runTags),
      ...(explicitEnd ? {} : { endOnIdle: true }),
    });
    if (explicitEnd) events.push(runEndOf(runId, endTime, spanhub, status.error));
  }
  // Each span keeps its own service (a trace may cross several); spanhub's exporter sends one per run.
  if (!fromSpanhub && context.service !== undefined) tags[SERVICE_NAME] ??= context.service;
  const links = linksOf(span);
  if (links) tags[LINKS_TAG] = links;
  const rpcService = stringOf(tags[RPC_SERVICE]);
  const rpcMethod = stringOf(tags[RPC_METHOD]);
  if (rpcService !== undefined) delete tags[RPC_SERVICE];
  if (rpcMethod !== undefined) delete tags[RPC_METHOD];
  // Built field by field rather than through dropUndefined: `delete` would slow every later use of the object.
  const event: SpanEvent = {
    kind: "span",
    runId,
    spanId: stringOf(spanhub[SPANHUB_ATTRIBUTES.spanId]) ?? otlpSpanId,
    parentId,
    startTime,
    time: endTime,
  };
  if (span.name) event.name = span.name;
  const spanKind = stringOf(spanhub[SPANHUB_ATTRIBUTES.spanKind]) ?? KIND_NAMES[span.kind ?? 0];
  if (spanKind !== undefined) event.spanKind = spanKind;
  if (!isEmptyObject(tags)) event.tags = tags;
  if (rpcService !== undefined) event.rpcService = rpcService;
  if (rpcMethod !== undefined) event.rpcMethod = rpcMethod;
  if (logs.length > 0) event.logs = logs;
  if (status.status !== undefined) event.status = status.status;
  if (status.unknownStatus !== undefined) event.unknownStatus = status.unknownStatus;
  if (status.error !== undefined) event.error = status.error;
  events.push(event);
}

function runStartOf(runId: string, time: Micros, context: SpanContext, spanhub: Tags, tags: Tags): RunStartEvent {
  const pid = spanhub[SPANHUB_ATTRIBUTES.runPid] ?? context.resourceTags["process.pid"];
  return dropUndefined({
    kind: "run_start",
    runId,
    time,
    app: context.service,
    name: stringOf(spanhub[SPANHUB_ATTRIBUTES.runName]),
    tags: isEmptyObject(tags) ? undefined : tags,
    host: stringOf(spanhub[SPANHUB_ATTRIBUTES.runHost] ?? context.resourceTags["host.name"]),
    pid: typeof pid === "number" ? pid : undefined,
    parentRunId: stringOf(spanhub[SPANHUB_ATTRIBUTES.runParentRunId]),
    parentSpanId: stringOf(spanhub[SPANHUB_ATTRIBUTES.runParentSpanId]),
  });
}

function runEndOf(runId: string, time: Micros, spanhub: Tags, error: SpanError | undefined): RunEndEvent {
  return dropUndefined({
    kind: "run_end",
    runId,
    time,
    ...runEndStatus(spanhub[SPANHUB_ATTRIBUTES.runStatus]),
    reason: stringOf(spanhub[SPANHUB_ATTRIBUTES.runReason]),
    error,
  });
}

/** Span events become logs; the last `exception` event becomes the span's error. */
function eventsOf(span: OtlpSpan, fallbackTime: Micros): { logs: SpanLog[]; error: SpanError | undefined } {
  const logs: SpanLog[] = [];
  let error: SpanError | undefined;
  for (const event of span.events ?? []) {
    const attributes = toTags(event.attributes);
    if (event.name === "exception") {
      error = dropUndefined({
        type: stringOf(attributes["exception.type"]),
        message: stringOf(attributes["exception.message"]),
        stack: stringOf(attributes["exception.stacktrace"]),
      });
      continue;
    }
    const text = isEmptyObject(attributes) ? (event.name ?? "") : `${event.name ?? ""} ${JSON.stringify(attributes)}`;
    logs.push({ time: nanosToMicros(event.timeUnixNano) ?? fallbackTime, text });
  }
  return { logs, error };
}

function spanStatus(
  span: OtlpSpan,
  spanhub: Tags,
  exception: SpanError | undefined,
): Pick<SpanEvent, "status" | "unknownStatus" | "error"> {
  const code = span.status?.code ?? STATUS_CODE.unset;
  const message = span.status?.message || undefined;
  const error = exception ?? (code === STATUS_CODE.error && message ? { message } : undefined);
  const explicit = spanhub[SPANHUB_ATTRIBUTES.spanStatus];
  if (explicit !== undefined) return { ...spanEndStatus(explicit), error };
  if (code === STATUS_CODE.error) return { status: "failed", error };
  if (code === STATUS_CODE.ok) return { status: "ok", error };
  // Unset: derived as everywhere else (failed when there is an error).
  return { error };
}

function linksOf(span: OtlpSpan): Tags[] | undefined {
  if (!span.links || span.links.length === 0) return undefined;
  return span.links.map((link) =>
    dropUndefined({
      trace_id: link.traceId ? hex(link.traceId) : undefined,
      span_id: link.spanId ? hex(link.spanId) : undefined,
      attributes: link.attributes && link.attributes.length > 0 ? toTags(link.attributes) : undefined,
    }),
  );
}

/** Span attributes as tags, with spanhub's own ones set apart. */
function splitAttributes(attributes: KeyValue[] | null | undefined): { tags: Tags; spanhub: Tags } {
  const tags: Tags = {};
  const spanhub: Tags = {};
  for (const attribute of attributes ?? []) {
    const target = attribute.key.startsWith(SPANHUB_PREFIX) ? spanhub : tags;
    setTag(target, attribute.key, tagValue(attribute.value));
  }
  return { tags, spanhub };
}

export function toTags(attributes: KeyValue[] | null | undefined): Tags {
  const tags: Tags = {};
  for (const attribute of attributes ?? []) setTag(tags, attribute.key, tagValue(attribute.value));
  return tags;
}

/** An attribute value with its type: int64 as a number when exact, else its decimal text; bytes as base64. */
function tagValue(value: AnyValue | null | undefined): unknown {
  if (!value) return null;
  if (value.stringValue != null) return value.stringValue;
  if (value.boolValue != null) return value.boolValue;
  if (value.intValue != null) return int64Value(value.intValue);
  if (value.doubleValue != null) return value.doubleValue;
  if (value.arrayValue != null) return (value.arrayValue.values ?? []).map(tagValue);
  if (value.kvlistValue != null) return toTags(value.kvlistValue.values);
  if (value.bytesValue != null) return Buffer.from(value.bytesValue).toString("base64");
  return null;
}

function int64Value(value: Int64): number | string {
  if (typeof value === "number") return value;
  const number = typeof value === "string" ? Number(value) : value.toNumber();
  return Number.isSafeInteger(number) ? number : String(value);
}

/**
 * Nanoseconds since the epoch to microseconds, rounded down; undefined for 0 (unset).
 * Hand-written because it runs three times a span: splitting 2^32 = 4294967 * 1000 + 296
 * divides the 64-bit value exactly in doubles, without 64-bit arithmetic.
 */
export function nanosToMicros(value: Int64 | null | undefined): Micros | undefined {
  if (value === null || value === undefined) return undefined;
  let micros: number;
  if (typeof value === "number") micros = Math.floor(value / 1000);
  else if (typeof value === "string") micros = value.length > 3 ? Number(value.slice(0, -3)) : 0;
  else {
    const high = value.high >>> 0;
    micros = high * 4294967 + Math.floor((high * 296 + (value.low >>> 0)) / 1000);
  }
  return micros > 0 && Number.isFinite(micros) ? micros : undefined;
}

function validId(bytes: Uint8Array | null | undefined, length: number, name: string): string {
  if (!bytes || bytes.length !== length || bytes.every((byte) => byte === 0))
    throw new DecodeError(`${name} must be ${length} bytes, not all zero (${bytes?.length ?? 0} bytes given)`);
  return hex(bytes);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

function isEmpty(bytes: Uint8Array | null | undefined): boolean {
  return !bytes || bytes.length === 0 || bytes.every((byte) => byte === 0);
}

function isEmptyObject(tags: Tags): boolean {
  for (const _key in tags) return false;
  return true;
}

function stringOf(value: unknown): string | undefined {
  if (typeof value === "string") return value === "" ? undefined : value;
  if (typeof value === "number") return String(value);
  return undefined;
}
