import { Sender } from "@spanhub/sdk/sender";

export interface ForwarderOptions {
  /** The agent's Unix socket. */
  socket: string;
  /** How to start the agent when none answers (`launchAgent` of the SDK adds `agent --daemonize --socket P`). */
  agentCommand: string[];
  /** Batch ids are this prefix and a counter: unique per run. */
  batchPrefix: string;
  /** A batch is cut at this many events, */
  maxBatchEvents?: number;
  /** or bytes of events, */
  maxBatchBytes?: number;
  /** or this long after its first event. */
  lingerMs?: number;
  /** Above this many bytes waiting for the agent, `congested` is true (readers pause). */
  highWaterBytes?: number;
  /** Where problems are reported, one line each. */
  warn: (message: string) => void;
}

/** Far above `highWaterBytes`: the Sender drops batches only past this bound, which readers never reach. */
const MAX_QUEUE_BYTES = 1024 * 1024 * 1024;

/**
 * Forwards JSON-lines events to the host's agent in `Events` frames, through the SDK's Sender:
 * batches cut by count, bytes or a few milliseconds, one export in flight, each batch kept until
 * the agent acknowledges it and resent with its `batch_id` after a reconnect (the agent applies a
 * batch id once), so an agent restart loses and doubles nothing. The agent is launched, as the
 * Node SDK does it, when none answers.
 */
export class EventForwarder {
  private readonly sender: Sender;
  private pending: string[] = [];
  private pendingBytes = 0;
  private batches = 0;
  private timer: NodeJS.Timeout | undefined;
  private relievedWaiters: (() => void)[] = [];
  private readonly maxBatchEvents: number;
  private readonly maxBatchBytes: number;
  private readonly lingerMs: number;
  private readonly highWaterBytes: number;

  constructor(private readonly options: ForwarderOptions) {
    this.maxBatchEvents = options.maxBatchEvents ?? 2000;
    this.maxBatchBytes = options.maxBatchBytes ?? 1024 * 1024;
    this.lingerMs = options.lingerMs ?? 5;
    this.highWaterBytes = options.highWaterBytes ?? 64 * 1024 * 1024;
    this.sender = new Sender({
      endpoint: { kind: "unix", path: options.socket },
      launch: true,
      agentCommand: options.agentCommand,
      maxQueueBytes: MAX_QUEUE_BYTES,
      hello: () => [],
      onControlReply: () => {},
      adapt: () => undefined,
      currentDialect: () => "events",
      onDrop: (report) =>
        options.warn(
          `${report.droppedBatches} batch(es) of events were ${report.reason === "rejected" ? "refused by the agent" : "dropped"}; they are lost`,
        ),
    });
    this.sender.connectEarly();
  }

  /** Queues one event (a JSON-lines object with its `run_id`). */
  send(event: Record<string, unknown>): void {
    this.sendJson(JSON.stringify(event));
  }

  /** Queues one event given as JSON text. */
  sendJson(json: string): void {
    this.pending.push(json);
    this.pendingBytes += json.length;
    if (this.pending.length >= this.maxBatchEvents || this.pendingBytes >= this.maxBatchBytes) this.cut();
    this.schedule();
  }

  /** Too much waits for the agent: readers should pause until `whenRelieved`. */
  get congested(): boolean {
    return this.pendingBytes + this.sender.stats().queuedBytes > this.highWaterBytes;
  }

  whenRelieved(): Promise<void> {
    if (!this.congested) return Promise.resolve();
    return new Promise((resolve) => this.relievedWaiters.push(resolve));
  }

  /** Sends everything queued; true once the agent acknowledged all of it, false after `timeoutMs`. */
  flush(timeoutMs: number): Promise<boolean> {
    this.cut();
    return this.sender.whenDelivered(timeoutMs);
  }

  /** Batches not yet acknowledged by the agent. */
  get unacknowledgedBatches(): number {
    return this.sender.stats().queuedBatches + (this.pending.length > 0 ? 1 : 0);
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.sender.close();
  }

  private cut(): void {
    if (this.pending.length === 0) return;
    this.batches += 1;
    const batchId = JSON.stringify(`${this.options.batchPrefix}-${this.batches}`);
    const body = `{"Events":{"batch_id":${batchId},"events":[${this.pending.join(",")}]}}`;
    this.pending = [];
    this.pendingBytes = 0;
    this.sender.enqueue([body], false, "events");
    this.sender.kick();
  }

  /**
   * One timer while anything waits: it cuts the open batch after `lingerMs` and kicks the Sender,
   * which writes what queued up behind an export in flight only when kicked.
   */
  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.cut();
      this.sender.kick();
      if (!this.congested) for (const resolve of this.relievedWaiters.splice(0)) resolve();
      if (this.pending.length > 0 || this.sender.hasPending) this.schedule();
    }, this.lingerMs);
    this.timer.unref();
  }
}
