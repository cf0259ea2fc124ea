import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deserialize, serialize } from "node:v8";
import type { Submission } from "spanhub/internal/model/event.js";
import { decodeScoutMessage } from "spanhub/internal/protocols/scout.js";
import { migrate } from "spanhub/internal/store/sqlite/migrations.js";
import { openDatabase } from "spanhub/internal/store/sqlite/openDatabase.js";
import { SqliteDigests } from "spanhub/internal/store/sqlite/sqliteDigests.js";
import { SqliteWriter } from "spanhub/internal/store/sqlite/sqliteWriter.js";
import { toWire, type WireSubmission } from "spanhub/internal/store/sqlite/writerWire.js";
import { rawCeiling } from "./ingest.js";
import { positive, progress } from "./progress.js";
import { type FrameShape, ScoutLoad, SPANS_PER_REQUEST } from "./scoutLoad.js";
import { type BenchResult, formatCount, formatPercent } from "./table.js";

/**
 * Writer: the agent's SQLite writer alone, in one process, with no socket, no parse and no
 * other thread: bench/ingest's requests, decoded before timing, committed through
 * `SqliteWriter.append` (log chunks, span and run rows, each run's digest sealed) in commits of
 * a given number of requests, against the raw ceiling of the same rows in the same process
 * (bench/ingest's baseline). It bounds what the agent can ingest whatever happens before the
 * writer, and it is far less noisy than the end-to-end run. Also: what handing a submission to
 * the writer thread costs, as a structured clone (postMessage) and as JSON text.
 *
 * Environment: BENCH_WRITER_REQUESTS (requests per commit size, default 6000),
 * BENCH_WRITER_COMMITS (requests per commit, default "15,150": the agent's usual group commit
 * under bench/ingest's 4x16, and ten times that).
 */

const REQUESTS = positive("BENCH_WRITER_REQUESTS", 6000);
const COMMITS = (process.env.BENCH_WRITER_COMMITS ?? "15,150").split(",").map(Number);
/** Requests decoded, timed and checkpointed at a time, so the WAL stays as short as the agent's checkpoint thread keeps it. */
const ROUND_REQUESTS = 600;

function submissions(load: ScoutLoad, count: number): Submission[] {
  const connection = { app: "bench" };
  return Array.from({ length: count }, () => {
    const message = JSON.parse(load.nextFrame().subarray(4).toString("utf8")) as unknown;
    const submission = decodeScoutMessage(message, connection, Date.now() * 1000).submission;
    if (!submission) throw new Error("a bench frame decoded to no submission");
    return submission;
  });
}

/**
 * µs per span of `SqliteWriter.append` on submissions in the form they reach the writer thread
 * (`toWire`: JSON text per run, made untimed): the best round, since noise only ever adds time.
 */
function writerCost(shape: FrameShape, perCommit: number): number {
  const root = mkdtempSync(join(tmpdir(), "spanhub-bench-writer-"));
  try {
    const db = openDatabase(join(root, "spanhub.db"), "full");
    migrate(db);
    const writer = new SqliteWriter(db, new SqliteDigests(db), (error) => {
      throw error;
    });
    const load = new ScoutLoad(shape);
    let best = Number.POSITIVE_INFINITY;
    for (let done = 0; done < REQUESTS; done += ROUND_REQUESTS) {
      const wire = submissions(load, ROUND_REQUESTS).map(toWire);
      db.pragma("wal_checkpoint(PASSIVE)");
      const started = performance.now();
      for (let index = 0; index < wire.length; index += perCommit) writer.append(wire.slice(index, index + perCommit));
      best = Math.min(best, performance.now() - started);
    }
    const stored = db.prepare("SELECT count(*) FROM spans").pluck().get() as number;
    db.close();
    const spans = Math.ceil(REQUESTS / ROUND_REQUESTS) * ROUND_REQUESTS * SPANS_PER_REQUEST;
    if (stored !== spans) throw new Error(`stored ${stored} spans of ${spans}`);
    return (best * 1000) / (ROUND_REQUESTS * SPANS_PER_REQUEST);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * Best of 5 rounds, µs per span, of both ends of a hand-off to the writer thread, up to the events'
 * objects there: a structured clone of the submission, or its wire form (`toWire`, cloned, each
 * run's text parsed).
 */
function handOffCost(shape: FrameShape): { clone: number; wire: number } {
  const batch = submissions(new ScoutLoad(shape), 2000);
  const spans = batch.length * SPANS_PER_REQUEST;
  const best = { clone: Number.POSITIVE_INFINITY, wire: Number.POSITIVE_INFINITY };
  for (let round = 0; round < 5; round++) {
    let started = performance.now();
    for (const submission of batch) deserialize(serialize(submission));
    best.clone = Math.min(best.clone, ((performance.now() - started) * 1000) / spans);
    started = performance.now();
    for (const submission of batch) {
      const wire = deserialize(serialize(toWire(submission))) as WireSubmission;
      for (const [, text] of wire.runs) JSON.parse(text);
    }
    best.wire = Math.min(best.wire, ((performance.now() - started) * 1000) / spans);
  }
  return best;
}

export async function run(): Promise<BenchResult> {
  const rows = [];
  const spans = REQUESTS * SPANS_PER_REQUEST;
  for (const shape of ["scout", "sdk"] as const) {
    for (const perCommit of COMMITS) {
      progress(
        `writer: ${formatCount(spans)} ${shape} spans in commits of ${perCommit} requests, then the raw ceiling`,
      );
      const micros = writerCost(shape, perCommit);
      const raw = 1e6 / Math.max(...[1, 2, 3].map(() => rawCeiling(spans).spansPerSecond));
      rows.push([
        `SqliteWriter.append, ${shape} frames, commits of ${perCommit} requests`,
        micros.toFixed(2),
        formatCount(1e6 / micros),
        raw.toFixed(2),
        formatPercent(raw / micros),
      ]);
    }
    const handOff = handOffCost(shape);
    rows.push([
      `hand-off to the writer thread, ${shape} submissions: structured clone (baseline) / wire form`,
      `${handOff.clone.toFixed(2)} / ${handOff.wire.toFixed(2)}`,
      "-",
      "-",
      "-",
    ]);
  }
  return {
    title: "writer: the SQLite writer alone, in process, on bench/ingest's requests decoded beforehand",
    columns: ["what", "µs/span", "spans/s", "raw µs/span", "vs raw"],
    rows,
    notes: [
      "raw: bench/ingest's ceiling (the same rows, one transaction, 2 indexes, best of 3), measured right after each writer run.",
      `writer: ${formatCount(REQUESTS)} requests of ${SPANS_PER_REQUEST} spans into a fresh file (WAL, synchronous=FULL) in rounds of ${ROUND_REQUESTS}, in the form they cross to the writer thread (each run's events as JSON text, parsed inside the timing); the WAL is checkpointed untimed between rounds; the best round.`,
      "hand-off: serialize + deserialize (what postMessage does) of each submission, against its wire form (toWire, serialize + deserialize, each run's text parsed), best of 5.",
    ],
  };
}
