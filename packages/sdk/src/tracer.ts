import { AsyncLocalStorage } from "node:async_hooks";
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import { encodeRequest, encodeRequestFrame, translateBodies } from "./encode.js";
import { FrameWriter, splitFrames } from "./framing.js";
import { newRunId } from "./ids.js";
import {
  type Dialect,
  type EndOptions,
  NOOP_SPAN,
  RequestRecord,
  type Span,
  type SpanOptions,
  SpanRecord,
} from "./records.js";
import { type DropReport, Sender, type SenderStats } from "./sender.js";
import { defaultSocket, parseEndpoint } from "./socketPath.js";
import { isoMicros, nowMs, reanchor } from "./time.js";
import { formatTraceparent, type Parent, parseTraceparent, readHeader, writeHeader } from "./traceparent.js";
import { compareVersions, MIN_AGENT_VERSION, SDK_NAME, SDK_VERSION } from "./version.js";
import { warnOnce } from "./warn.js";

export interface TracerOptions {
  /** The application's name, shown on every run. */
  app: string;
  /** A Unix socket path or `tcp://host:port`; default `$SPANHUB_SOCKET`, else the per-user default. */
  socket?: string;
  /** Start an agent when none answers (Unix sockets only). Default true. */
  launch?: boolean;
  /** How often finished requests (and a window of long ones) are sent. Default 1000. */
  flushIntervalMs?: number;
  /** Memory for batches not yet acknowledged; past it the oldest are dropped. Default 8 MiB. */
  maxQueueBytes?: number;
  /** Spans recorded per request; further spans are counted, not kept. Default 10000. */
  maxSpansPerRequest?: number;
  /** Called once per outage when batches are dropped. */
  onDrop?: (report: DropReport) => void;
  /** The argv that runs the `spanhub` CLI, e.g. `["/usr/local/bin/spanhub"]`. See the README. */
  agentCommand?: string[];
}

export interface RequestOptions {
  /** Request (run) tags. */
  tags?: Record<string, unknown>;
  /** Incoming headers: a W3C `traceparent` makes this run a child of the caller's span. */
  headers?: unknown;
}

export interface StartSpanOptions extends SpanOptions {
  /** The parent span; default the request's root span; `null` for a top-level span. */
  parent?: Span | null;
}

/** A request started with `startRequest`, for code that cannot wrap a callback. */
export interface RequestHandle {
  /** The run id (32 hex digits), or "" when not recorded. */
  readonly id: string;
  /** The request's root span, named like the request. */
  readonly root: Span;
  tag(key: string, value: unknown): RequestHandle;
  startSpan(name: string, options?: StartSpanOptions): Span;
  end(options?: EndOptions): void;
}

export interface TracerStats extends SenderStats {
  openRequests: number;
}

/** spanhub's extension for smaller batches, offered in `Register` (docs/protocol.md). */
const COMPACT_BATCH = "compact_batch";
const DEFAULTS = { flushIntervalMs: 1000, maxQueueBytes: 8 * 1024 * 1024, maxSpansPerRequest: 10_000 };
const FLUSH_TIMEOUT_MS = 10_000;
/** The longest stretch of encoding finished requests between two event-loop turns. */
const ENCODE_SLICE_MS = 0.05;
/**
 * Spans of finished requests past which they are encoded at once instead of in slices: a turn that
 * ends this many is long anyway, and records encoded while still in cache cost a third less.
 */
const MAX_ENDED_SPANS = 256;
/** How long a flush waits for a new connection's `Status` answer, so it encodes for the right agent. */
const HELLO_WAIT_MS = 3000;

export function createTracer(options: TracerOptions): Tracer {
  return new Tracer(options);
}

