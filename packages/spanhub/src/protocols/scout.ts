import { Coalescer, coalesce } from "../model/coalesce.js";
import {
  type AppEvent,
  type RunEvent,
  runEndStatus,
  type SpanEndEvent,
  type SpanStartEvent,
  type Submission,
  setTag,
  spanEndStatus,
  type Tags,
  toSpanError,
} from "../model/event.js";
import { type Micros, parseIsoMicros } from "../model/time.js";
import { DecodeError, decodeJsonEvent, dropUndefined } from "./jsonLines.js";

/**
 * Scout APM's core-agent commands (and spanhub's own `Events` command) decoded into
 * the event model. Pure: the caller owns the socket, commits the submission, and
 * sends the reply only after the commit.
 *
 * spanhub extends a few Scout commands with optional fields that Scout's own agents never
 * send (see docs/protocol.md, "spanhub extensions to Scout commands"): `LogSpan`; `tags`,
 * `kind`, `rpc_service`, `rpc_method` on `StartSpan`; `tags` on `TagSpan`; `status` and
 * `error` on `StopSpan` and `FinishRequest`; `name`, `tags`, `parent_run_id`,
 * `parent_span_id` on `StartRequest`; and, negotiated through `Register`'s `extensions`
 * (`compact_batch`), a `request_id` on `BatchCommand` for members that name none, and
 * `stop_timestamp`, `status`, `error` on `StartSpan` for a span that has ended too.
 */
export const AGENT_VERSION = "1.5.1";

/** The extensions a client must offer in `Register` before it may use them (see `Register`). */
const NEGOTIATED_EXTENSIONS = ["compact_batch"];

/** What a connection remembers between frames. */
export interface ScoutConnection {
  /** The app named by the connection's last `Register`. */
  app?: string;
  /** The client's host (from `Register`) and process id (from an `ApplicationEvent` source `Pid: N`). */
  host?: string;
  pid?: number;
}

export type ScoutReply = Record<string, Record<string, unknown>>;

export interface ScoutMessage {
  /** The command name, for metrics; `(invalid)` when the frame had none. */
  command: string;
  /** What must be committed before `reply` is sent. */
  submission?: Submission;
  reply: ScoutReply;
  /** Members of a batch that were skipped, with the reason. */
  skipped: DecodeError[];
  /** The whole frame was refused (the reply is a Failure). */
  refused?: DecodeError;
}

export function failure(message: string): ScoutReply {
  return { Failure: { message } };
}

/** Decodes one parsed frame. Never throws: bad input becomes a Failure reply. */
export function decodeScoutMessage(message: unknown, connection: ScoutConnection, receivedAt: Micros): ScoutMessage {
  const command = commandName(message);
  if (command === undefined) {
    const refused = new DecodeError("a message must be a JSON object with exactly one key, the command name");
    return { command: "(invalid)", reply: failure(refused.message), skipped: [], refused };
  }
  const body = (message as Record<string, unknown>)[command];
  try {
    if (!isObject(body)) throw new DecodeError(`${command} must carry an object`);
    return decodeCommand(command, body, connection, receivedAt);
  } catch (error) {
    const refused = error instanceof DecodeError ? error : new DecodeError(String(error));
    return { command, reply: failure(refused.message), skipped: [], refused };
  }
}

