import { type Encoded, encodeText, type FrameWriter } from "./framing.js";
import { type Dialect, errorObject, outcomeTags, type RequestRecord, type SpanRecord, type Status } from "./records.js";
import { isoMicros, isoMinutePrefix, microsIntoMinute } from "./time.js";

/**
 * Turns what a request has not sent yet into one `BatchCommand` body. Written by hand, not
 * through one big `JSON.stringify`, because this is the SDK's hot path: ids are hex and times
 * are generated, so only names and tag values need escaping, and a string that needs none (a
 * cheap character scan) is copied as it is. Each request becomes one string, built by appending.
 *
 * For spanhub's agent 0.2.0 or newer (`extended`), with spanhub's extensions to Scout commands:
 * StartRequest carrying name, tags and parent link; for each span (parents before children)
 * StartSpan carrying its tags, kind and rpc fields, a LogSpan per log line, StopSpan carrying
 * status and error; then FinishRequest carrying status and error. A request is one frame.
 *
 * For older agents, plain Scout: StartRequest and TagRequests (the first is `spanhub.name`), for
 * each span StartSpan, TagSpans (logs as one `logs` tag, the outcome as `error.*` tags) and
 * StopSpan, then FinishRequest; spanhub 0.1 agents get a parent link as an `Events` frame first.
 * `translateBodies` turns extended frames into plain ones, for when the agent turns out older.
 */
export interface EncodedBatch {
  /** The frame bodies, in order; the agent answers each. */
  bodies: string[];
  /** Whether this batch ends its request. */
  final: boolean;
  spans: number;
  /** Every body is ASCII (its UTF-8 size is its length). */
  ascii: boolean;
}

/** Cleared by `str` when a string has characters outside ASCII; read once per encoded request. */
let ascii = true;

/** Encodes what is unsent; `undefined` when there is nothing new. Marks what it encodes as sent. */
export function encodeRequest(
  request: RequestRecord,
  app: string,
  nowMs: number,
  dialect: Dialect = "extended",
): EncodedBatch | undefined {
  ascii = true;
  const extended = dialect === "extended";
  const ended = request.endMs !== undefined;
  const head = `{"request_id":"${request.id}"`;
  let link: string | undefined;
  // The commands, comma-separated; "" while there are none.
  let out = "";
  let requestTags = request.tags;
  request.tags = undefined;
  if (!request.startSent) {
    request.startSent = true;
    const parent = request.parent;
    if (extended) {
      out += `{"StartRequest":${head},"timestamp":"${isoMicros(request.startMs)}","name":${str(request.name)}`;
      if (requestTags) out += `,"tags":${tagObject(requestTags)}`;
      requestTags = undefined;
      if (parent) out += `,"parent_run_id":"${parent.runId}","parent_span_id":"${parent.spanId}"`;
      out += "}}";
    } else {
      out += `{"StartRequest":${head},"timestamp":"${isoMicros(request.startMs)}"}},{"TagRequest":${head},"tag":"spanhub.name","value":${str(request.name)}}}`;
      if (parent && dialect === "spanhub") link = linkBody(request, app);
      else if (parent)
        out += `,{"TagRequest":${head},"tag":"spanhub.parent_run_id","value":"${parent.runId}"}},{"TagRequest":${head},"tag":"spanhub.parent_span_id","value":"${parent.spanId}"}}`;
    }
  }
  if (requestTags)
    for (let index = 0; index < requestTags.length; index += 2)
      out += `${out === "" ? "" : ","}{"TagRequest":${head},"tag":${json(requestTags[index])},"value":${json(requestTags[index + 1])}}}`;
  if (request.droppedSpans !== request.droppedSent) {
    request.droppedSent = request.droppedSpans;
    out += `${out === "" ? "" : ","}{"TagRequest":${head},"tag":"spanhub.dropped_spans","value":${request.droppedSpans}}}`;
  }
  let spans = 0;
  const all = request.spans;
  // A finished request keeps nothing; an open one keeps its open spans for the next window.
  const open: SpanRecord[] | undefined = ended ? undefined : [];
  for (let index = 0; index < all.length; index++) {
    const span = all[index] as SpanRecord;
    if (ended) closeIfUnfinished(span, request);
    const spanHead = `${head},"span_id":"${span.id}"`;
    const text = extended ? encodeSpanExtended(span, spanHead) : encodeSpanPlain(span, spanHead);
    if (text !== "") out += out === "" ? text : `,${text}`;
    if (!span.startSent) {
      span.startSent = true;
      spans += 1;
    }
    if (open && span.endMs === undefined) open.push(span);
  }
  request.spans = open ?? [];
  if (ended) {
    const end = `{"FinishRequest":${head},"timestamp":"${isoMicros(request.endMs as number)}"`;
    if (out !== "") out += ",";
    if (extended) out += `${end}${outcomeFields(request.status, request.error)}}}`;
    else {
      for (const [key, value] of outcomeTags(request.status, request.error))
        out += `{"TagRequest":${head},"tag":${json(key)},"value":${json(value)}}},`;
      out += `${end}}}`;
    }
  }
  request.lastSentMs = nowMs;
  const bodies: string[] = link === undefined ? [] : [link];
  if (out !== "") {
    request.batches += 1;
    bodies.push(`{"BatchCommand":{"batch_id":"${request.id}-${request.batches}","commands":[${out}]}}`);
  }
  if (bodies.length === 0) return undefined;
  return { bodies, final: ended, spans, ascii: ascii && link === undefined };
}

