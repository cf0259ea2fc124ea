import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { RunEvent } from "spanhub";
import { migrate } from "spanhub/internal/store/sqlite/migrations.js";
import { openDatabase } from "spanhub/internal/store/sqlite/openDatabase.js";
import { SqliteDigests } from "spanhub/internal/store/sqlite/sqliteDigests.js";
import { SqliteStore } from "spanhub/internal/store/sqlite/sqliteStore.js";
import { SqliteWriter } from "spanhub/internal/store/sqlite/sqliteWriter.js";
import { toWire } from "spanhub/internal/store/sqlite/writerWire.js";
import { killOnExit, removeOnExit } from "./cleanup.js";
import { endToEnd } from "./ingest.js";
import { elapsed, positive, progress } from "./progress.js";
import { type BenchResult, type Cell, formatCount, formatMs, formatPercent, quantile } from "./table.js";

/**
 * Digest: what the fold costs ingest, how fast a sealed digest reads whatever the run's size,
 * and what a seal costs when the digest is current and when it is behind.
 *
 * 1. Ingest with the fold on (`--fold all`, the default) and off (`--fold off`), the same
 *    Scout load as bench/ingest (4 clients x 16 in flight), each on a fresh `spanhub up`.
 * 2. Runs of each size are written into one store in this process (the writer with digests
 *    off, so nothing is folded by accident), then folded as the background folder would.
 *    Seal latency is timed around the seal itself: on a current digest (only the run end is
 *    unfolded), and 10k events behind, on the largest run and on the smallest.
 * 3. A `spanhub hub` on that store answers GET /api/v1/runs/:id/digest for each sealed run
 *    over HTTP; the baseline is GET /api/v1/runs/:id (one run row) in the same run.
 *
 * Environment: BENCH_DIGEST_SIZES (events per run, default "1000,100000,1000000"),
 * BENCH_DIGEST_READS (reads per run, default 400), BENCH_SECONDS (ingest, default 5).
 */

const CLI = fileURLToPath(new URL("./cli/main.js", import.meta.resolve("spanhub")));
const SIZES = (process.env.BENCH_DIGEST_SIZES ?? "1000,100000,1000000").split(",").map(Number);
const READS = positive("BENCH_DIGEST_READS", 400);
const BEHIND = 10_000;
const BATCH = 5000;
const SEAL_REPEATS = 50;
const INGEST_ROUNDS = 3;
/** Reads through the store in this process: the digest read itself, without HTTP. */
const STORE_READS = 2000;
const NAMES = Array.from({ length: 40 }, (_, index) => `op-${index}`);
const T0 = Date.UTC(2026, 10, 23, 8) * 1000;

