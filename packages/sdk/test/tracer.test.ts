import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { after, before, describe, test } from "node:test";
import { createTracer, type Span, type Tracer } from "../src/index.js";
import {
  type AgentProcess,
  type Home,
  messageCount,
  readStore,
  type SpanRow,
  sleep,
  startAgent,
  tempHome,
  waitFor,
} from "./helpers.js";

describe("tracer against a real agent", () => {
  let home: Home;
  let agent: AgentProcess;
  let tracer: Tracer;
  before(async () => {
    home = tempHome();
    agent = await startAgent(home);
    tracer = createTracer({ app: "billing", socket: home.socket, launch: false, flushIntervalMs: 60_000 });
  });
  after(async () => {
    await tracer.shutdown();
    await home.cleanup();
  });

  const spansOf = (runId: string): SpanRow[] => readStore(home).spans.filter((span) => span.run_id === runId);

  test("a request finished within one window is one BatchCommand with its whole tree", async () => {
    assert.equal(await tracer.flush(), true);
    const before = await messageCount(agent.metricsUrl, "BatchCommand");
    const started = Date.now();
    const ids: string[] = [];
    for (let index = 0; index < 5; index++) {
      await tracer.request(
        `GET /invoices/${index}`,
        async (root) => {
          ids.push(root.runId);
          await tracer.span("SQL/Query", async (span) => {
            span.tag("db.statement", "SELECT 1");
            span.log("3 rows");
            await tracer.span("SQL/Fetch", async () => {});
          });
          await tracer.span("Render", async () => {});
        },
        { tags: { user: 42 } },
      );
    }
    assert.equal(await tracer.flush(), true);
    assert.equal((await messageCount(agent.metricsUrl, "BatchCommand")) - before, 5);
    const { runs } = readStore(home);
    for (const id of ids) {
      const run = runs.find((row) => row.id === id);
      assert.ok(run, `run ${id} stored`);
      assert.equal(run.status, "ok");
      assert.equal(run.app, "billing");
      assert.equal(run.pid, process.pid);
      assert.match(run.name ?? "", /^GET \/invoices\/\d$/);
      assert.equal(JSON.parse(run.tags).user, 42);
      const mine = spansOf(id);
      assert.equal(mine.length, 4);
      const root = mine.find((span) => span.parent_id === null);
      const query = mine.find((span) => span.name === "SQL/Query");
      const fetch = mine.find((span) => span.name === "SQL/Fetch");
      const render = mine.find((span) => span.name === "Render");
      assert.equal(root?.name, run.name);
      assert.equal(query?.parent_id, root?.span_id);
      assert.equal(render?.parent_id, root?.span_id);
      assert.equal(fetch?.parent_id, query?.span_id);
      assert.deepEqual(JSON.parse(query?.tags ?? "{}"), { "db.statement": "SELECT 1" });
      // Sent as spanhub's LogSpan: a log with its own time, not a tag.
      const [log] = JSON.parse(query?.logs ?? "[]") as { time: number; text: string }[];
      assert.equal(log?.text, "3 rows");
      assert.ok(Math.abs((log?.time ?? 0) / 1000 - started) < 60_000, "the log keeps its time");
      assert.equal(root?.kind, "request");
    }
  });

  test("nesting follows async context across await, timers, emitters and concurrent requests", async () => {
    const expected = new Map<string, string>(); // span name -> parent span name
    const work = (label: string) =>
      tracer.request(`job ${label}`, async () => {
        await tracer.span(`${label}.outer`, async () => {
          await sleep(5);
          await new Promise<void>((resolve) =>
            setTimeout(() => {
              tracer.span(`${label}.timer`, () => {});
              resolve();
            }, 3),
          );
          const emitter = new EventEmitter();
          const done = new Promise<void>((resolve) =>
            emitter.once("go", () => {
              tracer.span(`${label}.emitted`, () => {});
              resolve();
            }),
          );
          setImmediate(() => emitter.emit("go"));
          await done;
          await Promise.all([1, 2].map((n) => tracer.span(`${label}.parallel${n}`, () => sleep(n))));
        });
        await tracer.span(`${label}.after`, async () => {
          await Promise.resolve();
          tracer.currentSpan()?.tag("seen", label);
        });
      });
    for (const label of ["a", "b", "c"]) {
      for (const child of ["timer", "emitted", "parallel1", "parallel2"])
        expected.set(`${label}.${child}`, `${label}.outer`);
      expected.set(`${label}.outer`, `job ${label}`);
      expected.set(`${label}.after`, `job ${label}`);
    }
    await Promise.all(["a", "b", "c"].map(work));
    assert.equal(await tracer.flush(), true);
    const { runs, spans } = readStore(home);
    for (const label of ["a", "b", "c"]) {
      const run = runs.find((row) => row.name === `job ${label}`);
      assert.ok(run);
      const mine = spans.filter((span) => span.run_id === run.id);
      assert.equal(mine.length, 7, `${label}: ${mine.map((span) => span.name).join(", ")}`);
      const byId = new Map(mine.map((span) => [span.span_id, span]));
      for (const span of mine) {
        if (span.parent_id === null) continue;
        assert.equal(byId.get(span.parent_id)?.name, expected.get(span.name ?? ""), `parent of ${span.name}`);
      }
      assert.equal(JSON.parse(mine.find((span) => span.name === `${label}.after`)?.tags ?? "{}").seen, label);
    }
    assert.equal(tracer.currentSpan(), undefined);
  });

  test("a thrown error fails the span and the request and is rethrown unchanged", async () => {
    const boom = new TypeError("bad invoice");
    let runId = "";
    await assert.rejects(
      tracer.request("POST /pay", async (root) => {
        runId = root.runId;
        await tracer.span("charge", async () => {
          throw boom;
        });
      }),
      (error) => error === boom,
    );
    let syncRunId = "";
    const thrown = new RangeError("sync");
    assert.throws(
      () =>
        tracer.request("sync", (root) => {
          syncRunId = root.runId;
          tracer.span("inner", () => {
            throw thrown;
          });
        }),
      (error) => error === thrown,
    );
    assert.equal(await tracer.flush(), true);
    const run = readStore(home).runs.find((row) => row.id === runId);
    assert.equal(run?.status, "failed");
    assert.equal(JSON.parse(run?.error ?? "{}").message, "bad invoice");
    const charge = spansOf(runId).find((span) => span.name === "charge");
    assert.equal(charge?.status, "failed");
    // Sent as StopSpan's error field (spanhub 0.2), not as tags.
    assert.deepEqual(JSON.parse(charge?.tags ?? "{}"), {});
    const error = JSON.parse(charge?.error ?? "{}");
    assert.equal(error.type, "TypeError");
    assert.equal(error.message, "bad invoice");
    assert.match(error.stack, /bad invoice/);
    assert.equal(readStore(home).runs.find((row) => row.id === syncRunId)?.status, "failed");
  });

  test("instrument makes each public method call a span; private members pass through", async () => {
    class Db {
      calls: string[] = [];
      _secret = "s3";
      async query(sql: string) {
        this.calls.push(sql);
        await sleep(2);
        return [sql];
      }
      count() {
        return this.calls.length;
      }
      async fail() {
        throw new Error("db down");
      }
      _internal() {
        return this._secret;
      }
    }
    const raw = new Db();
    const db = tracer.instrument(raw, "postgres");
    let runId = "";
    await tracer.request("GET /report", async (root) => {
      runId = root.runId;
      assert.deepEqual(await db.query("SELECT 1"), ["SELECT 1"]);
      assert.equal(db.count(), 1);
      assert.equal(db._internal(), "s3");
      assert.equal(db._secret, "s3");
      await assert.rejects(db.fail(), /db down/);
    });
    assert.equal(db.query, db.query, "wrappers are stable");
    assert.deepEqual(await db.query("outside"), ["outside"], "works outside a request too");
    assert.equal(await tracer.flush(), true);
    const mine = spansOf(runId);
    assert.deepEqual(mine.map((span) => span.name).sort(), [
      "GET /report",
      "postgres.count",
      "postgres.fail",
      "postgres.query",
    ]);
    const query = mine.find((span) => span.name === "postgres.query");
    assert.equal(query?.rpc_service, "postgres");
    assert.equal(query?.rpc_method, "query");
    assert.equal(query?.kind, "rpc");
    assert.deepEqual(JSON.parse(query?.tags ?? "{}"), {});
    assert.equal(mine.find((span) => span.name === "postgres.fail")?.status, "failed");
  });

  test("inject and headers link a downstream run to the calling span", async () => {
    let upstream = { runId: "", spanId: "" };
    const headers: Record<string, string> = {};
    await tracer.request("frontend", async () => {
      await tracer.span("call backend", async (span: Span) => {
        upstream = { runId: span.runId, spanId: span.id };
        tracer.inject(headers);
      });
    });
    assert.match(headers.traceparent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.equal(await tracer.flush(), true);
    const batchesBefore = await messageCount(agent.metricsUrl, "BatchCommand");
    const eventsBefore = await messageCount(agent.metricsUrl, "Events");
    let downstream = "";
    await tracer.request(
      "backend",
      async (root) => {
        downstream = root.runId;
      },
      { headers: { TraceParent: headers.traceparent } },
    );
    assert.equal(await tracer.flush(), true);
    // A linked request is exactly one frame: the link rides on StartRequest, no Events frame.
    assert.equal((await messageCount(agent.metricsUrl, "BatchCommand")) - batchesBefore, 1);
    assert.equal((await messageCount(agent.metricsUrl, "Events")) - eventsBefore, 0);
    const run = readStore(home).runs.find((row) => row.id === downstream);
    assert.equal(run?.parent_run_id, upstream.runId);
    assert.equal(run?.parent_span_id, upstream.spanId);
    assert.equal(run?.name, "backend");
    assert.equal(run?.status, "ok");
  });

  test("the manual API records what callbacks cannot wrap", async () => {
    const request = tracer.startRequest("stream", { tags: { kind: "manual" } });
    const a = request.startSpan("a");
    const b = request.startSpan("b", { parent: a, tags: { size: 3 } });
    b.tag("more", true).log("half way");
    b.end({ status: "failed", error: new Error("cut off") });
    a.end();
    request.tag("rows", 7);
    request.end();
    request.end();
    assert.equal(await tracer.flush(), true);
    const run = readStore(home).runs.find((row) => row.id === request.id);
    assert.equal(run?.status, "failed");
    assert.deepEqual(JSON.parse(run?.tags ?? "{}"), { kind: "manual", rows: 7 });
    const mine = spansOf(request.id);
    const spanA = mine.find((span) => span.name === "a");
    const spanB = mine.find((span) => span.name === "b");
    assert.equal(spanA?.parent_id, request.root.id);
    assert.equal(spanB?.parent_id, spanA?.span_id);
    assert.equal(spanB?.status, "failed");
    assert.deepEqual(JSON.parse(spanB?.tags ?? "{}"), { size: 3, more: true });
    assert.equal(JSON.parse(spanB?.error ?? "{}").message, "cut off");
    assert.deepEqual(
      (JSON.parse(spanB?.logs ?? "[]") as { text: string }[]).map((log) => log.text),
      ["half way"],
    );
    const timedOut = tracer.startRequest("slow");
    timedOut.startSpan("wait").end({ status: "timed_out" });
    timedOut.end({ status: "cancelled" });
    assert.equal(await tracer.flush(), true);
    assert.equal(readStore(home).runs.find((row) => row.id === timedOut.id)?.status, "cancelled");
    assert.equal(spansOf(timedOut.id).find((span) => span.name === "wait")?.status, "timed_out");
  });

  test("a long request goes out as one partial batch per window and becomes one run", async () => {
    const fast = createTracer({ app: "long", socket: home.socket, launch: false, flushIntervalMs: 150 });
    const before = await messageCount(agent.metricsUrl, "BatchCommand");
    let runId = "";
    const running = fast.request("long run", async (root) => {
      runId = root.runId;
      for (let step = 0; step < 4; step++) await fast.span(`step ${step}`, () => sleep(120));
    });
    // While it runs, what happened so far is already stored.
    await waitFor(() => (spansOf(runId).some((span) => span.name === "step 0") ? true : undefined), "a partial batch");
    assert.equal(readStore(home).runs.find((row) => row.id === runId)?.status, "running");
    await running;
    await fast.shutdown();
    const batches = (await messageCount(agent.metricsUrl, "BatchCommand")) - before;
    assert.ok(batches >= 2, `${batches} batches`);
    const run = readStore(home).runs.find((row) => row.id === runId);
    assert.equal(run?.status, "ok");
    assert.equal(spansOf(runId).length, 5);
    assert.ok(spansOf(runId).every((span) => span.status === "ok"));
  });

  test("maxSpansPerRequest caps the spans kept and counts the rest", async () => {
    const capped = createTracer({ app: "cap", socket: home.socket, launch: false, maxSpansPerRequest: 3 });
    let runId = "";
    await capped.request("many", async (root) => {
      runId = root.runId;
      for (let index = 0; index < 10; index++) await capped.span(`s${index}`, async () => {});
    });
    await capped.shutdown();
    assert.equal(spansOf(runId).length, 3);
    assert.equal(
      JSON.parse(readStore(home).runs.find((row) => row.id === runId)?.tags ?? "{}")["spanhub.dropped_spans"],
      8,
    );
  });
});
