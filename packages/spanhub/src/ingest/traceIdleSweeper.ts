import type { Logger } from "pino";
import type { RunEndEvent } from "../model/event.js";
import { nowMicros } from "../model/time.js";
import type { Store } from "../store/store.js";
import type { EventWriter } from "./eventWriter.js";
import { Sweeper } from "./sweeper.js";

/** The `reason` of a run ended by this sweeper. */
export const TRACE_IDLE_REASON = "trace_idle";

/**
 * Ends runs that get no end message (OpenTelemetry traces: their root span started the
 * run with `endOnIdle`) once nothing arrived for `idleMs`. The run ends when and as its
 * root span did: its end time, status and error. Spans arriving later are kept as late.
 */
export class TraceIdleSweeper extends Sweeper {
  constructor(store: Store, writer: EventWriter, logger: Logger, idleMs: number) {
    super(store, writer, logger, idleMs, "trace idle sweep");
  }

  protected async sweepOnce(): Promise<number> {
    const now = nowMicros();
    const quiet = await this.store.findIdleRunsEndingOnIdle(now - this.quietMs * 1000, 500);
    const events: RunEndEvent[] = [];
    for (const runId of quiet) {
      // The trace's root: the earliest top-level span (spans come in start order).
      const root = (await this.store.listSpans(runId)).find((span) => span.parentId === null);
      const ended = root && root.status !== "running";
      events.push({
        kind: "run_end",
        runId,
        time: root?.endTime ?? now,
        reason: TRACE_IDLE_REASON,
        ...(ended ? { status: root.status as RunEndEvent["status"] } : {}),
        ...(root?.error ? { error: root.error } : {}),
      });
    }
    if (events.length > 0) {
      await this.writer.submit({ events });
      this.logger.debug({ runs: events.length }, "ended quiet traces");
    }
    return events.length;
  }
}
