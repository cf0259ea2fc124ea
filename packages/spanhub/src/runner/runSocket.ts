import { chmodSync, unlinkSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { LineReader } from "../protocols/framing.js";

export interface RunSocketOptions {
  path: string;
  maxLine: number;
  /** Each complete line, with the time it was read (milliseconds since the epoch). */
  onLine: (line: string, receivedMs: number) => void;
  /** A line over `maxLine`, skipped up to its end. */
  onOversized: (size: number) => void;
  /** Asked after each read: true pauses every connection until `relieved` resolves. */
  congested: () => boolean;
  relieved: () => Promise<void>;
}

/**
 * The per-run Unix socket: bound (mode 0600, in the private socket directory) before the child
 * starts, so the child's first connect never races it. Any number of connections, each read as
 * JSON lines to its end; nothing is written back.
 */
export class RunSocket {
  private readonly server: Server;
  private readonly connections = new Set<Socket>();
  private paused = false;
  private closed = false;

  private constructor(private readonly options: RunSocketOptions) {
    this.server = createServer((socket) => this.serve(socket));
  }

  static async listen(options: RunSocketOptions): Promise<RunSocket> {
    const runSocket = new RunSocket(options);
    await new Promise<void>((resolve, reject) => {
      runSocket.server.once("error", reject);
      runSocket.server.listen(options.path, () => {
        runSocket.server.off("error", reject);
        resolve();
      });
    });
    chmodSync(options.path, 0o600);
    return runSocket;
  }

  /**
   * Waits up to `drainMs` for the connections still open to end (a grandchild may hold one,
   * or a late EOF may be on its way), then closes them, the listener and the socket file.
   */
  async close(drainMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    const deadline = Date.now() + drainMs;
    while (this.connections.size > 0 && Date.now() < deadline) await sleep(10);
    for (const socket of this.connections) socket.destroy();
    this.unlink();
  }

  /** Removes the socket file at once (for a process about to exit). */
  unlink(): void {
    try {
      unlinkSync(this.options.path);
    } catch {
      // Already gone.
    }
  }

  private serve(socket: Socket): void {
    this.connections.add(socket);
    const reader = new LineReader(this.options.maxLine);
    const take = (items: ReturnType<LineReader["push"]>) => {
      const receivedMs = Date.now();
      for (const item of items) {
        if (item.kind === "oversized") this.options.onOversized(item.size);
        else this.options.onLine(item.value, receivedMs);
      }
      if (this.options.congested()) this.pauseAll();
    };
    socket.on("data", (chunk: Buffer) => take(reader.push(chunk)));
    socket.on("end", () => {
      take(reader.end());
      socket.end();
    });
    socket.on("error", () => {});
    socket.on("close", () => this.connections.delete(socket));
    if (this.paused) socket.pause();
  }

  private pauseAll(): void {
    if (this.paused) return;
    this.paused = true;
    for (const socket of this.connections) socket.pause();
    void this.options.relieved().then(() => {
      this.paused = false;
      for (const socket of this.connections) socket.resume();
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