/**
 * What `encodeRequest` says, for an agent that accepted spanhub's `compact_batch` extension
 * (`compact`), written straight into a frame (length header included) by `writer`: the SDK's hot
 * path, with no intermediate strings. The batch names the request once (`request_id` on
 * `BatchCommand`, none on its members), and a span that starts and ends within the batch with no
 * log line to send is one `StartSpan` carrying `stop_timestamp` (and its outcome) instead of a
 * `StartSpan` and a `StopSpan`. `undefined` when there is nothing new. Marks what it encodes as sent.
 */
export function encodeRequestFrame(request: RequestRecord, nowMs: number, w: FrameWriter): Buffer | undefined {
  const ended = request.endMs !== undefined;
  const id = request.id;
  w.begin();
  try {
    w.encoded(B.batch);
    w.raw(id);
    w.encoded(B.batchId);
    w.raw(id);
    w.byte(0x2d); // -
    w.int(request.batches + 1);
    w.encoded(B.commands);
    // Each command is written with its leading comma; the first comma becomes the array's bracket.
    const commands = w.mark;
    // Every span of a request has the request's id prefix.
    if (request.spanPrefix !== ids.text) ids = idHeads(request.spanPrefix);
    const requestTags = request.tags;
    request.tags = undefined;
    if (!request.startSent) {
      request.startSent = true;
      w.encoded(B.startRequest);
      writeTime(w, request.startMs);
      w.encoded(B.name);
      names.write(w, request.name);
      if (requestTags) {
        w.encoded(B.tags);
        writeTags(w, requestTags);
      }
      const parent = request.parent;
      if (parent) {
        w.raw(',"parent_run_id":"');
        w.raw(parent.runId);
        w.raw('","parent_span_id":"');
        w.raw(parent.spanId);
        w.byte(0x22);
      }
      w.encoded(B.close);
    } else if (requestTags)
      for (let index = 0; index < requestTags.length; index += 2) {
        w.encoded(B.tagRequest);
        writeValue(w, requestTags[index]);
        w.encoded(B.value);
        writeValue(w, requestTags[index + 1]);
        w.encoded(B.close);
      }
    if (request.droppedSpans !== request.droppedSent) {
      request.droppedSent = request.droppedSpans;
      w.encoded(B.droppedSpans);
      w.raw(`${request.droppedSpans}`);
      w.encoded(B.close);
    }
    const all = request.spans;
    const open: SpanRecord[] | undefined = ended ? undefined : [];
    for (let index = 0; index < all.length; index++) {
      const span = all[index] as SpanRecord;
      if (ended) closeIfUnfinished(span, request);
      const tags = span.tags;
      span.tags = undefined;
      const logs = span.logs;
      const newLogs = logs !== undefined && span.logsSent < logs.length;
      let stopped = false;
      if (!span.startSent) {
        // The hot path: fixed JSON joined with what follows it where it can be (the id prefix, the
        // span name and its "timestamp" key, the closing quote of a time and what comes next).
        span.startSent = true;
        w.encoded(ids.startSpan);
        w.hex10(span.idCounter);
        const parent = span.parent;
        if (parent === null) w.encoded(B.parentNull);
        else {
          w.encoded(ids.parentId);
          w.hex10(parent.idCounter);
          w.encoded(B.operation);
        }
        operations.write(w, span.name);
        writeTimeDigits(w, span.startMs);
        if (span.kind !== undefined || span.rpcService !== undefined) {
          w.encoded(B.timeEnd);
          if (span.kind === "request") w.encoded(B.kindRequest);
          else if (span.kind !== undefined) {
            w.raw(',"kind":');
            w.str(span.kind);
          }
          if (span.rpcService !== undefined) {
            w.raw(',"rpc_service":');
            w.str(span.rpcService);
            w.raw(',"rpc_method":');
            w.str(span.rpcMethod as string);
          }
          if (tags) w.encoded(B.tags);
        } else w.encoded(tags ? B.timeEndTags : B.timeEnd);
        if (tags) writeTags(w, tags);
        if (span.endMs !== undefined && !newLogs) {
          stopped = true;
          w.encoded(B.stopTimestamp);
          writeTimeDigits(w, span.endMs);
          if (span.status !== undefined || span.error !== undefined) {
            w.encoded(B.timeEnd);
            w.utf8(outcomeFields(span.status, span.error));
            w.encoded(B.close);
          } else w.encoded(B.timeEndClose);
        } else w.encoded(B.close);
      } else if (tags) {
        writeSpanCommand(w, B.tagSpan, span);
        w.byte(0x22);
        w.encoded(B.tags);
        writeTags(w, tags);
        w.encoded(B.close);
      }
      if (newLogs) {
        for (let log = span.logsSent; log < logs.length; log++) {
          const entry = logs[log] as { time: number; text: string };
          writeSpanCommand(w, B.logSpan, span);
          w.raw('","text":');
          w.str(entry.text);
          w.encoded(B.timestamp);
          writeTime(w, entry.time);
          w.encoded(B.close);
        }
        span.logsSent = logs.length;
      }
      if (span.endMs === undefined) open?.push(span);
      else if (!stopped) {
        writeSpanCommand(w, B.stopSpan, span);
        w.encoded(B.quotedTimestamp);
        writeTime(w, span.endMs);
        if (span.status !== undefined || span.error !== undefined) w.utf8(outcomeFields(span.status, span.error));
        w.encoded(B.close);
      }
    }
    request.spans = open ?? [];
    if (ended) {
      w.encoded(B.finishRequest);
      writeTime(w, request.endMs as number);
      if (request.status !== undefined || request.error !== undefined)
        w.utf8(outcomeFields(request.status, request.error));
      w.encoded(B.close);
    }
    request.lastSentMs = nowMs;
    if (w.mark === commands) {
      w.abort();
      return undefined;
    }
    w.setByte(commands, 0x5b); // [
    w.encoded(B.end);
    request.batches += 1;
    return w.end();
  } catch (error) {
    w.abort();
    throw error;
  }
}

