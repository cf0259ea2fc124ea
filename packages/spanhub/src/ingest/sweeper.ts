import type { Logger } from "pino";
import type { Store } from "../store/store.js";
import type { EventWriter } from "./eventWriter.js";

/**
 * A sweep run every quarter of `quietMs` (within 50 ms and a minute), unref'd and never
 * two at once; `stop` waits for a sweep in progress. A failed sweep is logged and tried
 * again at the next tick.
 */
export abstract class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    protected readonly store: Store,
    protected readonly writer: EventWriter,
    protected readonly logger: Logger,
    /** How long a run must have been quiet before this sweeper ends it. */
    protected readonly quietMs: number,
    /** What the log calls this sweep when it fails. */
    private readonly what: string,
  ) {}

  /** One sweep; returns how many runs it ended. Never throws. */
  async sweep(): Promise<number> {
    try {
      return await this.sweepOnce();
    } catch (error) {
      this.logger.error({ err: error }, `${this.what} failed; will try again`);
      return 0;
    }
  }

  protected abstract sweepOnce(): Promise<number>;

  start(): void {
    this.timer = setInterval(
      () => {
        this.running ??= this.sweep().finally(() => {
          this.running = undefined;
        });
      },
      Math.max(50, Math.min(this.quietMs / 4, 60_000)),
    );
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
