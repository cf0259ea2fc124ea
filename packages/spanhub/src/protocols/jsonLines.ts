import { type RunEvent, runEndStatus, type SpanLog, spanEndStatus, type Tags, toSpanError } from "../model/event.js";
import { type Micros, millisToMicros } from "../model/time.js";

/** A line or event that cannot become an event: `rejected` for an unknown type, else malformed. */
export class DecodeError extends Error {
  constructor(
    message: string,
    readonly reason: "malformed" | "rejected" = "malformed",
  ) {
    super(message);
  }
}

export interface JsonEventContext {
  /** The run of a per-run socket: events there need no `run_id`. */
  runId?: string;
  receivedAt: Micros;
}

const EVENT_TYPES = new Set(["run_start", "run_tag", "run_end", "span_start", "span_tag", "span_log", "span_end"]);

/**
 * Decodes one JSON-lines event (already parsed) into the event model. Times on the
 * wire are milliseconds since the epoch, possibly fractional. Throws DecodeError.
 */
export function decodeJsonEvent(value: unknown, context: JsonEventContext): RunEvent {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new DecodeError("an event must be a JSON object");
  const raw = value as Record<string, unknown>;
  const type = raw.type;
  if (typeof type !== "string") throw new DecodeError('an event needs a string "type"');
  if (!EVENT_TYPES.has(type)) throw new DecodeError(`unknown event type "${type}"`, "rejected");
  const runId = optionalString(raw, "run_id") ?? context.runId;
  if (!runId) throw new DecodeError(`${type} needs a "run_id"`);
  const time = timeField(raw, type === "span_start" ? "start_ms" : type === "span_end" ? "end_ms" : undefined);
  const at = time ?? context.receivedAt;
  switch (type) {
    case "run_start":
      return dropUndefined({
        kind: "run_start",
        runId,
        time: at,
        name: optionalString(raw, "name"),
        app: optionalString(raw, "app"),
        tags: optionalTags(raw),
        host: optionalString(raw, "host"),
        pid: optionalNumber(raw, "pid"),
        parentRunId: optionalString(raw, "parent_run_id"),
        parentSpanId: optionalString(raw, "parent_span_id"),
      });
    case "run_tag":
      return dropUndefined({
        kind: "run_tag",
        runId,
        time: at,
        tags: optionalTags(raw) ?? {},
        name: optionalString(raw, "name"),
      });
    case "run_end":
      return dropUndefined({
        kind: "run_end",
        runId,
        time: at,
        ...runEndStatus(raw.status),
        reason: optionalString(raw, "reason"),
        error: toSpanError(raw.error),
      });
  }
  const spanId = optionalString(raw, "span_id");
  if (!spanId) throw new DecodeError(`${type} needs a "span_id"`);
  switch (type) {
    case "span_start":
      return dropUndefined({
        kind: "span_start",
        runId,
        spanId,
        time: at,
        // Absent on a repeated start: the parent stays as it was (a first start without one is a root).
        parentId: "parent_id" in raw ? (optionalString(raw, "parent_id") ?? null) : undefined,
        name: optionalString(raw, "name"),
        spanKind: optionalString(raw, "kind"),
        tags: optionalTags(raw),
        rpcService: optionalString(raw, "rpc_service"),
        rpcMethod: optionalString(raw, "rpc_method"),
        logs: optionalLogs(raw, at),
      });
    case "span_tag":
      return { kind: "span_tag", runId, spanId, time: at, tags: optionalTags(raw) ?? {} };
    case "span_log": {
      const text = raw.text ?? raw.message;
      if (text === undefined || text === null) throw new DecodeError('span_log needs a "text"');
      return {
        kind: "span_log",
        runId,
        spanId,
        time: at,
        text: typeof text === "string" ? text : JSON.stringify(text),
      };
    }
    default:
      return dropUndefined({
        kind: "span_end",
        runId,
        spanId,
        time: at,
        ...spanEndStatus(raw.status),
        error: toSpanError(raw.error),
      });
  }
}

function timeField(raw: Record<string, unknown>, alias: string | undefined): Micros | undefined {
  const value = raw.ts_ms ?? (alias ? raw[alias] : undefined);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) throw new DecodeError('"ts_ms" must be a number');
  return millisToMicros(value);
}

function optionalString(raw: Record<string, unknown>, key: string): string | undefined {
  const value = raw[key];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  throw new DecodeError(`"${key}" must be a string`);
}

function optionalNumber(raw: Record<string, unknown>, key: string): number | undefined {
  const value = raw[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number") throw new DecodeError(`"${key}" must be a number`);
  return value;
}

function optionalTags(raw: Record<string, unknown>): Tags | undefined {
  const value = raw.tags;
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "object" || Array.isArray(value)) throw new DecodeError('"tags" must be an object');
  return value as Tags;
}

function optionalLogs(raw: Record<string, unknown>, at: Micros): SpanLog[] | undefined {
  const value = raw.logs;
  if (!Array.isArray(value)) return undefined;
  return value.map((text) => ({ time: at, text: typeof text === "string" ? text : JSON.stringify(text) }));
}

/**
 * Keeps stored events small: absent optional fields are not written as nulls. Hot path: copies
 * the defined fields into a new object (`delete` was about 5 times slower, and leaves the object slow).
 */
export function dropUndefined<T extends object>(value: T): T {
  const out = {} as T;
  for (const key in value) {
    const field = value[key];
    if (field !== undefined) out[key] = field;
  }
  return out;
}

/** Parses one JSON line (a byte-order mark at its start is allowed); throws DecodeError. */
export function parseJsonLine(line: string): unknown {
  try {
    return JSON.parse(line.charCodeAt(0) === 0xfeff ? line.slice(1) : line);
  } catch {
    throw new DecodeError("line is not valid JSON");
  }
}

/** Bad input is logged the first few times per connection, then once in this many. */
const LOG_EVERY = 1000;

/** Whether the `count`th problem of a connection is logged (so a flood of bad input stays readable). */
export function isLoggedProblem(count: number): boolean {
  return count <= 5 || count % LOG_EVERY === 0;
}

/** A short, single-line preview of bad input for logs. */
export function preview(text: string | Buffer, max = 120): string {
  const flat = (typeof text === "string" ? text : text.toString("utf8", 0, Math.min(text.length, max * 4))).replace(
    /\s+/g,
    " ",
  );
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
