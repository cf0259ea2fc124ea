import { type ChildProcess, spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the command could not be started at all. */
  spawnError?: Error;
}

/** Keeps the last `limit` bytes written through it, and counts all of them. */
export class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;
  total = 0;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    this.total += chunk.length;
    while (this.chunks.length > 1 && this.size - (this.chunks[0] as Buffer).length >= this.limit)
      this.size -= (this.chunks.shift() as Buffer).length;
  }

  /** The kept bytes as text, starting at a character boundary. */
  text(): string {
    let tail = Buffer.concat(this.chunks);
    if (tail.length > this.limit) tail = tail.subarray(tail.length - this.limit);
    let start = 0;
    // Skip UTF-8 continuation bytes of a character cut by the limit.
    while (start < tail.length && start < 3 && ((tail[start] as number) & 0xc0) === 0x80) start += 1;
    return tail.toString("utf8", start);
  }
}

/**
 * A traced command: its own process group (so signals reach its whole tree), stdin shared with
 * ours, stdout and stderr relayed to ours a line at a time (the child sees pipes, not a TTY) and
 * their tails kept.
 */
export class TracedChild {
  readonly exited: Promise<ChildExit>;
  /** Resolves once both output pipes ended and their last lines were relayed. */
  readonly outputDone: Promise<void>;
  readonly stdoutTail: OutputTail;
  readonly stderrTail: OutputTail;
  private readonly child: ChildProcess;

  constructor(command: string[], options: { cwd: string; env: NodeJS.ProcessEnv; tailBytes: number }) {
    const [file, ...args] = command as [string, ...string[]];
    this.stdoutTail = new OutputTail(options.tailBytes);
    this.stderrTail = new OutputTail(options.tailBytes);
    this.child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ["inherit", "pipe", "pipe"],
    });
    this.exited = new Promise((resolve) => {
      this.child.once("error", (error) => resolve({ code: null, signal: null, spawnError: error }));
      this.child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    this.outputDone = Promise.all([
      relayLines(this.child.stdout as Readable, process.stdout, this.stdoutTail),
      relayLines(this.child.stderr as Readable, process.stderr, this.stderrTail),
    ]).then(() => undefined);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Sends `signal` to the child's whole process group; false when it is gone. */
  signalGroup(signal: NodeJS.Signals): boolean {
    const pid = this.child.pid;
    if (pid === undefined) return false;
    try {
      process.kill(-pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Stops relaying output (pipes a grandchild still holds open). */
  abandonOutput(): void {
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
  }
}

/**
 * Copies `source` to `target` in whole lines (a partial line waits for its newline or the end),
 * so the child's stdout and stderr interleave with ours only at line boundaries; honours the
 * target's backpressure.
 */
function relayLines(source: Readable, target: Writable, tail: OutputTail): Promise<void> {
  return new Promise((resolve) => {
    let partial: Buffer[] = [];
    // Our output closed (`spanhub run ... | head`): the child keeps running, its output is only kept.
    let broken = false;
    target.once("error", () => {
      broken = true;
      source.resume();
    });
    const write = (data: Buffer) => {
      if (broken) return;
      if (!target.write(data)) {
        source.pause();
        target.once("drain", () => source.resume());
      }
    };
    source.on("data", (chunk: Buffer) => {
      tail.push(chunk);
      const lastNewline = chunk.lastIndexOf(10);
      if (lastNewline === -1) {
        partial.push(chunk);
        return;
      }
      const lines = chunk.subarray(0, lastNewline + 1);
      write(partial.length === 0 ? lines : Buffer.concat([...partial, lines]));
      partial = lastNewline + 1 < chunk.length ? [chunk.subarray(lastNewline + 1)] : [];
    });
    const finish = () => {
      if (partial.length > 0) write(Buffer.concat(partial));
      partial = [];
      resolve();
    };
    source.once("end", finish);
    source.once("close", finish);
    source.on("error", () => {});
  });
}
