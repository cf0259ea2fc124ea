import type { Micros } from "./time.js";

/**
 * The one event model every wire decoder produces. Nothing downstream of a decoder
 * knows which protocol an event came from.
 */
export type Tags = Record<string, unknown>;

export const SPAN_STATUSES = ["running", "ok", "failed", "timed_out", "cancelled"] as const;
export type SpanStatus = (typeof SPAN_STATUSES)[number];
export const RUN_STATUSES = [...SPAN_STATUSES, "crashed", "stopped"] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
export type EndStatus = Exclude<RunStatus, "running">;

export const SPAN_KINDS = ["flow_root", "step", "rpc", "subflow", "request", "other"] as const;

export interface SpanError {
  type?: string;
  message?: string;
  stack?: string;
}

export interface SpanLog {
  time: Micros;
  text: string;
}

interface RunScoped {
  runId: string;
  /** When it happened on the client (receive time when the client sent none). */
  time: Micros;
}

export interface RunStartEvent extends RunScoped {
  kind: "run_start";
  name?: string;
  app?: string;
  tags?: Tags;
  host?: string;
  pid?: number;
  parentRunId?: string;
  parentSpanId?: string;
  /**
   * The run will get no end message (an OpenTelemetry trace, started by its root span):
   * it ends once quiet for the trace idle period (see TraceIdleSweeper).
   */
  endOnIdle?: boolean;
}

export interface RunTagEvent extends RunScoped {
  kind: "run_tag";
  tags: Tags;
  /** An explicit run name (Scout's `spanhub.name` request tag). */
  name?: string;
}

export interface RunEndEvent extends RunScoped {
  kind: "run_end";
  /** Absent: `failed` when the run saw a failed span or a truthy `error` tag, else `ok`. */
  status?: EndStatus;
  reason?: string;
  error?: SpanError;
  /** The status text as sent, kept when it was not a known status. */
  unknownStatus?: string;
}

export interface SpanFields {
  spanId: string;
  parentId?: string | null;
  name?: string;
  spanKind?: string;
  tags?: Tags;
  rpcService?: string;
  rpcMethod?: string;
  logs?: SpanLog[];
}

export interface SpanStartEvent extends RunScoped, SpanFields {
  kind: "span_start";
}

export interface SpanTagEvent extends RunScoped {
  kind: "span_tag";
  spanId: string;
  tags: Tags;
}

export interface SpanLogEvent extends RunScoped {
  kind: "span_log";
  spanId: string;
  text: string;
}

export interface SpanEndFields {
  /** Absent: `failed` when the span carries a truthy `error` tag, else `ok`. */
  status?: Exclude<SpanStatus, "running">;
  error?: SpanError;
  unknownStatus?: string;
}

export interface SpanEndEvent extends RunScoped, SpanEndFields {
  kind: "span_end";
  spanId: string;
}

/** A span whose start, tags, logs and end arrived together, coalesced into one event. */
export interface SpanEvent extends RunScoped, SpanFields, SpanEndFields {
  kind: "span";
  /** The span's start; `time` is its end. */
  startTime: Micros;
}

export type RunEvent =
  | RunStartEvent
  | RunTagEvent
  | RunEndEvent
  | SpanStartEvent
  | SpanTagEvent
  | SpanLogEvent
  | SpanEndEvent
  | SpanEvent;

export type RunEventKind = RunEvent["kind"];

/** Application metadata (Scout's `ApplicationEvent`), kept per app, outside any run. */
export interface AppEvent {
  app: string;
  eventType: string;
  value: unknown;
  source?: string;
  time: Micros;
}

/** What one client message asks the store to commit atomically. */
export interface Submission {
  events: RunEvent[];
  appEvents?: AppEvent[];
  /** The app of runs this submission creates (a Scout connection's `Register`). */
  app?: string;
  /** A client-chosen key: a batch already committed is acknowledged and not applied again. */
  batchId?: string;
}

export interface SubmitResult {
  /** The batch id was committed before; nothing was applied. */
  duplicate: boolean;
  /** Runs whose `run_end` in this submission came after the run had already ended. */
  lateEnds: string[];
}

const END_STATUS_SET = new Set<string>(["ok", "failed", "timed_out", "cancelled", "crashed", "stopped"]);
const SPAN_END_STATUS_SET = new Set<string>(["ok", "failed", "timed_out", "cancelled"]);

/** Maps a wire status to a span end status: an unknown one becomes `failed`, never `ok`. */
export function spanEndStatus(text: unknown): Pick<SpanEndFields, "status" | "unknownStatus"> {
  if (text === undefined || text === null || text === "") return {};
  if (typeof text === "string" && SPAN_END_STATUS_SET.has(text)) return { status: text as SpanEndFields["status"] };
  return { status: "failed", unknownStatus: String(text) };
}

/** Maps a wire status to a run end status: an unknown one becomes `failed`, never `ok`. */
export function runEndStatus(text: unknown): Pick<RunEndEvent, "status" | "unknownStatus"> {
  if (text === undefined || text === null || text === "") return {};
  if (typeof text === "string" && END_STATUS_SET.has(text)) return { status: text as EndStatus };
  return { status: "failed", unknownStatus: String(text) };
}

export function isEndStatus(text: unknown): text is EndStatus {
  return typeof text === "string" && END_STATUS_SET.has(text);
}

/** A wire error: a plain string is the message; an object keeps type, message and stack. */
export function toSpanError(value: unknown): SpanError | undefined {
  if (value === undefined || value === null || value === "" || value === false) return undefined;
  if (typeof value === "string") return { message: value };
  if (typeof value === "object" && !Array.isArray(value)) {
    const source = value as Record<string, unknown>;
    const error: SpanError = {};
    for (const key of ["type", "message", "stack"] as const) {
      const field = source[key];
      if (field !== undefined && field !== null) error[key] = String(field);
    }
    return error;
  }
  return { message: String(value) };
}

/**
 * Sets one tag as the object's own property, whatever its key: a plain assignment of a key
 * named `__proto__` would set the object's prototype instead, and the tag would be lost.
 */
export function setTag(tags: Tags, key: string, value: unknown): void {
  if (key === "__proto__")
    Object.defineProperty(tags, key, { value, writable: true, enumerable: true, configurable: true });
  else tags[key] = value;
}

/** Scout's convention, applied to every protocol: a truthy `error` tag marks failure. */
export function hasErrorTag(tags: Tags | undefined): boolean {
  if (!tags) return false;
  const value = tags.error;
  return value !== undefined && value !== null && value !== false && value !== "false" && value !== 0 && value !== "";
}