function decodeCommand(
  command: string,
  body: Record<string, unknown>,
  connection: ScoutConnection,
  receivedAt: Micros,
): ScoutMessage {
  const success: ScoutReply = { [command]: { result: "Success" } };
  switch (command) {
    case "Register": {
      const app = stringField(body, "app");
      connection.app = app;
      if (typeof body.host === "string" && body.host !== "") connection.host = body.host;
      const { key: _secret, ...details } = body;
      // A client that offers extensions learns which of them this agent accepts; Scout's never offer any.
      const offered = body.extensions;
      const accepted = Array.isArray(offered)
        ? { extensions: NEGOTIATED_EXTENSIONS.filter((name) => offered.includes(name)) }
        : {};
      return {
        command,
        submission: { events: [], appEvents: [{ app, eventType: "Register", value: details, time: receivedAt }] },
        reply: { Register: { id: null, result: "Success", ...accepted } },
        skipped: [],
      };
    }
    case "CoreAgentVersion":
      return { command, reply: { CoreAgentVersion: { version: AGENT_VERSION, result: "Success" } }, skipped: [] };
    case "Status":
      // spanhub's own: the connection handler adds the agent's counters to the reply.
      return { command, reply: success, skipped: [] };
    case "CoreAgentShutdown":
      return {
        command,
        reply: failure(
          "spanhub's agent is shared by every app on this host and is never stopped by a client; an operator stops it with `spanhub agent stop`",
        ),
        skipped: [],
      };
    case "ApplicationEvent":
      return {
        command,
        submission: { events: [], appEvents: [applicationEvent(body, connection, receivedAt)] },
        reply: success,
        skipped: [],
      };
    case "BatchCommand": {
      const members = body.commands;
      if (!Array.isArray(members)) throw new DecodeError('BatchCommand needs a "commands" array');
      const submission = newSubmission(body, connection);
      // spanhub's extension (compact_batch): the request of members that name none.
      const batchRunId = optionalString(body, "request_id");
      const skipped: DecodeError[] = [];
      const coalescer = new Coalescer();
      for (const member of members) {
        const name = commandName(member);
        const memberBody = name === undefined ? undefined : (member as Record<string, unknown>)[name];
        try {
          if (name === undefined || !isObject(memberBody))
            throw new DecodeError("a batch member must be an object with one key, the command name");
          if (name === "ApplicationEvent") {
            submission.appEvents = [
              ...(submission.appEvents ?? []),
              applicationEvent(memberBody, connection, receivedAt),
            ];
          } else if (!mergedTag(coalescer, name, memberBody, batchRunId))
            for (const event of requestEvents(name, memberBody, connection, receivedAt, batchRunId))
              coalescer.add(event);
        } catch (error) {
          skipped.push(error instanceof DecodeError ? error : new DecodeError(String(error)));
        }
      }
      submission.events = coalescer.events();
      return { command, submission, reply: success, skipped };
    }
    case "Events": {
      const members = body.events;
      if (!Array.isArray(members)) throw new DecodeError('Events needs an "events" array');
      const submission = newSubmission(body, connection);
      const skipped: DecodeError[] = [];
      for (const member of members) {
        try {
          submission.events.push(decodeJsonEvent(member, { receivedAt }));
        } catch (error) {
          skipped.push(error instanceof DecodeError ? error : new DecodeError(String(error)));
        }
      }
      submission.events = coalesce(submission.events);
      const reply = { Events: dropUndefined({ result: "Success", batch_id: submission.batchId }) };
      return { command, submission, reply, skipped };
    }
    default: {
      const events = requestEvents(command, body, connection, receivedAt, undefined);
      return { command, submission: { events, ...appOf(connection) }, reply: success, skipped: [] };
    }
  }
}

const OTHER_COMMANDS = new Set([
  "Register",
  "CoreAgentVersion",
  "CoreAgentShutdown",
  "ApplicationEvent",
  "BatchCommand",
  "Events",
  "Status",
]);

export function isKnownCommand(command: string): boolean {
  return REQUEST_COMMANDS.has(command) || OTHER_COMMANDS.has(command);
}

const REQUEST_COMMANDS = new Set([
  "StartRequest",
  "FinishRequest",
  "TagRequest",
  "StartSpan",
  "TagSpan",
  "StopSpan",
  // spanhub's extension.
  "LogSpan",
]);

/**
 * One of the commands that describe a request and its spans, as its event; a `StartSpan` with a
 * `stop_timestamp` (spanhub's compact_batch) as the span's start and end.
 */
function requestEvents(
  command: string,
  body: Record<string, unknown>,
  connection: ScoutConnection,
  receivedAt: Micros,
  batchRunId: string | undefined,
): RunEvent[] {
  const event = requestCommand(command, body, connection, receivedAt, batchRunId);
  if (event.kind !== "span_start" || body.stop_timestamp === undefined) return [event];
  return [event, spanEnd(body, event.runId, event.spanId, timestamp(body, receivedAt, "stop_timestamp"))];
}

/**
 * The hot path of Scout's agents, one `TagSpan` or `TagRequest` a tag: merged into the span's
 * or request's open event with no event built and no timestamp read (a merged tag's time is
 * its event's). False when it needs an event of its own.
 */
function mergedTag(
  coalescer: Coalescer,
  command: string,
  body: Record<string, unknown>,
  batchRunId: string | undefined,
): boolean {
  if (command === "TagSpan") {
    if (body.tags !== undefined) return false;
    return coalescer.mergeTag(
      runIdOf(body, batchRunId),
      stringField(body, "span_id"),
      stringField(body, "tag"),
      body.value ?? null,
    );
  }
  if (command !== "TagRequest" || body.tag === "spanhub.name") return false;
  return coalescer.mergeTag(runIdOf(body, batchRunId), undefined, stringField(body, "tag"), body.value ?? null);
}

/** A member's `request_id`, or its batch's (compact_batch) when it names none. */
function runIdOf(body: Record<string, unknown>, batchRunId: string | undefined): string {
  return body.request_id === undefined && batchRunId !== undefined ? batchRunId : stringField(body, "request_id");
}

