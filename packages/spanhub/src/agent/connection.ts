import type { Socket } from "node:net";
import type { Logger } from "pino";
import type { EventWriter } from "../ingest/eventWriter.js";
import { coalesce } from "../model/coalesce.js";
import type { RunEvent, Submission } from "../model/event.js";
import { nowMicros } from "../model/time.js";
import type { Metrics } from "../observability/metrics.js";
import { encodeFrame, FrameReader, LineReader } from "../protocols/framing.js";
import { DecodeError, decodeJsonEvent, isLoggedProblem, parseJsonLine, preview } from "../protocols/jsonLines.js";
import {
  decodeScoutMessage,
  failure,
  isKnownCommand,
  type ScoutConnection,
  type ScoutReply,
} from "../protocols/scout.js";

export interface ConnectionContext {
  writer: EventWriter;
  metrics: Metrics;
  logger: Logger;
  maxFrame: number;
  /** Answers spanhub's own `Status` command. */
  status: () => Promise<Record<string, unknown>>;
  /** The run of a per-run socket; events on it need no `run_id`. */
  runId?: string;
}

/** First bytes that start JSON lines: `{`, white space, or a UTF-8 byte order mark. A frame starts with its
 * length's high byte, at most 0x08 under the largest --max-frame (128 MiB). */
const JSON_LINES_FIRST_BYTES = new Set([0x7b, 0x20, 0x09, 0x0a, 0x0d, 0xef]);
/** How long a connection refused for an oversized frame may linger after its Failure reply. */
const OVERSIZED_GRACE_MS = 1000;

/**
 * Serves one agent connection. The first byte picks the protocol: `{`, white space or
 * a byte order mark start JSON lines, anything else a length-prefixed frame. Bad input is counted, logged with a
 * preview and skipped; it never ends the connection (an oversized frame does, after
 * a Failure reply, since the stream can no longer be framed).
 */
export function serveConnection(socket: Socket, context: ConnectionContext): Promise<void> {
  return new Promise((resolve) => {
    let handler: ((chunk: Buffer) => void) | undefined;
    // A connection that ends before sending anything (a probe) just closes.
    let finish: () => void = () => socket.end();
    socket.on("data", (chunk: Buffer) => {
      if (!handler) {
        const mode = JSON_LINES_FIRST_BYTES.has(chunk[0] as number)
          ? jsonLines(socket, context)
          : frames(socket, context);
        handler = mode.onData;
        finish = mode.onEnd;
      }
      handler(chunk);
    });
    socket.on("end", () => finish());
    socket.on("error", (error) => context.logger.debug({ err: error }, "agent connection error"));
    socket.on("close", () => resolve());
  });
}

interface Mode {
  onData(chunk: Buffer): void;
  onEnd(): void;
}

