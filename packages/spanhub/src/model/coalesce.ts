import {
  type RunEvent,
  type RunStartEvent,
  type RunTagEvent,
  type SpanEvent,
  type SpanStartEvent,
  type SpanTagEvent,
  setTag,
} from "./event.js";

type Mergeable = RunStartEvent | RunTagEvent | SpanStartEvent | SpanEvent | SpanTagEvent;

/** The events of one run still open to merging: its own run event and each span's, by index in `out`. */
interface OpenOfRun {
  run: number | undefined;
  spans: Map<string, number>;
}

/**
 * Folds what one message says about the same span (start, tags, logs, end) or run
 * (start and tags) into one event, so the log holds one row per span rather than one
 * per wire command. Later fields win; tags merge key by key; logs append. Every event
 * it holds is its own copy, so merging never touches the caller's objects.
 */
export class Coalescer {
  private readonly out: RunEvent[] = [];
  private readonly openByRun = new Map<string, OpenOfRun>();
  /** The run looked up last: a batch is usually one request, so this saves a map lookup a command. */
  private lastRunId: string | undefined;
  private lastRun: OpenOfRun | undefined;
  /** The span looked up last, in `lastRun`: a span's commands come one after another, and hashing a fresh id string costs more than comparing it. */
  private lastSpanId: string | undefined;
  private lastSpanAt: number | undefined;

  events(): RunEvent[] {
    return this.out;
  }

  /**
   * The ingest hot path: merges one tag of a run (no span id) or span into the event open for
   * it, with no object built. False when none is open; the caller then adds a tag event.
   */
  mergeTag(runId: string, spanId: string | undefined, key: string, value: unknown): boolean {
    const open = this.lastRunId === runId ? this.lastRun : this.openByRun.get(runId);
    const at = open === undefined ? undefined : spanId === undefined ? open.run : this.openSpan(open, spanId);
    if (at === undefined) return false;
    const target = this.out[at] as Mergeable;
    if (target.kind === "span_tag" || target.kind === "run_tag") return false;
    if (target.tags) setTag(target.tags, key, value);
    else target.tags = { [key]: value };
    return true;
  }

  add(event: RunEvent): void {
    const open = this.openOf(event.runId);
    const spanId = "spanId" in event ? event.spanId : undefined;
    const at = spanId === undefined ? open.run : this.openSpan(open, spanId);
    const target = at === undefined ? undefined : (this.out[at] as Mergeable);
    switch (event.kind) {
      case "run_start":
      case "span_start":
        if (target && target.kind === event.kind) {
          mergeStart(target, event);
          return;
        }
        break;
      case "run_tag":
        if (target?.kind === "run_start" || target?.kind === "run_tag") {
          mergeTags(target, event.tags);
          if (event.name !== undefined) target.name = event.name;
          return;
        }
        break;
      case "span_tag":
        if (target?.kind === "span_start" || target?.kind === "span" || target?.kind === "span_tag") {
          mergeTags(target, event.tags);
          return;
        }
        break;
      case "span_log":
        if (target?.kind === "span_start" || target?.kind === "span") {
          if (!target.logs) target.logs = [];
          target.logs.push({ time: event.time, text: event.text });
          return;
        }
        break;
      case "span_end":
        if (target?.kind === "span_start") {
          // The start becomes the whole span, in place: its time moves to startTime, the end's fields win.
          const span = target as unknown as SpanEvent;
          span.startTime = target.time;
          span.time = event.time;
          if (event.status !== undefined) span.status = event.status;
          if (event.error !== undefined) span.error = event.error;
          if (event.unknownStatus !== undefined) span.unknownStatus = event.unknownStatus;
          span.kind = "span";
          return;
        }
        open.spans.delete(event.spanId);
        this.lastSpanId = undefined;
        this.out.push(event);
        return;
      case "run_end":
        open.run = undefined;
        this.out.push(event);
        return;
    }
    if (event.kind === "span_log") {
      this.out.push(event);
      return;
    }
    if (spanId === undefined) open.run = this.out.length;
    else {
      open.spans.set(spanId, this.out.length);
      this.lastSpanId = spanId;
      this.lastSpanAt = this.out.length;
    }
    this.out.push(copyForMerging(event));
  }

  /** The index of the span's open event; `open` is always `lastRun` here (openOf or mergeTag just set or matched it). */
  private openSpan(open: OpenOfRun, spanId: string): number | undefined {
    if (open === this.lastRun && spanId === this.lastSpanId) return this.lastSpanAt;
    const at = open.spans.get(spanId);
    if (open === this.lastRun) {
      this.lastSpanId = spanId;
      this.lastSpanAt = at;
    }
    return at;
  }

  private openOf(runId: string): OpenOfRun {
    if (this.lastRunId === runId && this.lastRun) return this.lastRun;
    let open = this.openByRun.get(runId);
    if (!open) {
      open = { run: undefined, spans: new Map() };
      this.openByRun.set(runId, open);
    }
    this.lastRunId = runId;
    this.lastRun = open;
    this.lastSpanId = undefined;
    return open;
  }
}

/** Coalesces a list of events (see Coalescer). */
export function coalesce(events: RunEvent[]): RunEvent[] {
  if (events.length < 2) return events;
  const coalescer = new Coalescer();
  for (const event of events) coalescer.add(event);
  return coalescer.events();
}

function mergeStart(target: RunStartEvent | SpanStartEvent, event: RunStartEvent | SpanStartEvent): void {
  const tags = { ...target.tags, ...event.tags };
  const earlierLogs = target.kind === "span_start" ? target.logs : undefined;
  const spanStart = target.kind === "span_start" ? target.time : undefined;
  Object.assign(target, event, { tags });
  // A repeated span start keeps the first start time (a run start's later time wins, as in the store).
  if (spanStart !== undefined) target.time = spanStart;
  // Logs append (in a fresh array, so a later span_log never pushes into the caller's).
  if (target.kind === "span_start" && event.kind === "span_start" && event.logs)
    target.logs = [...(earlierLogs ?? []), ...event.logs];
}

function mergeTags(target: Mergeable, tags: Record<string, unknown>): void {
  if (target.tags) for (const key in tags) setTag(target.tags, key, tags[key]);
  else target.tags = { ...tags };
}

function copyForMerging(event: Mergeable): Mergeable {
  // Not a spread: spread copies of the many event shapes made adding tags and startTime later the decode's
  // costliest step (~3 µs a span of the bench's Scout frames, a third of parse and decode together).
  const copy = Object.assign({}, event);
  if (copy.tags) copy.tags = { ...copy.tags };
  if ("logs" in copy && copy.logs) copy.logs = [...copy.logs];
  return copy;
}
