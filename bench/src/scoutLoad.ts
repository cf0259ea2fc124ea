import { randomUUID } from "node:crypto";

/**
 * The benchmark's load: one web request per Scout `BatchCommand`, shaped like the
 * Python agent sends it (StartRequest, TagRequests, then each span in the order it
 * stopped, children before parents, as StartSpan, TagSpan x5, StopSpan, then
 * FinishRequest). The same requests become plain rows for the raw SQLite ceiling.
 */

export const SPANS_PER_REQUEST = 10;
export const TAGS_PER_SPAN = 5;

export interface SpanShape {
  name: string;
  /** Index of the parent span in SPANS, null for the root. */
  parent: number | null;
  /** Microseconds after the request started. */
  start: number;
  end: number;
  tags: [string, unknown][];
}

const stack = (fn: string, line: number) => [
  { file: "/srv/app/views/users.py", line, function: fn },
  { file: "/srv/app/lib/site-packages/django/core/handlers/base.py", line: 181, function: "_get_response" },
];

const sqlTags = (statement: string, rows: number, line: number): [string, unknown][] => [
  ["db.statement", statement],
  ["db.rows", rows],
  ["allocations", 1200 + rows],
  ["cached", false],
  ["stack", stack("show", line)],
];

const plainTags = (kind: string, detail: string, line: number): [string, unknown][] => [
  ["kind", kind],
  ["detail", detail],
  ["allocations", 480 + line],
  ["thread", "MainThread"],
  ["stack", stack("render", line)],
];

/** A small tree: a controller with middleware, queries, an outbound call and templates. */
export const SPANS: SpanShape[] = [
  { name: "Controller/users.show", parent: null, start: 0, end: 10_000, tags: plainTags("controller", "show", 12) },
  { name: "Middleware/auth", parent: 0, start: 100, end: 1_200, tags: plainTags("middleware", "session", 20) },
  {
    name: "SQL/Query",
    parent: 1,
    start: 200,
    end: 1_000,
    tags: sqlTags("SELECT * FROM sessions WHERE key = %s", 1, 31),
  },
  {
    name: "SQL/Query",
    parent: 0,
    start: 1_300,
    end: 2_300,
    tags: sqlTags("SELECT id, name, email FROM users WHERE id = %s", 1, 40),
  },
  {
    name: "SQL/Query",
    parent: 0,
    start: 2_400,
    end: 3_000,
    tags: sqlTags("SELECT * FROM orders WHERE user_id = %s ORDER BY created DESC LIMIT 20", 20, 44),
  },
  { name: "HTTP/GET", parent: 0, start: 3_100, end: 6_000, tags: plainTags("http", "api.example.com/avatars", 51) },
  { name: "Template/Render", parent: 0, start: 6_100, end: 9_800, tags: plainTags("template", "users/show.html", 60) },
  { name: "Template/Partial", parent: 6, start: 6_200, end: 7_000, tags: plainTags("template", "_header.html", 61) },
  { name: "Template/Partial", parent: 6, start: 7_100, end: 9_500, tags: plainTags("template", "_orders.html", 62) },
  { name: "Cache/read", parent: 8, start: 7_200, end: 7_600, tags: plainTags("cache", "orders:42", 63) },
];

/** Children before parents: the order in which the spans stopped. */
const STOP_ORDER = SPANS.map((_, index) => index).sort((a, b) => (SPANS[a]?.end ?? 0) - (SPANS[b]?.end ?? 0));
export const REQUEST_MICROS = Math.max(...SPANS.map((span) => span.end));

/** Each span's tags as `,"tag":"K","value":V` fragments, and as the JSON object a store row keeps. */
const TAG_FRAGMENTS = SPANS.map((span) =>
  span.tags.map(([key, value]) => `"tag":${JSON.stringify(key)},"value":${JSON.stringify(value)}`),
);
const TAGS_JSON = SPANS.map((span) => JSON.stringify(Object.fromEntries(span.tags)));

if (SPANS.length !== SPANS_PER_REQUEST || SPANS.some((span) => span.tags.length !== TAGS_PER_SPAN))
  throw new Error("the request shape does not match SPANS_PER_REQUEST / TAGS_PER_SPAN");

/** ISO-8601 UTC with microseconds and `Z`, as the Python agent writes it; the minute prefix is cached. */
class IsoClock {
  private minute = -1;
  private prefix = "";

  format(us: number): string {
    const minute = Math.floor(us / 60_000_000);
    if (minute !== this.minute) {
      this.minute = minute;
      this.prefix = new Date(minute * 60_000).toISOString().slice(0, 17);
    }
    const rest = us - minute * 60_000_000;
    const seconds = Math.floor(rest / 1_000_000);
    const micros = rest - seconds * 1_000_000;
    return `${this.prefix}${seconds < 10 ? "0" : ""}${seconds}.${String(micros).padStart(6, "0")}Z`;
  }
}

export interface RequestIds {
  requestId: string;
  spanIds: string[];
}

/** Fresh random ids; with `counterDigits`, each ends in that many zeros for a frame counter to replace. */
function newIds(counterDigits = 0): RequestIds {
  const id = () => `${randomUUID().slice(0, 36 - counterDigits)}${"0".repeat(counterDigits)}`;
  const spanIds: string[] = [];
  for (let index = 0; index < SPANS_PER_REQUEST; index++) spanIds.push(`span-${id()}`);
  return { requestId: `req-${id()}`, spanIds };
}

