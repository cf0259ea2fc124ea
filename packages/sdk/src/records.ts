import { formatSpanId, nextSpanCounter, spanIdPrefix } from "./ids.js";
import { nowMs } from "./time.js";
import type { Parent } from "./traceparent.js";

/** How a span or request ended. spanhub's agent derives `failed` from an `error` tag (Scout's rule). */
export type Status = "ok" | "failed" | "timed_out" | "cancelled";

export interface EndOptions {
  status?: Status;
  /** An Error (its type, message and stack are kept) or a message. Marks the span failed unless `status` says otherwise. */
  error?: unknown;
}

/** Who receives the frames: the wire dialect the encoder writes for. */
export type Dialect =
  /** spanhub's agent that accepted the `compact_batch` extension in `Register`: compact batches. */
  | "compact"
  /** spanhub's agent 0.2.0 or newer: Scout commands with spanhub's extensions. */
  | "extended"
  /** spanhub's agent before 0.2.0 (or not yet known): plain Scout, parent links in an `Events` frame. */
  | "spanhub"
  /** Not spanhub's agent (Status refused): plain Scout only. */
  | "scout";

export interface SpanOptions {
  tags?: Record<string, unknown>;
}

/** A span as the application sees it. Every method is safe to call at any time and never throws. */
export interface Span {
  /** The span id (16 hex digits), or "" for a span that is not recorded. */
  readonly id: string;
  /** The run (request) id (32 hex digits), or "". */
  readonly runId: string;
  readonly recording: boolean;
  tag(key: string, value: unknown): Span;
  log(text: string): Span;
  end(options?: EndOptions): void;
}

const MAX_LOGS_PER_SPAN = 1000;

/** Tag pairs not yet sent, flattened as key, value, key, value... */
type PendingTags = unknown[];

export class SpanRecord implements Span {
  readonly recording = true;
  /** The id as prefix (the request's) and counter; the string (`id`) is made only when asked for. */
  readonly idCounter = nextSpanCounter();
  private idText: string | undefined;
  endMs: number | undefined;
  tags: PendingTags | undefined;
  logs: { time: number; text: string }[] | undefined;
  logsChanged = false;
  /** Logs already sent as `LogSpan` (spanhub 0.2 agents); older agents get the whole list as a tag. */
  logsSent = 0;
  startSent = false;
  /** How it ended, as given to `end()`: sent as StopSpan fields (or as tags to older agents). */
  status: Status | undefined;
  error: unknown;
  /** The span's kind (`request` for a root span, `rpc` for an instrumented call). */
  kind: string | undefined;
  rpcService: string | undefined;
  rpcMethod: string | undefined;

  constructor(
    readonly request: RequestRecord,
    /** The parent span, or null for a top-level span. */
    readonly parent: SpanRecord | null,
    readonly name: string,
    /** A root span starts with its request, at the same moment. */
    readonly startMs = nowMs(),
  ) {}

  get id(): string {
    this.idText ??= formatSpanId(this.request.spanPrefix, this.idCounter);
    return this.idText;
  }

  get parentId(): string | null {
    return this.parent === null ? null : this.parent.id;
  }

  get runId(): string {
    return this.request.id;
  }

  tag(key: string, value: unknown): Span {
    if (this.endMs !== undefined || typeof key !== "string" || key === "") return this;
    if (this.tags) this.tags.push(key, value);
    else this.tags = [key, value];
    return this;
  }

  log(text: string): Span {
    if (this.endMs !== undefined) return this;
    if (!this.logs) this.logs = [];
    const logs = this.logs;
    if (logs.length < MAX_LOGS_PER_SPAN) {
      logs.push({ time: nowMs(), text: typeof text === "string" ? text : safeText(text) });
      this.logsChanged = true;
    }
    return this;
  }

  end(options?: EndOptions): void {
    if (this.endMs !== undefined) return;
    if (options) {
      this.status = options.status;
      this.error = options.error;
    }
    this.endMs = nowMs();
  }

  /** Marks the span failed with the error's type, message and stack (before `end`). */
  fail(error: unknown): void {
    this.status = "failed";
    this.error = error;
  }
}

