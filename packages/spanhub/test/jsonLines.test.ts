import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DecodeError, decodeJsonEvent, preview } from "../src/protocols/jsonLines.js";
import { runEnd, runStart, runTag, spanEnd, spanLog, spanStart, spanTag, T0 } from "./helpers.js";

const RECEIVED = T0 + 5_000_000;
const ctx = { receivedAt: RECEIVED };
/** T0 as the wire writes it: milliseconds since the epoch. */
const MS = T0 / 1000;

function decodeError(value: unknown, context: Parameters<typeof decodeJsonEvent>[1] = ctx): DecodeError {
  try {
    decodeJsonEvent(value, context);
  } catch (error) {
    assert.ok(error instanceof DecodeError, `expected a DecodeError, got ${error}`);
    return error;
  }
  assert.fail(`expected ${JSON.stringify(value)} to be refused`);
}

describe("decodeJsonEvent: every event type", () => {
  it("run_start with every field", () => {
    const event = decodeJsonEvent(
      {
        type: "run_start",
        run_id: "play-42",
        ts_ms: MS,
        name: "nightly import",
        app: "flows",
        tags: { flow: "import", attempt: 2 },
        host: "worker-3",
        pid: 7199,
        parent_run_id: "play-41",
        parent_span_id: "span-9",
      },
      ctx,
    );
    assert.deepEqual(
      event,
      runStart("play-42", T0, {
        name: "nightly import",
        app: "flows",
        tags: { flow: "import", attempt: 2 },
        host: "worker-3",
        pid: 7199,
        parentRunId: "play-41",
        parentSpanId: "span-9",
      }),
    );
  });

  it("run_start with only the required fields has no undefined keys, and takes the receive time", () => {
    const event = decodeJsonEvent({ type: "run_start", run_id: "play-42", name: null }, ctx);
    assert.deepEqual(event, runStart("play-42", RECEIVED));
    assert.deepEqual(Object.keys(event).sort(), ["kind", "runId", "time"]);
  });

  it("run_tag, with and without a name", () => {
    assert.deepEqual(
      decodeJsonEvent({ type: "run_tag", run_id: "r", ts_ms: MS, tags: { user: "ann" } }, ctx),
      runTag("r", T0, { user: "ann" }),
    );
    assert.deepEqual(
      decodeJsonEvent({ type: "run_tag", run_id: "r", ts_ms: MS, name: "renamed" }, ctx),
      runTag("r", T0, {}, { name: "renamed" }),
    );
  });

  it("run_end with status, reason and error", () => {
    assert.deepEqual(
      decodeJsonEvent(
        { type: "run_end", run_id: "r", ts_ms: MS, status: "timed_out", reason: "wall clock", error: "killed" },
        ctx,
      ),
      runEnd("r", T0, { status: "timed_out", reason: "wall clock", error: { message: "killed" } }),
    );
    assert.deepEqual(decodeJsonEvent({ type: "run_end", run_id: "r", ts_ms: MS }, ctx), runEnd("r", T0));
  });

  it("span_start with every field, timed by start_ms", () => {
    const event = decodeJsonEvent(
      {
        type: "span_start",
        run_id: "r",
        span_id: "s2",
        parent_id: "s1",
        name: "rpc:Client.fetch",
        start_ms: MS,
        kind: "rpc",
        tags: { url: "https://example.test" },
        rpc_service: "Client",
        rpc_method: "fetch",
        logs: ["begin", { step: 1 }],
      },
      ctx,
    );
    assert.deepEqual(
      event,
      spanStart("r", "s2", "s1", T0, {
        name: "rpc:Client.fetch",
        spanKind: "rpc",
        tags: { url: "https://example.test" },
        rpcService: "Client",
        rpcMethod: "fetch",
        logs: [
          { time: T0, text: "begin" },
          { time: T0, text: '{"step":1}' },
        ],
      }),
    );
  });

  it("span_start: an empty or null parent_id is a root (null); ts_ms wins over start_ms", () => {
    assert.deepEqual(
      decodeJsonEvent({ type: "span_start", run_id: "r", span_id: "s", parent_id: "", ts_ms: MS, start_ms: 1 }, ctx),
      spanStart("r", "s", null, T0),
    );
    assert.deepEqual(
      decodeJsonEvent({ type: "span_start", run_id: "r", span_id: "s", parent_id: null }, ctx),
      spanStart("r", "s", null, RECEIVED),
    );
  });

  it("span_start without parent_id carries none, so a repeated start keeps the parent", () => {
    const event = decodeJsonEvent({ type: "span_start", run_id: "r", span_id: "s" }, ctx);
    assert.deepEqual(event, spanStart("r", "s", undefined, RECEIVED));
    assert.equal("parentId" in event, false);
  });

  it("span_tag, span_log (text or message), span_end timed by end_ms", () => {
    assert.deepEqual(
      decodeJsonEvent({ type: "span_tag", run_id: "r", span_id: "s", ts_ms: MS, tags: { rows: 3 } }, ctx),
      spanTag("r", "s", T0, { rows: 3 }),
    );
    assert.deepEqual(
      decodeJsonEvent({ type: "span_tag", run_id: "r", span_id: "s", ts_ms: MS }, ctx),
      spanTag("r", "s", T0, {}),
    );
    assert.deepEqual(
      decodeJsonEvent({ type: "span_log", run_id: "r", span_id: "s", ts_ms: MS, text: "hello" }, ctx),
      spanLog("r", "s", T0, "hello"),
    );
    assert.deepEqual(
      decodeJsonEvent({ type: "span_log", run_id: "r", span_id: "s", ts_ms: MS, message: { n: 1 } }, ctx),
      spanLog("r", "s", T0, '{"n":1}'),
    );
    assert.deepEqual(
      decodeJsonEvent({ type: "span_end", run_id: "r", span_id: "s", end_ms: MS, status: "ok" }, ctx),
      spanEnd("r", "s", T0, { status: "ok" }),
    );
    assert.deepEqual(
      decodeJsonEvent({ type: "span_end", run_id: "r", span_id: "s", end_ms: MS }, ctx),
      spanEnd("r", "s", T0),
    );
  });
});