function frames(socket: Socket, context: ConnectionContext): Mode {
  const { metrics, logger, writer } = context;
  const reader = new FrameReader(context.maxFrame);
  const connection: ScoutConnection = {};
  const problems = problemLog(logger, "scout");
  // Replies go out in frame order, each only once its frame is committed.
  let replies: Promise<unknown> = Promise.resolve();
  let corked = false;
  const send = (reply: Promise<ScoutReply> | ScoutReply) => {
    const next = Promise.all([reply, replies]).then(([message]) => {
      if (socket.destroyed) return;
      // Replies freed by one group commit leave in one write, not one syscall each.
      if (!corked) {
        corked = true;
        socket.cork();
        setImmediate(() => {
          corked = false;
          socket.uncork();
        });
      }
      socket.write(encodeFrame(message));
    });
    replies = next;
  };

  const handleFrame = (body: Buffer) => {
    let message: unknown;
    try {
      message = JSON.parse(body.toString("utf8"));
    } catch {
      metrics.malformed.labels("scout").inc();
      problems.report("frame is not valid JSON", body);
      send(failure(`the frame is not valid JSON: ${preview(body, 60)}`));
      return;
    }
    const decoded = decodeScoutMessage(message, connection, nowMicros());
    // Only known command names become label values, so clients cannot grow the series without bound.
    metrics.messages.labels("scout", isKnownCommand(decoded.command) ? decoded.command : "(unknown)").inc();
    if (decoded.refused) {
      countProblem(metrics, "scout", decoded.refused);
      problems.report(decoded.refused.message, body);
    }
    for (const skipped of decoded.skipped) {
      countProblem(metrics, "scout", skipped);
      problems.report(`batch member skipped: ${skipped.message}`, body);
    }
    const submission = decoded.submission;
    if (decoded.command === "Status" && !decoded.refused) {
      // Read the counters once earlier frames are answered, so they include those commits.
      send(replies.then(() => context.status()).then((status) => ({ Status: { ...status, result: "Success" } })));
    } else if (submission && (submission.events.length > 0 || submission.appEvents?.length)) {
      metrics.countUnknownStatuses(submission.events);
      send(
        writer.submit(submission).then(
          () => decoded.reply,
          (error: Error) => failure(`not stored, send again: ${error.message}`),
        ),
      );
      if (writer.overloaded) pauseUntilDrained(socket, writer);
    } else send(decoded.reply);
  };

  return {
    onData(chunk) {
      for (const item of reader.push(chunk)) {
        if (item.kind === "item") {
          handleFrame(item.value);
          continue;
        }
        metrics.rejected.labels("scout", "oversized").inc();
        logger.warn({ size: item.size, max: context.maxFrame }, "frame over the size limit; closing the connection");
        send(failure(`frame of ${item.size} bytes is over the limit of ${context.maxFrame} bytes`));
        socket.pause();
        socket.removeAllListeners("data");
        void replies.then(() => {
          socket.end();
          // The client may never finish sending the oversized frame: do not wait on it.
          setTimeout(() => socket.destroy(), OVERSIZED_GRACE_MS).unref();
        });
        return;
      }
    },
    onEnd() {
      void replies.then(() => socket.end());
    },
  };
}

function jsonLines(socket: Socket, context: ConnectionContext): Mode {
  const { metrics, logger, writer } = context;
  const reader = new LineReader(context.maxFrame);
  const problems = problemLog(logger, "jsonl");
  let pending: Promise<unknown> = Promise.resolve();

  const handleLines = (items: ReturnType<LineReader["push"]>) => {
    const receivedAt = nowMicros();
    const events: RunEvent[] = [];
    for (const item of items) {
      if (item.kind === "oversized") {
        metrics.rejected.labels("jsonl", "oversized").inc();
        problems.report(`line of ${item.size} bytes is over the limit of ${context.maxFrame}`, "");
        continue;
      }
      try {
        const event = decodeJsonEvent(parseJsonLine(item.value), {
          receivedAt,
          ...(context.runId ? { runId: context.runId } : {}),
        });
        metrics.messages.labels("jsonl", event.kind).inc();
        events.push(event);
      } catch (error) {
        const problem = error instanceof DecodeError ? error : new DecodeError(String(error));
        countProblem(metrics, "jsonl", problem);
        problems.report(problem.message, item.value);
      }
    }
    if (events.length === 0) return;
    metrics.countUnknownStatuses(events);
    const submission: Submission = { events: coalesce(events) };
    // JSON lines carry no acknowledgement; a failed commit is logged by the writer.
    pending = writer.submit(submission).catch(() => undefined);
    if (writer.overloaded) pauseUntilDrained(socket, writer);
  };

  return {
    onData(chunk) {
      handleLines(reader.push(chunk));
    },
    onEnd() {
      handleLines(reader.end());
      void pending.then(() => socket.end());
    },
  };
}

function pauseUntilDrained(socket: Socket, writer: EventWriter): void {
  socket.pause();
  void writer.whenDrained().then(() => socket.resume());
}

function countProblem(metrics: Metrics, protocol: string, problem: DecodeError): void {
  if (problem.reason === "rejected") metrics.rejected.labels(protocol, "unknown").inc();
  else metrics.malformed.labels(protocol).inc();
}

/** Logs bad input with a short preview: the first few per connection, then one in LOG_EVERY. */
function problemLog(logger: Logger, protocol: string) {
  let count = 0;
  return {
    report(message: string, input: string | Buffer) {
      count += 1;
      if (isLoggedProblem(count))
        logger.warn({ protocol, count, input: preview(input) }, `skipped bad input: ${message}`);
    },
  };
}