export async function run(): Promise<BenchResult> {
  const rows: Cell[][] = [];
  const notes: string[] = [];

  progress(`digest: ingest with the fold on and off, alternating, ${INGEST_ROUNDS} rounds each`);
  const setting = { clients: 4, window: 16, shape: "scout" as const };
  const on: number[] = [];
  const off: number[] = [];
  for (let round = 0; round < INGEST_ROUNDS; round++) {
    on.push((await endToEnd(setting, ["--fold", "all"])).spansPerSecond);
    off.push((await endToEnd(setting, ["--fold", "off"])).spansPerSecond);
  }
  const onMedian = median(on);
  const offMedian = median(off);
  rows.push(["ingest, fold on (spans/s, median)", formatCount(onMedian), "-", "-"]);
  rows.push(["ingest, fold off (spans/s, median; baseline)", formatCount(offMedian), "-", "-"]);
  rows.push(["fold cost on ingest", formatPercent(1 - onMedian / offMedian), "-", "<= 10%"]);

  const root = mkdtempSync(join(tmpdir(), "spanhub-bench-digest-"));
  removeOnExit.add(root);
  let hub: ChildProcess | undefined;
  try {
    const data = join(root, "data");
    const seals = buildRuns(data);
    for (const seal of seals) rows.push([seal.label, formatMs(seal.p50), formatMs(seal.p99), seal.goal]);

    progress("digest: reads through the store, then through `spanhub hub`");
    const store = new SqliteStore({ dataDir: data, fold: "off" });
    try {
      for (const size of SIZES) {
        const times: number[] = [];
        for (let read = 0; read < STORE_READS + 100; read++) {
          const start = performance.now();
          const digest = await store.getDigest(`run-${size}`);
          const took = performance.now() - start;
          if (digest?.caughtUp !== 0 || digest.digest.eventCount !== size + 1)
            throw new Error(`run-${size}: not current`);
          if (read >= 100) times.push(took);
        }
        times.sort((a, b) => a - b);
        rows.push([
          `store read, digest of a sealed run of ${formatCount(size)} events`,
          formatMs(quantile(times, 0.5)),
          formatMs(quantile(times, 0.99)),
          size === Math.max(...SIZES) ? "p99 < 2 ms" : "-",
        ]);
      }
    } finally {
      await store.close();
    }
    const started = await startHub(data);
    hub = started.child;
    const p99s = new Map<number, number>();
    for (const size of SIZES) {
      const digest = await timeReads(`${started.url}/api/v1/runs/run-${size}/digest`, size);
      const runRow = await timeReads(`${started.url}/api/v1/runs/run-${size}`, size);
      p99s.set(size, digest.p99);
      rows.push([
        `HTTP GET digest, sealed run of ${formatCount(size)} events`,
        formatMs(digest.p50),
        formatMs(digest.p99),
        "-",
      ]);
      rows.push([
        `HTTP GET run (baseline: one run row), ${formatCount(size)} events`,
        formatMs(runRow.p50),
        formatMs(runRow.p99),
        "-",
      ]);
    }
    const smallest = p99s.get(Math.min(...SIZES));
    const largest = p99s.get(Math.max(...SIZES));
    if (smallest && largest)
      rows.push([
        `HTTP digest read p99 ratio, ${formatCount(Math.max(...SIZES))} / ${formatCount(Math.min(...SIZES))}`,
        (largest / smallest).toFixed(2),
        "-",
        "<= 1.3",
      ]);
  } finally {
    if (hub && hub.exitCode === null) hub.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
    removeOnExit.delete(root);
  }
  notes.push(
    "ingest: bench/ingest's load (Scout BatchCommand, 10 spans x 5 tags per request, every request ends in its frame, so every request is sealed in its own commit), on a fresh `spanhub up` each.",
    `seal: SqliteDigests.seal timed in this process on a store written with durability normal; current = only the run end unfolded, repeated ${SEAL_REPEATS} times (a reseal of a current digest is the same work); ${formatCount(BEHIND)} behind = once.`,
    `store read: SqliteStore.getDigest in this process, ${STORE_READS} reads per run after 100 warm-up reads (the run row, the digest row and its JSON parse).`,
    `HTTP: ${READS} sequential GETs per run over HTTP keep-alive from this process to a separate \`spanhub hub\`; p50 / p99 in the two middle columns.`,
    `ingest: median of ${INGEST_ROUNDS} rounds each, fold on and off alternating (fold on: ${on.map(formatCount).join(", ")}; off: ${off.map(formatCount).join(", ")}).`,
  );
  return {
    title: "digest: fold cost on ingest, seal and read latency by run size",
    columns: ["measure", "value / p50", "p99", "goal"],
    rows,
    notes,
  };
}

interface SealTiming {
  label: string;
  p50: number | undefined;
  p99: number | undefined;
  goal: string;
}

