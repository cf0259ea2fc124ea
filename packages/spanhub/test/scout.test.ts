import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RunEvent } from "../src/model/event.js";
import { encodeFrame, FrameReader } from "../src/protocols/framing.js";
import {
  AGENT_VERSION,
  decodeScoutMessage,
  isKnownCommand,
  type ScoutConnection,
  type ScoutMessage,
} from "../src/protocols/scout.js";
import { readFixture, runEnd, runStart, runTag, span, spanEnd, spanLog, spanStart, spanTag, T0 } from "./helpers.js";

type Frame = Record<string, Record<string, unknown>>;
type Batch = { BatchCommand: { commands: unknown[]; batch_id?: unknown } };

const RECEIVED = T0 + 60_000_000;
const fixture = <T = Frame>(name: string): T => readFixture<T>(`scout/${name}`);

function decode(message: unknown, connection: ScoutConnection = {}): ScoutMessage {
  return decodeScoutMessage(message, connection, RECEIVED);
}

function eventsOf(message: ScoutMessage): RunEvent[] {
  assert.equal(message.refused, undefined, message.refused?.message);
  assert.ok(message.submission, "expected a submission");
  return message.submission.events;
}

// The request in batch-python-order.json and batch-depth-first.json.
const REQ = "req-5f0c7e2a-8d41-4c6b-9a3e-1b7d2f90c4a8";
const CTRL = "span-0b6a1f3e-27c4-4f8e-b5d9-6e2a8c1d7f40";
const SQL = "span-3c9e4b7a-1f2d-4a6e-8b0c-5d7f9e2a1c36";
const TPL = "span-7e1d2c3b-4a5f-4e6d-9c8b-0a1f2e3d4c5b";
const PART = "span-a4b5c6d7-e8f9-4a0b-8c1d-2e3f4a5b6c7d";
const STACK = [
  { file: "shop/users/views.py", line: 41, function: "index" },
  { file: "django/db/models/query.py", line: 398, function: "__iter__" },
];
/** Times in the fixtures are 2026-11-23T08:47:25.xxxxxx; T0 is .363000. */
const at = (fraction: number): number => T0 + fraction - 363_000;

const REQUEST_START = runStart(REQ, at(363_120), { tags: { path: "/users", user_ip: "10.0.4.17" } });
const REQUEST_END = runEnd(REQ, at(413_020));
const SPANS = {
  ctrl: span(REQ, CTRL, null, at(363_410), at(412_905), {
    name: "Controller/users.views.index",
    tags: { path: "/users" },
  }),
  sql: span(REQ, SQL, CTRL, at(365_002), at(371_388), {
    name: "SQL/Query",
    tags: { "db.statement": "SELECT id, name FROM users ORDER BY id LIMIT 50", stack: STACK },
  }),
  tpl: span(REQ, TPL, CTRL, at(372_010), at(410_777), { name: "Template/Render", tags: { name: "users/index.html" } }),
  part: span(REQ, PART, TPL, at(380_100), at(392_555), { name: "Template/Render", tags: { name: "users/_row.html" } }),
};

