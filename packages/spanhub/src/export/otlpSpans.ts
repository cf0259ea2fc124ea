import { createHash } from "node:crypto";
import {
  type EndStatus,
  hasErrorTag,
  type RunEvent,
  type SpanError,
  type SpanLog,
  type Submission,
  type Tags,
} from "../model/event.js";
import type { Micros } from "../model/time.js";
import { SPANHUB_ATTRIBUTES as ATTR } from "../protocols/otlp.js";
import {
  type AnyValue,
  ExportTraceServiceRequest,
  type KeyValue,
  type OtlpEvent,
  type OtlpSpan,
  SPAN_KIND,
  STATUS_CODE,
} from "../protocols/otlpProto.js";

/**
 * Committed events of every protocol turned into OTLP spans, for `--export-otlp`.
 *
 * OTLP only knows finished spans, so what arrives in pieces (a start, tags, logs, an
 * end, possibly in different submissions) is gathered until the span ends. The run
 * itself becomes one more span, the trace's root, sent when the run ends: it carries
 * the run's name, status, tags and links as `spanhub.*` attributes, and every
 * top-level span hangs under it. Ids that are not OTLP-shaped (Scout's `req-<uuid>`,
 * JSON-lines names) become hashes, and the originals travel as `spanhub.*` attributes,
 * so another spanhub's OTLP decoder rebuilds the same runs and spans.
 */

/** An OTLP span with the service it belongs to. */
export interface ExportSpan {
  service: string | undefined;
  span: OtlpSpan;
}

interface RunState {
  app?: string;
  name?: string;
  tags: Tags;
  host?: string;
  pid?: number;
  parentRunId?: string;
  parentSpanId?: string;
  startTime?: Micros;
  /** A span of the run failed (the run's status when its end names none). */
  sawFailure: boolean;
}

interface OpenSpan {
  runId: string;
  spanId: string;
  parentId?: string | null;
  name?: string;
  spanKind?: string;
  tags: Tags;
  rpcService?: string;
  rpcMethod?: string;
  logs: SpanLog[];
  startTime?: Micros;
}

const OTLP_TRACE_ID = /^[0-9a-f]{32}$/;
const OTLP_SPAN_ID = /^[0-9a-f]{16}$/;
const KIND_BY_NAME: Record<string, number> = {
  internal: SPAN_KIND.internal,
  server: SPAN_KIND.server,
  request: SPAN_KIND.server,
  client: SPAN_KIND.client,
  rpc: SPAN_KIND.client,
  producer: SPAN_KIND.producer,
  consumer: SPAN_KIND.consumer,
};
/** Kinds the decoder reads back from the OTLP kind alone. */
const OTLP_KIND_NAMES = new Set(["internal", "server", "client", "producer", "consumer"]);
const FAILED_STATUSES = new Set(["failed", "timed_out"]);

export interface SpanAssemblerOptions {
  /** Most runs and unfinished spans held at once; the oldest are forgotten past it. */
  maxOpen: number;
  /** Called with the number of unfinished spans forgotten to stay within `maxOpen`. */
  onEvicted: (spans: number) => void;
}

/** Gathers committed events into finished OTLP spans. */
export class SpanAssembler {
  private readonly runs = new Map<string, RunState>();
  private readonly open = new Map<string, OpenSpan>();

  constructor(private readonly options: SpanAssemblerOptions) {}

  /** The spans these submissions finish. */
  add(submissions: Submission[]): ExportSpan[] {
    const out: ExportSpan[] = [];
    for (const submission of submissions)
      for (const event of submission.events) this.addEvent(event, submission.app, out);
    this.evict();
    return out;
  }

  private addEvent(event: RunEvent, app: string | undefined, out: ExportSpan[]): void {
    const run = this.runOf(event.runId, app);
    switch (event.kind) {
      case "run_start":
        if (event.name !== undefined) run.name = event.name;
        if (event.app !== undefined) run.app = event.app;
        if (event.tags) Object.assign(run.tags, event.tags);
        if (event.host !== undefined) run.host = event.host;
        if (event.pid !== undefined) run.pid = event.pid;
        if (event.parentRunId !== undefined) run.parentRunId = event.parentRunId;
        if (event.parentSpanId !== undefined) run.parentSpanId = event.parentSpanId;
        run.startTime = event.time;
        return;
      case "run_tag":
        if (event.name !== undefined) run.name = event.name;
        Object.assign(run.tags, event.tags);
        return;
      case "run_end": {
        const status: EndStatus =
          event.status ?? (event.error || run.sawFailure || hasErrorTag(run.tags) ? "failed" : "ok");
        out.push(runSpan(event.runId, run, event.time, status, event.reason, event.error));
        this.runs.delete(event.runId);
        return;
      }
      case "span_log":
        this.openSpan(event.runId, event.spanId, event.time).logs.push({ time: event.time, text: event.text });
        return;
      case "span_tag":
        Object.assign(this.openSpan(event.runId, event.spanId, event.time).tags, event.tags);
        return;
      case "span_start":
      case "span": {
        const span = this.openSpan(event.runId, event.spanId, event.kind === "span" ? event.startTime : event.time);
        if (event.parentId !== undefined) span.parentId = event.parentId;
        if (event.name !== undefined) span.name = event.name;
        if (event.spanKind !== undefined) span.spanKind = event.spanKind;
        if (event.tags) Object.assign(span.tags, event.tags);
        if (event.rpcService !== undefined) span.rpcService = event.rpcService;
        if (event.rpcMethod !== undefined) span.rpcMethod = event.rpcMethod;
        if (event.logs) span.logs.push(...event.logs);
        if (event.kind === "span_start") return;
        out.push(this.finish(span, run, event.time, event.status, event.error));
        return;
      }
      case "span_end":
        out.push(
          this.finish(this.openSpan(event.runId, event.spanId, event.time), run, event.time, event.status, event.error),
        );
        return;
    }
  }

