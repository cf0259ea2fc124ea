import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeRequest, encodeRequestFrame, translateBodies } from "../src/encode.js";
import { adjacentRuns, FrameArena, FrameWriter, splitFrames } from "../src/framing.js";
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

/** Parsed bodies of compact frames, expanded to the extended commands they stand for. */
function expanded(frame: Buffer | undefined): unknown[] {
  return translateBodies(frame ? splitFrames(frame) : [], "compact", "extended", "app").map((body) => JSON.parse(body));
}

test("the compact byte writer says what the string encoder says, partial batches included", () => {
  const [a, b] = pair();
  const writer = new FrameWriter();
  const parsed = (bodies: string[] | undefined) => (bodies ?? []).map((body) => JSON.parse(body));
  // A partial batch, then the rest.
  const partialString = encodeRequest(a, "app", 0, "extended")?.bodies;
  const partialFrame = encodeRequestFrame(b, 0, writer);
  assert.deepEqual(expanded(partialFrame), parsed(partialString));
  a.root.tag("late", "tag");
  b.root.tag("late", "tag");
  (a.spans[0] as SpanRecord).log("later");
  (b.spans[0] as SpanRecord).log("later");
  a.end({ status: "cancelled" });
  b.end({ status: "cancelled" });
  sameTimes(a, b);
  const finalString = encodeRequest(a, "app", 0, "extended")?.bodies;
  const finalFrame = encodeRequestFrame(b, 0, writer) as Buffer;
  assert.deepEqual(expanded(finalFrame), parsed(finalString));
  const [body] = splitFrames(finalFrame);
  const batch = JSON.parse(body as string).BatchCommand;
  assert.equal(batch.batch_id, "0af7651916cd43dd8448eb211c80319c-2");
  assert.equal(batch.request_id, "0af7651916cd43dd8448eb211c80319c", "the request is named once");
  assert.ok(
    batch.commands.every(
      (command: Record<string, Record<string, unknown>>) =>
        !Object.values(command).some((body) => "request_id" in body),
    ),
  );
});

test("a batch encoded for a newer agent and translated for an older one is what would have been encoded for it", () => {
  for (const [from, dialect] of [
    ["extended", "spanhub"],
    ["extended", "scout"],
    ["compact", "extended"],
    ["compact", "spanhub"],
    ["compact", "scout"],
  ] as const) {
    const [a, b] = pair();
    const boom = new Error("boom");
    a.end({ error: boom });
    b.end({ error: boom });
    sameTimes(a, b);
    const direct = encodeRequest(a, "app", 0, dialect)?.bodies ?? [];
    const encoded =
      from === "compact"
        ? splitFrames(encodeRequestFrame(b, 0, new FrameWriter()) as Buffer)
        : (encodeRequest(b, "app", 0, from)?.bodies ?? []);
    const translated = translateBodies(encoded, from, dialect, "app");
    const parse = (bodies: string[]) =>
      bodies.map((body) => {
        const message = JSON.parse(body);
        // The link's start time goes through a timestamp: microseconds, not nanoseconds.
        if (message.Events) message.Events.events[0].ts_ms = Math.round(message.Events.events[0].ts_ms);
        return message;
      });
    assert.deepEqual(parse(translated), parse(direct), `${from} -> ${dialect}`);
  }
});

test("frames: the arena keeps batches side by side, so joining them copies nothing", () => {
  const arena = new FrameArena();
  const one = arena.frames(['{"a":1}'], true);
  const two = arena.frames(['{"b":"ü"}', '{"c":3}'], false);
  const [joined, ...rest] = adjacentRuns([one, two]);
  assert.equal(rest.length, 0);
  assert.equal(joined?.buffer, one.buffer, "adjacent slices are joined in place");
  assert.deepEqual(splitFrames(joined as Buffer), ['{"a":1}', '{"b":"ü"}', '{"c":3}']);
  const other = new FrameArena().frames(['{"d":4}'], true);
  const runs = adjacentRuns([one, other, two]);
  assert.equal(runs.length, 3, "slices of other chunks, or out of order, stay apart");
  assert.deepEqual(runs.flatMap(splitFrames), ['{"a":1}', '{"d":4}', '{"b":"ü"}', '{"c":3}']);
});