/** Fixed JSON of the compact batch, pre-encoded. */
const B = encoded({
  batch: '{"BatchCommand":{"request_id":"',
  batchId: '","batch_id":"',
  commands: '","commands":',
  end: "]}}",
  close: "}}",
  timestamp: ',"timestamp":',
  quotedTimestamp: '","timestamp":',
  timeEnd: 'Z"',
  timeEndTags: 'Z","tags":',
  timeEndClose: 'Z"}}',
  kindRequest: ',"kind":"request"',
  stopTimestamp: ',"stop_timestamp":',
  name: ',"name":',
  tags: ',"tags":',
  value: ',"value":',
  parentNull: '","parent_id":null,"operation":',
  operation: '","operation":',
  startRequest: ',{"StartRequest":{"timestamp":',
  tagRequest: ',{"TagRequest":{"tag":',
  droppedSpans: ',{"TagRequest":{"tag":"spanhub.dropped_spans","value":',
  tagSpan: ',{"TagSpan":{"span_id":"',
  logSpan: ',{"LogSpan":{"span_id":"',
  stopSpan: ',{"StopSpan":{"span_id":"',
  finishRequest: ',{"FinishRequest":{"timestamp":',
});

function encoded<T extends Record<string, string>>(texts: T): { [K in keyof T]: Encoded } {
  const out: Record<string, Encoded> = {};
  for (const key of Object.keys(texts)) out[key] = encodeText(texts[key] as string);
  return out as { [K in keyof T]: Encoded };
}

/** A command about a span (`start`, with its leading comma) and its `span_id`, whose quote is left open. */
function writeSpanCommand(w: FrameWriter, start: Encoded, span: SpanRecord): void {
  w.encoded(start);
  w.encoded(ids.prefix);
  w.hex10(span.idCounter);
}

/**
 * A span id is the process's prefix (it rarely changes) and a counter in hex: the prefix is kept
 * pre-encoded, alone and joined with the fixed JSON that comes before it in a StartSpan.
 */