export class Tracer {
  private readonly context = new AsyncLocalStorage<SpanRecord>();
  private readonly app: string;
  private readonly interval: number;
  private readonly maxSpans: number;
  private readonly sender: Sender;
  private readonly timer: NodeJS.Timeout;
  private open = new Set<RequestRecord>();
  /** Writes batches for spanhub 0.2.0+ agents straight into frame bytes. */
  private readonly writer = new FrameWriter();
  private closed = false;
  private shutdownPromise: Promise<void> | undefined;
  private exitFlushSeq = -1;
  /**
   * What the agent understands, from its answers to `Register` and `Status` on the latest
   * connection. Until they arrive, batches are encoded for the newest agent (`compact`); the
   * sender writes nothing before the answers, and re-encodes a batch for an older agent
   * (`adapt`) when it turns out to be one.
   */
  private dialect: Dialect = "compact";
  private dialectKnown = false;
  /** Whether the latest connection's agent accepted the `compact_batch` extension in its `Register` reply. */
  private compactAccepted = false;
  /**
   * Finished requests not yet encoded. They are encoded soon after the application's turn, in
   * slices of at most ENCODE_SLICE_MS between which timers and I/O run, so a burst of requests
   * does not stall the event loop for its whole encoding; a flush only writes.
   */
  private ended: RequestRecord[] = [];
  private endedHead = 0;
  private endedSpans = 0;
  private encodeScheduled = false;
  private readonly endRequest = (request: RequestRecord) => {
    this.open.delete(request);
    this.ended.push(request);
    this.endedSpans += request.spans.length;
    // A backlog the slices cannot keep up with (an app that rarely yields) is encoded at once.
    if (this.endedSpans >= MAX_ENDED_SPANS) this.encodeEnded(Number.POSITIVE_INFINITY);
    else if (!this.encodeScheduled) {
      this.encodeScheduled = true;
      setImmediate(this.nextTurnSlice);
    }
  };
  /** The first slice waits a whole turn, so timers and I/O due during the app's burst go first. */
  private readonly nextTurnSlice = () => setImmediate(this.encodeSlice);
  private readonly encodeSlice = () => {
    this.encodeScheduled = false;
    this.encodeEnded(performance.now() + ENCODE_SLICE_MS);
    if (this.endedHead < this.ended.length && !this.encodeScheduled) {
      this.encodeScheduled = true;
      setImmediate(this.encodeSlice);
    }
  };
  private readonly onBeforeExit = () => this.flushBeforeExit();

  constructor(options: TracerOptions) {
    this.app = typeof options?.app === "string" && options.app !== "" ? options.app : "unknown";
    this.interval = positive(options?.flushIntervalMs, DEFAULTS.flushIntervalMs);
    this.maxSpans = positive(options?.maxSpansPerRequest, DEFAULTS.maxSpansPerRequest);
    const socket = options?.socket || defaultSocket();
    this.sender = new Sender({
      endpoint: parseEndpoint(socket),
      launch: options?.launch !== false,
      agentCommand: options?.agentCommand,
      maxQueueBytes: positive(options?.maxQueueBytes, DEFAULTS.maxQueueBytes),
      onDrop: options?.onDrop,
      hello: () => this.hello(),
      onControlReply: (message, index) => this.onControlReply(socket, message, index),
      adapt: (data, dialect) => this.adapt(data, dialect as Dialect),
      currentDialect: () => this.dialect,
    });
    this.timer = setInterval(() => this.tick(), this.interval);
    this.timer.unref();
    process.on("beforeExit", this.onBeforeExit);
    // Connect (and launch the agent if needed) now, so it is ready by the first flush.
    this.sender.connectEarly();
  }

  /** Runs `fn` as a request (a spanhub run) with a root span; resolves or throws as `fn` does. */
  request<T>(name: string, fn: (span: Span) => T, options?: RequestOptions): T {
    let request: RequestRecord;
    try {
      request = this.newRequest(name, options);
    } catch {
      return fn(NOOP_SPAN);
    }
    return this.run(request.root, fn, request);
  }

  /** Runs `fn` as a child of the current span; outside a request it just runs `fn`. */
  span<T>(name: string, fn: (span: Span) => T, options?: SpanOptions): T {
    return this.childSpan(name, fn, options, undefined);
  }

