import { newSpanId } from "./ids.js";
import { nowMs } from "./time.js";
import type { Parent } from "./traceparent.js";

/** How a span or request ended. spanhub's agent derives `failed` from an `error` tag (Scout's rule). */
export type Status = "ok" | "failed" | "timed_out" | "cancelled";

export interface EndOptions {
  status?: Status;
  /** An Error (its type, message and stack are kept) or a message. Marks the span failed unless `status` says otherwise. */
  error?: unknown;
}

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
  readonly id = newSpanId();
  readonly startMs = nowMs();
  endMs: number | undefined;
  tags: PendingTags | undefined;
  logs: { time: number; text: string }[] | undefined;
  logsChanged = false;
  startSent = false;

  constructor(
    readonly request: RequestRecord,
    readonly parentId: string | null,
    readonly name: string,
  ) {}

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
    if (options) applyOutcome(this, options);
    this.endMs = nowMs();
  }

  /** Marks the span failed with the error's type, message and stack (before `end`). */
  fail(error: unknown): void {
    applyOutcome(this, { status: "failed", error });
  }
}

/** A request (spanhub run) and what of it has not been sent yet. */
export class RequestRecord {
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
    this.root = new SpanRecord(this, null, name);
    this.spans.push(this.root);
    this.spanCount = 1;
  }

  tag(key: string, value: unknown): void {
    if (this.endMs !== undefined || typeof key !== "string" || key === "") return;
    if (this.tags) this.tags.push(key, value);
    else this.tags = [key, value];
  }

  /** A new span, or undefined once the request has `maxSpans` spans (it is counted instead). */
  startSpan(name: string, parent: SpanRecord | null, options?: SpanOptions): SpanRecord | undefined {
    if (this.endMs !== undefined) return undefined;
    if (this.spanCount >= this.maxSpans) {
      this.droppedSpans += 1;
      return undefined;
    }
    this.spanCount += 1;
    const span = new SpanRecord(this, parent ? parent.id : null, typeof name === "string" ? name : String(name));
    if (options?.tags) for (const key of Object.keys(options.tags)) span.tag(key, options.tags[key]);
    this.spans.push(span);
    return span;
  }

  end(options?: EndOptions): void {
    if (this.endMs !== undefined) return;
    if (options) {
      const { status, error } = options;
      if (error !== undefined) for (const [key, value] of errorTags(error)) this.tag(key, value);
      if (status === "failed" || status === "timed_out" || (status === undefined && error !== undefined))
        this.tag("error", true);
      if (status !== undefined && status !== "ok" && status !== "failed") this.tag("spanhub.status", status);
    }
    this.root.end();
    this.endMs = nowMs();
    this.onEnd(this);
  }
}

function applyOutcome(span: SpanRecord, { status, error }: EndOptions): void {
  if (error !== undefined) for (const [key, value] of errorTags(error)) span.tag(key, value);
  if (status === "failed" || status === "timed_out" || (status === undefined && error !== undefined))
    span.tag("error", true);
  if (status !== undefined && status !== "ok" && status !== "failed") span.tag("spanhub.status", status);
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