/** The last UUID group (12 hex digits) of every id in a templated frame is the frame's counter. */
const COUNTER_HEX = "000000000000";
const TEMPLATE_FRAMES = 64;

class FrameTemplate {
  used = 0;
  private readonly counter = Buffer.alloc(COUNTER_HEX.length);

  constructor(
    private readonly frame: Buffer,
    private readonly counterAt: number[],
  ) {}

  next(): Buffer {
    this.used += 1;
    this.counter.write(this.used.toString(16).padStart(COUNTER_HEX.length, "0"), "latin1");
    const frame = Buffer.allocUnsafe(this.frame.length);
    this.frame.copy(frame);
    for (const at of this.counterAt) this.counter.copy(frame, at);
    return frame;
  }
}

/**
 * `scout`: Scout's Python agent's shape, one TagSpan command a tag. `sdk`: spanhub's
 * own SDK's shape against a 0.2 agent, each span's tags as one object on StartSpan.
 */
export type FrameShape = "scout" | "sdk";

export class ScoutLoad {
  private readonly clock = new IsoClock();

  constructor(private readonly shape: FrameShape = "scout") {}

  /** Frames built from the current template; a new one (fresh times and ids) after TEMPLATE_FRAMES. */
  private template: FrameTemplate | undefined;

  /**
   * The next request as a whole frame. The load generator shares the machine with the
   * agent, so it stays cheap: a frame is a copy of a template with a counter patched into
   * every id (unique ids, the same bytes as `batchText`), and the template, with its
   * timestamps, is rebuilt every TEMPLATE_FRAMES frames.
   */
  nextFrame(): Buffer {
    if (!this.template || this.template.used === TEMPLATE_FRAMES) this.template = this.newTemplate();
    return this.template.next();
  }

  private newTemplate(): FrameTemplate {
    const ids = newIds(COUNTER_HEX.length);
    const frame = frameOf(this.batchText(ids));
    const counterAt: number[] = [];
    for (const id of [ids.requestId, ...ids.spanIds]) {
      for (let at = frame.indexOf(id); at !== -1; at = frame.indexOf(id, at + id.length))
        counterAt.push(at + id.length - COUNTER_HEX.length);
    }
    return new FrameTemplate(frame, counterAt);
  }

  /** One request as the text of a BatchCommand frame body; it ended just now. */
  batchText({ requestId, spanIds }: RequestIds = newIds()): string {
    const t0 = Math.round((performance.timeOrigin + performance.now()) * 1000) - REQUEST_MICROS;
    const at = (offset: number) => this.clock.format(t0 + offset);
    const rid = `"request_id":"${requestId}"`;
    const parts: string[] = [
      `{"StartRequest":{${rid},"timestamp":"${at(0)}"}}`,
      `{"TagRequest":{${rid},"tag":"path","value":"/users/42","timestamp":"${at(50)}"}}`,
      `{"TagRequest":{${rid},"tag":"user_ip","value":"10.0.3.17","timestamp":"${at(60)}"}}`,
    ];
    for (const index of STOP_ORDER) {
      const span = SPANS[index] as SpanShape;
      const sid = `${rid},"span_id":"${spanIds[index]}"`;
      const parent = span.parent === null ? "null" : `"${spanIds[span.parent]}"`;
      const start = `${sid},"parent_id":${parent},"operation":"${span.name}","timestamp":"${at(span.start)}"`;
      if (this.shape === "sdk") parts.push(`{"StartSpan":{${start},"tags":${TAGS_JSON[index]}}}`);
      else {
        parts.push(`{"StartSpan":{${start}}}`);
        const tagTime = at(span.end - 1);
        for (const fragment of TAG_FRAGMENTS[index] as string[])
          parts.push(`{"TagSpan":{${sid},${fragment},"timestamp":"${tagTime}"}}`);
      }
      parts.push(`{"StopSpan":{${sid},"timestamp":"${at(span.end)}"}}`);
    }
    parts.push(`{"FinishRequest":{${rid},"timestamp":"${at(REQUEST_MICROS)}"}}`);
    return `{"BatchCommand":{"commands":[${parts.join(",")}]}}`;
  }
}

/** One span as the raw ceiling stores it. */
export type SpanRow = [
  runId: string,
  spanId: string,
  parentId: string | null,
  name: string,
  startUs: number,
  endUs: number,
  status: string,
  tags: string,
];

/** The rows of `requests` requests, built before any timing starts. */
export function spanRows(requests: number): SpanRow[] {
  const rows: SpanRow[] = [];
  let t0 = Date.now() * 1000;
  for (let request = 0; request < requests; request++) {
    const { requestId, spanIds } = newIds();
    for (const index of STOP_ORDER) {
      const span = SPANS[index] as SpanShape;
      const parent = span.parent === null ? null : (spanIds[span.parent] as string);
      rows.push([
        requestId,
        spanIds[index] as string,
        parent,
        span.name,
        t0 + span.start,
        t0 + span.end,
        "ok",
        TAGS_JSON[index] as string,
      ]);
    }
    t0 += 37;
  }
  return rows;
}

/** A frame: 4-byte big-endian length, then the UTF-8 body. */
export function frameOf(text: string): Buffer {
  const length = Buffer.byteLength(text);
  const frame = Buffer.allocUnsafe(4 + length);
  frame.writeUInt32BE(length, 0);
  frame.write(text, 4, "utf8");
  return frame;
}
