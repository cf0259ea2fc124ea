import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import pino from "pino";
import { OtlpExporter } from "../src/export/otlpExporter.js";
import { buildOtlpApp } from "../src/hub/otlpRoutes.js";
import { EventWriter } from "../src/ingest/eventWriter.js";
import { Metrics } from "../src/observability/metrics.js";
import { createStore } from "../src/store/createStore.js";
import { readFixture, span, T0 } from "./helpers.js";
import { sampleTrace, tracerProvider } from "./otlpHelpers.js";
import {
  FrameClient,
  getJson,
  type SpanhubProcess,
  scoutBatch,
  startCli,
  startUp,
  tempHome,
  waitFor,
} from "./processHelpers.js";

/** Run fields that must match on both sides (`lastSeq` differs: OTLP carries coalesced spans). */
const RUN_FIELDS = [
  "id",
  "app",
  "name",
  "status",
  "reason",
  "error",
  "startTime",
  "endTime",
  "durationMs",
  "spanCount",
  "errorCount",
  "tags",
  "host",
  "pid",
  "parentRunId",
  "parentSpanId",
];

/** Scout requests split over many frames: every command alone, with the spanhub extensions. */
function splitRequest(requestId: string): unknown[] {
  const at = (ms: number) => new Date(Date.UTC(2026, 10, 23, 9, 0, 0) + ms).toISOString();
  return [
    { StartRequest: { request_id: requestId, timestamp: at(0), tags: { user: 42, beta: true } } },
    {
      StartSpan: {
        request_id: requestId,
        span_id: "web",
        parent_id: null,
        operation: "Controller/a",
        timestamp: at(1),
      },
    },
    {
      StartSpan: {
        request_id: requestId,
        span_id: "db",
        parent_id: "web",
        operation: "SQL/Query",
        kind: "rpc",
        rpc_service: "postgres",
        rpc_method: "query",
        tags: { "db.statement": "SELECT 1", nested: { a: [1, "x", null] }, ratio: 0.5 },
        timestamp: at(2),
      },
    },
    { LogSpan: { request_id: requestId, span_id: "db", text: "retrying", timestamp: at(3) } },
    { TagSpan: { request_id: requestId, span_id: "db", tag: "attempt", value: 2, timestamp: at(4) } },
    {
      StopSpan: {
        request_id: requestId,
        span_id: "db",
        status: "timed_out",
        error: { type: "TimeoutError", message: "query timed out", stack: "at db.js:1" },
        timestamp: at(5),
      },
    },
    { StopSpan: { request_id: requestId, span_id: "web", timestamp: at(6) } },
    { FinishRequest: { request_id: requestId, status: "failed", error: "upstream timed out", timestamp: at(7) } },
  ];
}

describe("OTLP export: Scout frames into an agent, forwarded to a second spanhub", () => {
  const sideA = tempHome();
  const sideB = tempHome();
  let hubB: SpanhubProcess;
  let upA: SpanhubProcess;
  let agentC: SpanhubProcess;
  const agentHome = tempHome();
  before(async () => {
    hubB = await startCli(["hub", "--data", sideB.data, "--port", "0"]);
    const exportTo = `${hubB.url}/v1/traces`;
    upA = await startExportingUp(sideA, exportTo);
    agentC = await startCli([
      "agent",
      "--data",
      agentHome.data,
      "--socket",
      agentHome.socket,
      "--otlp-http",
      "127.0.0.1:0",
      "--export-otlp",
      exportTo,
    ]);
  });
  after(async () => {
    await Promise.all([upA.stop(), agentC.stop()]);
    await hubB.stop();
    for (const home of [sideA, sideB, agentHome]) home.cleanup();
  });

  it("gives the same runs and span trees on both sides", async () => {
    const client = await FrameClient.open(sideA.socket);
    const runIds: string[] = [];
    await client.send(readFixture("scout/register.json"));
    for (const file of readdirSync(new URL("../../test/fixtures/scout", import.meta.url)).filter((name) =>
      name.startsWith("batch-"),
    )) {
      const batch = readFixture<{ BatchCommand: { commands: Record<string, { request_id?: string }>[] } }>(
        `scout/${file}`,
      );
      await client.send(batch);
      for (const command of batch.BatchCommand.commands) {
        const requestId = Object.values(command)[0]?.request_id;
        if (requestId && !runIds.includes(requestId)) runIds.push(requestId);
      }
    }
    for (let index = 0; index < 5; index++) {
      await client.send(scoutBatch(`req-${index}`, 7));
      runIds.push(`req-${index}`);
    }
    for (const command of splitRequest("req-split")) assert.ok(!("Failure" in (await client.send(command))));
    runIds.push("req-split");
    client.close();

    for (const runId of runIds) {
      const [a, b] = await waitFor(async () => {
        const sides = await Promise.all([upA.url, hubB.url].map((url) => getJson(`${url}/api/v1/runs/${runId}`)));
        return sides.every((side) => side.status === 200 && side.body.status !== "running") &&
          sides[0]?.body.spanCount === sides[1]?.body.spanCount
          ? sides.map((side) => side.body)
          : undefined;
      }, `run ${runId} on both sides`);
      assert.deepEqual(pick(b, RUN_FIELDS), pick(a, RUN_FIELDS), `run ${runId}`);
      const [spansA, spansB] = await Promise.all(
        [upA.url, hubB.url].map(async (url) => (await getJson(`${url}/api/v1/runs/${runId}/spans`)).body.spans),
      );
      assert.deepEqual(spansB, spansA, `spans of ${runId}`);
    }
    const split = (await getJson(`${hubB.url}/api/v1/runs/req-split/spans`)).body.spans;
    const db = split.find((span: { id: string }) => span.id === "db");
    assert.deepEqual(
      { status: db.status, rpc: [db.rpcService, db.rpcMethod], logs: db.logs.length },
      { status: "timed_out", rpc: ["postgres", "query"], logs: 1 },
    );
    const metrics = await (await fetch(`${upA.url}/metrics`)).text();
    assert.match(metrics, /spanhub_otlp_export_spans_total\{destination="[^"]+"\} \d+/);
    assert.doesNotMatch(metrics, /spanhub_otlp_export_dropped_spans_total\{[^}]*\} [1-9]/);
  });

  it("takes OpenTelemetry traces on the agent's --otlp-http and forwards them with their ids", async () => {
    const otlpUrl = /OTLP (http[^\s,]+)/.exec(agentC.stdout())?.[1];
    assert.ok(otlpUrl, agentC.stdout());
    const provider = tracerProvider([new SimpleSpanProcessor(new OTLPTraceExporter({ url: otlpUrl }))]);
    const traceId = sampleTrace(provider.getTracer("spanhub-test"));
    await provider.shutdown();
    const spans = await waitFor(async () => {
      const { status, body } = await getJson(`${hubB.url}/api/v1/runs/${traceId}/spans`);
      return status === 200 && body.spans.length === 3 ? body.spans : undefined;
    }, "the forwarded trace");
    const names = spans.map((span: { name: string }) => span.name).sort();
    assert.deepEqual(names, ["GET /cart", "db.query", "handler"]);
    const query = spans.find((span: { name: string }) => span.name === "db.query");
    assert.match(query.id, /^[0-9a-f]{16}$/);
    assert.equal(query.error.type, "TypeError");
    assert.equal(query.tags.rows, 42);
  });
});

