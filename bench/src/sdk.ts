import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { context, type Tracer as OtelTracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { createTracer, type Span, type Tracer } from "@spanhub/sdk";
import { withAgent } from "./agentProcess.js";
import { killOnExit, removeOnExit } from "./cleanup.js";
import { type BenchResult, type Cell, formatCount, formatMs, formatPercent, quantile } from "./table.js";

/**
 * SDK: what `@spanhub/sdk` costs the application, against OpenTelemetry doing the same spans.
 *
 * 1. Per-span cost, in this process: requests of 10 spans (a root and 9 children, nested through
 *    async context) with 10 tags each, timed from the first span's start until the flush has handed
 *    the encoded frames to the socket (encoding included). The tracer talks to a sink in a child
 *    process (its CPU is not counted) that answers every frame with Success. Baselines in the same
 *    run, rounds interleaved: `@opentelemetry/sdk-trace-base` (BasicTracerProvider, async-hooks
 *    context manager, BatchSpanProcessor) into an exporter that discards, until `forceFlush`
 *    resolves; and the same with the exporter serializing OTLP protobuf (`ProtobufTraceSerializer`),
 *    since spanhub encodes too.
 * 2. Requests/s an app process (a child) sustains through a real `spanhub agent`, counted in its store.
 * 3. The app's event-loop delay at ~10k spans/s through the real agent, and into the sink, against
 *    the same app with tracing off, and traced by OpenTelemetry as it is usually deployed (default
 *    BatchSpanProcessor, OTLP/HTTP protobuf exporter) into an HTTP sink that answers every export,
 *    and with tracing off but a few µs more work per request (`spin`): how the measure itself moves
 *    with the app's own turn.
 *
 * Environment: BENCH_SDK_ROUNDS (default 20), BENCH_SDK_REQUESTS (requests per round, default 1000),
 * BENCH_SECONDS (seconds per agent measurement, default 5), BENCH_SDK_PARTS (a subset of
 * "cost,agent,eld", default all), BENCH_SDK_ELD_PAIRS (event-loop delay runs of each mode, taking
 * turns, default 3), BENCH_SDK_ELD_MODES (a subset of "off,spin,agent,sink,otel", default all),
 * BENCH_SDK_ELD_SPIN_US (the spin mode's extra work per request, default 9), BENCH_AGENT_NICE (the
 * real agent's `--nice`, default its own: idle).
 */

const SELF = fileURLToPath(import.meta.url);
const ROLE_ENV = "SPANHUB_BENCH_SDK_ROLE";
const ROUNDS = positiveInt("BENCH_SDK_ROUNDS", 20);
const REQUESTS = positiveInt("BENCH_SDK_REQUESTS", 1000);
const WARMUP_ROUNDS = 5;
const SECONDS = Number(process.env.BENCH_SECONDS) > 0 ? Number(process.env.BENCH_SECONDS) : 5;
const PARTS = new Set((process.env.BENCH_SDK_PARTS ?? "cost,agent,eld").split(",").map((part) => part.trim()));
const ELD_SPANS_PER_SECOND = 10_000;
const ELD_PAIRS = positiveInt("BENCH_SDK_ELD_PAIRS", 3);
/** How often the event-loop app issues its due requests: 10 ms gives bursts of 10 requests, 1 ms one at a time. */
const ELD_TICK_MS = positiveInt("BENCH_SDK_ELD_TICK_MS", 10);
/**
 * The `spin` mode's busy work per request, with tracing off: what the event-loop delay shows of an
 * app that does this much more in its turn, whatever does it. 9 µs is about what the SDK does
 * in the turn of a request of 10 spans of 10 tags (encoding comes later).
 */
const ELD_SPIN_US = positiveInt("BENCH_SDK_ELD_SPIN_US", 9);
/** Requests per awaited flush in the closed loop (~2 MiB of frames: well inside the 8 MiB queue). */
const CLOSED_BURST = 500;
const ELD_RESOLUTION_MS = 1;
const START_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// The workload: one request = a root span and 9 children, 10 tags on each, same for every tracer.

const SPANS_PER_REQUEST = 10;
const ROOT_NAME = "GET /users/:id";
const CHILD_NAMES = [
  "Middleware/auth",
  "SQL/Query",
  "SQL/Query",
  "Cache/read",
  "HTTP/GET",
  "SQL/Query",
  "Template/Render",
  "Template/Partial",
  "Cache/write",
];
/**
 * Attribute values OpenTelemetry accepts too: strings, numbers, booleans. Seven repeat on every
 * span, as deployment and operation tags do; three change from span to span (a user id from a pool
 * of 4096, a row count, an allocation count), so no tracer is measured on repeats alone.
 */
const FIXED_TAGS: [string, string | number | boolean][] = [
  ["db.system", "postgresql"],
  ["db.statement", "SELECT id, name, email FROM users WHERE id = $1"],
  ["cached", false],
  ["http.method", "GET"],
  ["http.status_code", 200],
  ["net.peer.name", "db.internal.example.com"],
  ["component", "users.show"],
];
const USER_IDS = Array.from({ length: 4096 }, (_, index) => `u-${(index * 2654435761).toString(16).padStart(8, "0")}`);
const TAGS_PER_SPAN = FIXED_TAGS.length + 3;
let spanNumber = 0;

/** The span's ten tags, in a fixed key order; the varying values come from precomputed tables. */
function forEachTag(set: (key: string, value: string | number | boolean) => void): void {
  spanNumber += 1;
  for (const [key, value] of FIXED_TAGS) set(key, value);
  set("user.id", USER_IDS[spanNumber & 4095] as string);
  set("db.rows", spanNumber % 1000);
  set("allocations", (spanNumber * 7919) % 100_000);
}
if (CHILD_NAMES.length !== SPANS_PER_REQUEST - 1 || TAGS_PER_SPAN !== 10)
  throw new Error("the request shape does not match SPANS_PER_REQUEST / TAGS_PER_SPAN");

/** The slice of the tracer API the workload uses, so tracing off is the same code with a stub. */
interface SpanApi {
  request(name: string, fn: (span: Span) => void): void;
  span(name: string, fn: (span: Span) => void): void;
}

function tagAll(span: Span): void {
  forEachTag((key, value) => span.tag(key, value));
}

function spanhubRequest(tracer: SpanApi): void {
  tracer.request(ROOT_NAME, (root) => {
    tagAll(root);
    for (const name of CHILD_NAMES) tracer.span(name, tagAll);
  });
}

function otelRequest(tracer: OtelTracer): void {
  tracer.startActiveSpan(ROOT_NAME, (root) => {
    forEachTag((key, value) => root.setAttribute(key, value));
    for (const name of CHILD_NAMES)
      tracer.startActiveSpan(name, (span) => {
        forEachTag((key, value) => span.setAttribute(key, value));
        span.end();
      });
    root.end();
  });
}

const NOOP_SPAN: Span = {
  id: "",
  runId: "",
  recording: false,
  tag: () => NOOP_SPAN,
  log: () => NOOP_SPAN,
  end: () => undefined,
};
/** Tracing off: the same calls, each running its function directly. */
const TRACING_OFF: SpanApi = {
  request: (_name, fn) => fn(NOOP_SPAN),
  span: (_name, fn) => fn(NOOP_SPAN),
};

// ---------------------------------------------------------------------------------------------
// The bench (parent process).

interface CostResult {
  name: string;
  usPerSpan: number;
  usPerSpanP90: number;
  /** Of which the flush: spanhub's flush() call (encode + socket write), OpenTelemetry's forceFlush. */
  flushUsPerSpan: number;
  gcShare: number | undefined;
  /** Socket writes (spanhub) or export calls (OpenTelemetry) per flush, median. */
  writesPerFlush: number;
  bytesPerRequest: number;
  note: string;
}

interface AgentRow {
  what: string;
  requestsPerSecond: number;
  issued: number;
  stored: number;
  dropped: number;
  note: string;
}

interface EldResult {
  what: string;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** The median time of the app's turns that issue requests (tracing's in-turn work included). */
  turn: number;
  cpu: number;
  spansPerSecond: number;
  stored: number | undefined;
  /** Batches dropped or not acknowledged by the end of shutdown() (OpenTelemetry: spans not exported). */
  lost?: number;
}