describe("decodeJsonEvent: run ids", () => {
  it("refuses an event without run_id as malformed", () => {
    const error = decodeError({ type: "span_start", span_id: "s" });
    assert.equal(error.reason, "malformed");
    assert.match(error.message, /run_id/);
  });

  it("accepts an event without run_id on a per-run socket (context.runId)", () => {
    const context = { runId: "play-7", receivedAt: RECEIVED };
    assert.deepEqual(
      decodeJsonEvent({ type: "span_start", span_id: "s", parent_id: "p", start_ms: MS }, context),
      spanStart("play-7", "s", "p", T0),
    );
    assert.deepEqual(
      decodeJsonEvent({ type: "run_end", status: "ok" }, context),
      runEnd("play-7", RECEIVED, { status: "ok" }),
    );
  });

  it("prefers the event's own run_id over the context's, and reads a numeric id as text", () => {
    const context = { runId: "play-7", receivedAt: RECEIVED };
    assert.equal(decodeJsonEvent({ type: "run_start", run_id: "other" }, context).runId, "other");
    assert.equal(decodeJsonEvent({ type: "run_start", run_id: 12 }, ctx).runId, "12");
  });
});

describe("decodeJsonEvent: refusals", () => {
  it("rejects an unknown type with reason rejected", () => {
    const error = decodeError({ type: "span_pause", run_id: "r", span_id: "s" });
    assert.equal(error.reason, "rejected");
    assert.match(error.message, /span_pause/);
  });

  it("refuses malformed input with reason malformed", () => {
    const cases: unknown[] = [
      null,
      "span_start",
      [{ type: "run_start" }],
      { run_id: "r" },
      { type: 3, run_id: "r" },
      { type: "span_end", run_id: "r" },
      { type: "span_log", run_id: "r", span_id: "s" },
      { type: "run_start", run_id: "r", ts_ms: "1795423645363" },
      { type: "run_start", run_id: "r", ts_ms: Number.NaN },
      { type: "run_start", run_id: "r", tags: ["a"] },
      { type: "run_start", run_id: "r", pid: "7199" },
      { type: "run_start", run_id: { id: 1 } },
    ];
    for (const value of cases) assert.equal(decodeError(value).reason, "malformed", JSON.stringify(value));
  });
});