function pick(value: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((key) => [key, value[key]]));
}

describe("OTLP export retries", () => {
  it("keeps retrying while the destination is down and delivers once it is up", async () => {
    const sideA = tempHome();
    const sideB = tempHome();
    const port = await freePort();
    const upA = await startExportingUp(sideA, `http://127.0.0.1:${port}/v1/traces`);
    let hubB: SpanhubProcess | undefined;
    try {
      const client = await FrameClient.open(sideA.socket);
      await client.send(scoutBatch("req-retry", 3));
      client.close();
      await waitFor(async () => {
        const metrics = await (await fetch(`${upA.url}/metrics`)).text();
        return /spanhub_otlp_export_retries_total\{[^}]*\} [1-9]/.test(metrics) ? true : undefined;
      }, "a retry");
      hubB = await startCli(["hub", "--data", sideB.data, "--port", String(port)]);
      const run = await waitFor(async () => {
        const { status, body } = await getJson(`${hubB?.url}/api/v1/runs/req-retry`);
        return status === 200 && body.status === "ok" ? body : undefined;
      }, "the run delivered after the retries");
      assert.equal(run.spanCount, 3);
    } finally {
      await upA.stop();
      await hubB?.stop();
      sideA.cleanup();
      sideB.cleanup();
    }
  });
});

describe("OTLP export limits", () => {
  it("counts spans dropped by a full queue, a refusing destination and shutdown", async () => {
    const metrics = new Metrics();
    const logger = pino({ level: "silent" });
    // spanhub's own OTLP endpoint with a tiny body limit refuses every batch with 413 (not retryable).
    const home = tempHome();
    const store = createStore({ dataDir: home.data });
    const writer = new EventWriter(store, metrics, logger);
    const server = buildOtlpApp({ writer, metrics, logger, maxBodyBytes: 16 });
    await server.listen({ host: "127.0.0.1", port: 0 });
    const address = server.server.address();
    const refusing = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}/v1/traces`;
    const down = `http://127.0.0.1:${await freePort()}/v1/traces`;
    const exporter = new OtlpExporter({ urls: [refusing, down], metrics, logger, maxQueueSpans: 4, flushDelayMs: 10 });
    try {
      exporter.committed([
        { events: Array.from({ length: 6 }, (_, index) => span("run-1", `s${index}`, null, T0, T0 + 10)) },
      ]);
      const dropped = async (destination: string, reason: string) =>
        (await metrics.exportDropped.get()).values.find(
          (value) => value.labels.destination === destination && value.labels.reason === reason,
        )?.value;
      assert.equal(await dropped(refusing, "queue_full"), 2);
      assert.equal(await dropped(down, "queue_full"), 2);
      await waitFor(async () => ((await dropped(refusing, "rejected")) === 4 ? true : undefined), "the refusal");
      await waitFor(
        async () => ((await metrics.exportRetries.get()).values.some((value) => value.value > 0) ? true : undefined),
        "a retry of the unreachable destination",
      );
      await exporter.close(100);
      assert.equal(await dropped(down, "retries_exhausted"), 4, "what was still being retried at shutdown");
    } finally {
      await server.close();
      await store.close();
      home.cleanup();
    }
  });
});

/** `spanhub up` in the home's directories, forwarding to `url`. */
function startExportingUp(home: ReturnType<typeof tempHome>, url: string): Promise<SpanhubProcess> {
  return startUp(home, ["--export-otlp", url]);
}

/** A port nothing listens on (taken from the OS, then released). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}
