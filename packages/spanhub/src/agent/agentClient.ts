import { connect } from "node:net";
import { encodeFrame, FrameReader } from "../protocols/framing.js";

/** Sends one framed command to an agent and returns its reply. */
export function requestFrame(socketPath: string, message: unknown, timeoutMs = 5000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const reader = new FrameReader(64 * 1024 * 1024);
    const timer = setTimeout(() => fail(new Error(`no reply from ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    const fail = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.once("error", fail);
    socket.once("connect", () => socket.write(encodeFrame(message)));
    socket.on("data", (chunk) => {
      const [frame] = reader.push(chunk);
      if (!frame) return;
      clearTimeout(timer);
      socket.end();
      if (frame.kind === "oversized") reject(new Error("reply over the size limit"));
      else resolve(JSON.parse(frame.value.toString("utf8")));
    });
  });
}