describe("Scout BatchCommand fixtures", () => {
  it("decodes the Python agent's order (children stop first) into one span event per span", () => {
    const message = decode(fixture("batch-python-order.json"));
    assert.equal(message.command, "BatchCommand");
    assert.deepEqual(message.reply, { BatchCommand: { result: "Success" } });
    assert.deepEqual(message.skipped, []);
    assert.deepEqual(eventsOf(message), [REQUEST_START, SPANS.sql, SPANS.part, SPANS.tpl, SPANS.ctrl, REQUEST_END]);
    assert.equal(message.submission?.batchId, undefined);
  });

  it("decodes the depth-first, parent-first order into the same events, parents first", () => {
    const message = decode(fixture("batch-depth-first.json"));
    assert.deepEqual(message.skipped, []);
    assert.deepEqual(eventsOf(message), [REQUEST_START, SPANS.ctrl, SPANS.sql, SPANS.tpl, SPANS.part, REQUEST_END]);
  });

  it("gives both orders the same tree and the same times, whatever the timestamp format", () => {
    const tree = (events: RunEvent[]) =>
      Object.fromEntries(
        events.flatMap((event) =>
          event.kind === "span" ? [[event.spanId, [event.parentId, event.startTime, event.time]]] : [],
        ),
      );
    const python = tree(eventsOf(decode(fixture("batch-python-order.json"))));
    const depthFirst = tree(eventsOf(decode(fixture("batch-depth-first.json"))));
    assert.equal(Object.keys(python).length, 4);
    assert.deepEqual(depthFirst, python);
    assert.deepEqual(python[PART], [TPL, at(380_100), at(392_555)]);
  });

  it("carries the batch_id, an explicit spanhub.name and the connection's app into the submission", () => {
    const connection: ScoutConnection = { app: "importer" };
    const message = decode(fixture("batch-spanhub-sdk.json"), connection);
    assert.deepEqual(message.skipped, []);
    assert.equal(message.submission?.batchId, "b-2c7e9f14-0a3d-4b6e-8f21-5d9c3a7b1e60");
    assert.equal(message.submission?.app, "importer");
    assert.deepEqual(message.reply, { BatchCommand: { result: "Success" } });
    const ms = (text: string) => Date.parse(text) * 1000;
    assert.deepEqual(eventsOf(message), [
      runStart("req-import-20261123", T0, { name: "Nightly user import", tags: { tenant: "acme" } }),
      span("req-import-20261123", "span-job", null, T0 + 1000, ms("2026-11-23T08:47:27.010Z"), {
        name: "Job/ImportUsers",
      }),
      span("req-import-20261123", "span-fetch", "span-job", T0 + 2000, ms("2026-11-23T08:47:27.001Z"), {
        name: "HTTP/GET",
        tags: { url: "https://crm.example.test/users?page=1", error: "true" },
      }),
      runEnd("req-import-20261123", ms("2026-11-23T08:47:27.011Z")),
    ]);
  });

  it("skips invalid batch members, reporting each, and keeps the rest", () => {
    const batch = fixture<Batch>("batch-python-order.json");
    const commands = [...batch.BatchCommand.commands];
    commands.splice(4, 0, { StopSpan: { request_id: REQ } }); // no span_id
    commands.splice(1, 0, "StartRequest");
    commands.splice(7, 0, { TagSpan: { request_id: REQ, span_id: SQL }, StopSpan: { request_id: REQ } });
    commands.push({ Teleport: { request_id: REQ } }, { StartSpan: { request_id: REQ, span_id: "x", parent_id: 7 } });
    const message = decode({ BatchCommand: { commands } });
    assert.deepEqual(message.reply, { BatchCommand: { result: "Success" } });
    assert.equal(message.refused, undefined);
    assert.equal(message.skipped.length, 5);
    assert.match(message.skipped[0]?.message ?? "", /one key/);
    assert.match(message.skipped[1]?.message ?? "", /span_id/);
    assert.match(message.skipped[2]?.message ?? "", /one key/);
    assert.match(message.skipped[3]?.message ?? "", /Teleport/);
    assert.equal(message.skipped[3]?.reason, "rejected");
    assert.match(message.skipped[4]?.message ?? "", /parent_id/);
    assert.deepEqual(eventsOf(message), [REQUEST_START, SPANS.sql, SPANS.part, SPANS.tpl, SPANS.ctrl, REQUEST_END]);
  });

  it("keeps an ApplicationEvent inside a batch as an app event", () => {
    const metadata = fixture("application-event-metadata.json");
    const message = decode(
      { BatchCommand: { commands: [metadata, { StartRequest: { request_id: "r" } }] } },
      {
        app: "shop-web",
      },
    );
    // The metadata's source "Pid: 7199" names the client process, which its requests then carry.
    assert.deepEqual(eventsOf(message), [runStart("r", RECEIVED, { pid: 7199 })]);
    assert.equal(message.submission?.appEvents?.length, 1);
    assert.equal(message.submission?.appEvents?.[0]?.eventType, "scout.metadata");
    assert.equal(message.submission?.appEvents?.[0]?.app, "shop-web");
  });

  it("refuses a batch whose commands are not an array, or whose batch_id is not a non-empty string", () => {
    for (const body of [{}, { commands: {} }, { commands: [], batch_id: 42 }, { commands: [], batch_id: "" }]) {
      const message = decode({ BatchCommand: body });
      assert.equal(message.command, "BatchCommand");
      assert.ok("Failure" in message.reply, JSON.stringify(body));
      assert.equal(message.submission, undefined);
      assert.ok(message.refused);
    }
  });
});

