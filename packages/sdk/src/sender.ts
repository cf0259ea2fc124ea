import { connect, type Socket } from "node:net";
import { adjacentRuns, FrameArena, frame, ReplyReader } from "./framing.js";
import { findAgentCommand, launchAgent } from "./launcher.js";
import type { Endpoint } from "./socketPath.js";
import { warnOnce } from "./warn.js";

/**
 * Delivers encoded batches to the agent, modelled on OpenTelemetry's batch span processor:
 * a queue bounded in bytes that drops the oldest batches and reports it once; one write per
 * flush and one export in flight, with a timeout; batches kept until the agent acknowledges
 * them and resent after a reconnect (the agent ignores a `batch_id` it already committed);
 * timers and the socket unref'd; errors never leave this class.
 *
 * A batch is framed into bytes (a `FrameArena` slice) when it is queued, so a flush only joins
 * ready bytes and writes them. Data is written only once the connection's hello frames are
 * answered: the `Status` answer tells which dialect the agent speaks, and `adapt` re-encodes a
 * batch encoded for another one (rare).
 */
export interface SenderOptions {
  endpoint: Endpoint;
  launch: boolean;
  agentCommand: string[] | undefined;
  maxQueueBytes: number;
  /** Frames sent first on every connection (none: batches go at once); their replies go to `onControlReply`. */
  hello: () => unknown[];
  onControlReply: (message: unknown, index: number) => void;
  /**
   * Called before a batch is written, with the dialect it was encoded for: returns its frame
   * bodies re-encoded for the agent's current dialect, or undefined to send it as it is.
   */
  adapt: (data: Buffer, dialect: string) => { bodies: string[]; dialect: string } | undefined;
  /** The dialect the agent speaks now: entries encoded for it are written as they are. */
  currentDialect: () => string;
  onDrop: ((report: DropReport) => void) | undefined;
  exportTimeoutMs?: number;
}

export interface DropReport {
  /** Batches dropped by this report's cycle (a batch is one request, or one window of a long one). */
  droppedBatches: number;
  droppedBytes: number;
  /** Batches dropped since the tracer was created. */
  totalDroppedBatches: number;
  reason: "queue_full" | "rejected";
}

export interface SenderStats {
  queuedBatches: number;
  queuedBytes: number;
  acknowledgedBatches: number;
  droppedBatches: number;
  connected: boolean;
}

interface Entry {
  /** The frames, length headers included (a slice of a `FrameArena` chunk). */
  data: Buffer;
  /** Their size on the wire: what the queue bound counts. */
  size: number;
  /** The dialect the frames were encoded for. */
  dialect: string;
  /** Replies the agent owes for this entry (a link frame and its batch count two). */
  replies: number;
  /** Replies still owed while it is in flight. */
  remaining: number;
  seq: number;
  attempts: number;
  failed: boolean;
}

type Inflight = Entry | { control: number };

/**
 * The queue's bytes as the few long buffers a flush writes, kept up to date as entries are
 * queued: a flush runs once a second, too rarely for its JavaScript to be optimized, so it
 * must not visit each of the thousands of entries a busy app queues in that time.
 */
interface QueueLayout {
  /** Adjacent runs of entries' bytes closed so far, in queue order. */
  runs: Buffer[];
  /** The run still growing: its first slice and where it ends in that slice's chunk. */
  open: Buffer | undefined;
  openEnd: number;
  /** The dialect every queued entry was encoded for; undefined while empty. */
  dialect: string | undefined;
}

const MAX_ATTEMPTS = 5;
const CONNECT_TIMEOUT_MS = 2000;
const MAX_BACKOFF_MS = 5000;

