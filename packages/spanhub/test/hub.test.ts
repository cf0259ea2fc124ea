import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { buildHubApp } from "../src/hub/hubApp.js";
import { EventWriter } from "../src/ingest/eventWriter.js";
import { Metrics } from "../src/observability/metrics.js";
import { SqliteStore } from "../src/store/sqlite/sqliteStore.js";
import type { Store } from "../src/store/store.js";
import { runCli, tempHome } from "./processHelpers.js";

const T0 = Date.UTC(2026, 10, 23, 8, 0, 0);

describe("hub HTTP API (in process, real SQLite file)", () => {
  const home = tempHome();
  let store: Store;
  let app: FastifyInstance;
  const post = (body: unknown, contentType = "application/json") =>
    app.inject({
      method: "POST",
      url: "/api/v1/events",
      headers: { "content-type": contentType },
      payload: typeof body === "string" ? body : JSON.stringify(body),
    });

  before(async () => {
    store = new SqliteStore({ dataDir: home.data });
    const metrics = new Metrics();
    const logger = pino({ level: "silent" });
    app = buildHubApp({
      store,
      writer: new EventWriter(store, metrics, logger),
      metrics,
      logger,
      maxBodyBytes: 1 << 20,
    });
    const events = [];
    for (let index = 0; index < 12; index++) {
      const runId = `run-${String(index).padStart(2, "0")}`;
      events.push(
        {
          type: "run_start",
          run_id: runId,
          name: index % 2 ? "nightly-report" : "hourly-sync",
          app: index % 3 ? "etl" : "web",
          ts_ms: T0 + index * 1000,
          tags: { team: index % 2 ? "data" : "web", shard: index },
        },
        { type: "span_start", run_id: runId, span_id: "root", name: "main", ts_ms: T0 + index * 1000 + 1 },
        {
          type: "span_end",
          run_id: runId,
          span_id: "root",
          ts_ms: T0 + index * 1000 + 11,
          status: index === 4 ? "failed" : "ok",
        },
      );
      if (index < 10) events.push({ type: "run_end", run_id: runId, ts_ms: T0 + index * 1000 + 20 });
    }
    const response = await post(events);
    assert.equal(response.statusCode, 200, response.body);
  });
  after(async () => {
    await app.close();
    await store.close();
    home.cleanup();
  });

  it("lists runs newest first with the documented fields", async () => {
    const { runs, nextCursor } = (await app.inject("/api/v1/runs?limit=3")).json();
    assert.deepEqual(
      runs.map((run: { id: string }) => run.id),
      ["run-11", "run-10", "run-09"],
    );
    assert.ok(nextCursor);
    const run = runs[2];
    for (const field of [
      "id",
      "app",
      "name",
      "status",
      "startTime",
      "endTime",
      "durationMs",
      "spanCount",
      "errorCount",
      "tags",
    ])
      assert.ok(field in run, field);
    assert.equal(run.startTime, "2026-11-23T08:00:09.000000Z");
    assert.equal(run.durationMs, 20);
    assert.equal(runs[0].status, "running");
    assert.equal(runs[0].durationMs, null);
  });

  it("pages with a cursor through every run exactly once", async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `&cursor=${cursor}` : "";
      const page: { runs: { id: string }[]; nextCursor: string | null } = (
        await app.inject(`/api/v1/runs?limit=5${query}`)
      ).json();
      seen.push(...page.runs.map((run) => run.id));
      cursor = page.nextCursor;
    } while (cursor);
    assert.equal(seen.length, 12);
    assert.equal(new Set(seen).size, 12);
  });

  it("filters by status, name, app, time range and tag", async () => {
    const ids = async (query: string) =>
      (await app.inject(`/api/v1/runs?${query}`)).json().runs.map((run: { id: string }) => run.id);
    assert.deepEqual(await ids("status=failed"), ["run-04"]);
    assert.deepEqual(await ids("status=running"), ["run-11", "run-10"]);
    assert.equal((await ids("name=nightly")).length, 6);
    assert.deepEqual(await ids("app=web"), ["run-09", "run-06", "run-03", "run-00"]);
    assert.deepEqual(await ids(`since=${T0 + 10_000}`), ["run-11", "run-10"]);
    assert.deepEqual(await ids(`until=2026-11-23T08:00:02Z`), ["run-01", "run-00"]);
    assert.deepEqual(await ids("tag=shard:7"), ["run-07"]);
    assert.equal((await ids("tag=team:data")).length, 6);
  });

  it("answers bad queries with a JSON error and a 4xx", async () => {
    for (const [url, status] of [
      ["/api/v1/runs?status=weird", 400],
      ["/api/v1/runs?since=yesterday", 400],
      ["/api/v1/runs?limit=0", 400],
      ["/api/v1/runs?tag=nocolon", 400],
      ["/api/v1/runs?cursor=garbage", 400],
      ["/api/v1/runs/nope", 404],
      ["/api/v1/runs/nope/spans", 404],
      ["/api/v1/nothing", 404],
    ] as const) {
      const response = await app.inject(url);
      assert.equal(response.statusCode, status, url);
      const { error } = response.json();
      assert.equal(typeof error.code, "string", url);
      assert.ok(error.message.length > 0, url);
    }
  });

  it("returns a run's spans with times, durations and errors", async () => {
    const { spans } = (await app.inject("/api/v1/runs/run-04/spans")).json();
    assert.equal(spans.length, 1);
    assert.equal(spans[0].status, "failed");
    assert.equal(spans[0].durationMs, 10);
    assert.equal(spans[0].parentId, null);
    assert.equal((await app.inject("/api/v1/runs/run-04")).json().errorCount, 1);
  });

  it("ends a run through PATCH, and refuses to end an ended run differently", async () => {
    const patch = (id: string, body: unknown) =>
      app.inject({ method: "PATCH", url: `/api/v1/runs/${id}`, payload: body as object });
    const crashed = await patch("run-10", { status: "crashed", reason: "reconciler: pod gone" });
    assert.equal(crashed.statusCode, 200);
    assert.equal(crashed.json().status, "crashed");
    assert.equal(crashed.json().reason, "reconciler: pod gone");
    assert.equal((await patch("run-10", { status: "crashed" })).statusCode, 200, "the same end again is fine");
    assert.equal((await patch("run-10", { status: "ok" })).statusCode, 409);
    assert.equal((await patch("run-01", { status: "failed" })).statusCode, 409);
    assert.equal((await patch("run-11", { status: "exploded" })).statusCode, 400);
    assert.equal((await patch("missing", { status: "ok" })).statusCode, 404);
    const abandoned = await patch("run-11", { status: "crashed", reason: "abandoned" });
    assert.equal(abandoned.json().status, "crashed");
    const real = await patch("run-11", { status: "stopped" });
    assert.equal(real.statusCode, 200, "a real end replaces an abandoned crash");
    assert.equal(real.json().status, "stopped");
  });

  it("takes NDJSON bodies, reports rejected members, and dedups by batch_id", async () => {
    const ndjson = [
      JSON.stringify({ type: "run_start", run_id: "nd-1", name: "ndjson" }),
      JSON.stringify({ type: "span_start", run_id: "nd-1", span_id: "a", name: "a" }),
      "",
    ].join("\n");
    const first = await post(ndjson, "application/x-ndjson");
    assert.equal(first.statusCode, 200, first.body);
    assert.equal(first.json().accepted, 2);
    const mixed = await post([
      { type: "span_end", run_id: "nd-1", span_id: "a" },
      { type: "bogus", run_id: "nd-1" },
    ]);
    assert.equal(mixed.statusCode, 207);
    assert.deepEqual(mixed.json().rejected, [{ index: 1, error: 'unknown event type "bogus"' }]);
    assert.equal((await post([{ type: "bogus" }])).statusCode, 400);
    const badLine = await post(
      `${JSON.stringify({ type: "run_tag", run_id: "nd-1", tags: { k: 1 } })}\n{oops\n`,
      "application/x-ndjson",
    );
    assert.equal(badLine.statusCode, 207, "a bad NDJSON line is skipped, the rest stored");
    assert.deepEqual(badLine.json().rejected, [{ index: 1, error: "line 2 is not valid JSON" }]);
    assert.equal((await post("{not json", "application/json")).statusCode, 400);
    const batch = {
      batch_id: "http-batch-1",
      events: [{ type: "span_log", run_id: "nd-1", span_id: "a", text: "hi" }],
    };
    assert.equal((await post(batch)).json().duplicate, false);
    assert.equal((await post(batch)).json().duplicate, true);
    const [span] = (await app.inject("/api/v1/runs/nd-1/spans")).json().spans;
    assert.equal(span.logs.length, 1);
    assert.equal(span.status, "ok");
  });

  it("exposes the raw event log in seq order", async () => {
    const { events } = (await app.inject("/api/v1/runs/nd-1/events")).json();
    assert.deepEqual(
      events.map((event: { seq: number }) => event.seq),
      events.map((_: unknown, index: number) => index + 1),
    );
    const tail = (await app.inject("/api/v1/runs/nd-1/events?after=2")).json().events;
    assert.equal(tail[0].seq, 3);
  });

  it("serves health and Prometheus metrics", async () => {
    assert.deepEqual((await app.inject("/healthz")).json(), { ok: true, engine: "sqlite" });
    const metrics = (await app.inject("/metrics")).body;
    for (const name of [
      "spanhub_agent_messages_total",
      "spanhub_events_committed_total",
      "spanhub_commit_batch_events",
      "spanhub_commit_seconds",
      "spanhub_agent_open_connections",
      "spanhub_agent_malformed_total",
    ])
      assert.ok(metrics.includes(name), name);
    assert.match(metrics, /spanhub_agent_messages_total\{protocol="http",command="run_start"\} 13/);
  });

  it("prints runs and a span tree from the command line", async () => {
    const runs = await runCli(["runs", "--data", home.data, "--status", "failed"]);
    assert.equal(runs.code, 0, runs.stderr);
    assert.match(runs.stdout, /^ID\s+NAME\s+STATUS/);
    assert.match(runs.stdout, /run-04\s+hourly-sync\s+failed/);
    assert.doesNotMatch(runs.stdout, /run-05/);
    const show = await runCli(["show", "run-04", "--data", home.data]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /hourly-sync\s+\[run-04\]/);
    assert.match(show.stdout, /└─ main\s+failed\s+10\.0ms/);
    const json = JSON.parse((await runCli(["show", "run-04", "--data", home.data, "--json"])).stdout);
    assert.equal(json.spans.length, 1);
    const missing = await runCli(["show", "nope", "--data", home.data]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no run "nope"/);
  });
});
