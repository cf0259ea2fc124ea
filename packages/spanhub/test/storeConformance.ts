/**
 * The conformance suite every Store engine runs: it talks to the engine only through
 * the Store interface. Call `runStoreConformance(name, makeStore)` from a test file;
 * `makeStore` must return a fresh, empty store each time (the suite closes it).
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { coalesce } from "../src/model/coalesce.js";
import type { AppEvent, RunEvent, Submission, SubmitResult } from "../src/model/event.js";
import { type Micros, nowMicros } from "../src/model/time.js";
import type { RunQuery, RunRecord, SpanRecord } from "../src/store/records.js";
import type { Store } from "../src/store/store.js";
import { runEnd, runStart, runTag, sleep, span, spanEnd, spanLog, spanStart, spanTag, T0 } from "./helpers.js";

const SECOND = 1_000_000;

/** A request's spans: ctrl > (sql, tpl > part). Offsets from T0 in microseconds. */
const TREE = [
  { id: "ctrl", parent: null, name: "Controller/users", start: 10, end: 100 },
  { id: "sql", parent: "ctrl", name: "SQL/Query", start: 20, end: 30 },
  { id: "tpl", parent: "ctrl", name: "Template/Render", start: 40, end: 90 },
  { id: "part", parent: "tpl", name: "Template/Render", start: 50, end: 60 },
] as const;

/** The request as one agent sends it: spans in the order they stopped (children first), or depth-first. */
function requestEvents(runId: string, order: "children-first" | "depth-first"): RunEvent[] {
  const ids = order === "children-first" ? ["sql", "part", "tpl", "ctrl"] : ["ctrl", "sql", "tpl", "part"];
  const spans = ids.flatMap((id) => {
    const node = TREE.find((candidate) => candidate.id === id);
    assert.ok(node);
    return [
      spanStart(runId, id, node.parent, T0 + node.start, { name: node.name }),
      spanTag(runId, id, T0 + node.start, { component: id }),
      spanEnd(runId, id, T0 + node.end),
    ];
  });
  return [runStart(runId, T0), runTag(runId, T0, { path: "/users" }), ...spans, runEnd(runId, T0 + 110)];
}

/** What a span tree looks like, without ids of the run. */
function treeView(spans: SpanRecord[]) {
  return spans.map(({ id, parentId, name, status, startTime, endTime, tags }) => ({
    id,
    parentId,
    name,
    status,
    startTime,
    endTime,
    tags,
  }));
}

/** A run without the server-time field, for exact comparison. */
function runView(run: RunRecord | undefined): Omit<RunRecord, "lastEventAt"> {
  assert.ok(run, "expected the run to exist");
  const { lastEventAt: _server, ...rest } = run;
  return rest;
}

