/**
 * Test helpers: temp homes, a real spanhub agent from packages/spanhub, its metrics and store.
 * Every agent a test starts is stopped by `stopAgents` (by `spanhub agent stop` and by pid).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { frame, ReplyReader } from "../src/framing.js";

const execFileAsync = promisify(execFile);

export const SPANHUB_BIN = fileURLToPath(new URL("../../../spanhub/bin/spanhub.js", import.meta.url));
export const AGENT_COMMAND = [process.execPath, SPANHUB_BIN];

export interface Home {
  root: string;
  data: string;
  socket: string;
  cleanup: () => Promise<void>;
}

export function tempHome(): Home {
  const root = mkdtempSync(join(tmpdir(), "spanhub-sdk-"));
  const home: Home = {
    root,
    data: join(root, "data"),
    socket: join(root, "run", "agent.sock"),
    cleanup: async () => {
      await stopAgents(home);
      rmSync(root, { recursive: true, force: true });
    },
  };
  return home;
}

export interface AgentProcess {
  child: ChildProcess;
  metricsUrl: string;
  pid: number;
}

/** Runs an agent in the foreground (not daemonized) with `/metrics` on a free port. */
export async function startAgent(home: Home): Promise<AgentProcess> {
  const child = spawn(
    process.execPath,
    [SPANHUB_BIN, "agent", "--socket", home.socket, "--data", home.data, "--http", "127.0.0.1:0"],
    { env: { ...process.env, SPANHUB_LOG_LEVEL: "warn" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const output = captureOutput(child);
  const deadline = Date.now() + 15_000;
  while (!/http:\/\/\S+\/metrics/.test(output.out())) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`agent did not start:\n${output.out()}\n${output.err()}`);
    await sleep(20);
  }
  return {
    child,
    pid: child.pid as number,
    metricsUrl: (/(http:\/\/\S+\/metrics)/.exec(output.out()) as RegExpExecArray)[1] as string,
  };
}

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

export function agentInfoPid(home: Home): number | undefined {
  try {
    return (JSON.parse(readFileSync(join(home.root, "run", "agent.json"), "utf8")) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

/** Pids of agent processes serving this home's socket (from `ps`). */
export function agentPids(home: Home): number[] {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return out
    .split("\n")
    .filter((line) => line.includes(home.socket) && / agent /.test(line) && !line.includes("--daemonize"))
    .map((line) => Number.parseInt(line.trim(), 10))
    .filter((pid) => pid !== process.pid);
}

export async function stopAgents(home: Home): Promise<void> {
  try {
    // Asynchronously, so that an agent that is this process's child is reaped when it exits.
    await execFileAsync(process.execPath, [SPANHUB_BIN, "agent", "stop", "--socket", home.socket]);
  } catch {
    // Fall through to the pids.
  }
  const pids = new Set([...agentPids(home), agentInfoPid(home)].filter((pid): pid is number => pid !== undefined));
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Gone.
    }
  }
}

export async function messageCount(metricsUrl: string, command: string): Promise<number> {
  const text = await httpGet(metricsUrl);
  const line = text
    .split("\n")
    .find((row) => row.startsWith(`spanhub_agent_messages_total{protocol="scout",command="${command}"}`));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

export interface RunRow {
  id: string;
  name: string | null;
  app: string | null;
  status: string;
  tags: string;
  span_count: number;
  parent_run_id: string | null;
  parent_span_id: string | null;
  pid: number | null;
  error: string | null;
}

export interface SpanRow {
  run_id: string;
  span_id: string;
  parent_id: string | null;
  name: string | null;
  status: string;
  tags: string;
  kind: string | null;
  /** JSON: `[{ time (µs), text }]`, or null. */
  logs: string | null;
  /** JSON: `{ type, message, stack }`, or null. */
  error: string | null;
  rpc_service: string | null;
  rpc_method: string | null;
}

/**
 * The store's own SQL for a span's tags (a span row may point at the logged event holding them),
 * loaded at run time: spanhub is built after this package, so its types cannot be imported here.
 */
const STORE_ROWS_MODULE = "spanhub/internal/store/sqlite/rows.js";
const { SPAN_TAGS } = (await import(STORE_ROWS_MODULE)) as { SPAN_TAGS: string };

export function readStore(home: Home): { runs: RunRow[]; spans: SpanRow[] } {
  const db = new Database(join(home.data, "spanhub.db"), { readonly: true, fileMustExist: true });
  try {
    const runs = db.prepare("SELECT * FROM runs ORDER BY rid").all() as RunRow[];
    const spans = db
      .prepare(
        `SELECT runs.id AS run_id, spans.span_id, spans.parent_id, spans.name, spans.status, ${SPAN_TAGS} AS tags, spans.kind, spans.logs, spans.error, spans.rpc_service, spans.rpc_method FROM spans JOIN runs ON runs.rid = spans.rid ORDER BY spans.start_us`,
      )
      .all() as SpanRow[];
    return { runs, spans };
  } finally {
    db.close();
  }
}

export async function waitFor<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A GET without keep-alive (a kept-alive connection would hold the agent's shutdown up). */
export function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        body += chunk;
      });
      response.on("end", () => resolve(body));
      response.on("error", reject);
    }).on("error", reject);
  });
}

/**
 * A peer on a temp Unix socket for tests of the wire itself (an agent version that does not
 * exist any more, a connection dropped mid-flight): `answer` gets each frame's message and the
 * connection's number (0 for the first) and returns the reply, or "hang up" to drop the connection.
 */
export async function scriptedPeer(
  answer: (message: unknown, connection: number) => unknown,
): Promise<{ path: string; close: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), "spanhub-sdk-peer-"));
  const path = join(dir, "peer.sock");
  let connections = 0;
  const server = createServer((socket) => {
    const number = connections++;
    const reader = new ReplyReader();
    socket.on("data", (chunk: Buffer) => {
      for (const message of reader.push(chunk)) {
        if (socket.destroyed) return;
        const reply = answer(message, number);
        if (reply === "hang up") socket.destroy();
        else socket.write(frame(JSON.stringify(reply)));
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    close: () => {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
