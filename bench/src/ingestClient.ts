import { connect } from "node:net";
import { FrameReader } from "spanhub";

/**
 * One bench client process: streams BatchCommand frames (one request of 10 spans with
 * 5 tags each, children before parents) over one connection, keeping `window` frames
 * in flight, and counts acknowledged frames. Frames come from a template with only
 * the request id replaced, so the client spends little of the shared CPU.
 */
const [socketPath, clientId, windowText, warmupText, secondsText] = process.argv.slice(2);
const window = Number(windowText);
const stamp = new Date().toISOString();
const template = buildTemplate();
const socket = connect(socketPath as string);
const reader = new FrameReader(64 * 1024 * 1024);
let sent = 0;
let acknowledged = 0;
let inFlight = 0;
let failures = 0;
let atWarmup = 0;
const started = Date.now();
const warmupEnds = started + Number(warmupText) * 1000;
const ends = warmupEnds + Number(secondsText) * 1000;
setTimeout(() => {
  atWarmup = acknowledged;
}, warmupEnds - started);

socket.on("connect", pump);
socket.on("data", (chunk) => {
  for (const frame of reader.push(chunk)) {
    inFlight -= 1;
    if (frame.kind === "item" && frame.value.includes('"result":"Success"')) acknowledged += 1;
    else failures += 1;
  }
  pump();
});

function pump(): void {
  while (inFlight < window && Date.now() < ends) {
    socket.write(nextFrame());
    inFlight += 1;
  }
  if (inFlight === 0) {
    socket.end();
    process.send?.({ measured: acknowledged - atWarmup, acknowledged, sent, failures });
  }
}

function nextFrame(): Buffer {
  const body = Buffer.from(template.join(`"bench-${clientId}-${sent++}`));
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

function buildTemplate(): string[] {
  const id = "ID";
  const commands: unknown[] = [
    { StartRequest: { request_id: id, timestamp: stamp } },
    { TagRequest: { request_id: id, tag: "path", value: "/bench" } },
  ];
  for (let index = 9; index >= 0; index--) {
    const spanId = `${id}-s${index}`;
    const parent = index === 0 ? null : `${id}-s${(index - 1) >> 1}`;
    const operation = index === 0 ? "Controller/bench" : `SQL/Query${index}`;
    commands.push({ StartSpan: { request_id: id, span_id: spanId, parent_id: parent, operation, timestamp: stamp } });
    for (let tag = 0; tag < 5; tag++)
      commands.push({ TagSpan: { request_id: id, span_id: spanId, tag: `tag${tag}`, value: `value-${tag}-${index}` } });
    commands.push({ StopSpan: { request_id: id, span_id: spanId, timestamp: stamp } });
  }
  commands.push({ FinishRequest: { request_id: id, timestamp: stamp } });
  return JSON.stringify({ BatchCommand: { commands } }).split(`"${id}`);
}
