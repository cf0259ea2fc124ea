import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeRequest, encodeRequestFrame, translateBodies } from "../src/encode.js";
import { FrameArena, FrameWriter, joinFrames, splitFrames } from "../src/framing.js";
import { RequestRecord, type SpanRecord } from "../src/records.js";
import { isoMicros } from "../src/time.js";

/** The same request twice (same ids and times), so two encoders can be compared. */
function pair(): [RequestRecord, RequestRecord] {
  const slow = new TypeError("slow");
  const build = () => {
    const request = new RequestRecord(
      "0af7651916cd43dd8448eb211c80319c",
      'GET /ünï "cødé"',
      100,
      {
        runId: "a".repeat(32),
        spanId: "b".repeat(16),
      },
      () => {},
    );
    request.tag("user", 42);
    request.tag("nested", { deep: ["x", 1, null] });
    const root = request.root;
    root.tag("text", 'quote " backslash \\ newline \n tab \t').tag("emoji", "🙂").tag("lone", "\ud800");
    root.tag("numbers", -1.5).tag("big", 12345678901234).tag("zero", 0).tag("nan", Number.NaN);
    root.tag("bool", true).tag("undef", undefined).tag("bigint", 10n);
    const child = request.startSpan("SQL/Query", root, { tags: { "db.statement": "SELECT 1" } }) as SpanRecord;
    child.log("3 rows").log("done\u0001");
    const rpc = request.startSpan("svc.method", child, undefined, { service: "svc", method: "method" }) as SpanRecord;
    rpc.end({ status: "timed_out", error: slow });
    child.end({ error: "plain message" });
    request.startSpan("left open", root);
    return request;
  };
  const a = build();
  const b = build();
  sameTimes(a, b);
  return [a, b];
}

/** Gives `b` the ids and times of `a`. */
function sameTimes(a: RequestRecord, b: RequestRecord): void {
  Object.assign(b, { startMs: a.startMs, endMs: a.endMs });
  a.spans.forEach((span, index) => {
    const other = b.spans[index] as SpanRecord;
    Object.assign(other, { idCounter: span.idCounter, startMs: span.startMs, endMs: span.endMs });
    other.logs?.forEach((entry, log) => {
      entry.time = span.logs?.[log]?.time ?? entry.time;
    });
  });
}

test("the byte writer writes the same JSON as the string encoder, partial batches included", () => {
  const [a, b] = pair();
  const writer = new FrameWriter();
  // A partial batch, then the rest.
  const partialString = encodeRequest(a, "app", 0, "extended")?.bodies ?? [];
  const partialFrame = encodeRequestFrame(b, 0, writer) as Buffer;
  assert.deepEqual(splitFrames(partialFrame), partialString);
  a.root.tag("late", "tag");
  b.root.tag("late", "tag");
  (a.spans[0] as SpanRecord).log("later");
  (b.spans[0] as SpanRecord).log("later");
  a.end({ status: "cancelled" });
  b.end({ status: "cancelled" });
  sameTimes(a, b);
  const finalString = encodeRequest(a, "app", 0, "extended")?.bodies ?? [];
  const finalFrame = encodeRequestFrame(b, 0, writer) as Buffer;
  assert.deepEqual(splitFrames(finalFrame), finalString);
  const [body] = finalString;
  assert.equal(JSON.parse(body as string).BatchCommand.batch_id, "0af7651916cd43dd8448eb211c80319c-2");
});

test("a batch encoded for spanhub 0.2.0 and translated for an older agent is what would have been encoded for it", () => {
  for (const dialect of ["spanhub", "scout"] as const) {
    const [a, b] = pair();
    const boom = new Error("boom");
    a.end({ error: boom });
    b.end({ error: boom });
    sameTimes(a, b);
    const direct = encodeRequest(a, "app", 0, dialect)?.bodies ?? [];
    const extended = encodeRequest(b, "app", 0, "extended")?.bodies ?? [];
    const translated = translateBodies(extended, "extended", dialect, "app");
    const parse = (bodies: string[]) =>
      bodies.map((body) => {
        const message = JSON.parse(body);
        // The link's start time goes through a timestamp: microseconds, not nanoseconds.
        if (message.Events) message.Events.events[0].ts_ms = Math.round(message.Events.events[0].ts_ms);
        return message;
      });
    assert.deepEqual(parse(translated), parse(direct), dialect);
  }
});

test("frames: the arena keeps batches side by side, so joining them usually copies nothing", () => {
  const arena = new FrameArena();
  const one = arena.frames(['{"a":1}'], true);
  const two = arena.frames(['{"b":"ü"}', '{"c":3}'], false);
  const joined = joinFrames([one, two]);
  assert.equal(joined.buffer, one.buffer, "adjacent slices are joined in place");
  assert.deepEqual(splitFrames(joined), ['{"a":1}', '{"b":"ü"}', '{"c":3}']);
  const other = new FrameArena().frames(['{"d":4}'], true);
  assert.deepEqual(splitFrames(joinFrames([one, other, two])), ['{"a":1}', '{"d":4}', '{"b":"ü"}', '{"c":3}']);
});

test("timestamps: ISO-8601 with microseconds, across seconds and minutes", () => {
  for (const ms of [0, 1_700_000_000_000.5, 1_700_000_059_999.999, 1_700_000_060_000, Date.now() + 0.123]) {
    const text = isoMicros(ms);
    assert.match(text, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.equal(text.slice(0, 23), new Date(Math.floor(ms)).toISOString().slice(0, 23), text);
  }
});