export async function run(): Promise<BenchResult> {
  const rows: Cell[][] = [];
  const notes: string[] = [];
  let goal = "";
  if (PARTS.has("cost")) {
    progress(`sdk: per-span cost, ${WARMUP_ROUNDS}+${ROUNDS} rounds of ${REQUESTS} requests, interleaved`);
    const [spanhub, otel, otlp] = await perSpanCost();
    const base = otel?.usPerSpan ?? Number.NaN;
    for (const result of [spanhub, otel, otlp]) {
      if (!result) continue;
      rows.push([
        result.name,
        result.usPerSpan.toFixed(2),
        result.usPerSpanP90.toFixed(2),
        result.flushUsPerSpan.toFixed(2),
        `${(result.usPerSpan / base).toFixed(2)}x`,
        result.gcShare === undefined ? "-" : formatPercent(result.gcShare),
        result.note,
      ]);
    }
    if (spanhub && otel && otlp)
      goal = `goal "per-span cost at most a third of OpenTelemetry's": ${spanhub.usPerSpan <= otel.usPerSpan / 3 ? "met" : "NOT met"} against the discarding exporter (${(spanhub.usPerSpan / otel.usPerSpan).toFixed(2)}x), ${spanhub.usPerSpan <= otlp.usPerSpan / 3 ? "met" : "NOT met"} against OTLP protobuf (${(spanhub.usPerSpan / otlp.usPerSpan).toFixed(2)}x).`;
    notes.push(
      `per-span cost: ${REQUESTS} requests of ${SPANS_PER_REQUEST} spans (root + ${SPANS_PER_REQUEST - 1} children via async context, sync callbacks) x ${TAGS_PER_SPAN} tags per round, timed from the first span's start until the frames are handed to the socket (spanhub: flush() returned after its socket write) or forceFlush() resolved (OpenTelemetry); µs/span is the median of ${ROUNDS} rounds after ${WARMUP_ROUNDS} warm-up rounds, rounds of the three interleaved; p90 over rounds; flush: the part of it in flush() (spanhub: encode + socket write) or forceFlush() (OpenTelemetry: export), median. GC: time in GC (PerformanceObserver "gc") within the timed rounds / their time, median.`,
      "spanhub: @spanhub/sdk with launch:false against a sink in a child process that answers every frame Success (its CPU is not counted); the reply wait is not timed. OpenTelemetry: @opentelemetry/sdk-trace-base 2.7 BasicTracerProvider, AsyncLocalStorageContextManager, startActiveSpan + setAttribute, BatchSpanProcessor (maxQueueSize above a round, default batch 512).",
    );
  }
  if (PARTS.has("agent")) {
    for (const mode of ["closed", "open"] as const) {
      progress(`sdk: requests/s through a real agent (${mode} loop), ${SECONDS} s`);
      const row = await throughAgent(mode);
      rows.push([
        row.what,
        "-",
        "-",
        "-",
        "-",
        "-",
        `${formatCount(row.requestsPerSecond)} requests/s stored; ${row.note}`,
      ]);
    }
    notes.push(
      `requests/s: an app process (a child) with the SDK and a fresh \`spanhub agent\` (its own data dir), ${SECONDS} s of requests of ${SPANS_PER_REQUEST} spans x ${TAGS_PER_SPAN} tags; stored = \`SELECT count(*) FROM runs\` after \`spanhub agent stop\`, per second of sending (the final flush included). closed loop: ${CLOSED_BURST} requests, then await flush() (acknowledged), repeat. open loop: bursts of 100 requests with an event-loop turn between them, the SDK's own timer flushing (flushIntervalMs 100, default 8 MiB queue, so an agent slower than the app means dropped batches).`,
    );
  }
  if (PARTS.has("eld")) {
    // The modes take turns, so that a change in the machine's load touches them alike.
    const modes = (process.env.BENCH_SDK_ELD_MODES ?? "off,spin,agent,sink,otel")
      .split(",")
      .map((mode) => mode.trim())
      .filter((mode): mode is EldMode => mode in ELD_MODE_NAMES);
    const results: Record<EldMode, EldResult[]> = { off: [], spin: [], agent: [], sink: [], otel: [] };
    for (let round = 0; round < ELD_PAIRS; round++)
      for (let turn = 0; turn < modes.length; turn++) {
        const mode = modes[(round + turn) % modes.length] as EldMode;
        progress(
          `sdk: event-loop delay at ${formatCount(ELD_SPANS_PER_SECOND)} spans/s, tracing ${mode} (${round + 1}/${ELD_PAIRS})`,
        );
        results[mode].push(await eventLoopDelay(mode));
      }
    for (const runs of modes.map((mode) => results[mode])) {
      const median = (pick: (result: EldResult) => number) =>
        quantile(Float64Array.from(runs.map(pick)).sort(), 0.5) ?? Number.NaN;
      const each = (pick: (result: EldResult) => number) => runs.map((result) => formatMs(pick(result))).join(" / ");
      const stored = runs.every((result) => result.stored !== undefined)
        ? `, ${runs.map((result) => formatCount(result.stored ?? 0)).join(" / ")} runs stored`
        : "";
      const lost = runs.some((result) => result.lost)
        ? `, ${runs.map((result) => formatCount(result.lost ?? 0)).join(" / ")} ${runs[0]?.what.includes("OpenTelemetry") ? "spans not exported" : "batches dropped or unacknowledged"}`
        : "";
      rows.push([
        runs[0]?.what ?? "",
        "-",
        "-",
        "-",
        "-",
        "-",
        `event-loop delay p50 ${formatMs(median((result) => result.p50))}, p90 ${formatMs(median((result) => result.p90))}, p99 ${formatMs(median((result) => result.p99))} (${each((result) => result.p99)}), max ${formatMs(median((result) => result.max))} (${each((result) => result.max)}); app turn ${formatMs(median((result) => result.turn))}; app CPU ${formatPercent(median((result) => result.cpu))}; ${formatCount(median((result) => result.spansPerSecond))} spans/s${stored}${lost}`,
      ]);
    }
    notes.push(
      `event-loop delay: monitorEventLoopDelay (resolution ${ELD_RESOLUTION_MS} ms; reported: the sampling interval minus the resolution) in an app process issuing ${formatCount(ELD_SPANS_PER_SECOND / SPANS_PER_REQUEST)} requests/s (${formatCount(ELD_SPANS_PER_SECOND)} spans/s) from a ${ELD_TICK_MS} ms interval (BENCH_SDK_ELD_TICK_MS) for ${SECONDS} s after 1 s warm-up; tracing on = the SDK with default options into a real agent, or into the sink (which takes the agent's CPU away from the 2-core machine, leaving the SDK's own share); off = the same code with a stub tracer; spin = off plus ${ELD_SPIN_US} µs of busy work per request (BENCH_SDK_ELD_SPIN_US; no tracer: how the measure moves with the app's own turn); OpenTelemetry = the same spans through @opentelemetry/sdk-trace-base 2.7 (AsyncLocalStorage context, BatchSpanProcessor with its defaults: 512-span batches, a 2,048-span queue) and the OTLP/HTTP protobuf exporter 0.215 into a local HTTP sink (a child process) that answers every export with 200. ${ELD_PAIRS} runs of each, the modes taking turns; medians, each run's value in parentheses. App turn: the median time of the interval callback that issues the due requests (what tracing does in the app's turn included). App CPU: process.cpuUsage over the measured seconds, 100% = one core.`,
    );
  }
  if (goal) notes.push(goal);
  return {
    title: `sdk: @spanhub/sdk vs @opentelemetry/sdk-trace-base, requests of ${SPANS_PER_REQUEST} spans x ${TAGS_PER_SPAN} tags`,
    columns: ["what", "µs/span", "p90", "flush", "vs OpenTelemetry", "GC", "notes"],
    rows,
    notes,
  };
}