describe("Scout single commands", () => {
  it("Register: replies with a null id, remembers the app, and does not keep the API key", () => {
    const connection: ScoutConnection = {};
    const message = decode(fixture("register.json"), connection);
    assert.deepEqual(message.reply, { Register: { id: null, result: "Success" } });
    assert.equal(connection.app, "shop-web");
    assert.equal(connection.host, "web-1");
    assert.deepEqual(message.submission, {
      events: [],
      appEvents: [
        {
          app: "shop-web",
          eventType: "Register",
          value: { app: "shop-web", api_version: "1.0", host: "web-1", language: "nodejs" },
          time: RECEIVED,
        },
      ],
    });
    assert.ok(!JSON.stringify(message).includes("Xq3kP9sT2vW8yZ1aBc4D"), "the key must not be kept");
  });

  it("Register without an app is refused", () => {
    const message = decode({ Register: { key: "k", api_version: "1.0" } });
    assert.ok("Failure" in message.reply);
    assert.match(String(message.reply.Failure?.message), /app/);
  });

  it("ApplicationEvent scout.metadata: kept for the registered app with its source and time", () => {
    const connection: ScoutConnection = { app: "shop-web" };
    const frame = fixture<{ ApplicationEvent: { event_value: unknown } }>("application-event-metadata.json");
    const message = decode(frame, connection);
    assert.deepEqual(message.reply, { ApplicationEvent: { result: "Success" } });
    assert.deepEqual(message.submission, {
      events: [],
      appEvents: [
        {
          app: "shop-web",
          eventType: "scout.metadata",
          value: frame.ApplicationEvent.event_value,
          source: "Pid: 7199",
          time: Date.parse("2026-11-23T08:47:20.001Z") * 1000,
        },
      ],
    });
  });

  it("ApplicationEvent before any Register belongs to the app `unknown`; a missing timestamp means receive time", () => {
    const message = decode({ ApplicationEvent: { event_type: "CPU/Utilization", event_value: 12.5 } });
    assert.deepEqual(message.submission?.appEvents, [
      { app: "unknown", eventType: "CPU/Utilization", value: 12.5, time: RECEIVED },
    ]);
  });

  it("CoreAgentVersion replies with a version", () => {
    const message = decode({ CoreAgentVersion: {} });
    assert.deepEqual(message.reply, { CoreAgentVersion: { version: AGENT_VERSION, result: "Success" } });
    assert.match(AGENT_VERSION, /^\d+\.\d+\.\d+$/);
    assert.equal(message.submission, undefined);
  });

  it("CoreAgentShutdown is refused with a Failure: no client stops the shared agent", () => {
    const message = decode({ CoreAgentShutdown: {} });
    assert.equal(message.command, "CoreAgentShutdown");
    assert.deepEqual(Object.keys(message.reply), ["Failure"]);
    assert.match(String(message.reply.Failure?.message), /never stopped by a client/);
    assert.equal(message.submission, undefined);
  });

  it('StartSpan with "parent_id": null is a top-level span', () => {
    const message = decode(fixture("start-span-null-parent.json"), { app: "shop-web" });
    assert.deepEqual(message.reply, { StartSpan: { result: "Success" } });
    assert.deepEqual(message.submission, {
      app: "shop-web",
      events: [
        spanStart("req-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "span-1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6", null, T0, {
          name: "Controller/GET /orders/:id",
        }),
      ],
    });
  });

  it("StartSpan with parent_id omitted is a top-level span too", () => {
    const message = decode(fixture("start-span-no-parent.json"));
    assert.deepEqual(eventsOf(message), [
      spanStart("req-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "span-6f5e4d3c-2b1a-4098-8765-4321fedcba98", null, T0, {
        name: "Job/ExpireCarts",
      }),
    ]);
    assert.equal(message.submission?.app, undefined);
  });

  it("a TagRequest named spanhub.name sets an explicit run name; a non-string one stays a tag", () => {
    const named = decode({ TagRequest: { request_id: "r", tag: "spanhub.name", value: "Nightly import" } });
    assert.deepEqual(eventsOf(named), [runTag("r", RECEIVED, {}, { name: "Nightly import" })]);
    const odd = decode({ TagRequest: { request_id: "r", tag: "spanhub.name", value: 7 } });
    assert.deepEqual(eventsOf(odd), [runTag("r", RECEIVED, { "spanhub.name": 7 })]);
  });

  it("tag values may be any JSON value", () => {
    for (const value of ["x", 3, true, { a: [1, 2] }, null]) {
      const message = decode({ TagSpan: { request_id: "r", span_id: "s", tag: "t", value } });
      assert.deepEqual(eventsOf(message), [spanTag("r", "s", RECEIVED, { t: value })]);
    }
  });

  it("a tag named __proto__ is kept as a tag, merged into its span or alone", () => {
    const frame = JSON.parse(`{"BatchCommand":{"commands":[
      {"StartSpan":{"request_id":"r","span_id":"s","operation":"op","timestamp":"2026-11-23T08:47:25.363000Z"}},
      {"TagSpan":{"request_id":"r","span_id":"s","tag":"__proto__","value":{"polluted":true}}},
      {"TagSpan":{"request_id":"r","span_id":"s","tag":"k","value":1}},
      {"TagSpan":{"request_id":"r","span_id":"t","tag":"__proto__","value":{"alone":true}}}]}}`);
    const [merged, alone] = eventsOf(decode(frame));
    for (const [event, value] of [
      [merged, { polluted: true }],
      [alone, { alone: true }],
    ] as const) {
      const tags = (event as { tags: Record<string, unknown> }).tags;
      assert.equal(Object.getPrototypeOf(tags), Object.prototype);
      assert.deepEqual(Object.getOwnPropertyDescriptor(tags, "__proto__")?.value, value);
      assert.match(JSON.stringify(tags), /"__proto__":/);
    }
    assert.equal((merged as { tags: Record<string, unknown> }).tags.k, 1);
  });

  it("an unreadable timestamp counts as the receive time", () => {
    const message = decode({ StopSpan: { request_id: "r", span_id: "s", timestamp: "soon" } });
    assert.deepEqual(eventsOf(message), [spanEnd("r", "s", RECEIVED)]);
  });

  it("an unknown command gets a Failure naming it", () => {
    const message = decode({ Teleport: { request_id: "r" } });
    assert.equal(message.command, "Teleport");
    assert.deepEqual(Object.keys(message.reply), ["Failure"]);
    assert.match(String(message.reply.Failure?.message), /Teleport/);
    assert.equal(message.refused?.reason, "rejected");
    assert.equal(message.submission, undefined);
  });

  it("a message with two keys, or that is not an object, gets a Failure", () => {
    for (const message of [
      { StartRequest: { request_id: "r" }, FinishRequest: { request_id: "r" } },
      {},
      [],
      null,
      "StartRequest",
      42,
    ]) {
      const decoded = decode(message);
      assert.equal(decoded.command, "(invalid)", JSON.stringify(message));
      assert.deepEqual(Object.keys(decoded.reply), ["Failure"]);
      assert.equal(decoded.submission, undefined);
    }
  });

  it("a command whose body is not an object, or misses a required field, gets a Failure", () => {
    for (const message of [
      { StartRequest: "r" },
      { StartRequest: null },
      { StartRequest: {} },
      { StartSpan: { request_id: "r", operation: "x" } },
      { TagRequest: { request_id: "r", value: 1 } },
    ]) {
      const decoded = decode(message);
      assert.deepEqual(Object.keys(decoded.reply), ["Failure"], JSON.stringify(message));
      assert.equal(decoded.submission, undefined);
    }
  });

  it("Status (spanhub's own) succeeds", () => {
    assert.deepEqual(decode({ Status: {} }).reply, { Status: { result: "Success" } });
  });
});