function idHeads(prefix: string) {
  return {
    text: prefix,
    prefix: encodeText(prefix),
    startSpan: encodeText(`,{"StartSpan":{"span_id":"${prefix}`),
    parentId: encodeText(`","parent_id":"${prefix}`),
  };
}
let ids = idHeads("");

/**
 * Strings that repeat (span names, a tag key's values), kept as their JSON, so writing one again
 * is a word copy instead of a scan of its characters. A cache that fills up is emptied, unless its
 * strings were seldom written again (ids, free text): then it stops caching, since each new string
 * would cost more than it saves.
 */
class RepeatCache {
  private values: Map<string, Encoded> | undefined = new Map();
  private hits = 0;

  /** `suffix`: fixed JSON that always follows these strings, kept with them. */
  constructor(
    private readonly capacity: number,
    private readonly suffix?: Encoded,
  ) {}

  write(w: FrameWriter, value: string): void {
    const values = this.values;
    if (values === undefined) {
      w.str(value);
      if (this.suffix) w.encoded(this.suffix);
      return;
    }
    const cached = values.get(value);
    if (cached !== undefined) {
      this.hits += 1;
      w.encoded(cached);
      return;
    }
    const mark = w.mark;
    w.str(value);
    if (this.suffix) w.encoded(this.suffix);
    if (value.length > CACHED_STRING_MAX) return;
    if (values.size >= this.capacity) {
      if (this.hits < values.size) {
        this.values = undefined;
        return;
      }
      values.clear();
      this.hits = 0;
    }
    values.set(value, w.encodedSince(mark));
  }
}

const CACHED_STRING_MAX = 256;
const names = new RepeatCache(1024);
/** Span names, each with the `,"timestamp":` that follows it in a StartSpan. */
const operations = new RepeatCache(1024, B.timestamp);

let timeSecond = Number.NaN;
/** `"2026-11-23T08:47:25.` (with the opening quote) for `timeSecond`, pre-encoded. */
let timePrefix: Encoded = encodeText("");

/** An `isoMicros` timestamp, quoted. */
function writeTime(w: FrameWriter, ms: number): void {
  writeTimeDigits(w, ms);
  w.encoded(B.timeEnd);
}

/** An `isoMicros` timestamp but its closing `Z"`: the second's prefix (cached), then the microseconds from a table. */
function writeTimeDigits(w: FrameWriter, ms: number): void {
  const micros = microsIntoMinute(ms);
  const second = (micros / 1_000_000) | 0;
  const secondOfTime = Math.floor(ms / 60_000) * 60 + second;
  if (secondOfTime !== timeSecond) {
    timeSecond = secondOfTime;
    timePrefix = encodeText(`"${isoMinutePrefix(ms)}${String(second).padStart(2, "0")}.`);
  }
  w.encoded(timePrefix);
  w.sixDigits(micros - second * 1_000_000);
}

/** Flattened tag pairs as one JSON object. */
function writeTags(w: FrameWriter, tags: unknown[]): void {
  // Each pair is written with its leading comma (so a repeated one is one copy); the first comma becomes the brace.
  const open = w.mark;
  const count = tags.length;
  let previous: TagKey | undefined;
  // Pairs written as copies one after another (their values as last time), from `streakIndex`:
  // kept on the first one's key as a run, so that next time they are one copy.
  let streakStart: TagKey | undefined;
  let streakIndex = 0;
  let streakMark = 0;
  for (let index = 0; index < count; ) {
    const key = tags[index] as string;
    // Code tags a span with the same keys in the same order: the key that followed last time is checked first.
    let entry = previous?.nextKey === key ? previous.next : undefined;
    if (entry === undefined) {
      entry = tagKeys.get(key);
      if (entry === undefined) {
        if (tagKeys.size >= TAG_KEYS_MAX) tagKeys.clear();
        entry = new TagKey(key);
        tagKeys.set(key, entry);
      }
      if (previous) {
        previous.nextKey = key;
        previous.next = entry;
      }
    }
    const run = entry.run;
    if (run !== undefined) {
      if (run.matches(tags, index)) {
        if (streakStart !== undefined) {
          keepRun(w, tags, streakStart, streakIndex, index, streakMark, previous as TagKey);
          streakStart = undefined;
        }
        w.encoded(run.bytes);
        previous = run.last;
        index += run.pairs.length;
        continue;
      }
      entry.run = undefined;
    }
    const value = tags[index + 1];
    const pair = entry.copyOf(value);
    if (pair !== undefined) {
      if (streakStart === undefined) {
        streakStart = entry;
        streakIndex = index;
        streakMark = w.mark;
      }
      w.encoded(pair);
    } else {
      if (streakStart !== undefined) {
        keepRun(w, tags, streakStart, streakIndex, index, streakMark, previous as TagKey);
        streakStart = undefined;
      }
      entry.write(w, value);
    }
    previous = entry;
    index += 2;
  }
  if (streakStart !== undefined) keepRun(w, tags, streakStart, streakIndex, count, streakMark, previous as TagKey);
  if (w.mark === open) w.byte(0x7b);
  else w.setByte(open, 0x7b);
  w.byte(0x7d); // }
}