  private finish(
    span: OpenSpan,
    run: RunState,
    end: Micros,
    explicit: Exclude<EndStatus, "crashed" | "stopped"> | undefined,
    error: SpanError | undefined,
  ): ExportSpan {
    this.open.delete(openKey(span.runId, span.spanId));
    const status = explicit ?? (error || hasErrorTag(span.tags) ? "failed" : "ok");
    if (FAILED_STATUSES.has(status)) run.sawFailure = true;
    const attributes: KeyValue[] = [stringAttribute(ATTR.runId, span.runId)];
    if (!OTLP_SPAN_ID.test(span.spanId)) attributes.push(stringAttribute(ATTR.spanId, span.spanId));
    const parentId = span.parentId ?? null;
    // A top-level span hangs under the run's span; the empty original parent says so.
    if (parentId === null || !OTLP_SPAN_ID.test(parentId))
      attributes.push(stringAttribute(ATTR.parentId, parentId ?? ""));
    if (span.spanKind !== undefined && !OTLP_KIND_NAMES.has(span.spanKind))
      attributes.push(stringAttribute(ATTR.spanKind, span.spanKind));
    if (status !== "ok" && status !== "failed") attributes.push(stringAttribute(ATTR.spanStatus, status));
    if (span.rpcService !== undefined) attributes.push(stringAttribute("rpc.service", span.rpcService));
    if (span.rpcMethod !== undefined) attributes.push(stringAttribute("rpc.method", span.rpcMethod));
    const service = typeof span.tags["service.name"] === "string" ? span.tags["service.name"] : run.app;
    return {
      service,
      span: {
        traceId: traceIdOf(span.runId),
        spanId: spanIdOf(span.spanId),
        parentSpanId: parentId === null ? runSpanIdOf(span.runId) : spanIdOf(parentId),
        name: span.name ?? span.spanId,
        kind: span.spanKind === undefined ? SPAN_KIND.unspecified : (KIND_BY_NAME[span.spanKind] ?? SPAN_KIND.internal),
        startTimeUnixNano: nanos(span.startTime ?? end),
        endTimeUnixNano: nanos(end),
        attributes: [...attributes, ...toAttributes(span.tags)],
        events: otlpEvents(span.logs, error, end),
        status: otlpStatus(status, error),
      },
    };
  }

  private runOf(runId: string, app: string | undefined): RunState {
    let run = this.runs.get(runId);
    if (!run) {
      run = { tags: {}, sawFailure: false, ...(app !== undefined ? { app } : {}) };
      this.runs.set(runId, run);
    }
    return run;
  }

  private openSpan(runId: string, spanId: string, time: Micros): OpenSpan {
    const key = openKey(runId, spanId);
    let span = this.open.get(key);
    if (!span) {
      span = { runId, spanId, tags: {}, logs: [], startTime: time };
      this.open.set(key, span);
    }
    return span;
  }

  /** Forgets the oldest runs and unfinished spans past the limit (a writer that never ends them). */
  private evict(): void {
    let evicted = 0;
    for (const key of this.open.keys()) {
      if (this.open.size <= this.options.maxOpen) break;
      this.open.delete(key);
      evicted += 1;
    }
    for (const key of this.runs.keys()) {
      if (this.runs.size <= this.options.maxOpen) break;
      this.runs.delete(key);
    }
    if (evicted > 0) this.options.onEvicted(evicted);
  }
}

/** The OTLP request for a batch of spans: one resource per service, one scope. */
export function encodeExportRequest(spans: ExportSpan[], version: string): Uint8Array {
  const byService = new Map<string | undefined, OtlpSpan[]>();
  for (const { service, span } of spans) {
    const list = byService.get(service);
    if (list) list.push(span);
    else byService.set(service, [span]);
  }
  return ExportTraceServiceRequest.encode({
    resourceSpans: [...byService].map(([service, list]) => ({
      resource: { attributes: service === undefined ? [] : [stringAttribute("service.name", service)] },
      scopeSpans: [{ scope: { name: "spanhub", version }, spans: list }],
    })),
  }).finish();
}