function requestCommand(
  command: string,
  body: Record<string, unknown>,
  connection: ScoutConnection,
  receivedAt: Micros,
  batchRunId: string | undefined,
): RunEvent {
  if (!REQUEST_COMMANDS.has(command)) throw new DecodeError(`unknown command "${command}"`, "rejected");
  const runId = runIdOf(body, batchRunId);
  const time = timestamp(body, receivedAt);
  switch (command) {
    case "StartRequest":
      // name, tags and the parent link are spanhub's extensions.
      return dropUndefined({
        kind: "run_start",
        runId,
        time,
        name: optionalString(body, "name"),
        tags: optionalTags(body),
        host: connection.host,
        pid: connection.pid,
        parentRunId: optionalString(body, "parent_run_id"),
        parentSpanId: optionalString(body, "parent_span_id"),
      });
    case "FinishRequest":
      // status and error are spanhub's extensions.
      return dropUndefined({
        kind: "run_end",
        runId,
        time,
        ...runEndStatus(body.status),
        error: toSpanError(body.error),
      });
    case "TagRequest": {
      const tag = stringField(body, "tag");
      if (tag === "spanhub.name" && typeof body.value === "string")
        return { kind: "run_tag", runId, time, tags: {}, name: body.value };
      return { kind: "run_tag", runId, time, tags: { [tag]: body.value ?? null } };
    }
    case "StartSpan": {
      const parent = body.parent_id;
      if (parent !== undefined && parent !== null && typeof parent !== "string")
        throw new DecodeError('"parent_id" must be a string or null');
      // tags, kind, rpc_service and rpc_method are spanhub's extensions; absent fields are left out, not undefined.
      const start: SpanStartEvent = {
        kind: "span_start",
        runId,
        spanId: stringField(body, "span_id"),
        parentId: parent || null,
        name: stringField(body, "operation"),
        time,
      };
      const spanKind = optionalString(body, "kind");
      if (spanKind !== undefined) start.spanKind = spanKind;
      const tags = optionalTags(body);
      if (tags !== undefined) start.tags = tags;
      const rpcService = optionalString(body, "rpc_service");
      if (rpcService !== undefined) start.rpcService = rpcService;
      const rpcMethod = optionalString(body, "rpc_method");
      if (rpcMethod !== undefined) start.rpcMethod = rpcMethod;
      return start;
    }
    case "TagSpan": {
      const spanId = stringField(body, "span_id");
      // spanhub's extension: several tags at once in `tags` (then `tag`/`value` are optional).
      const several = optionalTags(body);
      const tags: Tags = several === undefined ? {} : { ...several };
      if (several === undefined || body.tag !== undefined) setTag(tags, stringField(body, "tag"), body.value ?? null);
      return { kind: "span_tag", runId, spanId, time, tags };
    }
    case "LogSpan": {
      // spanhub's extension: one log line of a span, at its own time.
      const spanId = stringField(body, "span_id");
      const text = body.text;
      if (text === undefined || text === null) throw new DecodeError('"text" must be given');
      return { kind: "span_log", runId, spanId, time, text: typeof text === "string" ? text : JSON.stringify(text) };
    }
    default:
      return spanEnd(body, runId, stringField(body, "span_id"), time);
  }
}

/** A span's end from `StopSpan` (or a `StartSpan` with `stop_timestamp`); status and error are spanhub's extensions. */
function spanEnd(body: Record<string, unknown>, runId: string, spanId: string, time: Micros): RunEvent {
  const end: SpanEndEvent = { kind: "span_end", runId, spanId, time };
  if (body.status !== undefined) Object.assign(end, spanEndStatus(body.status));
  const error = toSpanError(body.error);
  if (error !== undefined) end.error = error;
  return end;
}

function applicationEvent(body: Record<string, unknown>, connection: ScoutConnection, receivedAt: Micros): AppEvent {
  const eventType = stringField(body, "event_type");
  const source = typeof body.source === "string" ? body.source : undefined;
  const pid = source === undefined ? undefined : /^Pid: (\d+)$/.exec(source)?.[1];
  if (pid !== undefined) connection.pid = Number(pid);
  return dropUndefined({
    app: connection.app ?? "unknown",
    eventType,
    value: body.event_value ?? null,
    source,
    time: timestamp(body, receivedAt),
  });
}

function newSubmission(body: Record<string, unknown>, connection: ScoutConnection): Submission {
  const batchId = body.batch_id;
  if (batchId !== undefined && batchId !== null && (typeof batchId !== "string" || batchId === ""))
    throw new DecodeError('"batch_id" must be a non-empty string');
  return { events: [], ...appOf(connection), ...(batchId ? { batchId } : {}) };
}

function appOf(connection: ScoutConnection): { app?: string } {
  return connection.app === undefined ? {} : { app: connection.app };
}

function commandName(message: unknown): string | undefined {
  if (!isObject(message)) return undefined;
  let name: string | undefined;
  // No Object.keys array per command: this runs for every member of every batch.
  for (const key in message) {
    if (name !== undefined) return undefined;
    name = key;
  }
  return name;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringField(body: Record<string, unknown>, key: string): string {
  const value = body[key];
  if (typeof value !== "string" || value === "") throw new DecodeError(`"${key}" must be a non-empty string`);
  return value;
}

/** An optional string field of spanhub's extensions: absent, `null` or `""` mean absent. */
function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw new DecodeError(`"${key}" must be a string`);
  return value;
}

/** The `tags` object of spanhub's extensions, or undefined when absent. */
function optionalTags(body: Record<string, unknown>): Tags | undefined {
  const value = body.tags;
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw new DecodeError('"tags" must be an object');
  return value;
}

/** A missing or unreadable timestamp means the receive time counts. */
function timestamp(body: Record<string, unknown>, receivedAt: Micros, key = "timestamp"): Micros {
  const value = body[key];
  return typeof value === "string" ? (parseIsoMicros(value) ?? receivedAt) : receivedAt;
}