  private childSpan<T>(
    name: string,
    fn: (span: Span) => T,
    options: SpanOptions | undefined,
    rpc: { service: string; method: string } | undefined,
  ): T {
    const parent = this.context.getStore();
    if (!parent || this.closed) return fn(NOOP_SPAN);
    let span: SpanRecord | undefined;
    try {
      span = parent.request.startSpan(name, parent, options, rpc);
    } catch {
      span = undefined;
    }
    if (!span) return fn(NOOP_SPAN);
    return this.run(span, fn, undefined);
  }

  /**
   * A proxy whose public method calls are spans named `service.method`, of kind `rpc` with
   * `rpc_service` and `rpc_method` (tags for agents before 0.2.0); a returned promise ends the span when it settles. Members starting with `_`,
   * non-functions, `then` and `constructor` pass through.
   */
  instrument<T extends object>(target: T, service: string): T {
    const wrappers = new Map<string, { original: unknown; wrapped: unknown }>();
    const tracer = this;
    const proxy: T = new Proxy(target, {
      get(object, property) {
        const value = Reflect.get(object, property, object) as unknown;
        if (
          typeof property !== "string" ||
          typeof value !== "function" ||
          property.startsWith("_") ||
          property === "then" ||
          property === "constructor" ||
          value === (Object.prototype as Record<string, unknown>)[property]
        )
          return value;
        const cached = wrappers.get(property);
        if (cached && cached.original === value) return cached.wrapped;
        const method = value as (...args: unknown[]) => unknown;
        const name = `${service}.${property}`;
        const rpc = { service: String(service), method: property };
        const wrapped = function (this: unknown, ...args: unknown[]) {
          const self = this === proxy || this === undefined ? object : this;
          return tracer.childSpan(name, () => method.apply(self, args), undefined, rpc);
        };
        wrappers.set(property, { original: value, wrapped });
        return wrapped;
      },
    });
    return proxy;
  }

  /** The span the calling code runs in (through async context), if any. */
  currentSpan(): Span | undefined {
    return this.context.getStore();
  }

  /** Writes a W3C `traceparent` for the current span into `headers` (an object or `Headers`) and returns it. */
  inject<H>(headers: H): H {
    try {
      const span = this.context.getStore();
      if (span) writeHeader(headers, "traceparent", formatTraceparent(span.runId, span.id));
    } catch {
      // Headers that refuse writes are left as they are.
    }
    return headers;
  }

  /** Starts a request by hand; end it with `end()`. Its spans do not enter async context. */
  startRequest(name: string, options?: RequestOptions): RequestHandle {
    try {
      return new ManualRequest(this.newRequest(name, options));
    } catch {
      return NOOP_REQUEST;
    }
  }

  /** Sends what has finished (and the current window of long requests); true once the agent acknowledged all of it. */
  flush(): Promise<boolean> {
    if (this.closed) return this.shutdownPromise?.then(() => !this.sender.hasPending) ?? Promise.resolve(false);
    // A connection that is still being set up tells us in a moment what the agent understands.
    if (!this.dialectKnown && this.sender.awaitingHello)
      return this.sender.whenHelloAnswered(HELLO_WAIT_MS).then(() => this.flushNow());
    return this.flushNow();
  }

  private flushNow(): Promise<boolean> {
    if (this.closed) return this.shutdownPromise?.then(() => !this.sender.hasPending) ?? Promise.resolve(false);
    try {
      this.collect(false);
      return this.sender.whenDelivered(FLUSH_TIMEOUT_MS);
    } catch {
      return Promise.resolve(false);
    }
  }