export class Sender {
  private queue: Entry[] = [];
  private inflight: Inflight[] = [];
  /** Undefined when the queue was reordered or has entries of several dialects: a flush then visits every entry. */
  private layout: QueueLayout | undefined = emptyLayout();
  private bytes = 0;
  private seq = 0;
  private socket: Socket | undefined;
  private state: "idle" | "connecting" | "connected" = "idle";
  private backoffMs = 0;
  private nextAttemptAt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private exportTimer: NodeJS.Timeout | undefined;
  private exportArmed = false;
  private waiters: { seq: number; resolve: (ok: boolean) => void }[] = [];
  /** Called once the hello frames of a connection are answered, or the connection attempt ends without one. */
  private helloWaiters: (() => void)[] = [];
  private acknowledged = 0;
  private dropped = 0;
  private cycleDropped = 0;
  private cycleDroppedBytes = 0;
  private dropReported = false;
  private lastLaunchAt = 0;
  private closed = false;
  /** Whether the current outage's drops happened while connected (the agent is slower than the app). */
  private cycleConnected = false;
  private readonly arena = new FrameArena();

  constructor(private readonly options: SenderOptions) {}

  /**
   * Adds one request's frames (bodies, encoded for `dialect`; `ascii` when all are ASCII) as one
   * entry, framed into bytes now; the oldest entries go when the queue is full.
   */
  enqueue(bodies: string[], ascii: boolean, dialect: string): void {
    if (this.closed || bodies.length === 0) return;
    this.enqueueFrames(this.arena.frames(bodies, ascii), bodies.length, dialect);
  }

  /** Adds one request's frames, already framed (`replies` frames in `data`), as one entry. */
  enqueueFrames(data: Buffer, replies: number, dialect: string): void {
    if (this.closed || replies === 0) return;
    const size = data.length;
    this.seq += 1;
    this.queue.push({ data, size, dialect, replies, remaining: replies, seq: this.seq, attempts: 0, failed: false });
    this.bytes += size;
    this.extendLayout(data, dialect);
    while (this.bytes > this.options.maxQueueBytes && this.queue.length > 0) {
      this.drop(this.queue.shift() as Entry);
      this.layout = undefined;
    }
  }

  private extendLayout(data: Buffer, dialect: string): void {
    const layout = this.layout;
    if (!layout) return;
    if (layout.dialect !== undefined && layout.dialect !== dialect) {
      this.layout = undefined;
      return;
    }
    layout.dialect = dialect;
    const open = layout.open;
    if (open && data.buffer === open.buffer && data.byteOffset === layout.openEnd) {
      layout.openEnd += data.length;
      return;
    }
    if (open) layout.runs.push(openRun(layout));
    layout.open = data;
    layout.openEnd = data.byteOffset + data.length;
  }

  /** Sends what is queued: writes now when connected and nothing is in flight, else connects. */
  kick(): void {
    if (this.closed && this.waiters.length === 0) return;
    this.reportDrops("queue_full");
    if (this.state === "connected") this.writeQueued();
    else if (this.queue.length > 0 || this.waiters.length > 0) this.connectSoon();
  }

