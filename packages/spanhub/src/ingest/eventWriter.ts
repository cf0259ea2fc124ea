import type { Logger } from "pino";
import type { Submission, SubmitResult } from "../model/event.js";
import type { Metrics } from "../observability/metrics.js";
import type { Store } from "../store/store.js";

interface Pending {
  submission: Submission;
  resolve: (result: SubmitResult) => void;
  reject: (error: Error) => void;
}

export interface EventWriterOptions {
  /** Most events in one group commit. */
  maxBatchEvents?: number;
  /** Queued events past which connections should stop reading until the writer drains. */
  maxBacklogEvents?: number;
  /** Called before each commit (the test hook that kills the process there). */
  beforeCommit?: () => void;
}

/**
 * Group commit: submissions from every connection are gathered while the event loop
 * turns and committed in one transaction. A submission's promise resolves only after
 * its transaction is durable, so callers acknowledge only committed data.
 */
export class EventWriter {
  private queue: Pending[] = [];
  private queuedEvents = 0;
  private scheduled = false;
  private writing: Promise<void> | undefined;
  private drainWaiters: (() => void)[] = [];
  private readonly maxBatchEvents: number;
  private readonly maxBacklogEvents: number;

  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly options: EventWriterOptions = {},
  ) {
    this.maxBatchEvents = options.maxBatchEvents ?? 20_000;
    this.maxBacklogEvents = options.maxBacklogEvents ?? 200_000;
  }

  submit(submission: Submission): Promise<SubmitResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ submission, resolve, reject });
      this.queuedEvents += submission.events.length;
      this.schedule();
    });
  }

  /** True when readers should pause until `whenDrained` resolves. */
  get overloaded(): boolean {
    return this.queuedEvents > this.maxBacklogEvents;
  }

  whenDrained(): Promise<void> {
    if (!this.overloaded) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Commits everything queued so far. */
  async flush(): Promise<void> {
    while (this.writing || this.queue.length > 0) {
      if (this.writing) await this.writing;
      else await this.writeGroup();
    }
  }

  private schedule(): void {
    if (this.scheduled || this.writing) return;
    this.scheduled = true;
    // setImmediate runs after the pending socket reads of this loop turn, so they share one commit.
    setImmediate(() => {
      this.scheduled = false;
      if (!this.writing && this.queue.length > 0) void this.writeGroup();
    });
  }

  private writeGroup(): Promise<void> {
    const group: Pending[] = [];
    let events = 0;
    while (this.queue.length > 0 && (group.length === 0 || events < this.maxBatchEvents)) {
      const next = this.queue.shift() as Pending;
      group.push(next);
      events += next.submission.events.length;
    }
    this.queuedEvents -= events;
    this.writing = this.commit(group, events).finally(() => {
      this.writing = undefined;
      if (!this.overloaded) for (const wake of this.drainWaiters.splice(0)) wake();
      if (this.queue.length > 0) this.schedule();
    });
    return this.writing;
  }

  private async commit(group: Pending[], events: number): Promise<void> {
    this.options.beforeCommit?.();
    const started = performance.now();
    try {
      const results = await this.store.append(group.map((pending) => pending.submission));
      this.recordCommit(group, results, events, started);
      for (const [index, pending] of group.entries()) pending.resolve(results[index] as SubmitResult);
    } catch (error) {
      if (group.length === 1) {
        this.metrics.commitFailures.inc();
        this.logger.error({ err: error, events }, "commit failed; the submission was not acknowledged");
        group[0]?.reject(error as Error);
        return;
      }
      // One bad submission must not cost the others: retry each alone.
      for (const pending of group) await this.commit([pending], pending.submission.events.length);
    }
  }

  private recordCommit(group: Pending[], results: SubmitResult[], events: number, started: number): void {
    let applied = 0;
    results.forEach((result, index) => {
      if (result.duplicate) this.metrics.duplicateBatches.inc();
      else applied += (group[index] as Pending).submission.events.length;
    });
    this.metrics.eventsCommitted.inc(applied);
    this.metrics.commitBatchEvents.observe(events);
    this.metrics.commitSeconds.observe((performance.now() - started) / 1000);
  }
}
