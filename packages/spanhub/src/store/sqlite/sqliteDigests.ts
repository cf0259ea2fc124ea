import type Database from "better-sqlite3";
import {
  DIGEST_SCHEMA_VERSION,
  type DigestState,
  emptyDigest,
  type Outcome,
  type Sample,
  type SpanState,
} from "../../digest/digest.js";
import { type FoldEntry, foldAll, foldEntry, sealDigest } from "../../digest/fold.js";
import { quantileOf } from "../../digest/histogram.js";
import { MemoryFoldIndex } from "../../digest/memoryIndex.js";
import { isEndStatus } from "../../model/event.js";
import type { Micros } from "../../model/time.js";
import { LogChunks } from "./logChunks.js";

/** How many log entries one fold step reads at a time. */
const CHUNK = 2000;
/**
 * A run sealed with at most this many events keeps no side rows: if an event ever arrives late,
 * its side state is rebuilt from its (small) log. Most runs are requests of a few spans, and
 * this spares each of them a row per span; big runs keep theirs, so they never replay.
 */
const SMALL_RUN_EVENTS = 1000;
/** A run whose fold failed is tried again after this long. */
const FAILED_RUN_RETRY_MS = 60_000;

interface DigestRow {
  schema_version: number;
  watermark_seq: number;
  side_rows: number;
  body: string;
}

/** A fold computed outside the write lock, committed only if nobody folded the run meanwhile. */
export interface PendingFold {
  rid: number;
  /** The watermark and schema it started from: the compare-and-set's expected values. */
  fromWatermark: number;
  fromSchema: number | null;
  digest: DigestState;
  index: SqliteFoldIndex;
  folded: number;
}

/**
 * The fold's side state in side tables, read through on demand and written back on commit.
 * A complete index holds the run's whole side state in memory (a fresh run, or one rebuilt
 * from its log), so it never looks anything up.
 */
export class SqliteFoldIndex extends MemoryFoldIndex {
  private readonly looked = new Set<string>();
  private readonly dirtySpans = new Set<string>();
  private readonly takenParents = new Set<string>();
  private intervalsLoaded: boolean;
  private intervalsDirty = false;

  constructor(
    private readonly tables: DigestStatements,
    private readonly rid: number,
    readonly complete: boolean,
  ) {
    super();
    this.intervalsLoaded = complete;
  }

  override span(id: string): SpanState | undefined {
    const held = this.spans.get(id);
    if (held || this.complete || this.looked.has(id)) return held;
    this.looked.add(id);
    const row = this.tables.spanById.get(this.rid, id) as { first_seq: number; state: string } | undefined;
    if (!row) return undefined;
    const span = { ...JSON.parse(row.state), firstSeq: row.first_seq } as SpanState;
    this.spans.set(id, span);
    return span;
  }

  override saveSpan(id: string, span: SpanState): void {
    this.spans.set(id, span);
    this.dirtySpans.add(id);
  }

  override takeWaits(parentId: string): number {
    let count = super.takeWaits(parentId);
    if (!this.complete && !this.takenParents.has(parentId)) {
      this.takenParents.add(parentId);
      count += this.tables.waitCount.get(this.rid, parentId) as number;
    }
    return count;
  }

  override cover(start: Micros, end: Micros): number {
    if (!this.intervalsLoaded) {
      this.intervals = (this.tables.intervals.all(this.rid) as { start_us: number; end_us: number }[]).map((row) => [
        row.start_us,
        row.end_us,
      ]);
      this.intervalsLoaded = true;
    }
    this.intervalsDirty = true;
    return super.cover(start, end);
  }

  /** From memory when complete; else from the side tables after writing back, so only inside the commit. */
  override openSamples(limit: number): Sample[] {
    if (this.complete) return super.openSamples(limit);
    this.flush();
    return (this.tables.openSpans.all(this.rid, limit) as { span_id: string; first_seq: number }[]).map((row) => ({
      spanId: row.span_id,
      seq: row.first_seq,
    }));
  }

  override waitSamples(limit: number): Sample[] {
    if (this.complete) return super.waitSamples(limit);
    this.flush();
    return (this.tables.waitingSpans.all(this.rid, limit) as { child_id: string; child_seq: number }[]).map((row) => ({
      spanId: row.child_id,
      seq: row.child_seq,
    }));
  }

  /** Writes what changed back to the side tables (inside the commit's transaction). */
  flush(): void {
    const { rid, tables } = this;
    for (const parentId of this.takenParents) tables.deleteWaits.run(rid, parentId);
    this.takenParents.clear();
    for (const [parentId, children] of this.waits)
      for (const [childId, seq] of children) tables.insertWait.run(rid, parentId, childId, seq);
    this.waits.clear();
    for (const id of this.dirtySpans) {
      const { firstSeq, ...state } = this.spans.get(id) as SpanState;
      tables.upsertSpan.run(rid, id, firstSeq, state.end === null ? 1 : 0, JSON.stringify(state));
    }
    this.dirtySpans.clear();
    if (this.intervalsDirty) {
      tables.deleteIntervals.run(rid);
      for (const [start, end] of this.intervals) tables.insertInterval.run(rid, start, end);
      this.intervalsDirty = false;
    }
  }
}