  /** Resolves true once every entry queued so far is acknowledged; false on timeout, drop or no agent. */
  whenDelivered(timeoutMs: number): Promise<boolean> {
    const seq = this.seq;
    if (this.pendingMin() > seq) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        seq,
        resolve: (ok: boolean) => {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((other) => other !== waiter);
          resolve(ok);
        },
      };
      // Referenced on purpose: an awaited flush keeps the process alive until it is done (bounded).
      const timer = setTimeout(() => waiter.resolve(false), timeoutMs);
      this.waiters.push(waiter);
      this.kick();
    });
  }

  stats(): SenderStats {
    return {
      queuedBatches: this.queue.length + this.inflight.filter((item) => !("control" in item)).length,
      queuedBytes: this.bytes,
      acknowledgedBatches: this.acknowledged,
      droppedBatches: this.dropped,
      connected: this.state === "connected",
    };
  }

  /** Opens the connection (launching the agent if needed) before there is anything to send. */
  connectEarly(): void {
    this.connectSoon();
  }

  /** A connection is being opened, or its hello frames (Register, ApplicationEvent, Status) await replies. */
  get awaitingHello(): boolean {
    if (this.state === "connecting") return true;
    if (this.state !== "connected") return false;
    for (const item of this.inflight) if ("control" in item) return true;
    return false;
  }

  /** Resolves once the hello frames are answered, the connection attempt fails, or after `timeoutMs`. */
  whenHelloAnswered(timeoutMs: number): Promise<void> {
    if (!this.awaitingHello) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.helloWaiters = this.helloWaiters.filter((other) => other !== done);
        resolve();
      };
      // Referenced, like a flush's own wait, and bounded.
      const timer = setTimeout(done, timeoutMs);
      this.helloWaiters.push(done);
    });
  }

  private releaseHelloWaiters(): void {
    if (this.helloWaiters.length === 0 || this.awaitingHello) return;
    for (const done of [...this.helloWaiters]) done();
  }

  /** The sequence number of the newest entry. */
  get lastSeq(): number {
    return this.seq;
  }

  get hasPending(): boolean {
    return this.bytes > 0;
  }

  /** Stops sending: closes the connection once in-flight replies are in (or at once). Never stops the agent. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.stopExportTimer();
    for (const waiter of [...this.waiters]) waiter.resolve(false);
    const socket = this.socket;
    this.socket = undefined;
    this.state = "idle";
    this.releaseHelloWaiters();
    socket?.end();
  }

  private drop(entry: Entry): void {
    if (this.cycleDropped === 0) this.cycleConnected = this.state === "connected";
    this.bytes -= entry.size;
    this.dropped += 1;
    this.cycleDropped += 1;
    this.cycleDroppedBytes += entry.size;
  }

  /** One warning and one `onDrop` call per outage (re-armed once the agent acknowledges again). */
  private reportDrops(reason: DropReport["reason"]): void {
    if (this.cycleDropped === 0) return;
    const report: DropReport = {
      droppedBatches: this.cycleDropped,
      droppedBytes: this.cycleDroppedBytes,
      totalDroppedBatches: this.dropped,
      reason,
    };
    this.cycleDropped = 0;
    this.cycleDroppedBytes = 0;
    if (this.dropReported) return;
    this.dropReported = true;
    if (reason === "rejected")
      warnOnce(`drop-${this.dropped}`, `spanhub: the agent refused a batch ${MAX_ATTEMPTS} times; dropped it`);
    else if (this.cycleConnected)
      // Connected but slower than the app: acknowledgements re-arm the report all the time, so this warns once.
      warnOnce(
        "drop-slow",
        `spanhub: the SDK's queue is full (maxQueueBytes ${this.options.maxQueueBytes}): the agent is connected but acknowledges more slowly than the app records (an agent in the idle CPU class, its default, gets little CPU on a host whose cores are all busy: SPANHUB_NICE=10 or "spanhub agent --nice 10" keeps it a share); dropped ${report.droppedBatches} oldest batch(es); further drops are counted in tracer.stats().droppedBatches and reported through onDrop`,
      );
    else
      warnOnce(
        `drop-${this.dropped}`,
        `spanhub: the SDK's queue is full (maxQueueBytes ${this.options.maxQueueBytes}): the agent is unreachable; dropped ${report.droppedBatches} oldest batch(es); sending resumes when the agent answers`,
      );
    try {
      this.options.onDrop?.(report);
    } catch {
      // The application's callback must not break the sender.
    }
  }

  private pendingMin(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const entry of this.queue) if (entry.seq < min) min = entry.seq;
    for (const item of this.inflight) if (!("control" in item) && item.seq < min) min = item.seq;
    return min;
  }

  private settleWaiters(ok?: boolean): void {
    if (this.waiters.length === 0) return;
    const min = this.pendingMin();
    for (const waiter of [...this.waiters]) {
      if (waiter.seq < min) waiter.resolve(true);
      else if (ok === false) waiter.resolve(false);
    }
  }

  private dataInflight(): boolean {
    for (const item of this.inflight) if (!("control" in item)) return true;
    return false;
  }

  /**
   * All queued entries in one socket write, when no earlier write awaits its replies and the
   * hello frames are answered (so the entries are in the agent's dialect). The entries are
   * already framed, mostly side by side in a few large buffers: their slices are joined where
   * adjacent (no copy) and handed over corked, so the socket writes them with one `writev`
   * instead of copying megabytes into one buffer first (a long event-loop tick).
   */
  private writeQueued(): void {
    const socket = this.socket;
    if (!socket || this.queue.length === 0 || this.inflight.length > 0) return;
    const entries = this.queue;
    const layout = this.layout;
    this.queue = [];
    this.layout = emptyLayout();
    let runs: Buffer[];
    if (layout?.open && layout.dialect === this.options.currentDialect()) runs = [...layout.runs, openRun(layout)];
    else {
      for (const entry of entries) this.adapt(entry);
      runs = adjacentRuns(entries.map((entry) => entry.data));
    }
    this.inflight = entries;
    this.armExportTimer();
    socket.cork();
    for (const run of runs) socket.write(run);
    socket.uncork();
  }

  /** Re-encodes an entry for the agent's dialect when it was encoded for another one. */
  private adapt(entry: Entry): void {
    try {
      const adapted = this.options.adapt(entry.data, entry.dialect);
      if (!adapted) return;
      const data = this.arena.frames(adapted.bodies, false);
      this.bytes += data.length - entry.size;
      entry.data = data;
      entry.size = data.length;
      entry.dialect = adapted.dialect;
      entry.replies = adapted.bodies.length;
    } catch {
      // Sent as it is.
    }
  }

  /** (Re)starts the reply timeout: refreshed, not recreated, while replies keep coming. */
  private armExportTimer(): void {
    if (this.exportTimer && this.exportArmed) {
      this.exportTimer.refresh();
      return;
    }
    this.exportArmed = true;
    this.exportTimer = setTimeout(() => {
      this.exportArmed = false;
      // No reply in time: drop the connection; the entries are resent on the next one.
      if (this.inflight.length > 0) this.socket?.destroy();
    }, this.options.exportTimeoutMs ?? 10_000);
    this.exportTimer.unref();
  }

  private stopExportTimer(): void {
    clearTimeout(this.exportTimer);
    this.exportArmed = false;
  }

  private connectSoon(): void {
    if (this.state !== "idle" || this.closed) return;
    const wait = this.nextAttemptAt - Date.now();
    if (wait > 0) {
      if (!this.retryTimer) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.kick();
        }, wait);
        this.retryTimer.unref();
      }
      // Nothing can arrive before then: a flush waiting on it gives up now.
      if (!this.options.launch || this.options.endpoint.kind !== "unix") this.settleWaiters(false);
      return;
    }
    this.state = "connecting";
    void this.connectOrLaunch();
  }

  private async connectOrLaunch(): Promise<void> {
    let socket: Socket | undefined;
    try {
      socket = await tryConnect(this.options.endpoint);
      const { endpoint } = this.options;
      if (!socket && this.options.launch && endpoint.kind === "unix" && Date.now() - this.lastLaunchAt > 1000) {
        this.lastLaunchAt = Date.now();
        const command = findAgentCommand(this.options.agentCommand);
        const result = await launchAgent(endpoint.path, command, () => tryConnect(endpoint, 500));
        socket = result.value;
        this.lastLaunchAt = Date.now();
        if (result.problem)
          warnOnce(
            "launch",
            `spanhub: cannot start the agent (${result.problem}); install the \`spanhub\` package, put \`spanhub\` on PATH, set SPANHUB_AGENT_BIN or pass agentCommand; batches wait in memory (maxQueueBytes) meanwhile`,
          );
      }
    } catch {
      socket = undefined;
    }
    if (this.closed && this.waiters.length === 0) {
      socket?.destroy();
      this.state = "idle";
      this.releaseHelloWaiters();
      return;
    }
    if (!socket) {
      this.state = "idle";
      this.releaseHelloWaiters();
      this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs === 0 ? 100 : this.backoffMs * 2);
      this.nextAttemptAt = Date.now() + this.backoffMs;
      this.settleWaiters(false);
      if (this.queue.length > 0) this.connectSoon();
      return;
    }
    this.attach(socket);
  }

  private attach(socket: Socket): void {
    this.socket = socket;
    this.state = "connected";
    this.backoffMs = 0;
    this.nextAttemptAt = 0;
    socket.unref();
    socket.setNoDelay(true);
    const reader = new ReplyReader();
    socket.on("data", (chunk: Buffer) => {
      for (const message of reader.push(chunk)) this.onReply(message);
    });
    socket.on("error", () => {});
    socket.once("close", () => this.onClose(socket));
    // Resent and queued batches follow once the hello frames are answered (see onReply).
    const hello = this.options.hello().map((message) => frame(JSON.stringify(message)));
    // A writer with nothing to negotiate (spanhub run) sends its batches at once.
    if (hello.length === 0) {
      this.writeQueued();
      return;
    }
    hello.forEach((_, index) => {
      this.inflight.push({ control: index });
    });
    // Unanswered hello frames drop the connection like unanswered batches.
    this.armExportTimer();
    socket.write(Buffer.concat(hello));
  }

  private onReply(message: unknown): void {
    const item = this.inflight[0];
    if (!item) return;
    if ("control" in item) {
      this.inflight.shift();
      try {
        this.options.onControlReply(message, item.control);
      } catch {
        // Never let a reply break the connection.
      }
      if (this.inflight.length === 0) {
        this.stopExportTimer();
        this.writeQueued();
      }
      this.releaseHelloWaiters();
      return;
    }
    const entry = item;
    const failed = typeof message !== "object" || message === null || "Failure" in message;
    if (failed) entry.failed = true;
    entry.remaining -= 1;
    if (entry.remaining > 0) return;
    this.inflight.shift();
    this.armExportTimer();
    if (entry.failed) {
      entry.failed = false;
      entry.attempts += 1;
      if (entry.attempts >= MAX_ATTEMPTS) {
        this.drop(entry);
        this.reportDrops("rejected");
      } else this.requeue([entry], "last");
    } else {
      this.bytes -= entry.size;
      this.acknowledged += 1;
      this.dropReported = false;
    }
    if (!this.dataInflight()) {
      this.stopExportTimer();
      this.settleWaiters();
      if (this.waiters.length > 0) this.writeQueued();
    }
  }

  /** Puts entries back to be sent again, owing all their replies; the queue's layout no longer holds. */
  private requeue(entries: Entry[], where: "first" | "last"): void {
    if (entries.length === 0) return;
    for (const entry of entries) entry.remaining = entry.replies;
    this.queue = where === "first" ? [...entries, ...this.queue] : [...this.queue, ...entries];
    this.layout = undefined;
  }

  private onClose(socket: Socket): void {
    if (this.socket === socket) {
      this.socket = undefined;
      this.state = "idle";
    }
    this.stopExportTimer();
    const unacknowledged: Entry[] = [];
    for (const item of this.inflight) if (!("control" in item)) unacknowledged.push(item);
    this.inflight = [];
    this.releaseHelloWaiters();
    this.requeue(unacknowledged, "first");
    if (this.closed) return;
    // Reconnect at once when there is something to send; else on the next flush.
    if (this.queue.length > 0 || this.waiters.length > 0) this.connectSoon();
  }
}

function emptyLayout(): QueueLayout {
  return { runs: [], open: undefined, openEnd: 0, dialect: undefined };
}

/** The layout's open run as one buffer over its chunk. */
function openRun(layout: QueueLayout): Buffer {
  const open = layout.open as Buffer;
  return Buffer.from(open.buffer, open.byteOffset, layout.openEnd - open.byteOffset);
}

/** A connected socket, or undefined when nothing answers in time. */
export function tryConnect(endpoint: Endpoint, timeoutMs = CONNECT_TIMEOUT_MS): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const socket =
      endpoint.kind === "unix" ? connect(endpoint.path) : connect({ host: endpoint.host, port: endpoint.port });
    socket.unref();
    const timer = setTimeout(() => done(false), timeoutMs);
    timer.unref();
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.removeAllListeners("connect");
      socket.removeAllListeners("error");
      if (ok) resolve(socket);
      else {
        socket.destroy();
        resolve(undefined);
      }
    };
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}