/** Keeps the pairs `tags[from..to)`, just written as copies from `mark` on, as a run on their first key. */
function keepRun(w: FrameWriter, tags: unknown[], first: TagKey, from: number, to: number, mark: number, last: TagKey) {
  if (to - from >= 4) first.run = new TagRun(tags.slice(from, to), w.encodedSince(mark), last);
}

/** Tag pairs that were written one after another, as they were last time: their JSON, one copy. */
class TagRun {
  constructor(
    /** Keys and values, flattened as in `SpanRecord.tags` (primitives only: compared with `===`). */
    readonly pairs: unknown[],
    readonly bytes: Encoded,
    /** The last pair's key, for the key-order guess that follows the run. */
    readonly last: TagKey,
  ) {}

  /** Whether `tags` holds these pairs from `index` on. */
  matches(tags: unknown[], index: number): boolean {
    const pairs = this.pairs;
    const length = pairs.length;
    if (index + length > tags.length) return false;
    for (let offset = 0; offset < length; offset++) if (tags[index + offset] !== pairs[offset]) return false;
    return true;
  }
}

/**
 * What the writer keeps per tag key: `,"key":`, the key's string values while they repeat, and
 * the whole `,"key":value` of the value it had last (a constant like `db.system` is one copy).
 */
class TagKey {
  /** The key written after this one last time, and its entry. */
  nextKey: string | undefined;
  next: TagKey | undefined;
  /** The run of repeated pairs that started with this key last time. */
  run: TagRun | undefined;
  private readonly head: Encoded;
  private readonly values = new RepeatCache(VALUES_PER_KEY);
  private last: unknown;
  private pair: Encoded | undefined;

  constructor(key: string) {
    this.head = encodeText(`,${JSON.stringify(key)}:`);
  }

  /** `,"key":value` as written last time, when `value` is the same primitive. */
  copyOf(value: unknown): Encoded | undefined {
    return value === this.last ? this.pair : undefined;
  }

  /** Writes `,"key":value`, and keeps it when the same primitive comes twice in a row (an object may have changed since). */
  write(w: FrameWriter, value: unknown): void {
    const mark = w.mark;
    w.encoded(this.head);
    if (typeof value === "string") this.values.write(w, value);
    else writeValue(w, value);
    if (value !== this.last) {
      this.last = value;
      this.pair = undefined;
    } else if (this.pair === undefined && (typeof value !== "object" || value === null) && typeof value !== "function")
      this.pair = w.encodedSince(mark);
  }
}

/**
 * Tag keys come from the application's code, so there are few of them; the map is emptied if it
 * ever fills (keys made from data).
 */
const tagKeys = new Map<string, TagKey>();
const TAG_KEYS_MAX = 4096;
const VALUES_PER_KEY = 64;

/** `json(value)`, written. */
function writeValue(w: FrameWriter, value: unknown): void {
  if (typeof value === "string") w.str(value);
  else if (typeof value === "number") {
    if (value >= 0 && value < 1e9 && (value | 0) === value && !Object.is(value, -0)) w.int(value);
    else w.raw(Number.isFinite(value) ? `${value}` : "null");
  } else if (typeof value === "boolean") w.raw(value ? "true" : "false");
  else w.utf8(json(value));
}

