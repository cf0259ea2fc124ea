/** Runs a task every `everyMs` (unref'd), never two at once; `stop` waits for a run in progress. */
export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly task: () => Promise<unknown>,
    private readonly everyMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.task().finally(() => {
        this.running = undefined;
      });
    }, this.everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}

/** How often a sweep for things quiet for `quietMs` runs: a quarter of it, within 50 ms and a minute. */
export function sweepInterval(quietMs: number): number {
  return Math.max(50, Math.min(quietMs / 4, 60_000));
}