/**
 * A sink process for `body`, killed afterwards: `sink` (spanhub's frames, on a temp socket, whose
 * path `body` gets) or `otlp-sink` (OTLP/HTTP exports; `body` gets its URL).
 */
async function withSink<T>(
  body: (address: string, sink: ChildProcess) => Promise<T>,
  role: "sink" | "otlp-sink" = "sink",
): Promise<T> {
  const root = mkdtempSync(join(tmpdir(), "spanhub-bench-sdk-"));
  removeOnExit.add(root);
  const socketPath = join(root, "sink.sock");
  let sink: ChildProcess | undefined;
  try {
    sink = fork(SELF, [socketPath], {
      env: { ...process.env, [ROLE_ENV]: role },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    killOnExit(sink);
    const ready = await childMessage<{ type: "ready"; url?: string }>(sink, "ready");
    return await body(ready.url ?? socketPath, sink);
  } finally {
    if (sink && sink.exitCode === null && sink.signalCode === null) sink.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
    removeOnExit.delete(root);
  }
}

function perSpanCost(): Promise<CostResult[]> {
  return withSink(async (socketPath, sink) => {
    const gcEntries: { start: number; end: number }[] = [];
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries())
        gcEntries.push({ start: entry.startTime, end: entry.startTime + entry.duration });
    });
    observer.observe({ entryTypes: ["gc"] });

    // Count socket writes, the goal being one per flush: writes handed to the operating system
    // (Node's internal _writeGeneric: one write or writev per call; corked writes go as one
    // writev), and the bytes given to socket.write.
    let writes = 0;
    let writtenBytes = 0;
    const socketInternals = Socket.prototype as unknown as { _writeGeneric: (...args: unknown[]) => unknown };
    const originalWriteGeneric = socketInternals._writeGeneric;
    socketInternals._writeGeneric = function (this: Socket, ...args: unknown[]) {
      writes += 1;
      return originalWriteGeneric.apply(this, args);
    };
    const originalWrite = Socket.prototype.write;
    Socket.prototype.write = function (this: Socket, ...args: unknown[]) {
      const data = args[0];
      writtenBytes += typeof data === "string" ? Buffer.byteLength(data) : ((data as Buffer)?.length ?? 0);
      return (originalWrite as (...rest: unknown[]) => boolean).apply(this, args);
    } as typeof originalWrite;

    const tracer = createTracer({ app: "bench-sdk", socket: socketPath, launch: false, flushIntervalMs: 3_600_000 });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!tracer.stats().connected) {
      if (Date.now() > deadline) throw new Error("the SDK did not connect to the sink");
      await sleep(10);
    }

    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const makeOtel = (serialize: boolean) => {
      let spans = 0;
      let exports = 0;
      let bytes = 0;
      const exporter: SpanExporter = {
        export(batch: ReadableSpan[], done) {
          exports += 1;
          spans += batch.length;
          if (serialize) bytes += ProtobufTraceSerializer.serializeRequest(batch)?.length ?? 0;
          done({ code: 0 });
        },
        shutdown: () => Promise.resolve(),
      };
      const provider = new BasicTracerProvider({
        resource: resourceFromAttributes({ "service.name": "bench-sdk" }),
        spanProcessors: [
          new BatchSpanProcessor(exporter, {
            maxQueueSize: REQUESTS * SPANS_PER_REQUEST * 2,
            scheduledDelayMillis: 3_600_000,
          }),
        ],
      });
      return {
        provider,
        tracer: provider.getTracer("bench-sdk"),
        counters: () => ({ spans, exports, bytes }),
      };
    };
    const plain = makeOtel(false);
    const otlp = makeOtel(true);

    interface Sample {
      ms: number;
      flushMs: number;
      start: number;
      end: number;
      writes: number;
      bytes: number;
    }
    const roundSdk = async (): Promise<Sample> => {
      const writesBefore = writes;
      const bytesBefore = writtenBytes;
      const start = performance.now();
      for (let index = 0; index < REQUESTS; index++) spanhubRequest(tracer);
      const flushStart = performance.now();
      const delivered = tracer.flush();
      const end = performance.now();
      const sample = {
        ms: end - start,
        flushMs: end - flushStart,
        start,
        end,
        writes: writes - writesBefore,
        bytes: writtenBytes - bytesBefore,
      };
      if (!(await delivered)) throw new Error("a flush was not acknowledged by the sink");
      return sample;
    };
    const roundOtel = (which: typeof plain) => async (): Promise<Sample> => {
      const before = which.counters();
      const start = performance.now();
      for (let index = 0; index < REQUESTS; index++) otelRequest(which.tracer);
      const flushStart = performance.now();
      await which.provider.forceFlush();
      const end = performance.now();
      const after = which.counters();
      if (after.spans - before.spans !== REQUESTS * SPANS_PER_REQUEST)
        throw new Error(
          `OpenTelemetry exported ${after.spans - before.spans} spans of ${REQUESTS * SPANS_PER_REQUEST}`,
        );
      return {
        ms: end - start,
        flushMs: end - flushStart,
        start,
        end,
        writes: after.exports - before.exports,
        bytes: after.bytes - before.bytes,
      };
    };
    const kinds = [
      { name: "@spanhub/sdk -> socket (sink)", round: roundSdk, samples: [] as Sample[] },
      { name: "OpenTelemetry, discarding exporter", round: roundOtel(plain), samples: [] as Sample[] },
      { name: "OpenTelemetry + OTLP protobuf serialize", round: roundOtel(otlp), samples: [] as Sample[] },
    ];
    for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
      for (let turn = 0; turn < kinds.length; turn++) {
        const kind = kinds[(round + turn) % kinds.length] as (typeof kinds)[number];
        const sample = await kind.round();
        if (round >= WARMUP_ROUNDS) kind.samples.push(sample);
        await sleep(5); // let the GC observer and the sink's replies settle between rounds
      }
    }
    Socket.prototype.write = originalWrite;
    socketInternals._writeGeneric = originalWriteGeneric;
    await sleep(50);
    observer.disconnect();

    const sinkReport = await askSink(sink);
    const requestsSent = (WARMUP_ROUNDS + ROUNDS) * REQUESTS;
    if (sinkReport.batchCommands !== requestsSent)
      throw new Error(`the sink received ${sinkReport.batchCommands} BatchCommand frames for ${requestsSent} requests`);
    await tracer.shutdown();
    await plain.provider.shutdown();
    await otlp.provider.shutdown();

    const spansPerRound = REQUESTS * SPANS_PER_REQUEST;
    return kinds.map((kind, index) => {
      const perSpan = Float64Array.from(kind.samples.map((sample) => (sample.ms * 1000) / spansPerRound)).sort();
      const gc = Float64Array.from(
        kind.samples.map((sample) => {
          let inGc = 0;
          for (const entry of gcEntries)
            inGc += Math.max(0, Math.min(entry.end, sample.end) - Math.max(entry.start, sample.start));
          return inGc / sample.ms;
        }),
      ).sort();
      const writesPerFlush = quantile(Float64Array.from(kind.samples.map((sample) => sample.writes)).sort(), 0.5) ?? 0;
      const bytesPerRequest =
        (quantile(Float64Array.from(kind.samples.map((s) => s.bytes)).sort(), 0.5) ?? 0) / REQUESTS;
      const note =
        index === 0
          ? `${writesPerFlush} socket write(s) per flush, ${(bytesPerRequest / 1024).toFixed(1)} KiB/request (1 BatchCommand each: ${formatCount(sinkReport.batchCommands)} frames for ${formatCount(requestsSent)} requests)`
          : index === 1
            ? `${writesPerFlush} export calls per forceFlush, spans discarded`
            : `${writesPerFlush} export calls per forceFlush, ${(bytesPerRequest / 1024).toFixed(1)} KiB/request of OTLP protobuf`;
      return {
        name: kind.name,
        usPerSpan: quantile(perSpan, 0.5) ?? Number.NaN,
        usPerSpanP90: quantile(perSpan, 0.9) ?? Number.NaN,
        flushUsPerSpan:
          quantile(
            Float64Array.from(kind.samples.map((sample) => (sample.flushMs * 1000) / spansPerRound)).sort(),
            0.5,
          ) ?? Number.NaN,
        gcShare: gcEntries.length === 0 && kind.samples.length === 0 ? undefined : quantile(gc, 0.5),
        writesPerFlush,
        bytesPerRequest,
        note,
      };
    });
  });
}