  /** Flushes everything, including open requests so far, and closes the connection. Never stops the agent. */
  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      this.closed = true;
      clearInterval(this.timer);
      process.removeListener("beforeExit", this.onBeforeExit);
      try {
        if (!this.dialectKnown && this.sender.awaitingHello) await this.sender.whenHelloAnswered(HELLO_WAIT_MS);
        this.collect(true);
        await this.sender.whenDelivered(FLUSH_TIMEOUT_MS);
      } catch {
        // Shutdown never fails.
      }
      this.sender.close();
    })();
    return this.shutdownPromise;
  }

  stats(): TracerStats {
    return { ...this.sender.stats(), openRequests: this.open.size };
  }

  private newRequest(name: string, options: RequestOptions | undefined): RequestRecord {
    if (this.closed) throw new Error("shut down");
    const parent: Parent | undefined =
      parseTraceparent(readHeader(options?.headers, "traceparent")) ?? this.currentParent();
    const request = new RequestRecord(
      newRunId(),
      typeof name === "string" ? name : String(name),
      this.maxSpans,
      parent,
      this.endRequest,
    );
    const tags = options?.tags;
    if (tags) for (const key of Object.keys(tags)) request.tag(key, tags[key]);
    this.open.add(request);
    return request;
  }

  /** A request started inside another one's span is linked to it. */
  private currentParent(): Parent | undefined {
    const span = this.context.getStore();
    return span ? { runId: span.runId, spanId: span.id } : undefined;
  }

  /**
   * Runs `fn` in `span`'s context and ends the span (and `request`, whose root it is) once `fn`
   * settles. No closure on the synchronous path: this runs for every span.
   */
  private run<T>(span: SpanRecord, fn: (span: Span) => T, request: RequestRecord | undefined): T {
    let result: T;
    try {
      result = this.context.run(span, fn, span);
    } catch (error) {
      settle(span, request, error ?? new Error(String(error)));
      throw error;
    }
    if (isThenable(result)) {
      return result.then(
        (value) => {
          settle(span, request, undefined);
          return value;
        },
        (error: unknown) => {
          settle(span, request, error ?? new Error(String(error)));
          throw error;
        },
      ) as T;
    }
    settle(span, request, undefined);
    return result;
  }

  private tick(): void {
    try {
      reanchor();
      this.collect(false);
    } catch {
      // A failed tick loses nothing that the next one cannot send.
    }
  }

  /**
   * Cuts a window of long requests into the sender's queue (finished requests are there already,
   * encoded when they ended), then sends: one socket write of ready bytes.
   */
  private collect(all: boolean): void {
    this.encodeEnded(Number.POSITIVE_INFINITY);
    const now = nowMs();
    for (const request of this.open) if (all || now - request.lastSentMs >= this.interval) this.send(request, now);
    this.sender.kick();
  }

  /** Encodes finished requests into the sender's queue, in end order, until `deadline` (a `performance.now()`). */
  private encodeEnded(deadline: number): void {
    const ended = this.ended;
    while (this.endedHead < ended.length) {
      const request = ended[this.endedHead] as RequestRecord;
      ended[this.endedHead++] = undefined as unknown as RequestRecord;
      this.endedSpans -= request.spans.length;
      try {
        this.send(request, request.endMs as number);
      } catch {
        // Recording problems never reach the application.
      }
      if (performance.now() >= deadline) break;
    }
    if (this.endedHead === ended.length) {
      ended.length = 0;
      this.endedHead = 0;
    }
  }

  /** Encodes what `request` has not sent yet as one batch and queues it. */
  private send(request: RequestRecord, now: number): void {
    const dialect = this.dialect;
    if (dialect === "compact") {
      const data = encodeRequestFrame(request, now, this.writer);
      if (data) this.sender.enqueueFrames(data, 1, dialect);
      return;
    }
    const batch = encodeRequest(request, this.app, now, dialect);
    if (batch) this.sender.enqueue(batch.bodies, batch.ascii, dialect);
  }

  /** A batch encoded for another dialect than the agent's, re-encoded (rare: the agent changed). */
  private adapt(data: Buffer, dialect: Dialect): { bodies: string[]; dialect: Dialect } | undefined {
    const target = this.dialect;
    if (dialect === target) return undefined;
    const bodies = splitFrames(data);
    const translated = translateBodies(bodies, dialect, target, this.app);
    return translated === bodies ? undefined : { bodies: translated, dialect: target };
  }

  /** The tail, when the event loop runs dry: one bounded attempt per new batch (the timer keeps the process up). */
  private flushBeforeExit(): void {
    if (this.closed) return;
    try {
      this.collect(true);
      const seq = this.sender.lastSeq;
      if (!this.sender.hasPending || seq === this.exitFlushSeq) return;
      this.exitFlushSeq = seq;
      void this.sender.whenDelivered(FLUSH_TIMEOUT_MS);
    } catch {
      // Exiting anyway.
    }
  }

  private hello(): unknown[] {
    return [
      {
        Register: {
          app: this.app,
          key: "",
          api_version: "1.0",
          language: "nodejs",
          language_version: process.versions.node,
          host: hostname(),
          sdk: SDK_NAME,
          sdk_version: SDK_VERSION,
          extensions: [COMPACT_BATCH],
        },
      },
      {
        ApplicationEvent: {
          event_type: "scout.metadata",
          event_value: {
            language: "nodejs",
            language_version: process.versions.node,
            sdk: SDK_NAME,
            sdk_version: SDK_VERSION,
            pid: process.pid,
          },
          source: `Pid: ${process.pid}`,
          timestamp: isoMicros(nowMs()),
        },
      },
      { Status: {} },
    ];
  }

  /** The `Register` and `Status` answers (the first and third hello frames) decide what this SDK sends to the agent. */
  private onControlReply(socket: string, message: unknown, index: number): void {
    if (index === 0) {
      const extensions = (message as { Register?: { extensions?: unknown } } | undefined)?.Register?.extensions;
      this.compactAccepted = Array.isArray(extensions) && extensions.includes(COMPACT_BATCH);
    }
    if (index !== 2) return;
    const status = (message as { Status?: { version?: unknown } } | undefined)?.Status;
    const version = typeof status?.version === "string" ? status.version : undefined;
    this.dialectKnown = true;
    if (version === undefined) {
      this.dialect = "scout";
      warnOnce(
        "agent-kind",
        `spanhub: the agent on ${socket} does not answer Status, so it is not spanhub's agent; ${SDK_NAME} sends it plain Scout commands (no logs with their times, statuses or parent links as fields) and it may apply a batch twice after a reconnect`,
      );
    } else if (compareVersions(version, MIN_AGENT_VERSION) < 0) {
      this.dialect = "spanhub";
      warnOnce(
        "agent-version",
        `spanhub: the agent on ${socket} is version ${version}; ${SDK_NAME} ${SDK_VERSION} needs ${MIN_AGENT_VERSION} or newer for spanhub's extensions to Scout commands and sends plain Scout commands meanwhile: upgrade spanhub`,
      );
    } else this.dialect = this.compactAccepted ? "compact" : "extended";
  }
}

