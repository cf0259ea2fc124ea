import type { Logger } from "pino";
import type { Submission, SubmitResult } from "../model/event.js";
import type { Metrics } from "../observability/metrics.js";
import type { Store } from "../store/store.js";

/**
 * Groups handed to the store at once: the next group is encoded and sent to the
 * writer thread while the current one commits. The store commits them in order.
 */
const MAX_GROUPS_IN_FLIGHT = 2;

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
  private readonly inFlight = new Set<Promise<void>>();
  private drainWaiters: (() => void)[] = [];
  private readonly commitListeners: ((submissions: Submission[]) => void)[] = [];
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

  /**
   * Calls `listener` after every durable commit with the submissions it applied
   * (duplicates left out), in commit order: how exporters see everything stored.
   */
  onCommit(listener: (submissions: Submission[]) => void): void {
    this.commitListeners.push(listener);
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
    while (this.inFlight.size > 0 || this.queue.length > 0) {
      if (this.queue.length > 0 && this.inFlight.size < MAX_GROUPS_IN_FLIGHT) this.writeGroup();
      else await Promise.race(this.inFlight);
    }
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight.size >= MAX_GROUPS_IN_FLIGHT) return;
    this.scheduled = true;
    // setImmediate runs after the pending socket reads of this loop turn, so they share one commit.
    setImmediate(() => {
      this.scheduled = false;
      if (this.inFlight.size < MAX_GROUPS_IN_FLIGHT && this.queue.length > 0) this.writeGroup();
    });
  }

  private writeGroup(): void {
    let count = 0;
    let events = 0;
    while (count < this.queue.length && (count === 0 || events < this.maxBatchEvents)) {
      events += (this.queue[count] as Pending).submission.events.length;
      count += 1;
    }
    const group = this.queue.splice(0, count);
    this.queuedEvents -= events;
    const writing: Promise<void> = this.commit(group, events).finally(() => {
      this.inFlight.delete(writing);
      if (!this.overloaded) for (const wake of this.drainWaiters.splice(0)) wake();
      if (this.queue.length > 0) this.schedule();
    });
    this.inFlight.add(writing);
  }

  private async commit(group: Pending[], events: number): Promise<void> {
    this.options.beforeCommit?.();
    const started = performance.now();
    try {
      const results = await this.store.append(group.map((pending) => pending.submission));
      this.recordCommit(group, results, events, started);
      for (const [index, pending] of group.entries()) pending.resolve(results[index] as SubmitResult);
      if (this.commitListeners.length > 0) this.notifyCommitted(group, results);
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

  private notifyCommitted(group: Pending[], results: SubmitResult[]): void {
    const applied = group.filter((_, index) => !results[index]?.duplicate).map((pending) => pending.submission);
    if (applied.length === 0) return;
    for (const listener of this.commitListeners) {
      try {
        listener(applied);
      } catch (error) {
        this.logger.error({ err: error }, "a commit listener failed; the commit itself stands");
      }
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
