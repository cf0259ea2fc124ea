import { connect } from "node:net";
import { encodeFrame, FrameReader } from "spanhub";
import { ScoutLoad, SPANS_PER_REQUEST } from "./scoutLoad.js";

/**
 * One ingest client, forked by `ingest.ts`: its own connection to the agent's Unix
 * socket, keeping `window` BatchCommand frames in flight. Replies come back in frame
 * order, so each reply acknowledges the oldest frame in flight.
 *
 * Parent to client: `go` (start streaming), `mark` (the measured interval starts),
 * `stop` (it ends: send nothing more, wait for the replies in flight, report, exit).
 */
export type ClientCommand = { type: "go" } | { type: "mark" } | { type: "stop" };

export type ClientMessage =
  | { type: "ready" }
  | { type: "done"; report: ClientReport }
  | { type: "error"; message: string };

export interface ClientReport {
  /** Spans in frames answered with BatchCommand Success, over the whole run. */
  ackedSpans: number;
  ackedFrames: number;
  /** Frames answered with anything else (a Failure). */
  failedFrames: number;
  firstFailure?: string;
  /** Frames acknowledged between `mark` and `stop`, and that interval in ms on this client's clock. */
  measuredFrames: number;
  measuredMs: number;
  /** Send-to-acknowledgement times in ms of the frames acknowledged in the measured interval. */
  latenciesMs: number[];
}

const [socketPath, windowText, shapeText] = process.argv.slice(2);
const window = Number(windowText);
if (!socketPath || !(window >= 1)) throw new Error("usage: ingestClient SOCKET WINDOW");

const send = (message: ClientMessage, then?: () => void) => process.send?.(message, undefined, {}, () => then?.());
let failed = false;
/** Reports the problem to the parent, then exits with 1 (once the message is out). */
function fail(message: string): void {
  if (failed) return;
  failed = true;
  socket.destroy();
  send({ type: "error", message }, () => process.exit(1));
}

const load = new ScoutLoad(shapeText === "sdk" ? "sdk" : "scout");
const reader = new FrameReader(64 * 1024 * 1024);
const socket = connect(socketPath);

const report: ClientReport = {
  ackedSpans: 0,
  ackedFrames: 0,
  failedFrames: 0,
  measuredFrames: 0,
  measuredMs: 0,
  latenciesMs: [],
};
/** Send times of the frames in flight, oldest first. */
const sentAt: number[] = [];
let registered = false;
let streaming = false;
let stopping = false;
let measuring = false;
let markedAt = 0;
let markedFrames = 0;

function pump(): void {
  if (!streaming || sentAt.length >= window) return;
  socket.cork();
  while (sentAt.length < window) {
    sentAt.push(performance.now());
    socket.write(load.nextFrame());
  }
  socket.uncork();
}

function onReply(body: Buffer): void {
  const reply = JSON.parse(body.toString("utf8")) as Record<string, { result?: string; message?: string }>;
  if (!registered) {
    if (reply.Register?.result !== "Success") {
      fail(`Register was refused: ${body.toString("utf8")}`);
      return;
    }
    registered = true;
    send({ type: "ready" });
    return;
  }
  const started = sentAt.shift();
  if (started === undefined) {
    fail(`a reply with no frame in flight: ${body.toString("utf8")}`);
    return;
  }
  if (reply.BatchCommand?.result === "Success") {
    report.ackedFrames += 1;
    report.ackedSpans += SPANS_PER_REQUEST;
    if (measuring) report.latenciesMs.push(performance.now() - started);
  } else {
    report.failedFrames += 1;
    report.firstFailure ??= body.toString("utf8").slice(0, 300);
  }
}

function finishIfDrained(): void {
  if (!stopping || sentAt.length > 0) return;
  socket.end();
}

socket.on("connect", () => {
  // As Scout agents do on every new connection.
  socket.write(encodeFrame({ Register: { app: "spanhub-bench", key: "bench", api_version: "1.0", language: "node" } }));
});
socket.on("data", (chunk: Buffer) => {
  for (const item of reader.push(chunk)) {
    if (item.kind === "oversized") {
      fail(`reply of ${item.size} bytes over the limit`);
      return;
    }
    onReply(item.value);
    if (failed) return;
  }
  pump();
  finishIfDrained();
});
socket.on("error", (error) => fail(`socket error: ${error.message}`));
socket.on("close", () => {
  if (failed) return;
  if (!stopping || sentAt.length > 0) {
    fail(`the agent closed the connection with ${sentAt.length} frames in flight`);
    return;
  }
  send({ type: "done", report }, () => process.disconnect?.());
});

process.on("message", (command: ClientCommand) => {
  const now = performance.now();
  if (command.type === "go") {
    streaming = true;
    pump();
  } else if (command.type === "mark") {
    measuring = true;
    markedAt = now;
    markedFrames = report.ackedFrames;
  } else if (command.type === "stop") {
    if (measuring) {
      report.measuredFrames = report.ackedFrames - markedFrames;
      report.measuredMs = now - markedAt;
    }
    measuring = false;
    streaming = false;
    stopping = true;
    finishIfDrained();
  }
});
