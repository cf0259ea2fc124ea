import type { RunEvent, RunStartEvent, RunTagEvent, SpanEvent, SpanStartEvent, SpanTagEvent } from "./event.js";

type Mergeable = RunStartEvent | RunTagEvent | SpanStartEvent | SpanEvent | SpanTagEvent;

/**
 * Folds what one message says about the same span (start, tags, logs, end) or run
 * (start and tags) into one event, so the log holds one row per span rather than one
 * per wire command. Later fields win; tags merge key by key; logs append.
 */
export function coalesce(events: RunEvent[]): RunEvent[] {
  if (events.length < 2) return events;
  const out: RunEvent[] = [];
  const open = new Map<string, number>();
  for (const event of events) {
    const key =
      event.kind === "run_start" || event.kind === "run_tag" || event.kind === "run_end"
        ? `r\u0000${event.runId}`
        : `s\u0000${event.runId}\u0000${event.spanId}`;
    const at = open.get(key);
    const target = at === undefined ? undefined : (out[at] as Mergeable);
    switch (event.kind) {
      case "run_start":
      case "span_start":
        if (target && target.kind === event.kind) {
          mergeInto(target, event);
          continue;
        }
        break;
      case "run_tag":
        if (target?.kind === "run_start" || target?.kind === "run_tag") {
          target.tags = { ...target.tags, ...event.tags };
          if (event.name !== undefined) target.name = event.name;
          continue;
        }
        break;
      case "span_tag":
        if (target?.kind === "span_start" || target?.kind === "span" || target?.kind === "span_tag") {
          target.tags = { ...target.tags, ...event.tags };
          continue;
        }
        break;
      case "span_log":
        if (target && (target.kind === "span_start" || target.kind === "span")) {
          if (!target.logs) target.logs = [];
          target.logs.push({ time: event.time, text: event.text });
          continue;
        }
        break;
      case "span_end":
        if (target?.kind === "span_start") {
          const { kind: _start, time: startTime, ...fields } = target;
          const { kind: _end, ...end } = event;
          const span: SpanEvent = { ...fields, ...end, kind: "span", startTime };
          out[at as number] = span;
          continue;
        }
        break;
      case "run_end":
        open.delete(key);
        break;
    }
    if (event.kind !== "run_end" && event.kind !== "span_log" && event.kind !== "span_end") {
      open.set(key, out.length);
      out.push(copyForMerging(event));
    } else {
      if (event.kind === "span_end") open.delete(key);
      out.push(event);
    }
  }
  return out;
}

function mergeInto(target: RunStartEvent | SpanStartEvent, event: RunStartEvent | SpanStartEvent): void {
  const tags = { ...target.tags, ...event.tags };
  const earlierLogs = target.kind === "span_start" ? target.logs : undefined;
  Object.assign(target, event, { tags });
  // Logs append (in a fresh array, so a later span_log never pushes into the caller's).
  if (target.kind === "span_start" && event.kind === "span_start" && event.logs)
    target.logs = [...(earlierLogs ?? []), ...event.logs];
}

/** A shallow copy whose tags and logs may be merged into without touching the caller's. */
function copyForMerging(event: Mergeable): Mergeable {
  const copy = { ...event };
  if (copy.tags) copy.tags = { ...copy.tags };
  if ("logs" in copy && copy.logs) copy.logs = [...copy.logs];
  return copy;
}
