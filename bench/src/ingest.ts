import { type ChildProcess, execFileSync, fork, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { killOnExit, removeOnExit } from "./cleanup.js";
import type { ClientCommand, ClientMessage, ClientReport } from "./ingestClient.js";
import { elapsed, positive, progress } from "./progress.js";
import { type FrameShape, ScoutLoad, SPANS_PER_REQUEST, spanRows, TAGS_PER_SPAN } from "./scoutLoad.js";
import { type BenchResult, type Cell, formatCount, formatKiB, formatMs, formatPercent, quantile } from "./table.js";
import { cpuSnapshot, type ThreadTime, type ThreadUse, threadUse } from "./threadTimes.js";

/**
 * Ingest: how many spans per second `spanhub up` acknowledges end to end, and, in the
 * same run, the ceiling it is measured against: better-sqlite3 inserting the same
 * rows into a fresh file in one transaction.
 *
 * End to end, for each client setting: a fresh `spanhub up` on a temp data directory,
 * client processes on their own Unix socket connections streaming Scout BatchCommand
 * frames with a window in flight, counting only frames answered with Success. After
 * SIGTERM the stored span count must equal the acknowledged spans (fewer fails the bench).
 *
 * Environment: BENCH_SECONDS (measured seconds per setting, default 5),
 * BENCH_WARMUP_SECONDS (default 1), BENCH_INGEST_SETTINGS (clients x window list,
 * default "1x1,2x8,4x16"), BENCH_AGENT_ARGS (extra `spanhub up` flags, e.g.
 * "--durability normal", for experiments), BENCH_CPU_PROF (a directory: run the agent
 * under `node --cpu-prof` and keep its profiles there; summarize them with
 * `node bench/dist/cpuProfile.js DIR`).
 */

const CLI = fileURLToPath(new URL("./cli/main.js", import.meta.resolve("spanhub")));
const CLIENT = fileURLToPath(new URL("./ingestClient.js", import.meta.url));
const SECONDS = positive("BENCH_SECONDS", 5);
const WARMUP_SECONDS = positive("BENCH_WARMUP_SECONDS", 1, true);
const SETTINGS = parseSettings(process.env.BENCH_INGEST_SETTINGS ?? "1x1,2x8,4x16,4x16:sdk");
const AGENT_ARGS = (process.env.BENCH_AGENT_ARGS ?? "").split(/\s+/).filter(Boolean);
const CPU_PROFILE_DIR = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined;
/** The raw ceiling is the best of this many fresh runs: it is a ceiling, and the machine is noisy. */
const RAW_REPEATS = 3;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 60_000;

export interface Setting {
  clients: number;
  window: number;
  shape: FrameShape;
}

export interface EndToEnd {
  setting: Setting;
  spansPerSecond: number;
  ackedSpans: number;
  storedSpans: number;
  latencyP50?: number;
  latencyP99?: number;
  /** The agent's CPU time over the measured interval, as a fraction of one core. */
  cpu?: number;
  /** The same for all client processes together. */
  clientCpu?: number;
  /** The agent's main thread and busiest other thread, and the machine, over the measured interval. */
  threads?: ThreadUse;
  peakRssKiB?: number;
  /** Group commits in the measured interval (from the agent's /metrics), per second and mean duration. */
  commitsPerSecond?: number;
  commitMs?: number;
}

export async function run(): Promise<BenchResult> {
  const results: EndToEnd[] = [];
  for (const setting of SETTINGS) {
    progress(`ingest: ${setting.clients} clients x ${setting.window} in flight, ${WARMUP_SECONDS}+${SECONDS} s`);
    results.push(await endToEnd(setting));
  }
  const spans = Math.max(SPANS_PER_REQUEST * 1000, ...results.map((result) => result.ackedSpans));
  progress(`ingest: raw better-sqlite3 ceiling, ${formatCount(spans)} spans, best of ${RAW_REPEATS}`);
  let raw = rawCeiling(spans);
  for (let repeat = 1; repeat < RAW_REPEATS; repeat++) {
    const next = rawCeiling(spans);
    if (next.spansPerSecond > raw.spansPerSecond) raw = next;
  }

  const frameBytes = Buffer.byteLength(new ScoutLoad().batchText());
  const rows: Cell[][] = results.map((result) => [
    `spanhub up, ${result.setting.clients} clients x ${result.setting.window} in flight${result.setting.shape === "sdk" ? ", SDK frames" : ""}`,
    formatCount(result.spansPerSecond),
    formatPercent(result.spansPerSecond / raw.spansPerSecond),
    formatMs(result.latencyP50),
    formatMs(result.latencyP99),
    result.commitsPerSecond === undefined ? "-" : formatCount(result.commitsPerSecond),
    result.commitsPerSecond ? formatCount(result.spansPerSecond / result.commitsPerSecond) : "-",
    formatMs(result.commitMs),
    result.cpu === undefined ? "-" : formatPercent(result.cpu),
    result.cpu === undefined ? "-" : ((result.cpu / result.spansPerSecond) * 1e6).toFixed(1),
    result.clientCpu === undefined ? "-" : formatPercent(result.clientCpu),
    formatThread(result.threads?.main),
    formatThread(result.threads?.busiestWorker),
    result.threads ? formatPercent(result.threads.machineBusy) : "-",
    formatKiB(result.peakRssKiB),
    formatCount(result.ackedSpans),
    formatCount(result.storedSpans),
  ]);
  rows.push([
    "raw better-sqlite3, 1 transaction, 2 indexes",
    formatCount(raw.spansPerSecond),
    formatPercent(1),
    "-",
    "-",
    "-",
    formatCount(spans),
    formatMs((spans / raw.spansPerSecond) * 1000),
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    "-",
    formatCount(spans),
    formatCount(raw.storedSpans),
  ]);
  return {
    title: `ingest: Scout BatchCommand frames (1 request = ${SPANS_PER_REQUEST} spans x ${TAGS_PER_SPAN} tags, ${(frameBytes / 1024).toFixed(1)} KiB) over the Unix socket, ${SECONDS} s measured after ${WARMUP_SECONDS} s warm-up`,
    columns: [
      "configuration",
      "spans/s",
      "vs raw",
      "ack p50",
      "ack p99",
      "commits/s",
      "spans/commit",
      "commit",
      "agent CPU",
      "agent CPU µs/span",
      "clients CPU",
      "agent main thread",
      "agent busiest worker",
      "machine busy",
      "agent peak RSS",
      "acked spans",
      "spans in db",
    ],
    rows,
    notes: [
      "spans/s end to end: spans in frames answered BatchCommand Success within the measured interval (replies come after the commit).",
      "ack p50/p99: frame sent to its reply received, per frame, at the client.",
      "commits/s, spans/commit, commit: the agent's group commits over the measured interval (its /metrics: spanhub_commit_seconds, mean).",
      "spans in db: rows of `spans` after SIGTERM, checked equal to every span acknowledged (warm-up and drain included).",
      `agent CPU / clients CPU: user+system time over the measured interval (all threads; all client processes), 100% = one core of ${availableParallelism()}.`,
      "agent CPU µs/span: the agent's CPU time (all threads) per span acknowledged in the measured interval.",
      "agent main thread / busiest worker (the SQLite writer): time on a CPU, + time runnable but waiting for one (/proc/PID/task/TID/schedstat), as shares of the measured interval; a thread whose two add up to about 100% had no idle time. machine busy: all CPUs, from /proc/stat.",
      "agent peak RSS: VmHWM of the agent process, read before SIGTERM.",
      `raw: the largest end-to-end count of the same rows (run id, span id, parent id, name, start, end, status, tags JSON) into a fresh file, WAL, synchronous=FULL, indexes on run id and (name, start), one prepared INSERT, one transaction; best of ${RAW_REPEATS}.`,
      ...(AGENT_ARGS.length ? [`agent flags: ${AGENT_ARGS.join(" ")}`] : []),
      ...(CPU_PROFILE_DIR ? [`agent CPU profiles (node --cpu-prof) kept in ${CPU_PROFILE_DIR}`] : []),
    ],
  };
}

/** One end-to-end measurement on a fresh `spanhub up` started with `agentArgs` (after BENCH_AGENT_ARGS). */
export async function endToEnd(setting: Setting, agentArgs: string[] = []): Promise<EndToEnd> {
  const root = mkdtempSync(join(tmpdir(), "spanhub-bench-"));
  removeOnExit.add(root);
  const data = join(root, "data");
  const socket = join(root, "run", "agent.sock");
  const clients: ChildProcess[] = [];
  let server: Server | undefined;
  try {
    let phase = performance.now();
    server = await startServer(data, socket, agentArgs);
    progress(`  agent up in ${elapsed(phase)}`);
    for (let index = 0; index < setting.clients; index++) {
      const client = fork(CLIENT, [socket, String(setting.window), setting.shape], {
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      });
      clients.push(client);
      killOnExit(client);
    }
    const reports = clients.map((client, index) => clientReport(client, index));
    // Any client failing, or the agent dying, ends the run at once rather than after the full duration.
    const broken = new Promise<never>((_, reject) => {
      for (const report of reports) report.catch(reject);
      void server?.died.catch(reject);
    });
    broken.catch(() => undefined);
    const sleepUnlessBroken = (ms: number) => Promise.race([sleep(ms), broken]);
    await Promise.race([Promise.all(clients.map((client) => nextMessage(client, "ready"))), broken]);

    const command = (message: ClientCommand) => {
      for (const client of clients) if (client.connected) client.send(message, () => undefined);
    };
    command({ type: "go" });
    await sleepUnlessBroken(WARMUP_SECONDS * 1000);
    const commitsStart = await commitStats(server.url);
    const cpuStart = cpuSeconds(server.pid);
    const threadsStart = cpuSnapshot(server.pid);
    const clientCpuStart = clientsCpu(clients);
    const measureStart = performance.now();
    command({ type: "mark" });
    await sleepUnlessBroken(SECONDS * 1000);
    command({ type: "stop" });
    phase = performance.now();
    const cpuEnd = cpuSeconds(server.pid);
    const threadsEnd = cpuSnapshot(server.pid);
    const clientCpuEnd = clientsCpu(clients);
    const measuredSeconds = (performance.now() - measureStart) / 1000;
    const commitsEnd = await commitStats(server.url);
    const done = await Promise.race([Promise.all(reports), broken]);

    progress(`  clients drained in ${elapsed(phase)}`);
    const peakRssKiB = procStatus(server.pid, "VmHWM");
    phase = performance.now();
    await server.stop();
    progress(`  agent stopped in ${elapsed(phase)}`);
    const failed = done.reduce((sum, report) => sum + report.failedFrames, 0);
    const ackedSpans = done.reduce((sum, report) => sum + report.ackedSpans, 0);
    const storedSpans = countRows(join(data, "spanhub.db"), "spans");
    if (storedSpans < ackedSpans)
      throw new Error(
        `DATA LOSS: ${formatCount(ackedSpans)} spans were acknowledged but only ${formatCount(storedSpans)} are in ${data}/spanhub.db`,
      );
    if (failed > 0)
      throw new Error(
        `${failed} frames were answered with a failure, first: ${done.find((report) => report.firstFailure)?.firstFailure}`,
      );
    // Each client's rate over its own measured interval; the intervals overlap (one mark, one stop).
    const framesPerSecond = done.reduce(
      (sum, report) => sum + (report.measuredMs > 0 ? report.measuredFrames / (report.measuredMs / 1000) : 0),
      0,
    );
    const latencies = Float64Array.from(done.flatMap((report) => report.latenciesMs)).sort();
    const p50 = quantile(latencies, 0.5);
    const p99 = quantile(latencies, 0.99);
    const commits = commitsStart && commitsEnd ? commitsEnd.count - commitsStart.count : undefined;
    return {
      setting,
      spansPerSecond: framesPerSecond * SPANS_PER_REQUEST,
      ackedSpans,
      storedSpans,
      ...(p50 === undefined ? {} : { latencyP50: p50 }),
      ...(p99 === undefined ? {} : { latencyP99: p99 }),
      ...(cpuStart !== undefined && cpuEnd !== undefined ? { cpu: (cpuEnd - cpuStart) / measuredSeconds } : {}),
      ...(clientCpuStart !== undefined && clientCpuEnd !== undefined
        ? { clientCpu: (clientCpuEnd - clientCpuStart) / measuredSeconds }
        : {}),
      ...(threadsStart && threadsEnd
        ? { threads: threadUse(server.pid, threadsStart, threadsEnd, measuredSeconds) }
        : {}),
      ...(peakRssKiB === undefined ? {} : { peakRssKiB }),
      ...(commits !== undefined && commitsStart && commitsEnd
        ? {
            commitsPerSecond: commits / measuredSeconds,
            ...(commits > 0 ? { commitMs: ((commitsEnd.seconds - commitsStart.seconds) / commits) * 1000 } : {}),
          }
        : {}),
    };
  } finally {
    for (const client of clients) if (client.exitCode === null && client.signalCode === null) client.kill("SIGKILL");
    if (server) await server.kill();
    rmSync(root, { recursive: true, force: true });
    removeOnExit.delete(root);
  }
}

export interface Server {
  pid: number;
  /** Rejects if the agent exits before `stop()`. */
  died: Promise<never>;
  /** The hub's base URL (it serves /metrics). */
  url: string | undefined;
  /** SIGTERM, then wait for a clean exit (code 0). */
  stop(): Promise<void>;
  /** SIGKILL if still running (cleanup after a failure). */
  kill(): Promise<void>;
}

export async function startServer(data: string, socket: string, extraArgs: string[] = []): Promise<Server> {
  const profile = CPU_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${CPU_PROFILE_DIR}`] : [];
  if (CPU_PROFILE_DIR) mkdirSync(CPU_PROFILE_DIR, { recursive: true });
  const args = [...profile, CLI, "up", "--data", data, "--socket", socket, "--port", "0", ...AGENT_ARGS, ...extraArgs];
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, SPANHUB_LOG_LEVEL: process.env.SPANHUB_LOG_LEVEL ?? "warn" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (text: string) => {
    stdout += text;
  });
  child.stderr?.setEncoding("utf8").on("data", (text: string) => {
    stderr = (stderr + text).slice(-4000);
  });
  killOnExit(child);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let stopping = false;
  const tail = () => (stderr.trim() ? `\n--- spanhub stderr ---\n${stderr.trim()}` : "");
  const ready = new Promise<void>((resolve) => {
    const check = () => {
      if (/spanhub is up[\s\S]*data:.*\n/.test(stdout)) {
        child.stdout?.off("data", check);
        resolve();
      }
    };
    child.stdout?.on("data", check);
  });
  const outcome = await Promise.race([
    ready.then(() => "ready" as const),
    exited.then((code) => `exited with code ${code}`),
    sleep(START_TIMEOUT_MS, true).then(() => `not up within ${START_TIMEOUT_MS / 1000} s`),
  ]);
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGKILL");
    await exited;
  };
  const died = exited.then((code) => {
    if (!stopping) throw new Error(`spanhub up exited with code ${code} during the run${tail()}`);
    return new Promise<never>(() => {});
  });
  died.catch(() => undefined); // observed by the run; never an unhandled rejection
  if (outcome !== "ready") {
    await kill();
    throw new Error(`spanhub up ${outcome}${tail()}`);
  }
  return {
    pid: child.pid as number,
    died,
    url: /^\s*hub:\s+(\S+)/m.exec(stdout)?.[1],
    kill,
    async stop() {
      stopping = true;
      child.kill("SIGTERM");
      const code = await Promise.race([exited, sleep(STOP_TIMEOUT_MS, true).then(() => "timeout" as const)]);
      if (code === "timeout") {
        await kill();
        throw new Error(`spanhub up did not stop within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM${tail()}`);
      }
      if (code !== 0) throw new Error(`spanhub up exited with code ${code} after SIGTERM${tail()}`);
    },
  };
}

function clientReport(client: ChildProcess, index: number): Promise<ClientReport> {
  return new Promise((resolve, reject) => {
    let report: ClientReport | undefined;
    client.on("error", (error) => reject(new Error(`bench client ${index}: ${error.message}`)));
    client.on("message", (message: ClientMessage) => {
      if (message.type === "done") report = message.report;
      else if (message.type === "error") reject(new Error(`bench client ${index}: ${message.message}`));
    });
    client.once("exit", (code, signal) => {
      if (report && code === 0) resolve(report);
      else reject(new Error(`bench client ${index} exited (code ${code}, signal ${signal}) without a report`));
    });
  });
}

function nextMessage(client: ChildProcess, type: ClientMessage["type"]): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ClientMessage) => {
      if (message.type !== type) return;
      client.off("message", onMessage);
      client.off("exit", onExit);
      resolve();
    };
    const onExit = (code: number | null) => reject(new Error(`bench client exited with ${code} before "${type}"`));
    client.on("message", onMessage);
    client.once("exit", onExit);
  });
}

interface CommitStats {
  count: number;
  seconds: number;
}

/** The agent's group-commit counters from its Prometheus /metrics, if it answers. */
async function commitStats(url: string | undefined): Promise<CommitStats | undefined> {
  if (!url) return undefined;
  try {
    const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
    if (!response.ok) return undefined;
    const text = await response.text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
    const count = value("spanhub_commit_seconds_count");
    const seconds = value("spanhub_commit_seconds_sum");
    return Number.isFinite(count) && Number.isFinite(seconds) ? { count, seconds } : undefined;
  } catch {
    return undefined;
  }
}

export interface RawCeiling {
  spansPerSecond: number;
  storedSpans: number;
}

/** The same rows into a fresh file, WAL and synchronous=FULL, in one transaction, through one prepared INSERT. */
export function rawCeiling(spans: number): RawCeiling {
  const root = mkdtempSync(join(tmpdir(), "spanhub-bench-raw-"));
  try {
    const path = join(root, "raw.db");
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("cache_size = -65536"); // as spanhub's own connections
    db.exec(`
      CREATE TABLE spans (
        run_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL,
        start_us INTEGER NOT NULL, end_us INTEGER NOT NULL, status TEXT NOT NULL, tags TEXT NOT NULL
      );
      CREATE INDEX spans_by_run ON spans (run_id);
      CREATE INDEX spans_by_name ON spans (name, start_us);
    `);
    const insert = db.prepare("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    const rows = spanRows(Math.ceil(spans / SPANS_PER_REQUEST)).slice(0, spans);
    const insertAll = db.transaction(() => {
      for (const row of rows) insert.run(row);
    });
    const started = performance.now();
    insertAll();
    const seconds = (performance.now() - started) / 1000;
    db.close();
    return { spansPerSecond: rows.length / seconds, storedSpans: countRows(path, "spans") };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

export function countRows(path: string, table: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
  } finally {
    db.close();
  }
}

function formatThread(use: ThreadTime | undefined): string {
  return use ? `${formatPercent(use.run)} +${formatPercent(use.wait)} waiting` : "-";
}

/** A `/proc/PID/status` field in kB, if readable (Linux). */
function procStatus(pid: number, field: string): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

let clockTicks: number | undefined;

/** User plus system CPU seconds of a process and all its threads, if readable (Linux). */
function cpuSeconds(pid: number): number | undefined {
  try {
    clockTicks ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return undefined;
  }
}

function clientsCpu(clients: ChildProcess[]): number | undefined {
  let total = 0;
  for (const client of clients) {
    const seconds = client.pid === undefined ? undefined : cpuSeconds(client.pid);
    if (seconds === undefined) return undefined;
    total += seconds;
  }
  return total;
}

function parseSettings(text: string): Setting[] {
  return text.split(",").map((part) => {
    const match = /^\s*(\d+)\s*x\s*(\d+)\s*(?::(scout|sdk))?\s*$/.exec(part);
    if (!match || Number(match[1]) < 1 || Number(match[2]) < 1)
      throw new Error(`BENCH_INGEST_SETTINGS: "${part}" is not CLIENTSxWINDOW[:scout|:sdk] (e.g. 2x8, 4x16:sdk)`);
    return { clients: Number(match[1]), window: Number(match[2]), shape: (match[3] ?? "scout") as FrameShape };
  });
}

/** A timeout that does not keep the process alive (`unref`) once nothing else does. */
function sleep(ms: number, unref = false): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (unref) timer.unref();
  });
}
