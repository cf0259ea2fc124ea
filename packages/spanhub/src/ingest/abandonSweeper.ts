import type { Logger } from "pino";
import { nowMicros } from "../model/time.js";
import type { Store } from "../store/store.js";
import type { EventWriter } from "./eventWriter.js";
import { Sweeper } from "./sweeper.js";

const BATCH_RETENTION_MS = 24 * 3600 * 1000;

/**
 * Ends runs that went quiet: a run with no event for `abandonAfterMs` is marked
 * `crashed` with reason `abandoned` (a real end arriving later replaces that). A
 * closed connection alone proves nothing, since writers reconnect. Also forgets
 * batch ids older than a day.
 */
export class AbandonSweeper extends Sweeper {
  constructor(store: Store, writer: EventWriter, logger: Logger, abandonAfterMs: number) {
    super(store, writer, logger, abandonAfterMs, "abandon sweep");
  }

  protected async sweepOnce(): Promise<number> {
    const now = nowMicros();
    const idle = await this.store.findIdleRuns(now - this.quietMs * 1000, 500);
    for (const runId of idle) {
      await this.writer.submit({
        events: [{ kind: "run_end", runId, time: now, status: "crashed", reason: "abandoned" }],
      });
    }
    if (idle.length > 0) this.logger.info({ runs: idle.length }, "marked quiet runs crashed (abandoned)");
    await this.store.pruneBatches(now - BATCH_RETENTION_MS * 1000);
    return idle.length;
  }
}
