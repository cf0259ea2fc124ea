import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { coalesce } from "../src/model/coalesce.js";
import type { RunEvent } from "../src/model/event.js";
import { runEnd, runStart, runTag, span, spanEnd, spanLog, spanStart, spanTag, T0 } from "./helpers.js";

const R = "req-1";

describe("coalesce", () => {
  it("returns a lone event (or none) untouched", () => {
    const one = [runStart(R, T0)];
    assert.equal(coalesce(one), one);
    assert.deepEqual(coalesce([]), []);
  });

  it("folds a span's start, tags, logs and end into one span event", () => {
    const out = coalesce([
      spanStart(R, "s1", null, T0, { name: "Controller/users", tags: { a: 1 } }),
      spanTag(R, "s1", T0 + 10, { b: 2 }),
      spanLog(R, "s1", T0 + 20, "first"),
      spanTag(R, "s1", T0 + 30, { a: 3 }),
      spanLog(R, "s1", T0 + 40, "second"),
      spanEnd(R, "s1", T0 + 50, { status: "timed_out", error: { message: "slow" } }),
    ]);
    assert.deepEqual(out, [
      span(R, "s1", null, T0, T0 + 50, {
        name: "Controller/users",
        tags: { a: 3, b: 2 },
        logs: [
          { time: T0 + 20, text: "first" },
          { time: T0 + 40, text: "second" },
        ],
        status: "timed_out",
        error: { message: "slow" },
      }),
    ]);
  });

  it("folds a run's start and tags into one run_start, a tagged name included; the run end stays apart", () => {
    const out = coalesce([
      runStart(R, T0, { app: "shop" }),
      runTag(R, T0 + 1, { path: "/users" }),
      runTag(R, T0 + 2, {}, { name: "nightly import" }),
      runTag(R, T0 + 3, { path: "/users/7", user: 7 }),
      runEnd(R, T0 + 9),
    ]);
    assert.deepEqual(out, [
      runStart(R, T0, { app: "shop", tags: { path: "/users/7", user: 7 }, name: "nightly import" }),
      runEnd(R, T0 + 9),
    ]);
  });

  it("folds tags of a run that did not start in this message into the first run_tag", () => {
    const out = coalesce([runTag(R, T0, { a: 1 }), runTag(R, T0 + 1, { b: 2 }, { name: "n" })]);
    assert.deepEqual(out, [runTag(R, T0, { a: 1, b: 2 }, { name: "n" })]);
  });

  it("keeps one span event per span when children stop before parents (the Python agent's order)", () => {
    const events: RunEvent[] = [
      runStart(R, T0),
      runTag(R, T0, { path: "/users" }),
      spanStart(R, "sql", "ctrl", T0 + 2, { name: "SQL/Query" }),
      spanTag(R, "sql", T0 + 3, { "db.statement": "SELECT 1" }),
      spanEnd(R, "sql", T0 + 4),
      spanStart(R, "tpl", "ctrl", T0 + 5, { name: "Template/Render" }),
      spanEnd(R, "tpl", T0 + 6),
      spanStart(R, "ctrl", null, T0 + 1, { name: "Controller/users" }),
      spanEnd(R, "ctrl", T0 + 7),
      runEnd(R, T0 + 8),
    ];
    const out = coalesce(events);
    assert.deepEqual(
      out.map((event) => [event.kind, "spanId" in event ? event.spanId : undefined]),
      [
        ["run_start", undefined],
        ["span", "sql"],
        ["span", "tpl"],
        ["span", "ctrl"],
        ["run_end", undefined],
      ],
    );
    assert.deepEqual(
      out[1],
      span(R, "sql", "ctrl", T0 + 2, T0 + 4, { name: "SQL/Query", tags: { "db.statement": "SELECT 1" } }),
    );
    assert.deepEqual(out[3], span(R, "ctrl", null, T0 + 1, T0 + 7, { name: "Controller/users" }));
  });

  it("keeps one span event per span when spans interleave depth-first, parent first", () => {
    const out = coalesce([
      spanStart(R, "ctrl", null, T0, { name: "Controller/users" }),
      spanStart(R, "sql", "ctrl", T0 + 1, { name: "SQL/Query" }),
      spanTag(R, "ctrl", T0 + 2, { user: 7 }),
      spanEnd(R, "sql", T0 + 3),
      spanEnd(R, "ctrl", T0 + 4),
    ]);
    assert.deepEqual(out, [
      span(R, "ctrl", null, T0, T0 + 4, { name: "Controller/users", tags: { user: 7 } }),
      span(R, "sql", "ctrl", T0 + 1, T0 + 3, { name: "SQL/Query" }),
    ]);
  });

  it("never merges across runs, even for equal span ids", () => {
    const out = coalesce([spanStart("a", "s", null, T0), spanStart("b", "s", null, T0), spanEnd("a", "s", T0 + 1)]);
    assert.deepEqual(out, [span("a", "s", null, T0, T0 + 1), spanStart("b", "s", null, T0)]);
  });

  it("keeps an end without a start, and tags without a start, as they are (tags still folded together)", () => {
    const out = coalesce([
      spanTag(R, "s", T0, { a: 1 }),
      spanTag(R, "s", T0 + 1, { b: 2 }),
      spanLog(R, "s", T0 + 2, "x"),
      spanEnd(R, "s", T0 + 3, { status: "ok" }),
    ]);
    assert.deepEqual(out, [
      spanTag(R, "s", T0, { a: 1, b: 2 }),
      spanLog(R, "s", T0 + 2, "x"),
      spanEnd(R, "s", T0 + 3, { status: "ok" }),
    ]);
  });

  it("folds tags and logs that come after the end into the span; a second end stays apart", () => {
    const out = coalesce([
      spanStart(R, "s", null, T0),
      spanEnd(R, "s", T0 + 5),
      spanTag(R, "s", T0 + 6, { late: true }),
      spanLog(R, "s", T0 + 7, "after"),
      spanEnd(R, "s", T0 + 8, { status: "failed" }),
      spanTag(R, "s", T0 + 9, { later: true }),
    ]);
    assert.deepEqual(out, [
      span(R, "s", null, T0, T0 + 5, { tags: { late: true }, logs: [{ time: T0 + 7, text: "after" }] }),
      spanEnd(R, "s", T0 + 8, { status: "failed" }),
      spanTag(R, "s", T0 + 9, { later: true }),
    ]);
  });

  it("merges tags shallowly, key by key, the later value winning", () => {
    const out = coalesce([
      spanStart(R, "s", null, T0, { tags: { http: { method: "GET", status: 200 }, keep: "yes" } }),
      spanTag(R, "s", T0 + 1, { http: { status: 500 } }),
    ]);
    assert.deepEqual(out, [spanStart(R, "s", null, T0, { tags: { http: { status: 500 }, keep: "yes" } })]);
  });

  it("merges a repeated span_start: later fields win but the first start time stays, tags merge, logs append", () => {
    const out = coalesce([
      spanStart(R, "s", null, T0, { name: "first", tags: { a: 1 }, logs: [{ time: T0, text: "one" }] }),
      spanStart(R, "s", "p", T0 + 1, { name: "second", tags: { b: 2 }, logs: [{ time: T0 + 1, text: "two" }] }),
    ]);
    assert.deepEqual(out, [
      spanStart(R, "s", "p", T0, {
        name: "second",
        tags: { a: 1, b: 2 },
        logs: [
          { time: T0, text: "one" },
          { time: T0 + 1, text: "two" },
        ],
      }),
    ]);
  });

  it("starts a new run entry for run events after a run_end in the same message", () => {
    const out = coalesce([
      runStart(R, T0),
      runEnd(R, T0 + 1),
      runTag(R, T0 + 2, { a: 1 }),
      runTag(R, T0 + 3, { b: 2 }),
    ]);
    assert.deepEqual(out, [runStart(R, T0), runEnd(R, T0 + 1), runTag(R, T0 + 2, { a: 1, b: 2 })]);
  });

  it("never mutates the caller's events, their tags or their logs", () => {
    const laterLogs = [{ time: T0 + 1, text: "two" }];
    const events: RunEvent[] = [
      runStart(R, T0, { tags: { a: 1 } }),
      runTag(R, T0, { b: 2 }),
      spanStart(R, "s", null, T0),
      spanStart(R, "s", null, T0 + 1, { tags: { x: 1 }, logs: laterLogs }),
      spanTag(R, "s", T0 + 2, { y: 2 }),
      spanLog(R, "s", T0 + 3, "three"),
      spanEnd(R, "s", T0 + 4),
    ];
    const before = structuredClone(events);
    const out = coalesce(events);
    assert.deepEqual(events, before);
    assert.deepEqual(laterLogs, [{ time: T0 + 1, text: "two" }]);
    assert.deepEqual(
      out[1],
      span(R, "s", null, T0, T0 + 4, {
        tags: { x: 1, y: 2 },
        logs: [
          { time: T0 + 1, text: "two" },
          { time: T0 + 3, text: "three" },
        ],
      }),
    );
  });
});