/** StartSpan with tags, kind and rpc fields; later tags as one TagSpan; a LogSpan per log; StopSpan with the outcome. */
function encodeSpanExtended(span: SpanRecord, spanHead: string): string {
  const tags = span.tags;
  span.tags = undefined;
  let out = "";
  if (!span.startSent) {
    const parent = span.parentId === null ? "null" : `"${span.parentId}"`;
    out = `{"StartSpan":${spanHead},"parent_id":${parent},"operation":${str(span.name)},"timestamp":"${isoMicros(span.startMs)}"`;
    if (span.kind !== undefined) out += `,"kind":"${span.kind}"`;
    if (span.rpcService !== undefined)
      out += `,"rpc_service":${str(span.rpcService)},"rpc_method":${str(span.rpcMethod as string)}`;
    if (tags) out += `,"tags":${tagObject(tags)}`;
    out += "}}";
  } else if (tags) out = `{"TagSpan":${spanHead},"tags":${tagObject(tags)}}}`;
  const logs = span.logs;
  if (logs && span.logsSent < logs.length) {
    for (let index = span.logsSent; index < logs.length; index++) {
      const entry = logs[index] as { time: number; text: string };
      out += `${out === "" ? "" : ","}{"LogSpan":${spanHead},"text":${str(entry.text)},"timestamp":"${isoMicros(entry.time)}"}}`;
    }
    span.logsSent = logs.length;
  }
  if (span.endMs !== undefined)
    out += `${out === "" ? "" : ","}{"StopSpan":${spanHead},"timestamp":"${isoMicros(span.endMs)}"${outcomeFields(span.status, span.error)}}}`;
  return out;
}

/** Plain Scout: StartSpan, a TagSpan per tag (logs and outcome as tags too), StopSpan. */
function encodeSpanPlain(span: SpanRecord, spanHead: string): string {
  const parts: string[] = [];
  if (!span.startSent) {
    const parent = span.parentId === null ? "null" : `"${span.parentId}"`;
    parts.push(
      `{"StartSpan":${spanHead},"parent_id":${parent},"operation":${str(span.name)},"timestamp":"${isoMicros(span.startMs)}"}}`,
    );
    if (span.rpcService !== undefined) {
      parts.push(`{"TagSpan":${spanHead},"tag":"rpc_service","value":${json(span.rpcService)}}}`);
      parts.push(`{"TagSpan":${spanHead},"tag":"rpc_method","value":${json(span.rpcMethod)}}}`);
    }
  }
  const tags = span.tags;
  if (tags) {
    span.tags = undefined;
    for (let index = 0; index < tags.length; index += 2)
      parts.push(`{"TagSpan":${spanHead},"tag":${json(tags[index])},"value":${json(tags[index + 1])}}}`);
  }
  if (span.logsChanged && span.logs) {
    span.logsChanged = false;
    const logs = span.logs.map((entry) => ({ time: isoMicros(entry.time), text: entry.text }));
    parts.push(`{"TagSpan":${spanHead},"tag":"logs","value":${json(logs)}}}`);
  }
  if (span.endMs !== undefined) {
    for (const [key, value] of outcomeTags(span.status, span.error))
      parts.push(`{"TagSpan":${spanHead},"tag":${json(key)},"value":${json(value)}}}`);
    parts.push(`{"StopSpan":${spanHead},"timestamp":"${isoMicros(span.endMs)}"}}`);
  }
  return parts.join(",");
}

/** `,"status":...,"error":...` for StopSpan/FinishRequest (spanhub's extension), or "". */
function outcomeFields(status: Status | undefined, error: unknown): string {
  if (status === undefined && error === undefined) return "";
  let fields = status === undefined ? "" : `,"status":${json(status)}`;
  if (error !== undefined) fields += `,"error":${json(errorObject(error))}`;
  return fields;
}

/** Flattened tag pairs as one JSON object (a repeated key: the last value wins, as with TagSpans). */
function tagObject(tags: unknown[]): string {
  let text = "{";
  for (let index = 0; index < tags.length; index += 2) {
    const value = tags[index + 1];
    text += `${index === 0 ? "" : ","}${str(tags[index] as string)}:${typeof value === "string" ? str(value) : json(value)}`;
  }
  return `${text}}`;
}

/**
 * The run's parent link for a spanhub agent before 0.2.0, whose Scout commands cannot carry
 * it: spanhub's own `Events` frame with a `run_start`, sent just before the request's first batch.
 */
function linkBody(request: RequestRecord, app: string): string {
  const parent = request.parent as { runId: string; spanId: string };
  return linkFrame(request.id, app, request.name, request.startMs, parent.runId, parent.spanId);
}

function linkFrame(runId: string, app: string, name: string, startMs: number, parentRun: string, parentSpan: string) {
  const event = {
    type: "run_start",
    run_id: runId,
    app,
    name,
    ts_ms: startMs,
    parent_run_id: parentRun,
    parent_span_id: parentSpan,
  };
  return JSON.stringify({ Events: { batch_id: `${runId}-link`, events: [event] } });
}

/**
 * A string as JSON. A scan of its characters decides: with nothing to escape (no quote,
 * backslash, control character or surrogate) it is copied between quotes, else JSON.stringify
 * escapes it. Characters outside ASCII clear `ascii`.
 */
