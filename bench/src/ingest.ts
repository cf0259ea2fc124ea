import { type ChildProcess, fork, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { type BenchResult, rate } from "./table.js";

const CLI = fileURLToPath(new URL("../../packages/spanhub/bin/spanhub.js", import.meta.url));
const CLIENT = fileURLToPath(new URL("./ingestClient.js", import.meta.url));
const SPANS_PER_REQUEST = 10;
const WARMUP_SECONDS = 1;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const SETTINGS = [
  { clients: 2, window: 8 },
  { clients: 4, window: 16 },
];

interface ClientReport {
  measured: number;
  acknowledged: number;
  sent: number;
  failures: number;
}

/**
 * End to end: client processes stream Scout BatchCommand frames over the Unix socket
 * into `spanhub up`; only acknowledged (committed) spans count. Baseline, same run:
 * the raw better-sqlite3 insert rate of the same rows in one transaction.
 */
export async function run(): Promise<BenchResult> {
  const rows: (string | number)[][] = [];
  let ceiling = 0;
  let largest = 0;
  const endToEnd: { label: string; spansPerSecond: number; rssMb: number }[] = [];
  for (const setting of SETTINGS) {
    const result = await endToEndRun(setting.clients, setting.window);
    largest = Math.max(largest, result.storedSpans);
    endToEnd.push({
      label: `spanhub up, ${setting.clients} clients x ${setting.window} frames in flight`,
      spansPerSecond: result.spansPerSecond,
      rssMb: result.peakRssMb,
    });
  }
  ceiling = rawInsertRate(largest);
  rows.push(["raw better-sqlite3 insert, one transaction, 2 indexes (ceiling)", ceiling, "1.00", "-"]);
  for (const line of endToEnd)
    rows.push([line.label, line.spansPerSecond, (line.spansPerSecond / ceiling).toFixed(2), line.rssMb.toFixed(0)]);
  return {
    title: `Ingest: Scout BatchCommand frames (10 spans x 5 tags) over the Unix socket, ${SECONDS} s each`,
    columns: ["what", "spans/s", "x ceiling", "agent peak RSS MB"],
    rows,
    notes: [
      "End to end counts only acknowledged spans (committed, synchronous=FULL); after each run the stored span count is checked against them.",
    ],
  };
}

async function endToEndRun(
  clients: number,
  window: number,
): Promise<{ spansPerSecond: number; storedSpans: number; peakRssMb: number }> {
  const root = mkdtempSync(join(tmpdir(), "spanhub-bench-"));
  const socket = join(root, "run", "agent.sock");
  const data = join(root, "data");
  const server = spawn(process.execPath, [CLI, "up", "--data", data, "--socket", socket, "--port", "0"], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, SPANHUB_LOG_LEVEL: "warn" },
  });
  try {
    await waitForOutput(server, "hub:");
    const reports = await Promise.all(Array.from({ length: clients }, (_, index) => runClient(socket, index, window)));
    const measured = reports.reduce((sum, report) => sum + report.measured, 0) * SPANS_PER_REQUEST;
    const acknowledged = reports.reduce((sum, report) => sum + report.acknowledged, 0) * SPANS_PER_REQUEST;
    const failures = reports.reduce((sum, report) => sum + report.failures, 0);
    const peakRssMb = peakRss(server.pid as number);
    await stop(server);
    const stored = countStoredSpans(join(data, "spanhub.db"));
    if (stored < acknowledged || failures > 0)
      throw new Error(`data loss: ${acknowledged} spans acknowledged, ${stored} stored, ${failures} failure replies`);
    return { spansPerSecond: rate(measured, SECONDS), storedSpans: stored, peakRssMb };
  } finally {
    if (server.exitCode === null) server.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  }
}

function runClient(socket: string, index: number, window: number): Promise<ClientReport> {
  return new Promise((resolve, reject) => {
    const child = fork(CLIENT, [socket, String(index), String(window), String(WARMUP_SECONDS), String(SECONDS)]);
    child.once("message", (report) => resolve(report as ClientReport));
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code !== 0) reject(new Error(`bench client ${index} exited with ${code}`));
    });
  });
}

/** The same rows in one transaction into a fresh file: WAL, synchronous=FULL, two secondary indexes. */
function rawInsertRate(count: number): number {
  const root = mkdtempSync(join(tmpdir(), "spanhub-bench-raw-"));
  try {
    const db = new Database(join(root, "raw.db"));
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.exec(`CREATE TABLE spans (run_id TEXT, span_id TEXT, parent_id TEXT, name TEXT, start_us INTEGER,
      end_us INTEGER, status TEXT, tags TEXT);
      CREATE INDEX spans_by_run ON spans (run_id);
      CREATE INDEX spans_by_name ON spans (name, start_us);`);
    const insert = db.prepare("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    const start = Date.now() * 1000;
    const rows = Array.from({ length: count }, (_, index) => {
      const request = Math.floor(index / SPANS_PER_REQUEST);
      const span = index % SPANS_PER_REQUEST;
      const runId = `bench-0-${request}`;
      const tags: Record<string, string> = {};
      for (let tag = 0; tag < 5; tag++) tags[`tag${tag}`] = `value-${tag}-${span}`;
      return [
        runId,
        `${runId}-s${span}`,
        span === 0 ? null : `${runId}-s${(span - 1) >> 1}`,
        span === 0 ? "Controller/bench" : `SQL/Query${span}`,
        start + index,
        start + index + 100,
        "ok",
        JSON.stringify(tags),
      ];
    });
    const began = performance.now();
    db.transaction(() => {
      for (const row of rows) insert.run(...row);
    })();
    const seconds = (performance.now() - began) / 1000;
    db.close();
    return rate(count, seconds);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function countStoredSpans(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare("SELECT count(*) FROM spans").pluck().get() as number;
  } finally {
    db.close();
  }
}

function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kilobytes = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kilobytes / 1024;
}

function waitForOutput(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = "";
    child.stdout?.on("data", (chunk) => {
      seen += chunk;
      if (seen.includes(text)) resolve();
    });
    child.once("exit", (code) => reject(new Error(`spanhub up exited with ${code} before it was ready`)));
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}