describe("spanhub's Events command", () => {
  it("decodes JSON-lines events, coalesces them, echoes the batch_id and reports bad members", () => {
    const message = decode(
      {
        Events: {
          batch_id: "b-1",
          events: [
            { type: "run_start", run_id: "play-1", ts_ms: T0 / 1000, name: "flow" },
            { type: "span_start", run_id: "play-1", span_id: "s", ts_ms: T0 / 1000 + 1 },
            { type: "span_end", run_id: "play-1", span_id: "s", ts_ms: T0 / 1000 + 2, status: "weird" },
            { type: "span_pause", run_id: "play-1" },
            { type: "span_end", run_id: "play-1" },
          ],
        },
      },
      { app: "flows" },
    );
    assert.deepEqual(message.reply, { Events: { result: "Success", batch_id: "b-1" } });
    assert.equal(message.submission?.batchId, "b-1");
    assert.equal(message.submission?.app, "flows");
    assert.deepEqual(
      message.skipped.map((error) => error.reason),
      ["rejected", "malformed"],
    );
    assert.deepEqual(eventsOf(message), [
      runStart("play-1", T0, { name: "flow" }),
      span("play-1", "s", undefined, T0 + 1000, T0 + 2000, { status: "failed", unknownStatus: "weird" }),
    ]);
  });

  it("replies without a batch_id when none was sent", () => {
    assert.deepEqual(decode({ Events: { events: [] } }).reply, { Events: { result: "Success" } });
    assert.ok("Failure" in decode({ Events: {} }).reply);
  });
});