describe("decodeJsonEvent: statuses, times and errors", () => {
  it("maps an unknown span status to failed and keeps the text", () => {
    assert.deepEqual(
      decodeJsonEvent({ type: "span_end", run_id: "r", span_id: "s", end_ms: MS, status: "exploded" }, ctx),
      spanEnd("r", "s", T0, { status: "failed", unknownStatus: "exploded" }),
    );
    assert.deepEqual(
      decodeJsonEvent({ type: "span_end", run_id: "r", span_id: "s", end_ms: MS, status: 3 }, ctx),
      spanEnd("r", "s", T0, { status: "failed", unknownStatus: "3" }),
    );
  });

  it("maps an unknown run status to failed and keeps the text; known run statuses pass", () => {
    assert.deepEqual(
      decodeJsonEvent({ type: "run_end", run_id: "r", ts_ms: MS, status: "SUCCESS" }, ctx),
      runEnd("r", T0, { status: "failed", unknownStatus: "SUCCESS" }),
    );
    for (const status of ["ok", "failed", "timed_out", "cancelled", "crashed", "stopped"] as const)
      assert.deepEqual(
        decodeJsonEvent({ type: "run_end", run_id: "r", status }, ctx),
        runEnd("r", RECEIVED, { status }),
      );
  });

  it("never turns an unknown status into ok: a run-only status on a span is failed", () => {
    const event = decodeJsonEvent({ type: "span_end", run_id: "r", span_id: "s", status: "crashed" }, ctx);
    assert.equal(event.kind === "span_end" && event.status, "failed");
    assert.equal(event.kind === "span_end" && event.unknownStatus, "crashed");
  });

  it("keeps the microseconds of a fractional ts_ms", () => {
    const event = decodeJsonEvent({ type: "span_log", run_id: "r", span_id: "s", ts_ms: MS + 0.123, text: "x" }, ctx);
    assert.equal(event.time, T0 + 123);
    const end = decodeJsonEvent({ type: "span_end", run_id: "r", span_id: "s", end_ms: 1_543_683_874_078.797 }, ctx);
    assert.equal(end.time, 1_543_683_874_078_797);
  });

  it("reads an error given as a string as its message", () => {
    const event = decodeJsonEvent(
      { type: "span_end", run_id: "r", span_id: "s", status: "failed", error: "boom" },
      ctx,
    );
    assert.deepEqual(event.kind === "span_end" && event.error, { message: "boom" });
  });

  it("reads an error given as an object, keeping type, message and stack as text", () => {
    const event = decodeJsonEvent(
      {
        type: "span_end",
        run_id: "r",
        span_id: "s",
        status: "failed",
        error: { type: "ValueError", message: "bad row", stack: "Traceback ...", extra: 1, code: null },
      },
      ctx,
    );
    assert.deepEqual(event.kind === "span_end" && event.error, {
      type: "ValueError",
      message: "bad row",
      stack: "Traceback ...",
    });
  });

  it("treats an empty or false error as none", () => {
    for (const error of ["", false, null]) {
      const event = decodeJsonEvent({ type: "run_end", run_id: "r", ts_ms: MS, error }, ctx);
      assert.deepEqual(event, runEnd("r", T0), JSON.stringify(error));
    }
  });
});

describe("preview", () => {
  it("flattens whitespace and cuts long text", () => {
    assert.equal(preview('{"a":\n 1}'), '{"a": 1}');
    assert.equal(preview("x".repeat(200), 10), `${"x".repeat(10)}…`);
    assert.equal(preview(Buffer.from("line\r\nnext")), "line next");
  });
});