function str(value: string): string {
  for (let index = 0; index < value.length; index++) {
    const code = value.charCodeAt(index);
    if (code < 0x20 || code === 0x22 || code === 0x5c) return JSON.stringify(value);
    if (code > 0x7e) {
      ascii = false;
      if (code >= 0xd800 && code <= 0xdfff) return JSON.stringify(value);
    }
  }
  return `"${value}"`;
}

/** Any value as JSON: `undefined` becomes null, and what JSON cannot say (BigInt, cycles) its text. */
function json(value: unknown): string {
  if (typeof value === "string") return str(value);
  if (typeof value === "number") return Number.isFinite(value) ? `${value}` : "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  ascii = false; // JSON.stringify keeps characters outside ASCII as they are.
  try {
    return JSON.stringify(value) ?? "null";
  } catch {
    return JSON.stringify(String(value));
  }
}

type Command = Record<string, Record<string, unknown>>;

/**
 * Re-encodes frames for another agent: `extended` frames as plain Scout commands for an older
 * agent (what `encodeRequest` would have written for it), and a spanhub 0.1 parent link (an
 * `Events` frame) as request tags for an agent that is not spanhub's. Anything else is returned
 * as it is (plain Scout commands are understood by every agent). Used only when the agent's
 * dialect changed after the frames were encoded: rare, so it parses and stringifies.
 */
export function translateBodies(bodies: string[], from: Dialect, to: Dialect, app: string): string[] {
  // Every agent that accepts compact batches accepts the rest too.
  if (from === to || to === "compact") return bodies;
  if (from === "compact") return translateBodies(bodies.map(expandCompact), "extended", to, app);
  if (to === "extended" || (from === "scout" && to === "spanhub")) return bodies;
  const out: string[] = [];
  let parentTags: [string, string] | undefined;
  for (const body of bodies) {
    const message = JSON.parse(body) as Record<string, { batch_id?: string; commands?: Command[]; events?: unknown }>;
    const events = message.Events?.events as Record<string, unknown>[] | undefined;
    if (events) {
      const event = events[0];
      if (to === "scout" && event && typeof event.parent_run_id === "string")
        parentTags = [event.parent_run_id, String(event.parent_span_id)];
      else out.push(body);
      continue;
    }
    const batch = message.BatchCommand;
    if (!batch || !Array.isArray(batch.commands)) {
      out.push(body);
      continue;
    }
    const commands: Command[] = [];
    const logs: { span: Record<string, unknown>; list: { time: unknown; text: unknown }[] } = { span: {}, list: [] };
    const flushLogs = () => {
      if (logs.list.length === 0) return;
      commands.push({ TagSpan: { ...logs.span, tag: "logs", value: logs.list } });
      logs.list = [];
    };
    for (const command of batch.commands) {
      const [name, fields] = Object.entries(command)[0] ?? ["", {}];
      const ids = { request_id: fields.request_id };
      const spanIds = { request_id: fields.request_id, span_id: fields.span_id };
      if (name !== "LogSpan" && !(name === "StopSpan" && fields.span_id === logs.span.span_id)) flushLogs();
      if (from !== "extended") {
        commands.push(command);
        if (parentTags && name === "TagRequest" && fields.tag === "spanhub.name") {
          commands.push({ TagRequest: { ...ids, tag: "spanhub.parent_run_id", value: parentTags[0] } });
          commands.push({ TagRequest: { ...ids, tag: "spanhub.parent_span_id", value: parentTags[1] } });
        }
        continue;
      }
      if (name === "StartRequest") {
        commands.push({ StartRequest: { ...ids, timestamp: fields.timestamp } });
        if (fields.name !== undefined)
          commands.push({ TagRequest: { ...ids, tag: "spanhub.name", value: fields.name } });
        if (typeof fields.parent_run_id === "string") {
          if (to === "spanhub")
            out.push(
              linkFrame(
                String(fields.request_id),
                app,
                String(fields.name ?? ""),
                isoToMs(String(fields.timestamp)),
                fields.parent_run_id,
                String(fields.parent_span_id),
              ),
            );
          else {
            commands.push({ TagRequest: { ...ids, tag: "spanhub.parent_run_id", value: fields.parent_run_id } });
            commands.push({ TagRequest: { ...ids, tag: "spanhub.parent_span_id", value: fields.parent_span_id } });
          }
        }
        for (const [tag, value] of Object.entries((fields.tags as Record<string, unknown>) ?? {}))
          commands.push({ TagRequest: { ...ids, tag, value } });
      } else if (name === "StartSpan") {
        const { parent_id, operation, timestamp } = fields;
        commands.push({ StartSpan: { ...spanIds, parent_id, operation, timestamp } });
        if (fields.rpc_service !== undefined) {
          commands.push({ TagSpan: { ...spanIds, tag: "rpc_service", value: fields.rpc_service } });
          commands.push({ TagSpan: { ...spanIds, tag: "rpc_method", value: fields.rpc_method } });
        }
        for (const [tag, value] of Object.entries((fields.tags as Record<string, unknown>) ?? {}))
          commands.push({ TagSpan: { ...spanIds, tag, value } });
      } else if (name === "TagSpan" && fields.tags !== undefined) {
        for (const [tag, value] of Object.entries((fields.tags as Record<string, unknown>) ?? {}))
          commands.push({ TagSpan: { ...spanIds, tag, value } });
      } else if (name === "LogSpan") {
        if (logs.span.span_id !== fields.span_id) {
          flushLogs();
          logs.span = spanIds;
        }
        logs.list.push({ time: fields.timestamp, text: fields.text });
      } else if (name === "StopSpan") {
        flushLogs();
        for (const [tag, value] of outcomeTagsOf(fields)) commands.push({ TagSpan: { ...spanIds, tag, value } });
        commands.push({ StopSpan: { ...spanIds, timestamp: fields.timestamp } });
      } else if (name === "FinishRequest") {
        for (const [tag, value] of outcomeTagsOf(fields)) commands.push({ TagRequest: { ...ids, tag, value } });
        commands.push({ FinishRequest: { ...ids, timestamp: fields.timestamp } });
      } else commands.push(command);
    }
    flushLogs();
    out.push(JSON.stringify({ BatchCommand: { batch_id: batch.batch_id, commands } }));
  }
  return out;
}