describe("a Scout connection, frame by frame", () => {
  it("decodes the Node agent's frames from a byte stream split at odd places", () => {
    const frames: unknown[] = [
      fixture("register.json"),
      fixture("application-event-metadata.json"),
      ...fixture<unknown[]>("node-agent-request.json"),
    ];
    const bytes = Buffer.concat(frames.map(encodeFrame));
    const reader = new FrameReader(1 << 20);
    const connection: ScoutConnection = {};
    const decoded: ScoutMessage[] = [];
    for (let offset = 0; offset < bytes.length; offset += 7) {
      for (const chunk of reader.push(bytes.subarray(offset, offset + 7))) {
        assert.equal(chunk.kind, "item");
        if (chunk.kind === "item") decoded.push(decode(JSON.parse(chunk.value.toString("utf8")), connection));
      }
    }
    assert.deepEqual(
      decoded.map((message) => Object.keys(message.reply)[0]),
      [
        "Register",
        "ApplicationEvent",
        "StartRequest",
        "StartSpan",
        "StartSpan",
        "TagSpan",
        "StopSpan",
        "TagRequest",
        "StopSpan",
        "FinishRequest",
      ],
    );
    assert.equal(decoded[1]?.submission?.appEvents?.[0]?.app, "shop-web");
    const req = "req-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    const ctrl = "span-1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6";
    const sql = "span-0c1d2e3f-4a5b-4c6d-9e7f-8091a2b3c4d5";
    const requestFrames = decoded.slice(2);
    for (const message of requestFrames) assert.equal(message.submission?.app, "shop-web");
    assert.deepEqual(
      requestFrames.flatMap((message) => eventsOf(message)),
      [
        // The host named by Register and the pid from the metadata's source.
        runStart(req, T0 - 2000, { host: "web-1", pid: 7199 }),
        spanStart(req, ctrl, null, T0, { name: "Controller/GET /orders/:id" }),
        spanStart(req, sql, ctrl, T0 + 7000, { name: "SQL/Query" }),
        spanTag(req, sql, T0 + 7000, { "db.statement": "SELECT * FROM orders WHERE id = $1" }),
        spanEnd(req, sql, T0 + 18_000),
        runTag(req, T0 + 19_000, { path: "/orders/1009" }),
        spanEnd(req, ctrl, T0 + 27_000),
        runEnd(req, T0 + 28_000),
      ],
    );
  });
});

