import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { context, TraceFlags, trace } from "@opentelemetry/api";
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { CompressionAlgorithm } from "@opentelemetry/otlp-exporter-base";
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { ExportTraceServiceResponse, RpcStatus } from "../src/protocols/otlpProto.js";
import { recordSampleTrace, SAMPLE_QUERY_ATTRIBUTES, sampleTrace, tracerProvider } from "./otlpHelpers.js";
import { getJson, type SpanhubProcess, startUp, tempHome, waitFor } from "./processHelpers.js";

const MAX_BODY = 64 * 1024;

describe("OTLP/HTTP into a real spanhub up", () => {
  const home = tempHome();
  let hub: SpanhubProcess;
  before(async () => {
    hub = await startUp(home, ["--max-frame", `${MAX_BODY}`, "--trace-idle", "300ms"]);
  });
  after(async () => {
    await hub.stop();
    home.cleanup();
  });

  /** Sends the sample trace through one of OpenTelemetry's own exporters and returns its trace id. */
  async function sendSample(exporter: SpanExporter): Promise<string> {
    const provider = tracerProvider([new SimpleSpanProcessor(exporter)]);
    const traceId = sampleTrace(provider.getTracer("spanhub-test"));
    await provider.forceFlush();
    await provider.shutdown();
    return traceId;
  }

  const exporters: [string, () => SpanExporter][] = [
    ["protobuf", () => new ProtobufExporter({ url: `${hub.url}/v1/traces` })],
    [
      "protobuf, gzip",
      () => new ProtobufExporter({ url: `${hub.url}/v1/traces`, compression: CompressionAlgorithm.GZIP }),
    ],
    ["JSON", () => new JsonExporter({ url: `${hub.url}/v1/traces` })],
  ];
  for (const [name, makeExporter] of exporters) {
    it(`keeps every span, attribute, event, exception and status sent by the ${name} exporter`, async () => {
      const traceId = await sendSample(makeExporter());
      const run = await waitFor(async () => {
        const { status, body } = await getJson(`${hub.url}/api/v1/runs/${traceId}`);
        return status === 200 && body.spanCount === 3 ? body : undefined;
      }, "the trace's run");
      assert.equal(run.app, "checkout");
      assert.equal(run.name, "GET /cart");
      assert.equal(run.errorCount, 1);
      assert.deepEqual(run.tags, { "deployment.environment": "test", ...telemetryTags(run.tags) });
      const { body } = await getJson(`${hub.url}/api/v1/runs/${traceId}/spans`);
      const byName = new Map(body.spans.map((span: { name: string }) => [span.name, span]));
      // biome-ignore lint/suspicious/noExplicitAny: API response
      const [root, handler, query] = ["GET /cart", "handler", "db.query"].map((key) => byName.get(key)) as any[];
      assert.equal(root.parentId, null);
      assert.equal(root.kind, "server");
      assert.equal(root.status, "ok");
      assert.deepEqual(root.tags, { "http.route": "/cart", "service.name": "checkout" });
      assert.equal(handler.parentId, root.id);
      assert.equal(query.parentId, handler.id);
      assert.match(query.id, /^[0-9a-f]{16}$/);
      assert.equal(query.kind, "client");
      assert.equal(query.status, "failed");
      assert.deepEqual(query.tags, { ...SAMPLE_QUERY_ATTRIBUTES, "service.name": "checkout" });
      assert.deepEqual(
        query.logs.map((log: { text: string }) => log.text),
        ['retrying {"attempt":2}'],
      );
      assert.equal(query.error.type, "TypeError");
      assert.equal(query.error.message, "connection reset");
      assert.match(query.error.stack, /TypeError: connection reset\n\s+at /);
      assert.ok(Date.parse(query.startTime) >= Date.parse(handler.startTime));
    });
  }

  it("ends a trace's run once it went quiet, as its root span ended; later spans are kept as late", async () => {
    const traceId = await sendSample(new ProtobufExporter({ url: `${hub.url}/v1/traces` }));
    const run = await waitFor(async () => {
      const { body } = await getJson(`${hub.url}/api/v1/runs/${traceId}`);
      return body?.status === "running" ? undefined : body;
    }, "the trace's run to end");
    const { body } = await getJson(`${hub.url}/api/v1/runs/${traceId}/spans`);
    const root = body.spans.find((span: { parentId: string | null }) => span.parentId === null);
    assert.deepEqual(
      { status: run.status, reason: run.reason, endTime: run.endTime },
      { status: "ok", reason: "trace_idle", endTime: root.endTime },
    );
    const provider = tracerProvider([new SimpleSpanProcessor(new ProtobufExporter({ url: `${hub.url}/v1/traces` }))]);
    const tracer = provider.getTracer("spanhub-test");
    const parent = trace.setSpanContext(context.active(), {
      traceId,
      spanId: root.id,
      traceFlags: TraceFlags.SAMPLED,
    });
    tracer.startSpan("late", {}, parent).end();
    await provider.shutdown();
    const late = await waitFor(async () => {
      const { body: again } = await getJson(`${hub.url}/api/v1/runs/${traceId}`);
      return again.lateEvents > 0 ? again : undefined;
    }, "the late span");
    assert.equal(late.status, "ok");
  });

  it("folds OpenTelemetry GenAI attributes into the digest's tokens and cost by model, sealed when the trace ends", async () => {
    const provider = tracerProvider([new SimpleSpanProcessor(new ProtobufExporter({ url: `${hub.url}/v1/traces` }))]);
    const tracer = provider.getTracer("spanhub-test");
    const root = tracer.startSpan("agent.session");
    const parent = trace.setSpan(context.active(), root);
    for (const [model, input, output] of [
      ["gpt-x", 1200, 300],
      ["gpt-x", 800, 200],
      ["claude-y", 500, 50],
    ] as const) {
      const call = tracer.startSpan("chat", {}, parent);
      call.setAttributes({
        "gen_ai.request.model": model,
        "gen_ai.response.model": `${model}-2026`,
        "gen_ai.usage.input_tokens": input,
        "gen_ai.usage.output_tokens": output,
        "gen_ai.usage.cost": input / 100_000,
      });
      call.end();
    }
    root.end();
    await provider.shutdown();
    const traceId = root.spanContext().traceId;
    const { body } = await waitFor(async () => {
      const read = await getJson(`${hub.url}/api/v1/runs/${traceId}/digest`);
      return read.body?.digest?.sealed ? read : undefined;
    }, "the trace's sealed digest");
    assert.deepEqual(
      body.digest.models.map((model: { model: string; calls: number; inputTokens: number; outputTokens: number }) => [
        model.model,
        model.calls,
        model.inputTokens,
        model.outputTokens,
      ]),
      [
        ["gpt-x-2026", 2, 2000, 500],
        ["claude-y-2026", 1, 500, 50],
      ],
    );
    assert.equal(body.digest.totals.inputTokens, 2500);
    assert.ok(Math.abs(body.digest.totals.costUsd - 0.025) < 1e-12);
    assert.deepEqual(body.digest.outcome, { status: "ok", reason: "trace_idle" });
  });

  it("answers a protobuf ExportTraceServiceResponse, and the same body sent again is not applied twice", async () => {
    const { spans, traceId } = recordSampleTrace();
    const body = ProtobufTraceSerializer.serializeRequest(spans) as Uint8Array;
    for (let attempt = 0; attempt < 2; attempt++) {
      const response = await post(body, "application/x-protobuf");
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "application/x-protobuf");
      const answer = ExportTraceServiceResponse.decode(new Uint8Array(await response.arrayBuffer()));
      assert.equal(answer.partialSuccess ?? undefined, undefined);
    }
    const { body: events } = await getJson(`${hub.url}/api/v1/runs/${traceId}/events`);
    const received = events.events.filter((event: { kind: string }) => event.kind !== "run_end");
    assert.equal(received.length, 4, "one run start and three spans, once (a run end may follow them)");
  });

  it("answers a partial success when some spans have bad ids, in the request's JSON", async () => {
    const span = (traceId: string) => ({ traceId, spanId: "b7ad6b7169203331", name: "s", startTimeUnixNano: "1" });
    const body = {
      resourceSpans: [{ scopeSpans: [{ spans: [span("0af7651916cd43dd8448eb211c80319d"), span("00")] }] }],
    };
    const response = await post(Buffer.from(JSON.stringify(body)), "application/json");
    assert.equal(response.status, 200);
    const answer = (await response.json()) as { partialSuccess: { rejectedSpans: string; errorMessage: string } };
    assert.equal(answer.partialSuccess.rejectedSpans, "1");
    assert.match(answer.partialSuccess.errorMessage, /trace_id must be 16 bytes/);
    assert.equal((await getJson(`${hub.url}/api/v1/runs/0af7651916cd43dd8448eb211c80319d`)).status, 200);
  });

  it("refuses bad bodies with a clear 4xx and keeps serving", async () => {
    const good = ProtobufTraceSerializer.serializeRequest(recordSampleTrace().spans) as Uint8Array;
    const malformed = await post(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f]), "application/x-protobuf");
    assert.equal(malformed.status, 400);
    assert.match(rpcMessage(await malformed.arrayBuffer()), /not an OTLP ExportTraceServiceRequest/);

    const wrongType = await post(good, "text/csv");
    assert.equal(wrongType.status, 415);
    assert.match(((await wrongType.json()) as { message: string }).message, /send application\/x-protobuf/);

    const oversized = await post(Buffer.alloc(MAX_BODY + 1), "application/x-protobuf");
    assert.equal(oversized.status, 413);

    const inflatesTooFar = await post(gzipSync(Buffer.alloc(MAX_BODY * 4)), "application/x-protobuf", "gzip");
    assert.equal(inflatesTooFar.status, 413);

    const gzipped = gzipSync(good);
    const truncated = await post(gzipped.subarray(0, gzipped.length - 10), "application/x-protobuf", "gzip");
    assert.equal(truncated.status, 400);
    assert.match(rpcMessage(await truncated.arrayBuffer()), /gzip/);

    const badJson = await post(Buffer.from('{"resourceSpans": 7}'), "application/json");
    assert.equal(badJson.status, 400);
    assert.match(((await badJson.json()) as { message: string }).message, /resourceSpans/);

    assert.equal((await post(good, "application/x-protobuf")).status, 200, "still serving");
    const metrics = await (await fetch(`${hub.url}/metrics`)).text();
    assert.match(metrics, /spanhub_agent_malformed_total\{protocol="otlp"\} [2-9]/);
  });

  function post(body: Uint8Array, contentType: string, encoding?: string): Promise<Response> {
    return fetch(`${hub.url}/v1/traces`, {
      method: "POST",
      headers: { "content-type": contentType, ...(encoding ? { "content-encoding": encoding } : {}) },
      body,
    });
  }
});

function rpcMessage(body: ArrayBuffer): string {
  return (RpcStatus.decode(new Uint8Array(body)) as unknown as { message: string }).message;
}

/** The SDK's own resource attributes (`telemetry.sdk.*`), which vary by version. */
function telemetryTags(tags: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(tags).filter(([key]) => key.startsWith("telemetry.")));
}
