import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AttributeValue, context, ROOT_CONTEXT, type Span, SpanKind, trace } from "@opentelemetry/api";
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { FrameReader } from "spanhub";
import { removeOnExit } from "./cleanup.js";
import { countRows, type Server, startServer } from "./ingest.js";
import { progress } from "./progress.js";
import { frameOf, REQUEST_MICROS, SPANS, SPANS_PER_REQUEST, TAGS_PER_SPAN } from "./scoutLoad.js";
import { positiveInt } from "./sdk.js";
import { type BenchResult, type Cell, formatCount } from "./table.js";

/**
 * OTLP ingest: spans per second `spanhub up` acknowledges through `POST /v1/traces`
 * (protobuf bodies made by OpenTelemetry's own transformer, as its exporters send them)
 * against its native path, `Events` frames over the Unix socket, carrying the same
 * spans as JSON-lines events, in the same run against the same server.
 *
 * The spans are recorded with `@opentelemetry/sdk-trace-base` before any timing (the
 * benchmark's request shape: 10 spans x 5 tags; non-scalar tags as JSON text, which OTLP
 * attributes require), then cut into batches of BATCH spans, one body or frame each.
 * After a warm-up round, rounds alternate the two paths on fresh spans; each path's
 * best round is reported.
 * After SIGTERM the stored span count must equal every span acknowledged.
 *
 * Environment: BENCH_OTLP_REQUESTS (requests per round, default 3000),
 * BENCH_OTLP_ROUNDS (default 3), BENCH_OTLP_WINDOW (requests in flight, default 4).
 */

const REQUESTS = positiveInt("BENCH_OTLP_REQUESTS", 3000);
const ROUNDS = positiveInt("BENCH_OTLP_ROUNDS", 3);
const WINDOW = positiveInt("BENCH_OTLP_WINDOW", 4);
/** Spans per OTLP request or Events frame: BatchSpanProcessor's default export batch. */
const BATCH = 512;

type Path = "otlp" | "events";

interface Round {
  path: Path;
  spans: number;
  seconds: number;
  bytes: number;
}

export async function run(): Promise<BenchResult> {
  const root = mkdtempSync(join(tmpdir(), "spanhub-bench-otlp-"));
  removeOnExit.add(root);
  const data = join(root, "data");
  const socket = join(root, "run", "agent.sock");
  let server: Server | undefined;
  const rounds: Round[] = [];
  let acknowledged = 0;
  try {
    // Runs end by trace idle only after the benchmark, so no sweep competes with ingest.
    server = await startServer(data, socket, ["--trace-idle", "1h"]);
    const url = server.url;
    if (!url) throw new Error("spanhub up printed no hub URL");
    // Round 0 warms both paths up (JIT, caches, the database file) and is not reported.
    for (let round = 0; round <= ROUNDS; round++)
      for (const path of round % 2 === 0 ? (["otlp", "events"] as const) : (["events", "otlp"] as const)) {
        const batches = batchesOf(recordRequests(REQUESTS));
        progress(
          `otlp: ${round === 0 ? "warm-up" : `round ${round}/${ROUNDS}`}, ${path}, ${formatCount(REQUESTS * SPANS_PER_REQUEST)} spans`,
        );
        const result = path === "otlp" ? await sendOtlp(url, batches) : await sendEvents(socket, batches);
        acknowledged += result.spans;
        if (round > 0) rounds.push(result);
      }
    await server.stop();
    const stored = countRows(join(data, "spanhub.db"), "spans");
    if (stored !== acknowledged)
      throw new Error(`${formatCount(acknowledged)} spans were acknowledged but ${formatCount(stored)} are stored`);
  } finally {
    if (server) await server.kill();
    rmSync(root, { recursive: true, force: true });
    removeOnExit.delete(root);
  }

  const best = (path: Path) =>
    rounds.filter((round) => round.path === path).reduce((a, b) => (b.spans / b.seconds > a.spans / a.seconds ? b : a));
  const native = best("events");
  const rows: Cell[][] = (["otlp", "events"] as const).map((path) => {
    const round = best(path);
    const perSecond = round.spans / round.seconds;
    return [
      path === "otlp" ? "POST /v1/traces, OTLP protobuf" : "Events frames, Unix socket (native)",
      formatCount(perSecond),
      `${(perSecond / (native.spans / native.seconds)).toFixed(2)}x`,
      formatCount(round.bytes / round.spans),
      rounds
        .filter((each) => each.path === path)
        .map((each) => formatCount(each.spans / each.seconds))
        .join(" / "),
    ];
  });
  return {
    title: `otlp: the same spans (${SPANS_PER_REQUEST} a request x ${TAGS_PER_SPAN} tags, ${BATCH} a batch) through OTLP/HTTP and the native Events frames, ${WINDOW} batches in flight`,
    columns: ["path", "spans/s", "vs native", "bytes/span", "every round (spans/s)"],
    rows,
    notes: [
      "spans/s: spans in batches acknowledged (HTTP 200 / Events Success, both after the commit) over the round's wall time; best of the rounds.",
      "OTLP bodies: @opentelemetry/otlp-transformer ProtobufTraceSerializer over spans recorded with @opentelemetry/sdk-trace-base, built before timing.",
      "Events frames: each span as a JSON-lines span_start (with its tags) and span_end, the root also as run_start, built before timing.",
      `one spanhub up for every round, --trace-idle 1h; a warm-up round, then ${ROUNDS} rounds of ${formatCount(REQUESTS * SPANS_PER_REQUEST)} spans a path, alternating; stored spans checked equal to the acknowledged after SIGTERM.`,
    ],
  };
}