export function runStoreConformance(name: string, makeStore: () => Promise<Store>): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;
    beforeEach(async () => {
      store = await makeStore();
    });
    afterEach(async () => {
      await store.close();
    });

    async function submit(events: RunEvent[], extra: Omit<Submission, "events"> = {}): Promise<SubmitResult> {
      const [result] = await store.append([{ events, ...extra }]);
      assert.ok(result);
      return result;
    }

    async function getRun(id: string): Promise<RunRecord> {
      const run = await store.getRun(id);
      assert.ok(run, `run ${id} should exist`);
      return run;
    }

    async function spanById(runId: string, spanId: string): Promise<SpanRecord> {
      const found = (await store.listSpans(runId)).find((candidate) => candidate.id === spanId);
      assert.ok(found, `span ${spanId} of ${runId} should exist`);
      return found;
    }

    const ids = async (query: Omit<RunQuery, "limit"> & { limit?: number }) =>
      (await store.listRuns({ limit: 100, ...query })).runs.map((run) => run.id);

    describe("the event log", () => {
      it("numbers each run's events 1, 2, 3… across appends, separately per run", async () => {
        await submit([runStart("a", T0), runStart("b", T0), spanStart("a", "s", null, T0 + 1)]);
        await submit([spanEnd("a", "s", T0 + 2), runEnd("b", T0 + 3)]);
        await store.append([
          { events: [spanLog("a", "s", T0 + 4, "x")] },
          { events: [runEnd("a", T0 + 5), runTag("b", T0 + 6, { late: 1 })] },
        ]);
        const a = await store.listEvents("a", 0, 100);
        assert.deepEqual(
          a.map((event) => [event.seq, event.kind]),
          [
            [1, "run_start"],
            [2, "span_start"],
            [3, "span_end"],
            [4, "span_log"],
            [5, "run_end"],
          ],
        );
        assert.deepEqual(
          (await store.listEvents("b", 0, 100)).map((event) => event.seq),
          [1, 2, 3],
        );
        assert.equal((await getRun("a")).lastSeq, 5);
        assert.equal((await getRun("b")).lastSeq, 3);
      });

      it("pages through a long append's events from any seq", async () => {
        const events: RunEvent[] = [runStart("long", T0)];
        for (let index = 1; index < 150; index++)
          events.push(span("long", `s${index}`, null, T0 + index, T0 + index + 1, { tags: { index } }));
        await submit(events);
        const all = await store.listEvents("long", 0, 1000);
        assert.deepEqual(
          all.map((event) => event.seq),
          Array.from({ length: 150 }, (_, index) => index + 1),
        );
        assert.deepEqual(all[149]?.body.tags, { index: 149 });
        const page = await store.listEvents("long", 70, 10);
        assert.deepEqual(
          page.map((event) => [event.seq, event.body.spanId]),
          Array.from({ length: 10 }, (_, index) => [71 + index, `s${70 + index}`]),
        );
        assert.deepEqual(await store.listEvents("long", 150, 10), []);
        assert.deepEqual((await spanById("long", "s128")).tags, { index: 128 });
      });

      it("stores each event's fields in its body, and the server time of the append", async () => {
        const before = nowMicros();
        await submit([spanStart("a", "s", "p", T0 + 7, { name: "step", tags: { k: "v" } })]);
        const after = nowMicros();
        const [event] = await store.listEvents("a", 0, 10);
        assert.ok(event);
        assert.equal(event.kind, "span_start");
        assert.equal(event.late, false);
        assert.equal(event.body.spanId, "s");
        assert.equal(event.body.parentId, "p");
        assert.equal(event.body.time, T0 + 7);
        assert.deepEqual(event.body.tags, { k: "v" });
        assert.ok(event.ts >= before - SECOND && event.ts <= after + SECOND, "ts is the server's append time");
      });

      it("lists events after a seq, up to a limit", async () => {
        await submit([runStart("a", T0), ...[1, 2, 3, 4, 5].map((n) => runTag("a", T0 + n, { n }))]);
        assert.deepEqual(
          (await store.listEvents("a", 2, 2)).map((event) => [event.seq, event.body.tags]),
          [
            [3, { n: 2 }],
            [4, { n: 3 }],
          ],
        );
        assert.deepEqual(
          (await store.listEvents("a", 4, 100)).map((event) => event.seq),
          [5, 6],
        );
        assert.deepEqual(await store.listEvents("a", 6, 100), []);
        assert.deepEqual(await store.listEvents("nope", 0, 100), []);
      });

      it("keeps seq strictly increasing when many submissions for one run share an append", async () => {
        const submissions: Submission[] = Array.from({ length: 20 }, (_, i) => ({
          events: [spanStart("a", `s${i}`, null, T0 + i), spanEnd("a", `s${i}`, T0 + i + 1)],
        }));
        await store.append(submissions);
        await store.append(submissions.slice(0, 3));
        const seqs = (await store.listEvents("a", 0, 1000)).map((event) => event.seq);
        assert.deepEqual(
          seqs,
          Array.from({ length: 46 }, (_, i) => i + 1),
        );
      });
    });

    describe("batch ids", () => {
      const batch = (batchId: string): Submission => ({
        batchId,
        events: [runStart("r", T0), spanStart("r", "s", null, T0 + 1), spanLog("r", "s", T0 + 2, "once")],
      });

      it("acknowledges a batch committed before as a duplicate and applies nothing twice", async () => {
        assert.deepEqual(await store.append([batch("b-1")]), [{ duplicate: false, lateEnds: [] }]);
        assert.deepEqual(await store.append([batch("b-1")]), [{ duplicate: true, lateEnds: [] }]);
        assert.equal((await store.listEvents("r", 0, 100)).length, 3);
        assert.equal((await getRun("r")).lastSeq, 3);
        assert.equal((await getRun("r")).spanCount, 1);
        assert.deepEqual((await spanById("r", "s")).logs, [{ time: T0 + 2, text: "once" }]);
      });

      it("applies only the first of two copies in the same append", async () => {
        const results = await store.append([
          batch("b-2"),
          { events: [runTag("r", T0, { between: true })] },
          batch("b-2"),
        ]);
        assert.deepEqual(results, [
          { duplicate: false, lateEnds: [] },
          { duplicate: false, lateEnds: [] },
          { duplicate: true, lateEnds: [] },
        ]);
        assert.equal((await store.listEvents("r", 0, 100)).length, 4);
        assert.deepEqual((await spanById("r", "s")).logs, [{ time: T0 + 2, text: "once" }]);
      });

      it("applies a different batch id, and submissions without one, every time", async () => {
        await store.append([batch("b-3"), batch("b-4")]);
        await store.append([{ events: [runTag("r", T0, { a: 1 })] }, { events: [runTag("r", T0, { a: 1 })] }]);
        assert.equal((await store.listEvents("r", 0, 100)).length, 8);
        assert.equal((await spanById("r", "s")).logs.length, 2);
      });

      it("forgets batch ids pruned before a time, so the batch applies again", async () => {
        await store.append([batch("b-5")]);
        assert.equal(await store.pruneBatches(nowMicros() - 3600 * SECOND), 0);
        assert.deepEqual(await store.append([batch("b-5")]), [{ duplicate: true, lateEnds: [] }]);
        assert.equal(await store.pruneBatches(nowMicros() + SECOND), 1);
        assert.deepEqual(await store.append([batch("b-5")]), [{ duplicate: false, lateEnds: [] }]);
        assert.equal((await store.listEvents("r", 0, 100)).length, 6);
      });
    });

    describe("runs and span trees", () => {
      it("builds the same tree from children-first and depth-first requests (and from coalesced ones)", async () => {
        await submit(requestEvents("python", "children-first"));
        await submit(requestEvents("depth", "depth-first"));
        await submit(coalesce(requestEvents("coalesced", "children-first")));
        const python = treeView(await store.listSpans("python"));
        assert.deepEqual(
          python.map((row) => [row.id, row.parentId]),
          [
            ["ctrl", null],
            ["sql", "ctrl"],
            ["tpl", "ctrl"],
            ["part", "tpl"],
          ],
          "spans in start order, parents from parent ids",
        );
        assert.deepEqual(python[3], {
          id: "part",
          parentId: "tpl",
          name: "Template/Render",
          status: "ok",
          startTime: T0 + 50,
          endTime: T0 + 60,
          tags: { component: "part" },
        });
        assert.deepEqual(treeView(await store.listSpans("depth")), python);
        assert.deepEqual(treeView(await store.listSpans("coalesced")), python);
        for (const id of ["python", "depth", "coalesced"]) {
          const run = await getRun(id);
          assert.equal(run.name, "Controller/users", id);
          assert.equal(run.status, "ok", id);
          assert.equal(run.spanCount, 4, id);
          assert.equal(run.startTime, T0, id);
          assert.equal(run.endTime, T0 + 110, id);
          assert.deepEqual(run.tags, { path: "/users" }, id);
        }
      });

      it("keeps every run_start field and counts spans", async () => {
        await submit(
          [
            runStart("child", T0, {
              name: "import users",
              app: "flows",
              tags: { attempt: 2 },
              host: "worker-3",
              pid: 7199,
              parentRunId: "parent",
              parentSpanId: "span-9",
            }),
            span("child", "s", null, T0 + 1, T0 + 2, { name: "main" }),
            runEnd("child", T0 + 3),
          ],
          { app: "ignored-when-the-run-names-its-app" },
        );
        assert.deepEqual(runView(await store.getRun("child")), {
          id: "child",
          app: "flows",
          name: "import users",
          status: "ok",
          reason: null,
          error: null,
          startTime: T0,
          endTime: T0 + 3,
          tags: { attempt: 2 },
          host: "worker-3",
          pid: 7199,
          parentRunId: "parent",
          parentSpanId: "span-9",
          spanCount: 1,
          errorCount: 0,
          errorTagged: false,
          lastSeq: 3,
          lateCount: 0,
          nameRank: 3,
          endOnIdle: false,
          // Sealed by the run end itself: a 1 µs span reads as the first latency bound.
          digest: { outcome: { status: "ok", reason: null }, failedSpans: 0, p95Us: 10 },
        });
      });

      it("creates a run from a span event without run_start, starting when its span started", async () => {
        await submit([span("r1", "s", null, T0 + 5, T0 + 50, { name: "main" })], { app: "shop-web" });
        const run = await getRun("r1");
        assert.equal(run.status, "running");
        assert.equal(run.app, "shop-web");
        assert.equal(run.name, "main");
        assert.equal(run.spanCount, 1);
        assert.equal(run.startTime, T0 + 5);
        assert.equal(run.endTime, null);
        await submit([spanStart("r2", "s", null, T0 + 7)]);
        assert.equal((await getRun("r2")).startTime, T0 + 7);
        assert.equal((await getRun("r2")).app, null);
        await submit([runEnd("r1", T0 + 60)]);
        assert.equal((await getRun("r1")).status, "ok");
        assert.equal((await getRun("r1")).endTime, T0 + 60);
      });

      it("updates a span on a repeated start, keeping its first start time and, when none is given, its parent", async () => {
        await submit([spanStart("r", "s", "p", T0, { name: "first", tags: { a: 1 } })]);
        await submit([spanStart("r", "s", undefined, T0 + 5, { name: "second", tags: { b: 2 } })]);
        let found = await spanById("r", "s");
        assert.equal(found.startTime, T0);
        assert.equal(found.parentId, "p");
        assert.equal(found.name, "second");
        assert.deepEqual(found.tags, { a: 1, b: 2 });
        assert.equal((await getRun("r")).spanCount, 1);
        await submit([spanStart("r", "s", null, T0 + 6)]);
        found = await spanById("r", "s");
        assert.equal(found.parentId, null, "an explicit null parent makes it a root");
        assert.equal(found.startTime, T0);
      });

      it("returns undefined for an unknown run and no spans for it", async () => {
        assert.equal(await store.getRun("nope"), undefined);
        assert.deepEqual(await store.listSpans("nope"), []);
      });

      it("returns copies: mutating a read does not change the store", async () => {
        await submit([runStart("r", T0, { tags: { a: 1 } }), span("r", "s", null, T0, T0 + 1, { tags: { b: 2 } })]);
        const run = await getRun("r");
        run.tags.a = 99;
        run.status = "failed";
        const [first] = await store.listSpans("r");
        assert.ok(first);
        first.tags.b = 99;
        first.logs.push({ time: 0, text: "mutated" });
        assert.deepEqual((await getRun("r")).tags, { a: 1 });
        assert.equal((await getRun("r")).status, "running");
        assert.deepEqual((await spanById("r", "s")).tags, { b: 2 });
        assert.deepEqual((await spanById("r", "s")).logs, []);
      });

      it("ends a run no earlier than it started", async () => {
        await submit([runStart("r", T0 + 100), runEnd("r", T0 + 50)]);
        assert.equal((await getRun("r")).endTime, T0 + 100);
      });
    });

    describe("run names", () => {
      it("takes the first top-level span's name; children and later top-level spans do not rename", async () => {
        await submit([
          runStart("r", T0),
          span("r", "child", "main", T0 + 2, T0 + 3, { name: "helper" }),
          span("r", "main", null, T0 + 1, T0 + 4, { name: "main" }),
          span("r", "other", null, T0 + 5, T0 + 6, { name: "second root" }),
        ]);
        assert.equal((await getRun("r")).name, "main");
      });

      it("prefers a Controller/ or Job/ span (the first one) over the first top-level span", async () => {
        await submit([span("web", "main", null, T0, T0 + 9, { name: "middleware" })]);
        await submit([span("web", "c", "main", T0 + 1, T0 + 8, { name: "Controller/users#index" })]);
        await submit([span("web", "j", null, T0 + 2, T0 + 3, { name: "Job/Later" })]);
        assert.equal((await getRun("web")).name, "Controller/users#index");
        await submit([
          span("job", "root", null, T0, T0 + 9, { name: "root" }),
          span("job", "j", "root", T0, T0 + 1, { name: "Job/SendMail" }),
        ]);
        assert.equal((await getRun("job")).name, "Job/SendMail");
      });

      it("lets an explicit name (spanhub.name) beat Controller/ and Job/ spans, whichever comes first", async () => {
        await submit([
          runTag("a", T0, {}, { name: "Nightly import" }),
          span("a", "s", null, T0, T0 + 1, { name: "Job/Import" }),
        ]);
        assert.equal((await getRun("a")).name, "Nightly import");
        await submit([span("b", "s", null, T0, T0 + 1, { name: "Controller/x" })]);
        await submit([runTag("b", T0 + 2, {}, { name: "explicit" })]);
        assert.equal((await getRun("b")).name, "explicit");
        await submit([runTag("b", T0 + 3, {}, { name: "renamed" })]);
        assert.equal((await getRun("b")).name, "renamed", "a later explicit name replaces an earlier one");
        await submit([
          runStart("c", T0, { name: "from run_start" }),
          span("c", "s", null, T0, T0 + 1, { name: "Controller/y" }),
        ]);
        assert.equal((await getRun("c")).name, "from run_start");
      });
    });

    describe("statuses", () => {
      it("marks a span with a truthy error tag failed, and its run failed at a run_end without status", async () => {
        await submit([
          runStart("r", T0),
          spanStart("r", "s", null, T0 + 1),
          spanTag("r", "s", T0 + 2, { error: "true" }),
          spanEnd("r", "s", T0 + 3),
          span("r", "fine", null, T0 + 4, T0 + 5),
          runEnd("r", T0 + 6),
        ]);
        assert.equal((await spanById("r", "s")).status, "failed");
        assert.equal((await spanById("r", "fine")).status, "ok");
        const run = await getRun("r");
        assert.equal(run.status, "failed");
        assert.equal(run.errorCount, 1);
      });

      it("does not treat false-like error tags as errors", async () => {
        await submit([
          span("r", "a", null, T0, T0 + 1, { tags: { error: "false" } }),
          span("r", "b", null, T0, T0 + 1, { tags: { error: false } }),
          span("r", "c", null, T0, T0 + 1, { tags: { error: 0 } }),
          span("r", "d", null, T0, T0 + 1, { tags: { error: "" } }),
          runEnd("r", T0 + 2),
        ]);
        for (const id of ["a", "b", "c", "d"]) assert.equal((await spanById("r", id)).status, "ok", id);
        assert.equal((await getRun("r")).status, "ok");
      });

      it("fails a span tagged error even when it ended ok, and one tagged after it ended", async () => {
        await submit([
          span("r", "a", null, T0, T0 + 1, { status: "ok", tags: { error: true } }),
          span("r", "b", null, T0, T0 + 1),
        ]);
        await submit([spanTag("r", "b", T0 + 2, { error: 1 })]);
        assert.equal((await spanById("r", "a")).status, "failed");
        assert.equal((await spanById("r", "b")).status, "failed");
        assert.equal((await getRun("r")).errorCount, 2);
      });

      it("fails a run tagged error, and one with a timed-out span; a cancelled span alone does not", async () => {
        await submit([runStart("tagged", T0), runTag("tagged", T0, { error: true }), runEnd("tagged", T0 + 1)]);
        assert.equal((await getRun("tagged")).status, "failed");
        assert.equal((await getRun("tagged")).errorTagged, true);
        await submit([span("slow", "s", null, T0, T0 + 1, { status: "timed_out" }), runEnd("slow", T0 + 2)]);
        assert.equal((await getRun("slow")).status, "failed");
        await submit([span("stopped", "s", null, T0, T0 + 1, { status: "cancelled" }), runEnd("stopped", T0 + 2)]);
        assert.equal((await spanById("stopped", "s")).status, "cancelled");
        assert.equal((await getRun("stopped")).status, "ok");
      });

      it("keeps an explicit run_end status, reason and error", async () => {
        await submit([span("r", "s", null, T0, T0 + 1, { status: "failed" }), runEnd("r", T0 + 2, { status: "ok" })]);
        assert.equal((await getRun("r")).status, "ok");
        await submit([
          runStart("c", T0),
          runEnd("c", T0 + 2, { status: "cancelled", reason: "user", error: { type: "Cancel", message: "stop" } }),
        ]);
        const run = await getRun("c");
        assert.equal(run.status, "cancelled");
        assert.equal(run.reason, "user");
        assert.deepEqual(run.error, { type: "Cancel", message: "stop" });
      });

      it("fails a span or run that ends with an error but no status", async () => {
        await submit([
          runStart("r", T0),
          spanStart("r", "s", null, T0 + 1),
          spanEnd("r", "s", T0 + 2, { error: { message: "boom" } }),
        ]);
        assert.equal((await spanById("r", "s")).status, "failed");
        await submit([runStart("q", T0), runEnd("q", T0 + 1, { error: { type: "Exit", message: "exit 3" } })]);
        const run = await getRun("q");
        assert.equal(run.status, "failed");
        assert.deepEqual(run.error, { type: "Exit", message: "exit 3" });
      });

      it("keeps a span's error and unknown statuses as failed", async () => {
        await submit([
          span("r", "s", null, T0, T0 + 1, { status: "failed", unknownStatus: "exploded", error: { message: "boom" } }),
        ]);
        const found = await spanById("r", "s");
        assert.equal(found.status, "failed");
        assert.deepEqual(found.error, { message: "boom" });
      });
    });

    describe("late events and abandoned runs", () => {
      it("stores events after the run ended marked late, never starting a new run", async () => {
        await submit([runStart("r", T0), runEnd("r", T0 + 100, { status: "ok" })]);
        const result = await submit([
          spanStart("r", "s", null, T0 + 200),
          spanEnd("r", "s", T0 + 300),
          runTag("r", T0 + 200, { x: 1 }),
          runStart("other", T0 + 200),
        ]);
        assert.deepEqual(result, { duplicate: false, lateEnds: [] });
        assert.deepEqual(
          (await store.listEvents("r", 0, 100)).map((event) => [event.seq, event.kind, event.late]),
          [
            [1, "run_start", false],
            [2, "run_end", false],
            [3, "span_start", true],
            [4, "span_end", true],
            [5, "run_tag", true],
          ],
        );
        const run = await getRun("r");
        assert.equal(run.status, "ok");
        assert.equal(run.endTime, T0 + 100);
        assert.equal(run.lateCount, 3);
        assert.deepEqual((await ids({})).sort(), ["other", "r"]);
        assert.equal((await getRun("other")).lateCount, 0);
      });

      it("reports a second run_end in lateEnds and keeps the first outcome", async () => {
        await submit([runStart("r", T0), runEnd("r", T0 + 100, { status: "ok" })]);
        const results = await store.append([
          { events: [runEnd("r", T0 + 400, { status: "failed", reason: "again" })] },
          { events: [runStart("s", T0), runEnd("s", T0 + 1)] },
        ]);
        assert.deepEqual(results, [
          { duplicate: false, lateEnds: ["r"] },
          { duplicate: false, lateEnds: [] },
        ]);
        const run = await getRun("r");
        assert.equal(run.status, "ok");
        assert.equal(run.reason, null);
        assert.equal(run.endTime, T0 + 100);
        assert.equal(run.lateCount, 1);
        assert.deepEqual(
          (await store.listEvents("r", 2, 10)).map((event) => event.late),
          [true],
        );
      });

      it("replaces an abandoned crash with a later real end", async () => {
        await submit([runStart("r", T0), spanStart("r", "s", null, T0 + 1)]);
        await submit([runEnd("r", T0 + SECOND, { status: "crashed", reason: "abandoned" })]);
        let run = await getRun("r");
        assert.equal(run.status, "crashed");
        assert.equal(run.reason, "abandoned");
        assert.equal(run.endTime, T0 + SECOND);
        await submit([spanEnd("r", "s", T0 + 2 * SECOND)]);
        assert.equal((await store.listEvents("r", 3, 10))[0]?.late, true, "events of an abandoned run are late");
        assert.deepEqual(await submit([runEnd("r", T0 + 3 * SECOND, { status: "ok" })]), {
          duplicate: false,
          lateEnds: [],
        });
        run = await getRun("r");
        assert.equal(run.status, "ok");
        assert.equal(run.reason, null);
        assert.equal(run.endTime, T0 + 3 * SECOND);
        assert.equal((await store.listEvents("r", 4, 10))[0]?.late, false, "the real end is not late");
        assert.deepEqual(await submit([runEnd("r", T0 + 4 * SECOND, { status: "failed" })]), {
          duplicate: false,
          lateEnds: ["r"],
        });
        assert.equal((await getRun("r")).status, "ok");
      });

      it("does not let a second abandonment replace the first", async () => {
        await submit([runStart("r", T0), runEnd("r", T0 + 1, { status: "crashed", reason: "abandoned" })]);
        const result = await submit([runEnd("r", T0 + 2, { status: "crashed", reason: "abandoned" })]);
        assert.deepEqual(result.lateEnds, ["r"]);
        assert.equal((await getRun("r")).endTime, T0 + 1);
      });
    });

    describe("tags and logs", () => {
      it("merges run tags shallowly, key by key", async () => {
        await submit([runStart("r", T0, { tags: { http: { method: "GET", status: 200 }, keep: 1 } })]);
        await submit([runTag("r", T0 + 1, { http: { status: 500 }, added: "yes" })]);
        assert.deepEqual((await getRun("r")).tags, { http: { status: 500 }, keep: 1, added: "yes" });
      });

      it("merges span tags shallowly, key by key", async () => {
        await submit([spanStart("r", "s", null, T0, { tags: { db: { table: "users", rows: 1 }, keep: true } })]);
        await submit([spanTag("r", "s", T0 + 1, { db: { rows: 2 } }), spanTag("r", "s", T0 + 2, { keep: "still" })]);
        assert.deepEqual((await spanById("r", "s")).tags, { db: { rows: 2 }, keep: "still" });
      });

      it("keeps a span's tags through later appends that end it or log to it, and merges the ones that tag it", async () => {
        await submit([span("r", "whole", null, T0, T0 + 1, { tags: { db: { rows: 3 } } })]);
        await submit([spanStart("r", "s", null, T0, { tags: { a: 1, nested: { b: [2] } } })]);
        await submit([spanEnd("r", "s", T0 + 2)]);
        await submit([spanLog("r", "s", T0 + 3, "later")]);
        assert.deepEqual((await spanById("r", "s")).tags, { a: 1, nested: { b: [2] } });
        assert.deepEqual((await store.getSpan("r", "s"))?.tags, { a: 1, nested: { b: [2] } });
        await submit([spanTag("r", "s", T0 + 4, { c: 3 })]);
        await submit([spanEnd("r", "s", T0 + 5, { status: "failed" })]);
        assert.deepEqual((await spanById("r", "s")).tags, { a: 1, nested: { b: [2] }, c: 3 });
        assert.deepEqual((await spanById("r", "whole")).tags, { db: { rows: 3 } });
      });

      it("applies several submissions of one commit to the same span in order", async () => {
        await store.append([
          { events: [spanStart("r", "s", null, T0, { tags: { a: 1 } })] },
          { events: [spanTag("r", "s", T0 + 1, { b: 2 })] },
          { events: [spanEnd("r", "s", T0 + 2), spanTag("r", "s", T0 + 3, { a: "last" })] },
        ]);
        const stored = await spanById("r", "s");
        assert.deepEqual(stored.tags, { a: "last", b: 2 });
        assert.equal(stored.status, "ok");
        assert.equal((await getRun("r")).spanCount, 1);
      });

      it("appends logs with their times, across appends and coalesced spans", async () => {
        await submit([spanStart("r", "s", null, T0), spanLog("r", "s", T0 + 1, "one")]);
        await submit([spanLog("r", "s", T0 + 2, "two"), spanEnd("r", "s", T0 + 3)]);
        await submit([spanLog("r", "s", T0 + 4, "after the end")]);
        assert.deepEqual((await spanById("r", "s")).logs, [
          { time: T0 + 1, text: "one" },
          { time: T0 + 2, text: "two" },
          { time: T0 + 4, text: "after the end" },
        ]);
        await submit(
          coalesce([spanStart("r", "c", null, T0), spanLog("r", "c", T0 + 1, "x"), spanEnd("r", "c", T0 + 2)]),
        );
        assert.deepEqual((await spanById("r", "c")).logs, [{ time: T0 + 1, text: "x" }]);
      });
    });

    describe("listing runs", () => {
      /** Five runs, r1 oldest … r5 newest. */
      async function seed(): Promise<void> {
        await submit(
          [
            runStart("r1", T0 + 1 * SECOND, { name: "GET /users", tags: { env: "prod", code: 200 } }),
            runEnd("r1", T0 + 1 * SECOND + 5, { status: "ok" }),
          ],
          { app: "shop" },
        );
        await submit(
          [
            runStart("r2", T0 + 2 * SECOND, { name: "POST /orders", tags: { env: "staging", flaky: true } }),
            runEnd("r2", T0 + 2 * SECOND + 5, { status: "failed" }),
          ],
          { app: "shop" },
        );
        await submit([runStart("r3", T0 + 3 * SECOND, { name: "job_a 100%", tags: { env: "prod", flaky: false } })], {
          app: "batch",
        });
        await submit(
          [
            runStart("r4", T0 + 4 * SECOND, { name: "jobXa", tags: { env: "prod", code: 500 } }),
            runEnd("r4", T0 + 4 * SECOND + 5, { status: "cancelled" }),
          ],
          { app: "batch" },
        );
        await submit([runStart("r5", T0 + 5 * SECOND, { name: "GET /users/7" }), runEnd("r5", T0 + 5 * SECOND + 5)]);
      }

      it("lists newest first", async () => {
        await seed();
        assert.deepEqual(await ids({}), ["r5", "r4", "r3", "r2", "r1"]);
        const page = await store.listRuns({ limit: 100 });
        assert.equal(page.nextCursor, undefined);
        assert.equal(page.runs[0]?.name, "GET /users/7");
      });

      it("filters by status", async () => {
        await seed();
        assert.deepEqual(await ids({ status: "ok" }), ["r5", "r1"]);
        assert.deepEqual(await ids({ status: "failed" }), ["r2"]);
        assert.deepEqual(await ids({ status: "running" }), ["r3"]);
        assert.deepEqual(await ids({ status: "crashed" }), []);
      });

      it("filters by a substring of the name, taking % and _ literally", async () => {
        await seed();
        assert.deepEqual(await ids({ name: "users" }), ["r5", "r1"]);
        assert.deepEqual(await ids({ name: "b_a" }), ["r3"]);
        assert.deepEqual(await ids({ name: "100%" }), ["r3"]);
        assert.deepEqual(await ids({ name: "%" }), ["r3"]);
        assert.deepEqual(await ids({ name: "nothing like it" }), []);
      });

      it("filters by app", async () => {
        await seed();
        assert.deepEqual(await ids({ app: "batch" }), ["r4", "r3"]);
        assert.deepEqual(await ids({ app: "shop" }), ["r2", "r1"]);
        assert.deepEqual(await ids({ app: "none" }), []);
      });

      it("filters by start time with since and until", async () => {
        await seed();
        assert.deepEqual(await ids({ since: T0 + 2.5 * SECOND }), ["r5", "r4", "r3"]);
        assert.deepEqual(await ids({ until: T0 + 2.5 * SECOND }), ["r2", "r1"]);
        assert.deepEqual(await ids({ since: T0 + 1.5 * SECOND, until: T0 + 3.5 * SECOND }), ["r3", "r2"]);
      });

      it("filters by a tag key:value, strings, numbers and booleans alike", async () => {
        await seed();
        assert.deepEqual(await ids({ tag: { key: "env", value: "prod" } }), ["r4", "r3", "r1"]);
        assert.deepEqual(await ids({ tag: { key: "code", value: "200" } }), ["r1"]);
        assert.deepEqual(await ids({ tag: { key: "flaky", value: "true" } }), ["r2"]);
        assert.deepEqual(await ids({ tag: { key: "flaky", value: "false" } }), ["r3"]);
        assert.deepEqual(await ids({ tag: { key: "env", value: "dev" } }), []);
        assert.deepEqual(await ids({ tag: { key: "missing", value: "prod" } }), []);
      });

      it("combines filters", async () => {
        await seed();
        assert.deepEqual(await ids({ app: "shop", status: "ok" }), ["r1"]);
        assert.deepEqual(await ids({ app: "batch", tag: { key: "env", value: "prod" }, name: "job" }), ["r4", "r3"]);
      });

      it("pages with a cursor, visiting every run exactly once, ties included", async () => {
        const events = Array.from({ length: 13 }, (_, i) => runStart(`p${i}`, T0 + Math.floor(i / 3) * SECOND));
        await submit(events.slice(0, 7));
        await submit(events.slice(7));
        const all = await ids({});
        assert.equal(all.length, 13);
        for (const limit of [1, 4, 5, 13]) {
          const seen: string[] = [];
          let cursor: string | undefined;
          let pages = 0;
          do {
            const page = await store.listRuns({ limit, ...(cursor ? { cursor } : {}) });
            assert.ok(page.runs.length <= limit);
            seen.push(...page.runs.map((run) => run.id));
            cursor = page.nextCursor;
            pages += 1;
            assert.ok(pages <= 13, "paging must end");
          } while (cursor);
          assert.deepEqual(seen, all, `limit ${limit}`);
          assert.equal(pages, Math.ceil(13 / limit), `limit ${limit}`);
        }
        const starts = (await store.listRuns({ limit: 100 })).runs.map((run) => run.startTime);
        assert.deepEqual(
          starts,
          [...starts].sort((a, b) => b - a),
        );
      });

      it("pages through a filtered listing", async () => {
        for (let i = 0; i < 6; i++)
          await submit([runStart(`f${i}`, T0 + i * SECOND)], { app: i % 2 === 0 ? "even" : "odd" });
        const first = await store.listRuns({ limit: 2, app: "even" });
        assert.deepEqual(
          first.runs.map((run) => run.id),
          ["f4", "f2"],
        );
        assert.ok(first.nextCursor);
        const second = await store.listRuns({ limit: 2, app: "even", cursor: first.nextCursor });
        assert.deepEqual(
          second.runs.map((run) => run.id),
          ["f0"],
        );
        assert.equal(second.nextCursor, undefined);
      });

      it("rejects a cursor it did not hand out", async () => {
        await assert.rejects(store.listRuns({ limit: 5, cursor: "not-a-cursor" }), /cursor/);
      });
    });

    describe("apps", () => {
      const appEvent = (app: string, eventType: string, value: unknown, time: Micros): AppEvent => ({
        app,
        eventType,
        value,
        time,
      });

      it("keeps the latest scout.metadata per app, and the latest value of every other event type", async () => {
        const before = nowMicros();
        await store.append([
          {
            events: [],
            appEvents: [
              appEvent("shop", "scout.metadata", { framework: "express", v: 1 }, T0),
              appEvent("shop", "CPU/Utilization", 12.5, T0 + 1),
            ],
          },
        ]);
        await store.append([
          {
            events: [],
            appEvents: [
              appEvent("shop", "scout.metadata", { framework: "express", v: 2 }, T0 + 2),
              appEvent("batch", "scout.metadata", { language: "python" }, T0 + 2),
              appEvent("shop", "CPU/Utilization", 30, T0 + 3),
              appEvent("shop", "Memory/Physical", 512, T0 + 3),
              appEvent("idle", "CPU/Utilization", 1, T0 + 4),
            ],
          },
        ]);
        const apps = (await store.listApps()).sort((a, b) => a.app.localeCompare(b.app));
        assert.deepEqual(
          apps.map(({ lastSeen: _server, ...rest }) => rest),
          [
            { app: "batch", metadata: { language: "python" }, latest: {} },
            { app: "idle", metadata: null, latest: { "CPU/Utilization": { value: 1, time: T0 + 4 } } },
            {
              app: "shop",
              metadata: { framework: "express", v: 2 },
              latest: {
                "CPU/Utilization": { value: 30, time: T0 + 3 },
                "Memory/Physical": { value: 512, time: T0 + 3 },
              },
            },
          ],
        );
        for (const app of apps) assert.ok(app.lastSeen >= before - SECOND, "lastSeen is the server's time");
      });

      it("lists no apps for an empty store", async () => {
        assert.deepEqual(await store.listApps(), []);
      });
    });

    describe("idle runs", () => {
      it("finds running runs with no event since a time, oldest first", async () => {
        const start = nowMicros();
        await submit([runStart("old", T0)]);
        await sleep(20);
        const middle = nowMicros();
        await sleep(20);
        await submit([runStart("new", T0), runStart("ended", T0), runEnd("ended", T0 + 1)]);
        await sleep(20);
        const now = nowMicros();
        assert.deepEqual(await store.findIdleRuns(now, 10), ["old", "new"]);
        assert.deepEqual(await store.findIdleRuns(now, 1), ["old"]);
        assert.deepEqual(await store.findIdleRuns(middle, 10), ["old"]);
        assert.deepEqual(await store.findIdleRuns(start - SECOND, 10), []);
        await submit([spanStart("old", "s", null, T0 + 5)]);
        assert.deepEqual(await store.findIdleRuns(now, 10), ["new"], "a new event makes a run busy again");
      });

      it("finds the quiet ones among runs whose start asked to end once quiet", async () => {
        await submit([
          span("trace", "root", null, T0, T0 + 5),
          runStart("trace", T0, { endOnIdle: true }),
          span("trace", "child", "root", T0 + 1, T0 + 2),
        ]);
        await submit([runStart("plain", T0), runStart("ended", T0, { endOnIdle: true }), runEnd("ended", T0 + 9)]);
        await sleep(20);
        const now = nowMicros();
        await submit([runStart("busy", T0, { endOnIdle: true })]);
        assert.deepEqual(await store.findIdleRunsEndingOnIdle(now, 10), ["trace"]);
        assert.deepEqual(await store.findIdleRunsEndingOnIdle(now, 0), []);
        await submit([span("trace", "late", "root", T0 + 3, T0 + 4)]);
        assert.deepEqual(await store.findIdleRunsEndingOnIdle(now, 10), [], "a new span makes the trace busy again");
      });
    });

    describe("single spans, outlines and search (what the UI reads)", () => {
      beforeEach(async () => {
        await submit(requestEvents("req", "children-first"));
        await submit([
          runStart("other", T0),
          span("other", "sql", null, T0, T0 + 1, { name: "SQL/Query", tags: { "db.rows": 7 } }),
        ]);
      });

      it("reads one span with its tags, and undefined for an unknown span or run", async () => {
        assert.deepEqual(await store.getSpan("req", "tpl"), await spanById("req", "tpl"));
        assert.equal((await store.getSpan("req", "tpl"))?.parentId, "ctrl");
        assert.equal(await store.getSpan("req", "nope"), undefined);
        assert.equal(await store.getSpan("nope", "tpl"), undefined);
      });

      it("outlines every span of the run in start order, or only the ones asked for", async () => {
        const outlines = treeView(await store.listSpans("req")).map(({ tags: _tags, ...outline }) => outline);
        assert.deepEqual(await store.listSpanOutlines("req"), outlines);
        assert.deepEqual(
          (await store.listSpanOutlines("req", ["part", "ctrl", "missing"])).map((span) => span.id),
          ["ctrl", "part"],
        );
        assert.deepEqual(await store.listSpanOutlines("nope"), []);
      });

      it("searches names and tag text case-insensitively, and key:value as a tag comparison, in start order", async () => {
        assert.deepEqual(await store.searchSpans("req", "template", 10), ["tpl", "part"]);
        assert.deepEqual(await store.searchSpans("req", "template", 1), ["tpl"]);
        assert.deepEqual(await store.searchSpans("req", "component", 10), ["ctrl", "sql", "tpl", "part"]);
        assert.deepEqual(await store.searchSpans("req", "component:sql", 10), ["sql"]);
        assert.deepEqual(await store.searchSpans("other", "db.rows:7", 10), ["sql"]);
        assert.deepEqual(await store.searchSpans("req", "100%", 10), []);
        assert.deepEqual(await store.searchSpans("nope", "sql", 10), []);
        // Tags merged by a later append, and a name that matches while the tags do not, are found too (once).
        await submit([spanTag("other", "sql", T0 + 2, { retried: "Twice" })]);
        await submit([span("other", "cache", null, T0 + 3, T0 + 4, { name: "twice", tags: { hit: true } })]);
        assert.deepEqual(await store.searchSpans("other", "twice", 10), ["sql", "cache"]);
        assert.deepEqual(await store.searchSpans("other", "db.rows:7", 10), ["sql"]);
        assert.deepEqual(await store.searchSpans("other", "hit:true", 10), ["cache"]);
        assert.deepEqual(await store.searchSpans("other", "hit:false", 10), []);
      });

      it("lists the runs started from a run, and from one span of it", async () => {
        await submit([runStart("child-a", T0 + 1, { parentRunId: "req", parentSpanId: "tpl" })]);
        await submit([runStart("child-b", T0 + 2, { parentRunId: "req", parentSpanId: "sql" })]);
        assert.deepEqual(await ids({ parentRunId: "req" }), ["child-b", "child-a"]);
        assert.deepEqual(await ids({ parentRunId: "req", parentSpanId: "tpl" }), ["child-a"]);
        assert.deepEqual(await ids({ parentRunId: "other" }), []);
      });
    });

    describe("change token", () => {
      it("changes after every commit", async () => {
        const first = await store.changeToken();
        await submit([runStart("r", T0)]);
        const second = await store.changeToken();
        assert.notEqual(second, first);
        await submit([runEnd("r", T0 + 1)]);
        assert.notEqual(await store.changeToken(), second);
      });
    });
  });
}
