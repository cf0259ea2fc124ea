import type { AppEvent, RunEvent, Submission } from "../../model/event.js";

/**
 * A submission as it crosses to the SQLite writer thread: its events grouped by run, each group
 * as the JSON text of its log entries (the events without their run id). Strings cross threads
 * for the cost of a copy, far less than a structured clone of the events' objects, and the
 * writer stores a group's text as its log chunk as it is, without encoding it again.
 */
export interface WireSubmission {
  app?: string;
  batchId?: string;
  appEvents?: AppEvent[];
  /** Run id and the JSON array of its events in submission order, without their run id. */
  runs: [runId: string, entries: string][];
}

export function toWire({ events, app, batchId, appEvents }: Submission): WireSubmission {
  const byRun = new Map<string, RunEvent[]>();
  for (const event of events) {
    const group = byRun.get(event.runId);
    if (group) group.push(event);
    else byRun.set(event.runId, [event]);
  }
  const runs: [string, string][] = [];
  for (const [runId, group] of byRun) runs.push([runId, entriesText(group)]);
  return {
    ...(app === undefined ? {} : { app }),
    ...(batchId === undefined ? {} : { batchId }),
    ...(appEvents === undefined ? {} : { appEvents }),
    runs,
  };
}

/**
 * The events as JSON without their run id. JSON.stringify leaves out a property whose value is
 * undefined, so each id is cleared for the call and put back: no copy of any event.
 */
function entriesText(events: RunEvent[]): string {
  const runId = (events[0] as RunEvent).runId;
  const unkeyed = events as { runId: string | undefined }[];
  for (const event of unkeyed) event.runId = undefined;
  try {
    return JSON.stringify(events);
  } finally {
    for (const event of unkeyed) event.runId = runId;
  }
}