/** Requests of the benchmark's shape, recorded by OpenTelemetry's SDK; their times end now. */
function recordRequests(count: number): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": "bench-web" }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer("spanhub-bench");
  const t0 = Date.now() - REQUEST_MICROS / 1000;
  for (let request = 0; request < count; request++) {
    const made: Span[] = [];
    for (const shape of SPANS) {
      const parent = shape.parent === null ? ROOT_CONTEXT : trace.setSpan(context.active(), made[shape.parent] as Span);
      const attributes: Record<string, AttributeValue> = {};
      for (const [key, value] of shape.tags)
        attributes[key] =
          typeof value === "string" || typeof value === "number" || typeof value === "boolean"
            ? value
            : JSON.stringify(value);
      made.push(
        tracer.startSpan(
          shape.name,
          {
            startTime: t0 + shape.start / 1000,
            attributes,
            kind: shape.parent === null ? SpanKind.SERVER : SpanKind.INTERNAL,
          },
          parent,
        ),
      );
    }
    for (const [index, shape] of SPANS.entries()) made[index]?.end(t0 + shape.end / 1000);
  }
  return exporter.getFinishedSpans();
}

function batchesOf(spans: ReadableSpan[]): ReadableSpan[][] {
  const batches: ReadableSpan[][] = [];
  for (let at = 0; at < spans.length; at += BATCH) batches.push(spans.slice(at, at + BATCH));
  return batches;
}

async function sendOtlp(url: string, batches: ReadableSpan[][]): Promise<Round> {
  const bodies = batches.map((batch) => ProtobufTraceSerializer.serializeRequest(batch) as Uint8Array);
  const started = performance.now();
  await inWindow(bodies.length, async (index) => {
    const response = await fetch(`${url}/v1/traces`, {
      method: "POST",
      headers: { "content-type": "application/x-protobuf" },
      body: bodies[index] as Uint8Array,
    });
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`POST /v1/traces answered ${response.status}`);
  });
  return {
    path: "otlp",
    spans: spanCount(batches),
    seconds: (performance.now() - started) / 1000,
    bytes: bodies.reduce((sum, body) => sum + body.length, 0),
  };
}

async function sendEvents(socketPath: string, batches: ReadableSpan[][]): Promise<Round> {
  const frames = batches.map((batch) => frameOf(JSON.stringify({ Events: { events: batch.flatMap(jsonEvents) } })));
  const connection = await open(socketPath);
  const reader = new FrameReader(64 * 1024 * 1024);
  const waiting: ((reply: string) => void)[] = [];
  connection.on("data", (chunk) => {
    for (const frame of reader.push(chunk)) if (frame.kind === "item") waiting.shift()?.(frame.value.toString("utf8"));
  });
  const started = performance.now();
  try {
    await inWindow(frames.length, async (index) => {
      const reply = await new Promise<string>((resolve) => {
        waiting.push(resolve);
        connection.write(frames[index] as Buffer);
      });
      if (!reply.includes('"Success"')) throw new Error(`Events answered ${reply.slice(0, 200)}`);
    });
  } finally {
    connection.end();
  }
  return {
    path: "events",
    spans: spanCount(batches),
    seconds: (performance.now() - started) / 1000,
    bytes: frames.reduce((sum, frame) => sum + frame.length, 0),
  };
}

/** One span as JSON-lines events (times in milliseconds), the root also starting its run. */
function jsonEvents(span: ReadableSpan): unknown[] {
  const { traceId, spanId } = span.spanContext();
  const parentId = span.parentSpanContext?.spanId ?? null;
  const startMs = span.startTime[0] * 1000 + span.startTime[1] / 1e6;
  const endMs = span.endTime[0] * 1000 + span.endTime[1] / 1e6;
  const events: unknown[] = [];
  if (parentId === null) events.push({ type: "run_start", run_id: traceId, app: "bench-web", ts_ms: startMs });
  events.push(
    {
      type: "span_start",
      run_id: traceId,
      span_id: spanId,
      parent_id: parentId,
      name: span.name,
      kind: parentId === null ? "server" : "internal",
      tags: span.attributes,
      start_ms: startMs,
    },
    { type: "span_end", run_id: traceId, span_id: spanId, status: "ok", end_ms: endMs },
  );
  return events;
}

/** Runs `send(0..count-1)` with at most WINDOW in flight. */
async function inWindow(count: number, send: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count) await send(next++);
  };
  await Promise.all(Array.from({ length: Math.min(WINDOW, count) }, lane));
}

function spanCount(batches: ReadableSpan[][]): number {
  return batches.reduce((sum, batch) => sum + batch.length, 0);
}

function open(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}