interface SinkReport {
  type: "report";
  frames: number;
  batchCommands: number;
  bytes: number;
}

function askSink(sink: ChildProcess): Promise<SinkReport> {
  const reply = childMessage<SinkReport>(sink, "report");
  sink.send({ type: "report" });
  return reply;
}

// ---------------------------------------------------------------------------------------------
// Through a real agent.

interface AppReport {
  type: "done";
  issued: number;
  ms: number;
  dropped: number;
  acknowledged: number;
  eld?: { p50: number; p90: number; p99: number; max: number; turn: number; cpu: number; lost?: number };
}

async function throughAgent(mode: "closed" | "open"): Promise<AgentRow> {
  const { report, stored } = await withAgent(async (socket) => runApp(socket, mode));
  return {
    what: `@spanhub/sdk app -> real agent, ${mode} loop`,
    requestsPerSecond: stored / (report.ms / 1000),
    issued: report.issued,
    stored,
    dropped: report.dropped,
    note: `${formatCount(report.issued)} requests issued, ${formatCount(stored)} stored, ${formatCount(report.dropped)} batches dropped, ${formatCount((stored * SPANS_PER_REQUEST) / (report.ms / 1000))} spans/s`,
  };
}

/**
 * Tracing off; on into a real agent; on into a sink (the agent's CPU taken away: what is left is the
 * SDK's); OpenTelemetry into an OTLP sink (the baseline: what tracing usually costs the app).
 */