/**
 * A compact batch as the extended commands it stands for: each member names the request, and a
 * `StartSpan` with `stop_timestamp` becomes that `StartSpan` and a `StopSpan` with the outcome.
 */
function expandCompact(body: string): string {
  const batch = (
    JSON.parse(body) as { BatchCommand?: { request_id?: string; batch_id?: string; commands?: Command[] } }
  ).BatchCommand;
  if (!batch || !Array.isArray(batch.commands) || batch.request_id === undefined) return body;
  const request_id = batch.request_id;
  const commands: Command[] = [];
  for (const command of batch.commands) {
    const [name, fields] = Object.entries(command)[0] ?? ["", {}];
    if (name !== "StartSpan" || fields.stop_timestamp === undefined) {
      commands.push({ [name]: { request_id, ...fields } });
      continue;
    }
    const { stop_timestamp, status, error, ...start } = fields;
    commands.push({ StartSpan: { request_id, ...start } });
    const outcome = { ...(status === undefined ? {} : { status }), ...(error === undefined ? {} : { error }) };
    commands.push({ StopSpan: { request_id, span_id: fields.span_id, timestamp: stop_timestamp, ...outcome } });
  }
  return JSON.stringify({ BatchCommand: { batch_id: batch.batch_id, commands } });
}

/** `outcomeTags` from StopSpan/FinishRequest's `status` and `error` fields. */
function outcomeTagsOf(fields: Record<string, unknown>): [string, unknown][] {
  const error = fields.error as { type?: string; message?: string; stack?: string } | undefined;
  const tags: [string, unknown][] = [];
  if (error !== undefined && error !== null) {
    if (error.type !== undefined) tags.push(["error.type", error.type]);
    tags.push(["error.message", error.message]);
    if (error.stack !== undefined) tags.push(["error.stack", error.stack]);
  }
  const status = fields.status as Status | undefined;
  if (status === "failed" || status === "timed_out" || (status === undefined && error !== undefined))
    tags.push(["error", true]);
  if (status !== undefined && status !== "ok" && status !== "failed") tags.push(["spanhub.status", status]);
  return tags;
}

/** Milliseconds (with microseconds) of an `isoMicros` timestamp. */
function isoToMs(text: string): number {
  const whole = Date.parse(`${text.slice(0, 19)}Z`);
  const fraction = Number(`0${text.slice(19, -1)}`);
  return Number.isFinite(whole) ? whole + (Number.isFinite(fraction) ? fraction * 1000 : 0) : Date.now();
}

/** A span still open when its request ended is closed then, and marked, so the run is complete. */
function closeIfUnfinished(span: SpanRecord, request: RequestRecord): void {
  if (span.endMs !== undefined) return;
  span.tag("spanhub.unfinished", true);
  span.endMs = request.endMs;
}