/** A request (spanhub run) and what of it has not been sent yet. */
export class RequestRecord {
  /** The process's span id prefix, read once per request (its run id checked for a fork). */
  readonly spanPrefix = spanIdPrefix();
  readonly startMs = nowMs();
  endMs: number | undefined;
  /** Spans with something unsent, in start order (so parents come before children). */
  spans: SpanRecord[] = [];
  tags: PendingTags | undefined;
  startSent = false;
  batches = 0;
  spanCount = 0;
  droppedSpans = 0;
  droppedSent = 0;
  /** How it ended, as given to `end()`. */
  status: Status | undefined;
  error: unknown;
  lastSentMs: number;
  readonly root: SpanRecord;

  constructor(
    readonly id: string,
    readonly name: string,
    readonly maxSpans: number,
    readonly parent: Parent | undefined,
    private readonly onEnd: (request: RequestRecord) => void,
  ) {
    this.lastSentMs = this.startMs;
    this.root = new SpanRecord(this, null, name, this.startMs);
    this.root.kind = "request";
    this.spans.push(this.root);
    this.spanCount = 1;
  }

  tag(key: string, value: unknown): void {
    if (this.endMs !== undefined || typeof key !== "string" || key === "") return;
    if (this.tags) this.tags.push(key, value);
    else this.tags = [key, value];
  }

  /**
   * A new span, or undefined once the request has `maxSpans` spans (it is counted instead).
   * `rpc` makes it an instrumented call (`instrument`): kind `rpc` with its service and method.
   */
  startSpan(
    name: string,
    parent: SpanRecord | null,
    options?: SpanOptions,
    rpc?: { service: string; method: string },
  ): SpanRecord | undefined {
    if (this.endMs !== undefined) return undefined;
    if (this.spanCount >= this.maxSpans) {
      this.droppedSpans += 1;
      return undefined;
    }
    this.spanCount += 1;
    const span = new SpanRecord(this, parent, typeof name === "string" ? name : String(name));
    if (rpc) {
      span.kind = "rpc";
      span.rpcService = rpc.service;
      span.rpcMethod = rpc.method;
    }
    if (options?.tags) for (const key of Object.keys(options.tags)) span.tag(key, options.tags[key]);
    this.spans.push(span);
    return span;
  }

  end(options?: EndOptions): void {
    if (this.endMs !== undefined) return;
    if (options) {
      this.status = options.status;
      this.error = options.error;
    }
    const endMs = nowMs();
    // The root span ends with its request, at the same moment.
    this.root.endMs ??= endMs;
    this.endMs = endMs;
    this.onEnd(this);
  }
}

/**
 * How an outcome is said to an agent without spanhub's StopSpan/FinishRequest fields: the error
 * as `error.*` tags, `error: true` when it failed, and a status Scout cannot say as `spanhub.status`.
 */
export function outcomeTags(status: Status | undefined, error: unknown): [string, unknown][] {
  const tags: [string, unknown][] = error === undefined ? [] : errorTags(error);
  if (status === "failed" || status === "timed_out" || (status === undefined && error !== undefined))
    tags.push(["error", true]);
  if (status !== undefined && status !== "ok" && status !== "failed") tags.push(["spanhub.status", status]);
  return tags;
}

/** The wire form of an error for spanhub's `error` field: `{type, message, stack}`, or a message. */
export function errorObject(error: unknown): { type?: string; message: string; stack?: string } {
  if (error instanceof Error) {
    const type = error.name || error.constructor?.name || "Error";
    return typeof error.stack === "string"
      ? { type, message: error.message, stack: error.stack }
      : { type, message: error.message };
  }
  return { message: safeText(error) };
}

/** `error.type`, `error.message`, `error.stack` for an Error; `error.message` for anything else. */
export function errorTags(error: unknown): [string, unknown][] {
  if (error instanceof Error) {
    const tags: [string, unknown][] = [
      ["error.type", error.name || error.constructor?.name || "Error"],
      ["error.message", error.message],
    ];
    if (typeof error.stack === "string") tags.push(["error.stack", error.stack]);
    return tags;
  }
  return [["error.message", safeText(error)]];
}

function safeText(value: unknown): string {
  try {
    return typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    return String(value);
  }
}

/** The span handed out where nothing is recorded (outside a request, over the span cap, after shutdown). */
export const NOOP_SPAN: Span = Object.freeze({
  id: "",
  runId: "",
  recording: false,
  tag() {
    return NOOP_SPAN;
  },
  log() {
    return NOOP_SPAN;
  },
  end() {},
});