class ManualRequest implements RequestHandle {
  constructor(private readonly record: RequestRecord) {}

  get id(): string {
    return this.record.id;
  }

  get root(): Span {
    return this.record.root;
  }

  tag(key: string, value: unknown): RequestHandle {
    this.record.tag(key, value);
    return this;
  }

  startSpan(name: string, options?: StartSpanOptions): Span {
    try {
      const given = options?.parent;
      const parent =
        given === null ? null : given instanceof SpanRecord && given.request === this.record ? given : this.record.root;
      return this.record.startSpan(name, parent, options) ?? NOOP_SPAN;
    } catch {
      return NOOP_SPAN;
    }
  }

  end(options?: EndOptions): void {
    try {
      this.record.end(options);
    } catch {
      // Never throws.
    }
  }
}

const NOOP_REQUEST: RequestHandle = Object.freeze({
  id: "",
  root: NOOP_SPAN,
  tag() {
    return NOOP_REQUEST;
  },
  startSpan() {
    return NOOP_SPAN;
  },
  end() {},
});

/** Ends `span` (and `request`, when the span is its root), failed when `error` is given. */
function settle(span: SpanRecord, request: RequestRecord | undefined, error: unknown): void {
  try {
    if (error === undefined) {
      if (request) request.end();
      else span.end();
    } else {
      span.end({ error });
      request?.end({ error });
    }
  } catch {
    // Recording problems never reach the application.
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

function positive(value: number | undefined, fallback: number): number {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : fallback;
}