describe("spanhub extensions to Scout commands", () => {
  const R = "req-ext";
  const iso = (micros: number): string =>
    `${new Date(Math.floor(micros / 1000)).toISOString().slice(0, -1)}${String(micros % 1000).padStart(3, "0")}Z`;

  it("LogSpan is a known command and becomes a span_log at its time (receive time without one)", () => {
    assert.ok(isKnownCommand("LogSpan"));
    const message = decode({ LogSpan: { request_id: R, span_id: "s1", text: "3 rows", timestamp: iso(T0 + 5) } });
    assert.equal(message.command, "LogSpan");
    assert.deepEqual(message.reply, { LogSpan: { result: "Success" } });
    assert.deepEqual(eventsOf(message), [spanLog(R, "s1", T0 + 5, "3 rows")]);
    assert.deepEqual(eventsOf(decode({ LogSpan: { request_id: R, span_id: "s1", text: { n: 1 } } })), [
      spanLog(R, "s1", RECEIVED, '{"n":1}'),
    ]);
    for (const bad of [
      { request_id: R, span_id: "s1" },
      { request_id: R, text: "x" },
      { span_id: "s1", text: "x" },
    ])
      assert.ok("Failure" in decode({ LogSpan: bad }).reply, JSON.stringify(bad));
  });

  it("StartSpan carries tags, kind and rpc fields; TagSpan carries several tags at once", () => {
    const start = decode({
      StartSpan: {
        request_id: R,
        span_id: "s1",
        parent_id: null,
        operation: "postgres.query",
        timestamp: iso(T0),
        tags: { "db.system": "postgresql", rows: 3 },
        kind: "rpc",
        rpc_service: "postgres",
        rpc_method: "query",
      },
    });
    assert.deepEqual(eventsOf(start), [
      spanStart(R, "s1", null, T0, {
        name: "postgres.query",
        spanKind: "rpc",
        tags: { "db.system": "postgresql", rows: 3 },
        rpcService: "postgres",
        rpcMethod: "query",
      }),
    ]);
    const tags = decode({ TagSpan: { request_id: R, span_id: "s1", tags: { a: 1, b: null }, timestamp: iso(T0 + 1) } });
    assert.deepEqual(eventsOf(tags), [spanTag(R, "s1", T0 + 1, { a: 1, b: null })]);
    const both = decode({ TagSpan: { request_id: R, span_id: "s1", tags: { a: 1 }, tag: "c", value: true } });
    assert.deepEqual(eventsOf(both), [spanTag(R, "s1", RECEIVED, { a: 1, c: true })]);
    for (const bad of [
      { StartSpan: { request_id: R, span_id: "s1", operation: "x", tags: [1] } },
      { StartSpan: { request_id: R, span_id: "s1", operation: "x", rpc_service: 5 } },
      { TagSpan: { request_id: R, span_id: "s1", tags: "a=1" } },
      { TagSpan: { request_id: R, span_id: "s1" } },
    ])
      assert.ok("Failure" in decode(bad).reply, JSON.stringify(bad));
  });

  it("StopSpan and FinishRequest carry status and error; an unknown status is failed and kept", () => {
    const stop = (extra: Record<string, unknown>) =>
      eventsOf(decode({ StopSpan: { request_id: R, span_id: "s1", timestamp: iso(T0), ...extra } }));
    assert.deepEqual(stop({ status: "timed_out" }), [spanEnd(R, "s1", T0, { status: "timed_out" })]);
    assert.deepEqual(stop({ status: "paused" }), [spanEnd(R, "s1", T0, { status: "failed", unknownStatus: "paused" })]);
    assert.deepEqual(stop({ error: { type: "TypeError", message: "bad", stack: "at x" } }), [
      spanEnd(R, "s1", T0, { error: { type: "TypeError", message: "bad", stack: "at x" } }),
    ]);
    assert.deepEqual(stop({ error: "boom", status: "cancelled" }), [
      spanEnd(R, "s1", T0, { status: "cancelled", error: { message: "boom" } }),
    ]);
    assert.deepEqual(stop({ status: null, error: null }), [spanEnd(R, "s1", T0)]);
    const finish = (extra: Record<string, unknown>) =>
      eventsOf(decode({ FinishRequest: { request_id: R, timestamp: iso(T0), ...extra } }));
    assert.deepEqual(finish({ status: "cancelled" }), [runEnd(R, T0, { status: "cancelled" })]);
    assert.deepEqual(finish({ status: "crashed", error: "oom" }), [
      runEnd(R, T0, { status: "crashed", error: { message: "oom" } }),
    ]);
    assert.deepEqual(finish({ status: 7 }), [runEnd(R, T0, { status: "failed", unknownStatus: "7" })]);
  });

  it("StartRequest carries name, tags and the parent link, with the connection's host and pid", () => {
    const message = decode(
      {
        StartRequest: {
          request_id: R,
          timestamp: iso(T0),
          name: "GET /invoices",
          tags: { user: 42 },
          parent_run_id: "req-up",
          parent_span_id: "span-up",
        },
      },
      { app: "billing", host: "web-1", pid: 7 },
    );
    assert.deepEqual(eventsOf(message), [
      runStart(R, T0, {
        name: "GET /invoices",
        tags: { user: 42 },
        host: "web-1",
        pid: 7,
        parentRunId: "req-up",
        parentSpanId: "span-up",
      }),
    ]);
    assert.ok("Failure" in decode({ StartRequest: { request_id: R, parent_run_id: 1 } }).reply);
    assert.ok("Failure" in decode({ StartRequest: { request_id: R, tags: "x" } }).reply);
  });

  it("a BatchCommand with every extension coalesces into one run start, one span per span and one run end", () => {
    const message = decode({
      BatchCommand: {
        batch_id: "ext-1",
        commands: [
          {
            StartRequest: {
              request_id: R,
              timestamp: iso(T0),
              name: "GET /x",
              tags: { user: 42 },
              parent_run_id: "req-up",
              parent_span_id: "span-up",
            },
          },
          { TagRequest: { request_id: R, tag: "late", value: 1 } },
          {
            StartSpan: {
              request_id: R,
              span_id: "root",
              parent_id: null,
              operation: "GET /x",
              timestamp: iso(T0 + 10),
              kind: "request",
              tags: { a: 1 },
            },
          },
          { LogSpan: { request_id: R, span_id: "root", text: "first", timestamp: iso(T0 + 20) } },
          { TagSpan: { request_id: R, span_id: "root", tags: { b: 2, a: 3 } } },
          {
            StartSpan: {
              request_id: R,
              span_id: "db",
              parent_id: "root",
              operation: "postgres.query",
              timestamp: iso(T0 + 30),
              rpc_service: "postgres",
              rpc_method: "query",
            },
          },
          { LogSpan: { request_id: R, span_id: "db", text: "retry", timestamp: iso(T0 + 35) } },
          {
            StopSpan: {
              request_id: R,
              span_id: "db",
              timestamp: iso(T0 + 40),
              status: "failed",
              error: { type: "Error", message: "db down", stack: "Error: db down" },
            },
          },
          { LogSpan: { request_id: R, span_id: "root", text: "after", timestamp: iso(T0 + 45) } },
          { StopSpan: { request_id: R, span_id: "root", timestamp: iso(T0 + 50), status: "ok" } },
          { FinishRequest: { request_id: R, timestamp: iso(T0 + 60), status: "failed", error: "db down" } },
          { LogSpan: { request_id: R, span_id: "root" } },
        ],
      },
    });
    assert.deepEqual(message.reply, { BatchCommand: { result: "Success" } });
    assert.equal(message.skipped.length, 1, "the LogSpan without text is skipped");
    assert.deepEqual(eventsOf(message), [
      runStart(R, T0, {
        name: "GET /x",
        tags: { user: 42, late: 1 },
        parentRunId: "req-up",
        parentSpanId: "span-up",
      }),
      span(R, "root", null, T0 + 10, T0 + 50, {
        name: "GET /x",
        spanKind: "request",
        tags: { a: 3, b: 2 },
        logs: [
          { time: T0 + 20, text: "first" },
          { time: T0 + 45, text: "after" },
        ],
        status: "ok",
      }),
      span(R, "db", "root", T0 + 30, T0 + 40, {
        name: "postgres.query",
        rpcService: "postgres",
        rpcMethod: "query",
        logs: [{ time: T0 + 35, text: "retry" }],
        status: "failed",
        error: { type: "Error", message: "db down", stack: "Error: db down" },
      }),
      runEnd(R, T0 + 60, { status: "failed", error: { message: "db down" } }),
    ]);
  });

  it("Register answers which offered extensions it accepts; a client that offers none gets Scout's reply", () => {
    const offered = decode({ Register: { app: "billing", key: "k", extensions: ["compact_batch", "teleport"] } });
    assert.deepEqual(offered.reply, { Register: { id: null, result: "Success", extensions: ["compact_batch"] } });
    assert.deepEqual(decode({ Register: { app: "billing", extensions: "compact_batch" } }).reply, {
      Register: { id: null, result: "Success" },
    });
    assert.deepEqual(decode({ Register: { app: "billing" } }).reply, { Register: { id: null, result: "Success" } });
  });

  it("compact_batch: members without request_id take the batch's; a finished StartSpan is the span's start and end", () => {
    const message = decode({
      BatchCommand: {
        request_id: R,
        batch_id: "compact-1",
        commands: [
          { StartRequest: { timestamp: iso(T0), name: "GET /x" } },
          { TagRequest: { tag: "user", value: 42 } },
          {
            StartSpan: {
              span_id: "root",
              parent_id: null,
              operation: "GET /x",
              timestamp: iso(T0 + 10),
              kind: "request",
            },
          },
          {
            StartSpan: {
              span_id: "db",
              parent_id: "root",
              operation: "SQL/Query",
              timestamp: iso(T0 + 20),
              tags: { rows: 3 },
              stop_timestamp: iso(T0 + 30),
              status: "timed_out",
              error: { type: "TimeoutError", message: "slow" },
            },
          },
          { StartSpan: { span_id: "cache", parent_id: "root", operation: "Cache/read", stop_timestamp: iso(T0 + 35) } },
          { TagSpan: { span_id: "root", tags: { b: 2 } } },
          { LogSpan: { span_id: "root", text: "done", timestamp: iso(T0 + 40) } },
          { StopSpan: { span_id: "root", timestamp: iso(T0 + 50) } },
          // A member naming its own request keeps it.
          { StartRequest: { request_id: "req-other", timestamp: iso(T0) } },
          { FinishRequest: { timestamp: iso(T0 + 60) } },
        ],
      },
    });
    assert.deepEqual(message.skipped, []);
    assert.deepEqual(eventsOf(message), [
      runStart(R, T0, { name: "GET /x", tags: { user: 42 } }),
      span(R, "root", null, T0 + 10, T0 + 50, {
        name: "GET /x",
        spanKind: "request",
        tags: { b: 2 },
        logs: [{ time: T0 + 40, text: "done" }],
      }),
      span(R, "db", "root", T0 + 20, T0 + 30, {
        name: "SQL/Query",
        tags: { rows: 3 },
        status: "timed_out",
        error: { type: "TimeoutError", message: "slow" },
      }),
      span(R, "cache", "root", RECEIVED, T0 + 35, { name: "Cache/read" }),
      runStart("req-other", T0),
      runEnd(R, T0 + 60),
    ]);
    // A StartSpan without stop_timestamp ignores status and error: only a stop carries them.
    assert.deepEqual(
      eventsOf(
        decode({ StartSpan: { request_id: R, span_id: "s", operation: "x", timestamp: iso(T0), status: "failed" } }),
      ),
      [spanStart(R, "s", null, T0, { name: "x" })],
    );
    assert.deepEqual(
      eventsOf(decode({ StartSpan: { request_id: R, span_id: "s", operation: "x", stop_timestamp: iso(T0 + 1) } })),
      [spanStart(R, "s", null, RECEIVED, { name: "x" }), spanEnd(R, "s", T0 + 1)],
    );
    const bad = decode({ BatchCommand: { request_id: 7, commands: [] } });
    assert.ok("Failure" in bad.reply, "a request_id that is not a string refuses the batch");
    const missing = decode({ BatchCommand: { commands: [{ StartRequest: { timestamp: iso(T0) } }] } });
    assert.equal(missing.skipped.length, 1, "without a batch request_id a member must name one");
  });

  it("leaves the caller's tags objects alone when later commands merge into them", () => {
    const startTags = { a: 1 };
    const message = decode({
      BatchCommand: {
        commands: [
          { StartSpan: { request_id: R, span_id: "s", operation: "x", tags: startTags } },
          { TagSpan: { request_id: R, span_id: "s", tags: { b: 2 } } },
        ],
      },
    });
    assert.deepEqual(eventsOf(message), [spanStart(R, "s", null, RECEIVED, { name: "x", tags: { a: 1, b: 2 } })]);
    assert.deepEqual(startTags, { a: 1 });
  });
});