type EldMode = "off" | "spin" | "agent" | "sink" | "otel";

const ELD_MODE_NAMES: Record<EldMode, string> = {
  off: "tracing off",
  spin: `tracing off, ${ELD_SPIN_US} µs more work per request`,
  agent: "tracing on (real agent)",
  sink: "tracing on (sink)",
  otel: "OpenTelemetry (OTLP/HTTP protobuf, into a sink)",
};

async function eventLoopDelay(mode: EldMode): Promise<EldResult> {
  const what = `app at ${formatCount(ELD_SPANS_PER_SECOND)} spans/s, ${ELD_MODE_NAMES[mode]}`;
  if (mode === "off" || mode === "spin") return eldRow(what, await runApp("", `eld-${mode}`), undefined);
  if (mode === "sink") return eldRow(what, await withSink((socket) => runApp(socket, "eld-on")), undefined);
  if (mode === "otel") return eldRow(what, await withSink((url) => runApp(url, "eld-otel"), "otlp-sink"), undefined);
  const { report, stored } = await withAgent((socket) => runApp(socket, "eld-on"));
  return eldRow(what, report, stored);
}

function eldRow(what: string, report: AppReport, stored: number | undefined): EldResult {
  const eld = report.eld ?? {
    p50: Number.NaN,
    p90: Number.NaN,
    p99: Number.NaN,
    max: Number.NaN,
    turn: Number.NaN,
    cpu: Number.NaN,
  };
  return {
    what,
    ...eld,
    spansPerSecond: (report.issued * SPANS_PER_REQUEST) / (report.ms / 1000),
    stored,
  };
}

