import type { FastifyReply, FastifyRequest } from "fastify";
import type { Store } from "../store/store.js";

/** A comment line this often keeps proxies and browsers from closing a quiet stream. */
const HEARTBEAT_MS = 15_000;

/** One Server-Sent Events response. */
export class EventStream {
  private readonly heartbeat: NodeJS.Timeout;
  private readonly closeListeners: (() => void)[] = [];
  closed = false;

  constructor(
    request: FastifyRequest,
    private readonly reply: FastifyReply,
  ) {
    reply.hijack();
    reply.raw.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
      connection: "keep-alive",
    });
    reply.raw.write(": spanhub\n\n");
    this.heartbeat = setInterval(() => reply.raw.write(": ping\n\n"), HEARTBEAT_MS);
    request.raw.once("close", () => this.close());
  }

  /** Sends one event; `id` becomes the browser's `Last-Event-ID` when it reconnects. */
  send(event: string, data: unknown, id?: number | string): void {
    if (this.closed) return;
    this.reply.raw.write(`event: ${event}\n${id === undefined ? "" : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`);
  }

  onClose(listener: () => void): void {
    this.closeListeners.push(listener);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    this.reply.raw.end();
    for (const listener of this.closeListeners.splice(0)) listener();
  }
}

/**
 * Tells subscribers when any process committed to the store. One poll of the store's
 * change token serves every open stream, and it polls only while some stream is open.
 */
export class ChangeFeed {
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private token: string | undefined;

  constructor(
    private readonly store: Store,
    private readonly intervalMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** Calls `listener` after each change until the returned function is called. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    if (!this.timer) this.timer = setInterval(() => this.poll().catch(this.onError), this.intervalMs);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
        this.token = undefined;
      }
    };
  }

  private async poll(): Promise<void> {
    const token = await this.store.changeToken();
    // The first poll after a (re)start wakes everyone: a commit may have landed since they last read.
    const changed = token !== this.token;
    this.token = token;
    if (changed) for (const listener of this.listeners) listener();
  }
}

/**
 * Runs `task` now and after every change, never two at once: changes that arrive while it
 * runs cause one more run. Failures end the stream.
 */
export function followChanges(
  stream: EventStream,
  feed: ChangeFeed,
  task: () => Promise<void>,
  onError: (error: unknown) => void,
): void {
  let running = false;
  let again = false;
  const step = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        if (!stream.closed) await task();
      } while (again && !stream.closed);
    } catch (error) {
      onError(error);
      stream.close();
    } finally {
      running = false;
    }
  };
  stream.onClose(feed.subscribe(() => void step()));
  void step();
}
