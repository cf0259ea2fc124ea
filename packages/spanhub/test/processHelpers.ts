import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { encodeFrame, FrameReader } from "../src/protocols/framing.js";

export const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

/** A temp directory holding a data dir and a private socket dir, removed by `cleanup`. */
export function tempHome(): { root: string; data: string; socket: string; cleanup: () => void } {
  const root = mkdtempSync(join(tmpdir(), "spanhub-test-"));
  return {
    root,
    data: join(root, "data"),
    socket: join(root, "run", "agent.sock"),
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

export interface SpanhubProcess {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
  /** SIGTERM and wait for the exit code. */
  stop: () => Promise<number | null>;
  exited: Promise<number | null>;
}

/** Runs `spanhub <args>` and waits until it prints its hub URL (`up`, `hub`) or agent line. */
export async function startCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<SpanhubProcess> {
  const child = spawnCli(args, env);
  const output = captureOutput(child);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const deadline = Date.now() + 15_000;
  while (!/hub:\s+http|spanhub agent \d+ on/.test(output.out())) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`spanhub ${args.join(" ")} did not start:\n${output.out()}\n${output.err()}`);
    await sleep(20);
  }
  const url = /hub:\s+(http\S+)/.exec(output.out())?.[1] ?? "";
  return {
    child,
    url,
    stdout: output.out,
    stderr: output.err,
    exited,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}

/** Runs `spanhub <args>` to completion. */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnCli(args, env);
  const output = captureOutput(child);
  return new Promise((resolve) =>
    child.once("exit", (code) => resolve({ code, stdout: output.out(), stderr: output.err() })),
  );
}

export function spawnCli(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, SPANHUB_LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  spawned.add(child);
  child.once("exit", () => spawned.delete(child));
  return child;
}

const spawned = new Set<ChildProcess>();
// A failed assertion skips its test's own stop(): what is still running is killed once the file's
// tests end, or its open pipes would keep the test process, and the whole run, waiting forever.
after(() => {
  for (const child of spawned) child.kill("SIGKILL");
});

/** Collects a child's stdout and stderr as text. */
export function captureOutput(child: ChildProcess): { out: () => string; err: () => string } {
  let out = "";
  let err = "";
  child.stdout?.on("data", (chunk) => {
    out += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    err += chunk;
  });
  return { out: () => out, err: () => err };
}

/** A framed-protocol client on one connection; replies come back in order. */
export class FrameClient {
  private readonly reader = new FrameReader(64 * 1024 * 1024);
  private readonly waiting: ((reply: Record<string, unknown>) => void)[] = [];
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk) => {
      for (const frame of this.reader.push(chunk))
        if (frame.kind === "item") this.waiting.shift()?.(JSON.parse(frame.value.toString("utf8")));
    });
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
  }

  static open(path: string): Promise<FrameClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once("connect", () => resolve(new FrameClient(socket)));
      socket.once("error", reject);
    });
  }

  /** Sends a message and resolves with its reply. */
  send(message: unknown): Promise<Record<string, unknown>> {
    return this.sendRaw(encodeFrame(message));
  }

  sendRaw(bytes: Buffer): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.socket.write(bytes);
    });
  }

  close(): void {
    this.socket.end();
  }
}

/** Writes raw bytes on a new connection and closes it; resolves once the agent closed its side. */
export function writeAndClose(path: string, bytes: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once("error", reject);
    socket.once("connect", () => socket.end(bytes));
    socket.on("data", () => {});
    socket.once("close", () => resolve());
  });
}

// biome-ignore lint/suspicious/noExplicitAny: tests read many response shapes
export async function getJson(url: string, init?: RequestInit): Promise<{ status: number; body: any }> {
  const response = await fetch(url, init);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

export async function waitFor<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A Scout request as one BatchCommand: spans listed children first, as the Python agent orders them. */
export function scoutBatch(requestId: string, spanCount: number, options: { batchId?: string; base?: number } = {}) {
  const base = options.base ?? Date.UTC(2026, 10, 23, 8, 0, 0);
  const at = (ms: number) => new Date(base + ms).toISOString();
  const commands: unknown[] = [{ StartRequest: { request_id: requestId, timestamp: at(0) } }];
  commands.push({ TagRequest: { request_id: requestId, tag: "path", value: "/users" } });
  for (let index = spanCount - 1; index >= 0; index--) {
    const spanId = `${requestId}-s${index}`;
    const parentId = index === 0 ? null : `${requestId}-s${Math.floor((index - 1) / 2)}`;
    const operation = index === 0 ? "Controller/users" : `SQL/Query${index}`;
    commands.push({
      StartSpan: { request_id: requestId, span_id: spanId, parent_id: parentId, operation, timestamp: at(index + 1) },
    });
    commands.push({ TagSpan: { request_id: requestId, span_id: spanId, tag: "db.rows", value: index } });
    commands.push({ StopSpan: { request_id: requestId, span_id: spanId, timestamp: at(100 - index) } });
  }
  commands.push({ FinishRequest: { request_id: requestId, timestamp: at(101) } });
  return { BatchCommand: { commands, ...(options.batchId ? { batch_id: options.batchId } : {}) } };
}

/** `spanhub up` on a temp home (its data dir and socket, a free port), with `extra` flags. */
export function startUp(home: { data: string; socket: string }, extra: string[] = []): Promise<SpanhubProcess> {
  return startCli(["up", "--data", home.data, "--socket", home.socket, "--port", "0", ...extra]);
}