test("timestamps: ISO-8601 with microseconds, across seconds and minutes", () => {
  for (const ms of [0, 1_700_000_000_000.5, 1_700_000_059_999.999, 1_700_000_060_000, Date.now() + 0.123]) {
    const text = isoMicros(ms);
    assert.match(text, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.equal(text.slice(0, 23), new Date(Math.floor(ms)).toISOString().slice(0, 23), text);
  }
});

/** spanhub's own Scout decoder (the agent's), loaded from the built workspace package. */
type Decode = (
  message: unknown,
  connection: object,
  receivedAt: number,
) => {
  submission?: { events: unknown[] };
  skipped: unknown[];
  refused?: unknown;
};
const scoutModule = new URL("../../../spanhub/dist/src/protocols/scout.js", import.meta.url).href;
const { decodeScoutMessage } = (await import(scoutModule)) as { decodeScoutMessage: Decode };

/** The events the agent makes of some frame bodies. */
function agentEvents(bodies: string[]): unknown[] {
  return bodies.flatMap((body) => {
    const decoded = decodeScoutMessage(JSON.parse(body), {}, 1);
    assert.equal(decoded.refused, undefined);
    assert.deepEqual(decoded.skipped, []);
    return decoded.submission?.events ?? [];
  });
}

/** Strings and values JSON must escape or cannot say, as tag keys, values, names and log lines. */
const AWKWARD: [string, unknown][] = [
  ["quote", 'say "hi"'],
  ["backslash", "C:\\temp\\"],
  ["controls", "nul \u0000 bell \u0007 esc \u001b del \u007f newline \n"],
  ["lone high", "a\ud800b"],
  ["lone low", "\udc00"],
  ["pair", "🙂"],
  ["latin", "café ünï"],
  ["separators", "\u2028\u2029"],
  ['key with "quote" and ü', 1],
  ["nan", Number.NaN],
  ["infinity", Number.POSITIVE_INFINITY],
  ["minus infinity", Number.NEGATIVE_INFINITY],
  ["minus zero", -0],
  ["fraction", 0.1],
  ["huge", 1e21],
  ["large int", 2 ** 40],
  ["negative", -7],
  ["bigint", 12345678901234567890n],
  ["nested", { a: [1, "two", { three: null }], b: 'x"y' }],
  ["undefined", undefined],
  ["null", null],
  ["true", true],
  ["false", false],
];

function awkwardRequest(round: number, error: Error): RequestRecord {
  const request = new RequestRecord(
    `0af7651916cd43dd8448eb211c8031${round}0`,
    'GET "/ünï"\n',
    100,
    undefined,
    () => {},
  );
  for (const [key, value] of AWKWARD) request.root.tag(key, value);
  const child = request.startSpan('SQL "Query"\t\ud800', request.root) as SpanRecord;
  for (const [key, value] of AWKWARD) child.tag(key, value);
  child.log('line \u0001 "quoted" \udfff');
  child.end({ status: "timed_out", error });
  const quiet = request.startSpan("plain", child, { tags: { text: "plain ascii" } }) as SpanRecord;
  quiet.end({ error: "message only" });
  request.end({ status: "failed", error: "top" });
  return request;
}

test("the agent decodes compact frames into the same events as extended ones, awkward values included, cached or not", () => {
  const writer = new FrameWriter();
  // Several rounds: the first writes every string, the later ones copy names and tag values from the caches.
  for (let round = 0; round < 4; round++) {
    const error = new TypeError('bad "input"\n');
    const a = awkwardRequest(round, error);
    const b = awkwardRequest(round, error);
    sameTimes(a, b);
    const extended = encodeRequest(a, "app", 0, "extended")?.bodies ?? [];
    const compact = splitFrames(encodeRequestFrame(b, 0, writer) as Buffer);
    const events = agentEvents(compact);
    assert.deepEqual(events, agentEvents(extended), `round ${round}`);
    const [run, root, child, quiet] = events as Record<string, unknown>[];
    assert.equal(run?.name, 'GET "/ünï"\n');
    assert.equal(child?.name, 'SQL "Query"\t\ud800');
    const expectedTags = Object.fromEntries(
      AWKWARD.map(([key, value]) => [
        key,
        typeof value === "bigint"
          ? String(value)
          : typeof value === "number" && !Number.isFinite(value)
            ? null
            : value === undefined
              ? null
              : Object.is(value, -0)
                ? 0
                : value,
      ]),
    );
    assert.deepEqual(root?.tags, expectedTags);
    assert.deepEqual(child?.tags, expectedTags);
    assert.deepEqual(
      (child?.logs as { text: string }[] | undefined)?.map((log) => log.text),
      ['line \u0001 "quoted" \udfff'],
    );
    assert.equal(child?.status, "timed_out");
    assert.equal((child?.error as { message?: string } | undefined)?.message, 'bad "input"\n');
    assert.deepEqual(quiet?.tags, { text: "plain ascii" });
  }
});

test("a tag key whose values never repeat stops caching them and still writes each one right", () => {
  const writer = new FrameWriter();
  for (let index = 0; index < 300; index++) {
    const tags = { "unique.id": `id-${index}-"${index}"`, repeated: "same" };
    assert.deepEqual(rootTagsAsEncoded(writer, index, tags), tags);
  }
});

test("tags that repeat in the same order are copied as one run, and a value that changes inside the run is still written", () => {
  const writer = new FrameWriter();
  const rounds: Record<string, unknown>[] = [
    { region: "eu", tier: 2, cached: false, kind: "web" },
    { region: "eu", tier: 2, cached: false, kind: "web" },
    { region: "eu", tier: 2, cached: false, kind: "web" },
    { region: "eu", tier: 2, cached: false, kind: "web" },
    { region: "eu", tier: 3, cached: false, kind: "web" },
    { region: "eu", tier: 3, cached: false, kind: "web", extra: "x" },
    { region: "eu", tier: 3, cached: false },
    { region: "eu", tier: 3, cached: false, kind: "web" },
  ];
  for (const [index, tags] of rounds.entries()) {
    assert.deepEqual(rootTagsAsEncoded(writer, index, tags), tags, `round ${index}`);
  }
});

/** The tags of a one-span request (number `index`) tagged with `tags`, as its compact frame says them. */
function rootTagsAsEncoded(writer: FrameWriter, index: number, tags: Record<string, unknown>): unknown {
  const request = new RequestRecord(
    `0af7651916cd43dd8448eb211c8${String(index).padStart(5, "0")}`,
    "r",
    10,
    undefined,
    () => {},
  );
  for (const [key, value] of Object.entries(tags)) request.root.tag(key, value);
  request.end();
  const [body] = splitFrames(encodeRequestFrame(request, 0, writer) as Buffer);
  const commands = JSON.parse(body as string).BatchCommand.commands as Record<string, Record<string, unknown>>[];
  return commands.find((command) => "StartSpan" in command)?.StartSpan?.tags;
}