type StatementName =
  | "digestOf"
  | "runState"
  | "spanById"
  | "upsertSpan"
  | "openSpans"
  | "waitCount"
  | "insertWait"
  | "deleteWaits"
  | "waitingSpans"
  | "intervals"
  | "deleteIntervals"
  | "insertInterval"
  | "upsertDigest"
  | "markFolded"
  | "dirtyRuns"
  | "oldDigests"
  | "deleteSideSpans"
  | "deleteSideWaits";
type DigestStatements = Record<StatementName, Database.Statement>;

function prepareStatements(db: Database.Database): Record<StatementName, Database.Statement> {
  return {
    digestOf: db.prepare("SELECT schema_version, watermark_seq, side_rows, body FROM digests WHERE rid = ?"),
    runState: db.prepare("SELECT status, reason, last_seq FROM runs WHERE rid = ?"),
    spanById: db.prepare("SELECT first_seq, state FROM digest_spans WHERE rid = ? AND span_id = ?"),
    upsertSpan: db.prepare(`INSERT INTO digest_spans (rid, span_id, first_seq, open, state) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (rid, span_id) DO UPDATE SET open = excluded.open, state = excluded.state`),
    openSpans: db.prepare(
      "SELECT span_id, first_seq FROM digest_spans WHERE rid = ? AND open = 1 ORDER BY first_seq, span_id LIMIT ?",
    ),
    waitCount: db.prepare("SELECT count(*) FROM digest_waits WHERE rid = ? AND parent_id = ?").pluck(),
    insertWait: db.prepare(
      "INSERT INTO digest_waits (rid, parent_id, child_id, child_seq) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    ),
    deleteWaits: db.prepare("DELETE FROM digest_waits WHERE rid = ? AND parent_id = ?"),
    waitingSpans: db.prepare(
      "SELECT child_id, child_seq FROM digest_waits WHERE rid = ? ORDER BY child_seq, child_id LIMIT ?",
    ),
    intervals: db.prepare("SELECT start_us, end_us FROM digest_intervals WHERE rid = ? ORDER BY start_us"),
    deleteIntervals: db.prepare("DELETE FROM digest_intervals WHERE rid = ?"),
    insertInterval: db.prepare("INSERT INTO digest_intervals (rid, start_us, end_us) VALUES (?, ?, ?)"),
    upsertDigest: db.prepare(`INSERT INTO digests
      (rid, schema_version, watermark_seq, outcome_status, outcome_reason, failed_spans, p95_us, side_rows, body)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (rid) DO UPDATE SET schema_version = excluded.schema_version, watermark_seq = excluded.watermark_seq,
        outcome_status = excluded.outcome_status, outcome_reason = excluded.outcome_reason,
        failed_spans = excluded.failed_spans, p95_us = excluded.p95_us, side_rows = excluded.side_rows,
        body = excluded.body`),
    markFolded: db.prepare("UPDATE runs SET folded_seq = ? WHERE rid = ?"),
    dirtyRuns: db.prepare("SELECT rid FROM runs WHERE folded_seq < last_seq LIMIT ?").pluck(),
    oldDigests: db.prepare("SELECT rid FROM digests WHERE schema_version < ? LIMIT ?").pluck(),
    deleteSideSpans: db.prepare("DELETE FROM digest_spans WHERE rid = ?"),
    deleteSideWaits: db.prepare("DELETE FROM digest_waits WHERE rid = ?"),
  };
}

/**
 * Keeps every run's digest on one SQLite connection: the incremental fold (read outside the
 * write lock, committed with a compare-and-set on the watermark), the seal, and the recompute
 * after a schema change. Only events above the watermark are ever applied.
 */
export class SqliteDigests {
  private readonly tables: DigestStatements;
  private readonly log: LogChunks;

  /** Runs whose fold failed, and when to try them again, so one bad run never holds up the others. */
  private readonly failing = new Map<number, number>();

  constructor(private readonly db: Database.Database) {
    this.tables = prepareStatements(db);
    this.log = new LogChunks(db);
  }

  /**
   * The read phase: folds up to `maxEvents` of the run's unfolded tail in memory. `recent`
   * are entries the caller just appended (used instead of re-reading them when they continue
   * the watermark). Returns undefined when the digest is current.
   */
  prepare(rid: number, maxEvents: number, recent?: FoldEntry[]): PendingFold | undefined {
    const row = this.tables.digestOf.get(rid) as DigestRow | undefined;
    if (row?.side_rows === 0) return this.rebuild(rid, row);
    const digest: DigestState = row ? JSON.parse(row.body) : emptyDigest();
    const fromWatermark = row ? row.watermark_seq : 0;
    const index = new SqliteFoldIndex(this.tables, rid, !row);
    let folded = 0;
    const first = recent?.[0];
    if (recent && first && first.seq <= fromWatermark + 1) {
      for (const entry of recent) {
        if (folded >= maxEvents) break;
        if (entry.seq > digest.watermarkSeq) {
          foldEntry(digest, index, entry);
          folded += 1;
        }
      }
    }
    while (folded < maxEvents) {
      const chunk = this.readLog(rid, digest.watermarkSeq, Math.min(CHUNK, maxEvents - folded));
      for (const entry of chunk) foldEntry(digest, index, entry);
      folded += chunk.length;
      if (chunk.length === 0) break;
    }
    if (folded === 0 && row) return undefined;
    return { rid, fromWatermark, fromSchema: row ? row.schema_version : null, digest, index, folded };
  }

  /**
   * The write phase: in one IMMEDIATE transaction, checks that the stored watermark is still
   * the one the fold started from (else nothing is written and it returns false, so the caller
   * folds again from the new watermark), writes the side state and the digest, and seals when asked.
   */
  commit(pending: PendingFold, sealing = false): boolean {
    return this.db
      .transaction(() => {
        const row = this.tables.digestOf.get(pending.rid) as DigestRow | undefined;
        if ((row?.watermark_seq ?? 0) !== pending.fromWatermark || (row?.schema_version ?? null) !== pending.fromSchema)
          return false;
        if (sealing) this.sealWith(pending);
        const sideRows = !(sealing && pending.index.complete && pending.digest.eventCount <= SMALL_RUN_EVENTS);
        if (sideRows) pending.index.flush();
        this.writeDigest(pending.rid, pending.digest, sideRows);
        return true;
      })
      .immediate();
  }

  /** Folds the run's tail in steps of `maxEvents` until current; returns how many entries it folded. */
  foldRun(rid: number, maxEvents = CHUNK, recent?: FoldEntry[]): number {
    let total = 0;
    for (;;) {
      const pending = this.prepare(rid, maxEvents, recent);
      if (!pending) return total;
      if (!this.commit(pending)) continue;
      total += pending.folded;
      if (pending.folded < maxEvents) return total;
    }
  }

  /**
   * The one seal, for every terminal transition: folds only the unfolded tail, records the
   * ended run's anomalies, and stamps the outcome from the run's final status, after every
   * other effect of the transition. Sealing twice is harmless. Returns entries folded.
   */
  seal(rid: number, recent?: FoldEntry[]): number {
    for (;;) {
      const pending = this.prepare(rid, Number.MAX_SAFE_INTEGER, recent) ?? this.current(rid);
      if (this.commit(pending, true)) return pending.folded;
    }
  }

  /**
   * The seal of a run created and ended in the current write transaction: nobody else can have
   * folded it, so it folds what was just appended in memory and writes one digest row (no
   * compare-and-set, no savepoint: that insert is its only write). Called before the run's row
   * is written, with the run's final state; returns the watermark for the row's `folded_seq`.
   * A run too big to keep without side rows takes the general seal after its row is saved.
   */
  sealNewRun(rid: number, appended: FoldEntry[], run: { status: string; reason: string | null }): number | undefined {
    if (appended.length > SMALL_RUN_EVENTS || !isEndStatus(run.status)) return undefined;
    const digest = emptyDigest();
    const index = new MemoryFoldIndex();
    for (const entry of appended) foldEntry(digest, index, entry);
    sealDigest(digest, index, { status: run.status, reason: run.reason });
    this.insertDigest(rid, digest, false);
    return digest.watermarkSeq;
  }

  /**
   * Folds some of the runs whose digest is behind their log; returns entries folded. An ended
   * run is sealed again (late events, or a seal that failed in its transition), so its
   * anomalies stand as of its latest events.
   */
  foldDirty(maxRuns: number, maxEventsPerRun: number, onError: (error: Error) => void): number {
    let total = 0;
    const now = Date.now();
    for (const rid of this.tables.dirtyRuns.all(maxRuns + this.failing.size) as number[]) {
      if ((this.failing.get(rid) ?? 0) > now) continue;
      try {
        total += this.catchUp(rid, maxEventsPerRun);
        this.failing.delete(rid);
      } catch (error) {
        this.failing.set(rid, now + FAILED_RUN_RETRY_MS);
        onError(error as Error);
      }
    }
    return total;
  }

  /**
   * Brings one run's digest up to its log: an ended run is sealed (its seal may have been left
   * to another process, `--fold off`, or have failed), a running one folded. Returns entries folded.
   */
  catchUp(rid: number, maxEvents = CHUNK): number {
    const run = this.tables.runState.get(rid) as { status: string } | undefined;
    if (!run) return 0;
    // A long tail is folded in bounded commits first, so the seal's own transaction stays short
    // (writers in other processes wait on it).
    const folded = this.foldRun(rid, maxEvents);
    if (isEndStatus(run.status)) return folded + this.seal(rid);
    return folded || this.markCurrent(rid);
  }

  /** Recomputes digests written by an older fold, keeping where they were sealed and their outcome. */
  recomputeOld(maxRuns: number): number {
    const rids = this.tables.oldDigests.all(DIGEST_SCHEMA_VERSION, maxRuns) as number[];
    for (const rid of rids) this.recompute(rid);
    return rids.length;
  }

  /** A full recompute of one run from its log (background only; the read path never does this). */
  recompute(rid: number): void {
    this.db
      .transaction(() => {
        const row = this.tables.digestOf.get(rid) as DigestRow | undefined;
        const old: DigestState | undefined = row ? JSON.parse(row.body) : undefined;
        this.tables.deleteSideSpans.run(rid);
        this.tables.deleteSideWaits.run(rid);
        this.tables.deleteIntervals.run(rid);
        const digest = emptyDigest();
        const index = new SqliteFoldIndex(this.tables, rid, true);
        const seal = old?.outcome && old.sealSeq !== null ? { atSeq: old.sealSeq, outcome: old.outcome } : undefined;
        foldAll(digest, index, this.allEntries(rid), seal);
        index.flush();
        this.writeDigest(rid, digest, true);
      })
      .immediate();
  }

  private *allEntries(rid: number): Generator<FoldEntry> {
    let after = 0;
    for (;;) {
      const chunk = this.readLog(rid, after, CHUNK);
      yield* chunk;
      if (chunk.length < CHUNK) return;
      after = (chunk.at(-1) as FoldEntry).seq;
    }
  }

  /** A digest with nothing to fold, to seal as it stands. */
  private current(rid: number): PendingFold {
    const row = this.tables.digestOf.get(rid) as DigestRow;
    if (row.side_rows === 0) return this.rebuild(rid, row);
    return {
      rid,
      fromWatermark: row.watermark_seq,
      fromSchema: row.schema_version,
      digest: JSON.parse(row.body),
      index: new SqliteFoldIndex(this.tables, rid, false),
      folded: 0,
    };
  }

  /**
   * A small sealed run kept no side rows: fold its whole log again into a complete index,
   * sealed where it was sealed, then whatever came after. Bounded by SMALL_RUN_EVENTS plus the tail.
   */
  private rebuild(rid: number, row: DigestRow): PendingFold {
    const stored: DigestState = JSON.parse(row.body);
    const digest = emptyDigest();
    const index = new SqliteFoldIndex(this.tables, rid, true);
    const seal =
      stored.outcome && stored.sealSeq !== null ? { atSeq: stored.sealSeq, outcome: stored.outcome } : undefined;
    foldAll(digest, index, this.allEntries(rid), seal);
    return {
      rid,
      fromWatermark: row.watermark_seq,
      fromSchema: row.schema_version,
      digest,
      index,
      folded: digest.watermarkSeq - row.watermark_seq,
    };
  }

  private sealWith(pending: PendingFold): void {
    const run = this.tables.runState.get(pending.rid) as { status: string; reason: string | null } | undefined;
    if (!run || !isEndStatus(run.status)) return;
    const outcome: Outcome = { status: run.status, reason: run.reason };
    sealDigest(pending.digest, pending.index, outcome);
  }

  /** A dirty run whose log holds nothing above the watermark (its digest was written by a seal). */
  private markCurrent(rid: number): number {
    const row = this.tables.digestOf.get(rid) as DigestRow | undefined;
    if (row) this.tables.markFolded.run(row.watermark_seq, rid);
    return 0;
  }

  private writeDigest(rid: number, digest: DigestState, sideRows: boolean): void {
    this.insertDigest(rid, digest, sideRows);
    this.tables.markFolded.run(digest.watermarkSeq, rid);
  }

  private insertDigest(rid: number, digest: DigestState, sideRows: boolean): void {
    this.tables.upsertDigest.run(
      rid,
      digest.schemaVersion,
      digest.watermarkSeq,
      digest.outcome?.status ?? null,
      digest.outcome?.reason ?? null,
      digest.failedSpans,
      quantileOf(digest.latency, 0.95),
      sideRows ? 1 : 0,
      JSON.stringify(digest),
    );
  }

  private readLog(rid: number, afterSeq: number, limit: number): FoldEntry[] {
    return this.log.after(rid, afterSeq, limit);
  }
}
