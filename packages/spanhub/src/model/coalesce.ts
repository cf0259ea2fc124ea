import type { RunEvent, RunStartEvent, RunTagEvent, SpanEvent, SpanStartEvent, SpanTagEvent } from "./event.js";

type Mergeable = RunStartEvent | RunTagEvent | SpanStartEvent | SpanEvent | SpanTagEvent;

/** The key of a run's own open event; span keys are prefixed, so any span id (even "") differs. */
const RUN_KEY = "r";

/**
 * Folds what one message says about the same span (start, tags, logs, end) or run
 * (start and tags) into one event, so the log holds one row per span rather than one
 * per wire command. Later fields win; tags merge key by key; logs append. Every event
 * it holds is its own copy, so merging never touches the caller's objects.
 */
export class Coalescer {
  private readonly out: RunEvent[] = [];
  /** Per run: the index in `out` of its open run event and of each open span. */
  private readonly openByRun = new Map<string, Map<string, number>>();

  events(): RunEvent[] {
    return this.out;
  }

  /** One tag of a run (no span id) or span: the ingest hot path, with no object built when it merges. */
  tag(runId: string, spanId: string | undefined, key: string, value: unknown, time: number): void {
    const target = this.openTarget(runId, spanId === undefined ? RUN_KEY : `s${spanId}`);
    if (target && target.kind !== "span_tag" && target.kind !== "run_tag") {
      if (target.tags) target.tags[key] = value;
      else target.tags = { [key]: value };
      return;
    }
    this.add(
      spanId === undefined
        ? { kind: "run_tag", runId, time, tags: { [key]: value } }
        : { kind: "span_tag", runId, spanId, time, tags: { [key]: value } },
    );
  }

  add(event: RunEvent): void {
    const open = this.openOf(event.runId);
    const key = "spanId" in event ? `s${event.spanId}` : RUN_KEY;
    const at = open.get(key);
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
          const { kind: _end, runId: _run, spanId: _span, ...end } = event;
          span.startTime = target.time;
          Object.assign(span, end);
          span.kind = "span";
          return;
        }
        open.delete(key);
        this.out.push(event);
        return;
      case "run_end":
        open.delete(key);
        this.out.push(event);
        return;
    }
    if (event.kind === "span_log") {
      this.out.push(event);
      return;
    }
    open.set(key, this.out.length);
    this.out.push(copyForMerging(event));
  }

  private openOf(runId: string): Map<string, number> {
    let open = this.openByRun.get(runId);
    if (!open) {
      open = new Map();
      this.openByRun.set(runId, open);
    }
    return open;
  }

  private openTarget(runId: string, key: string): Mergeable | undefined {
    const at = this.openByRun.get(runId)?.get(key);
    return at === undefined ? undefined : (this.out[at] as Mergeable);
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
  if (target.tags) Object.assign(target.tags, tags);
  else target.tags = { ...tags };
}

function copyForMerging(event: Mergeable): Mergeable {
  const copy = { ...event };
  if (copy.tags) copy.tags = { ...copy.tags };
  if ("logs" in copy && copy.logs) copy.logs = [...copy.logs];
  return copy;
}