function runSpan(
  runId: string,
  run: RunState,
  end: Micros,
  status: EndStatus,
  reason: string | undefined,
  error: SpanError | undefined,
): ExportSpan {
  const attributes: KeyValue[] = [
    stringAttribute(ATTR.runId, runId),
    { key: ATTR.runSpan, value: { boolValue: true } },
    stringAttribute(ATTR.runStatus, status),
  ];
  if (run.name !== undefined) attributes.push(stringAttribute(ATTR.runName, run.name));
  if (reason !== undefined) attributes.push(stringAttribute(ATTR.runReason, reason));
  if (run.host !== undefined) attributes.push(stringAttribute(ATTR.runHost, run.host));
  if (run.pid !== undefined) attributes.push({ key: ATTR.runPid, value: { intValue: run.pid } });
  if (run.parentRunId !== undefined) attributes.push(stringAttribute(ATTR.runParentRunId, run.parentRunId));
  if (run.parentSpanId !== undefined) attributes.push(stringAttribute(ATTR.runParentSpanId, run.parentSpanId));
  return {
    service: run.app,
    span: {
      traceId: traceIdOf(runId),
      spanId: runSpanIdOf(runId),
      name: run.name ?? runId,
      kind: SPAN_KIND.internal,
      startTimeUnixNano: nanos(run.startTime ?? end),
      endTimeUnixNano: nanos(end),
      attributes: [...attributes, ...toAttributes(run.tags)],
      events: otlpEvents([], error, end),
      status: otlpStatus(status, error),
    },
  };
}

function otlpEvents(logs: SpanLog[], error: SpanError | undefined, end: Micros): OtlpEvent[] {
  const events: OtlpEvent[] = logs.map((log) => ({ timeUnixNano: nanos(log.time), name: log.text }));
  if (error) {
    const attributes: KeyValue[] = [];
    if (error.type !== undefined) attributes.push(stringAttribute("exception.type", error.type));
    if (error.message !== undefined) attributes.push(stringAttribute("exception.message", error.message));
    if (error.stack !== undefined) attributes.push(stringAttribute("exception.stacktrace", error.stack));
    events.push({ timeUnixNano: nanos(end), name: "exception", attributes });
  }
  return events;
}

function otlpStatus(status: EndStatus, error: SpanError | undefined): OtlpSpan["status"] {
  if (status === "ok") return { code: STATUS_CODE.ok };
  return error?.message === undefined
    ? { code: STATUS_CODE.error }
    : { code: STATUS_CODE.error, message: error.message };
}

/** Microseconds as the decimal nanoseconds protobufjs writes into a fixed64 exactly. */
function nanos(micros: Micros): string {
  return `${Math.round(micros)}000`;
}

function traceIdOf(runId: string): Buffer {
  return OTLP_TRACE_ID.test(runId) && !/^0+$/.test(runId) ? Buffer.from(runId, "hex") : hashId(`run:${runId}`, 16);
}

function spanIdOf(spanId: string): Buffer {
  return OTLP_SPAN_ID.test(spanId) && !/^0+$/.test(spanId) ? Buffer.from(spanId, "hex") : hashId(`span:${spanId}`, 8);
}

/** The id of the span that stands for the run (never an OTLP-shaped span id of the run's own). */
function runSpanIdOf(runId: string): Buffer {
  return hashId(`run-span:${runId}`, 8);
}

function hashId(text: string, length: number): Buffer {
  const id = createHash("sha256").update(text).digest().subarray(0, length);
  if (id.every((byte) => byte === 0)) id[length - 1] = 1;
  return id;
}

function openKey(runId: string, spanId: string): string {
  return `${runId}\u0000${spanId}`;
}

function stringAttribute(key: string, value: string): KeyValue {
  return { key, value: { stringValue: value } };
}

function toAttributes(tags: Tags): KeyValue[] {
  return Object.entries(tags).map(([key, value]) => ({ key, value: anyValue(value) }));
}

/** A tag as an OTLP value of its type: integers as int64, other numbers as doubles, objects as key-value lists. */
function anyValue(value: unknown): AnyValue {
  switch (typeof value) {
    case "string":
      return { stringValue: value };
    case "boolean":
      return { boolValue: value };
    case "number":
      return Number.isSafeInteger(value) ? { intValue: value } : { doubleValue: value };
    case "object":
      if (value === null) return {};
      if (Array.isArray(value)) return { arrayValue: { values: value.map(anyValue) } };
      return { kvlistValue: { values: toAttributes(value as Tags) } };
    default:
      return value === undefined ? {} : { stringValue: String(value) };
  }
}