/** Writes one run per size, folds it, and times seals; the runs stay sealed for the read phase. */
function buildRuns(data: string): SealTiming[] {
  mkdirSync(data, { recursive: true, mode: 0o700 });
  const db = openDatabase(join(data, "spanhub.db"), "normal");
  try {
    migrate(db);
    const writer = new SqliteWriter(db, undefined, (error) => {
      throw error;
    });
    const digests = new SqliteDigests(db);
    const ridOf = db.prepare("SELECT rid FROM runs WHERE id = ?").pluck();
    const timings: SealTiming[] = [];
    const largest = Math.max(...SIZES);
    const smallest = Math.min(...SIZES);
    for (const size of SIZES) {
      const phase = performance.now();
      const runId = `run-${size}`;
      writeSpans(writer, runId, 0, size);
      const rid = ridOf.get(runId) as number;
      digests.foldRun(rid);
      progress(`digest: ${formatCount(size)} events written and folded in ${elapsed(phase)}`);
      writer.append([toWire({ events: [{ kind: "run_end", runId, time: T0 + size * 1000 }] })]);
      const times: number[] = [];
      for (let repeat = 0; repeat < SEAL_REPEATS; repeat++) {
        const start = performance.now();
        digests.seal(rid);
        times.push(performance.now() - start);
      }
      times.sort((a, b) => a - b);
      timings.push({
        label: `seal, current digest, ${formatCount(size)} events`,
        p50: quantile(times, 0.5),
        p99: quantile(times, 0.99),
        goal: size === largest ? "< 5 ms" : "-",
      });
      if (size === largest || size === smallest) {
        const behindId = `behind-${size}`;
        writeSpans(writer, behindId, 0, size);
        const behindRid = ridOf.get(behindId) as number;
        digests.foldRun(behindRid);
        writeSpans(writer, behindId, size, BEHIND);
        writer.append([toWire({ events: [{ kind: "run_end", runId: behindId, time: T0 + (size + BEHIND) * 1000 }] })]);
        const start = performance.now();
        const folded = digests.seal(behindRid);
        const took = performance.now() - start;
        if (folded !== BEHIND + 1) throw new Error(`the seal folded ${folded} events, expected ${BEHIND + 1}`);
        timings.push({
          label: `seal, ${formatCount(BEHIND)} events behind, run of ${formatCount(size + BEHIND)}`,
          p50: took,
          p99: undefined,
          goal: size === largest ? "as the small run's" : "-",
        });
      }
    }
    return timings;
  } finally {
    db.close();
  }
}

/** Coalesced spans, 8 children per parent, 40 names, 5 tags each: what a request-heavy run looks like. */
function writeSpans(writer: SqliteWriter, runId: string, from: number, count: number): void {
  for (let offset = from; offset < from + count; offset += BATCH) {
    const events: RunEvent[] = [];
    for (let index = offset; index < Math.min(from + count, offset + BATCH); index++) {
      const start = T0 + index * 1000;
      events.push({
        kind: "span",
        runId,
        spanId: `s${index}`,
        parentId: index === 0 ? null : `s${Math.floor((index - 1) / 8)}`,
        name: NAMES[index % NAMES.length] as string,
        startTime: start,
        time: start + 50 + (index % 997) * 13,
        tags: { "db.rows": index % 100, host: "bench-1", region: "eu", attempt: 1, ok: true },
        ...(index % 50 === 0 ? { status: "failed" as const, error: { type: "Timeout", message: "slow" } } : {}),
      });
    }
    writer.append([toWire({ events })]);
  }
}

async function startHub(data: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, "hub", "--data", data, "--port", "0", "--fold", "off"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  killOnExit(child);
  let output = "";
  child.stdout?.setEncoding("utf8");
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on("data", (text: string) => {
      output += text;
      const match = /hub:\s+(http\S+)/.exec(output);
      if (match?.[1]) resolve(match[1]);
    });
    child.once("exit", (code) => reject(new Error(`spanhub hub exited with code ${code}: ${output}`)));
  });
  return { child, url };
}

async function timeReads(url: string, size: number): Promise<{ p50: number; p99: number }> {
  const times: number[] = [];
  for (let read = 0; read < READS + 20; read++) {
    const start = performance.now();
    const response = await fetch(url);
    const body = (await response.json()) as { digest?: { eventCount: number; sealed: boolean }; caughtUp?: number };
    const took = performance.now() - start;
    if (response.status !== 200) throw new Error(`${url} answered ${response.status}`);
    if (body.digest && (body.digest.eventCount !== size + 1 || !body.digest.sealed || body.caughtUp !== 0))
      throw new Error(`${url}: expected a sealed, current digest of ${size + 1} events`);
    if (read >= 20) times.push(took);
  }
  times.sort((a, b) => a - b);
  return { p50: quantile(times, 0.5) ?? 0, p99: quantile(times, 0.99) ?? 0 };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}