async function runApp(socket: string, mode: string): Promise<AppReport> {
  const app = fork(SELF, [socket, mode, String(SECONDS)], {
    env: { ...process.env, [ROLE_ENV]: "app" },
    // The open loop overflows the queue on purpose; its drops are counted, not printed.
    execArgv: ["--no-warnings"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  killOnExit(app);
  try {
    return await childMessage<AppReport>(app, "done");
  } finally {
    if (app.exitCode === null && app.signalCode === null)
      await Promise.race([new Promise((exited) => app.once("exit", exited)), sleep(5000)]);
    if (app.exitCode === null && app.signalCode === null) app.kill("SIGKILL");
  }
}

// ---------------------------------------------------------------------------------------------
// Child roles: this file forked with SPANHUB_BENCH_SDK_ROLE set.

/**
 * Answers every frame with Success, echoing its command key, as spanhub's agent does (`Status`
 * with its version, `Register` accepting the `compact_batch` extension when offered); counts
 * BatchCommand frames.
 */
function sink(socketPath: string): void {
  let frames = 0;
  let batchCommands = 0;
  let bytes = 0;
  const server = createServer((connection) => {
    let pending = Buffer.alloc(0);
    connection.on("error", () => undefined);
    connection.on("data", (chunk: Buffer) => {
      let buffer = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      const replies: Buffer[] = [];
      while (buffer.length >= 4) {
        const size = buffer.readUInt32BE(0);
        if (buffer.length < 4 + size) break;
        const key = /^\{"([A-Za-z]+)"/.exec(buffer.subarray(4, 4 + Math.min(size, 64)).toString("latin1"))?.[1] ?? "";
        frames += 1;
        bytes += 4 + size;
        if (key === "BatchCommand") batchCommands += 1;
        const body =
          key === "Register"
            ? { Register: { id: null, result: "Success", ...acceptedExtensions(buffer.subarray(4, 4 + size)) } }
            : key === "Status"
              ? { Status: { version: "0.2.0", result: "Success" } }
              : { [key || "Unknown"]: { result: "Success" } };
        const text = Buffer.from(JSON.stringify(body));
        const header = Buffer.allocUnsafe(4);
        header.writeUInt32BE(text.length, 0);
        replies.push(header, text);
        buffer = buffer.subarray(4 + size);
      }
      pending = Buffer.from(buffer);
      if (replies.length > 0) connection.write(Buffer.concat(replies));
    });
  });
  server.listen(socketPath, () => process.send?.({ type: "ready" }));
  process.on("message", (message: { type: string }) => {
    if (message.type === "report")
      process.send?.({ type: "report", frames, batchCommands, bytes } satisfies SinkReport);
  });
  process.on("disconnect", () => process.exit(0));
}

/**
 * An OTLP/HTTP endpoint for OpenTelemetry's exporter: answers every export with 200 and an empty
 * (protobuf) ExportTraceServiceResponse, as a collector that accepts everything does.
 */
function otlpSink(): void {
  const server = createHttpServer((request, response) => {
    request.on("data", () => undefined);
    request.on("end", () => {
      response.writeHead(200, { "content-type": "application/x-protobuf", "content-length": 0 });
      response.end();
    });
  });
  server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    process.send?.({ type: "ready", url: `http://127.0.0.1:${port}/v1/traces` });
  });
  process.on("disconnect", () => process.exit(0));
}

/**
 * OpenTelemetry as it is usually deployed: async-hooks context, the BatchSpanProcessor's defaults,
 * OTLP/HTTP protobuf; `exported` counts the spans whose export succeeded.
 */
function otelToOtlp(url: string): { provider: BasicTracerProvider; tracer: OtelTracer; exported: () => number } {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const otlp = new OTLPTraceExporter({ url });
  let exported = 0;
  const exporter: SpanExporter = {
    export(spans, done) {
      otlp.export(spans, (result) => {
        if (result.code === 0) exported += spans.length;
        done(result);
      });
    },
    shutdown: () => otlp.shutdown(),
    forceFlush: () => otlp.forceFlush(),
  };
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": "bench-sdk" }),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  return { provider, tracer: provider.getTracer("bench-sdk"), exported: () => exported };
}

/** What spanhub's agent answers to a `Register` frame's `extensions`: those of them it accepts. */
function acceptedExtensions(register: Buffer): { extensions?: string[] } {
  const offered = (JSON.parse(register.toString("utf8")) as { Register?: { extensions?: unknown } }).Register
    ?.extensions;
  return Array.isArray(offered) ? { extensions: offered.filter((name) => name === "compact_batch") } : {};
}

/** An application process: requests through the SDK (or OpenTelemetry, or with tracing off) in one of the modes. */
async function app(socketPath: string, mode: string, seconds: number): Promise<void> {
  const otel = mode === "eld-otel" ? otelToOtlp(socketPath) : undefined;
  const tracing = mode !== "eld-off" && mode !== "eld-spin" && !otel;
  const tracer: Tracer | undefined = tracing
    ? createTracer({
        app: "bench-sdk",
        socket: socketPath,
        launch: false,
        ...(mode === "open" ? { flushIntervalMs: 100 } : {}),
      })
    : undefined;
  if (tracer) {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!tracer.stats().connected) {
      if (Date.now() > deadline) throw new Error("the SDK did not connect to the agent");
      await sleep(10);
    }
  }
  const api: SpanApi = tracer ?? TRACING_OFF;
  const spinMs = ELD_SPIN_US / 1000;
  const issueRequest = otel
    ? () => otelRequest(otel.tracer)
    : mode === "eld-spin"
      ? () => {
          const until = performance.now() + spinMs;
          spanhubRequest(api);
          while (performance.now() < until);
        }
      : () => spanhubRequest(api);
  let issued = 0;
  let eld: AppReport["eld"];
  const start = performance.now();
  if (mode === "closed") {
    const end = start + seconds * 1000;
    while (performance.now() < end) {
      for (let index = 0; index < CLOSED_BURST; index++) spanhubRequest(api);
      issued += CLOSED_BURST;
      if (!(await tracer?.flush())) throw new Error("a flush was not acknowledged by the agent");
    }
  } else if (mode === "open") {
    const end = start + seconds * 1000;
    while (performance.now() < end) {
      for (let index = 0; index < 100; index++) spanhubRequest(api);
      issued += 100;
      await new Promise((turn) => setImmediate(turn));
    }
  } else {
    // Event-loop delay at a fixed rate, from an interval of ELD_TICK_MS; 1 s warm-up, then measured.
    const perMs = ELD_SPANS_PER_SECOND / SPANS_PER_REQUEST / 1000;
    const histogram = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
    let cpuStart = process.cpuUsage();
    let measuredFrom = 0;
    let issuedAtMark = 0;
    const turns: number[] = [];
    await new Promise<void>((finished) => {
      const timer = setInterval(() => {
        const now = performance.now();
        const due = Math.floor((now - start) * perMs) - issued;
        for (let index = 0; index < due; index++) issueRequest();
        issued += due;
        if (measuredFrom > 0) turns.push(performance.now() - now);
        if (measuredFrom === 0 && now - start >= 1000) {
          measuredFrom = now;
          issuedAtMark = issued;
          cpuStart = process.cpuUsage();
          histogram.enable();
        }
        if (measuredFrom > 0 && now - measuredFrom >= seconds * 1000) {
          clearInterval(timer);
          finished();
        }
      }, ELD_TICK_MS);
    });
    histogram.disable();
    const cpu = process.cpuUsage(cpuStart);
    const measuredMs = performance.now() - measuredFrom;
    eld = {
      // The histogram holds the sampling timer's intervals; the delay is what exceeds the resolution.
      p50: Math.max(0, histogram.percentile(50) / 1e6 - ELD_RESOLUTION_MS),
      p90: Math.max(0, histogram.percentile(90) / 1e6 - ELD_RESOLUTION_MS),
      p99: Math.max(0, histogram.percentile(99) / 1e6 - ELD_RESOLUTION_MS),
      max: Math.max(0, histogram.max / 1e6 - ELD_RESOLUTION_MS),
      turn: quantile(Float64Array.from(turns).sort(), 0.5) ?? Number.NaN,
      cpu: (cpu.user + cpu.system) / 1000 / measuredMs,
    };
    issued -= issuedAtMark;
    await tracer?.shutdown();
    await otel?.provider.shutdown();
    // What the SDK lost, if anything: batches dropped from a full queue, or still unacknowledged after shutdown().
    const stats = tracer?.stats();
    eld.lost = otel
      ? (issued + issuedAtMark) * SPANS_PER_REQUEST - otel.exported()
      : (stats?.droppedBatches ?? 0) + (stats?.queuedBatches ?? 0);
    await report({ type: "done", issued, ms: measuredMs, dropped: stats?.droppedBatches ?? 0, acknowledged: 0, eld });
    return;
  }
  await tracer?.shutdown();
  const ms = performance.now() - start;
  const stats = tracer?.stats();
  await report({
    type: "done",
    issued,
    ms,
    dropped: stats?.droppedBatches ?? 0,
    acknowledged: stats?.acknowledgedBatches ?? 0,
  });
}

/** Sends the report to the parent and waits until it is out. */
function report(message: AppReport): Promise<void> {
  return new Promise((sent) => {
    if (!process.send) sent();
    else process.send(message, undefined, {}, () => sent());
  });
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/** The child's next message of `type`; rejects if it reports an error or exits first. */
function childMessage<T extends { type: string }>(child: ChildProcess, type: T["type"]): Promise<T> {
  return new Promise((resolveMessage, reject) => {
    const onMessage = (message: { type: string; message?: string }) => {
      if (message.type === "error") {
        cleanup();
        reject(new Error(message.message));
      } else if (message.type === type) {
        cleanup();
        resolveMessage(message as T);
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`bench child exited (code ${code}, signal ${signal}) before "${type}"`));
    };
    const cleanup = () => {
      child.off("message", onMessage);
      child.off("exit", onExit);
    };
    child.on("message", onMessage);
    child.once("exit", onExit);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/** A positive integer from the environment, else the fallback. */
export function positiveInt(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
}

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

const role = process.env[ROLE_ENV];
if (role && process.argv[1] !== undefined && resolve(process.argv[1]) === SELF) {
  const [first = "", second = "", third = "5"] = process.argv.slice(2);
  try {
    if (role === "sink") sink(first);
    else if (role === "otlp-sink") otlpSink();
    else if (role === "app") {
      await app(first, second, Number(third));
      process.disconnect?.();
    } else throw new Error(`unknown role ${role}`);
  } catch (error) {
    process.send?.({ type: "error", message: error instanceof Error ? error.message : String(error) }, () =>
      process.exit(1),
    );
  }
}
