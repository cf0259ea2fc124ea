import type Database from "better-sqlite3";
import type { FoldEntry } from "../../digest/fold.js";
import type { AppEvent, RunEvent, SubmitResult, Tags } from "../../model/event.js";
import { type Micros, nowMicros } from "../../model/time.js";
import { applyRunEvent, applySpanEvent, isLate, newRun, newSpan } from "../apply.js";
import type { RunRecord, SpanRecord } from "../records.js";
import { LogChunks } from "./logChunks.js";
import {
  type AppRow,
  appRecord,
  placeholders,
  RUN_COLUMNS,
  type RunRow,
  runRecord,
  SPAN_COLUMNS,
  SPAN_WRITE_COLUMNS,
  type SpanRow,
  spanRecord,
} from "./rows.js";
import type { SqliteDigests } from "./sqliteDigests.js";
import type { WireSubmission } from "./writerWire.js";

/** A run loaded into a write transaction, saved once at its end. */
interface OpenRun {
  rid: number;
  record: RunRecord;
  isNew: boolean;
  /** The spans this transaction touched, saved once at its end (a run created here has no others). */
  spans: Map<string, OpenSpan>;
  /** What this transaction appended to its log: written as chunks at its end, and folded by a seal without reading it back. */
  appended: FoldEntry[];
  /** The JSON of `appended` as it arrived, one text per submission; undefined once an entry is late (its log entry says so). */
  texts: string[] | undefined;
  /** A run end took effect: the digest is sealed in this transaction. */
  ended: boolean;
  /** Set when the digest of a run created here was sealed before its row was written. */
  foldedSeq?: number | undefined;
}

interface OpenSpan {
  record: SpanRecord;
  /** Its row exists (an UPDATE saves it, else an INSERT). */
  stored: boolean;
  /** The logged event whose tags the span's are, while they are that very object: the row then keeps no copy. */
  tagsOf?: { tags: Tags; seq: number };
}

/**
 * The SQLite write path: applies submissions to the log and the read models in one
 * IMMEDIATE transaction. It runs in the writer thread, on that thread's connection.
 */
export class SqliteWriter {
  private readonly statements;
  private readonly log: LogChunks;
  private readonly appendTransaction: Database.Transaction<(submissions: WireSubmission[]) => SubmitResult[]>;

  constructor(
    db: Database.Database,
    /** Absent: this process keeps no digests (`fold: off`). */
    private readonly digests: SqliteDigests | undefined,
    private readonly onFoldError: (error: Error) => void,
  ) {
    this.statements = {
      runById: db.prepare(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = ?`),
      maxRid: db.prepare("SELECT coalesce(max(rid), 0) AS rid FROM runs").pluck(),
      insertRun: db.prepare(`INSERT INTO runs (${RUN_COLUMNS}, folded_seq) VALUES (${placeholders(23)})`),
      updateRun: db.prepare(`UPDATE runs SET app = ?, name = ?, name_rank = ?, status = ?, reason = ?, error = ?,
        start_us = ?, end_us = ?, tags = ?, host = ?, pid = ?, parent_run_id = ?, parent_span_id = ?,
        span_count = ?, error_count = ?, error_tagged = ?, last_seq = ?, last_event_us = ?, late_count = ?,
        end_on_idle = ? WHERE rid = ?`),
      spanById: db.prepare(`SELECT ${SPAN_COLUMNS} FROM spans WHERE rid = ? AND span_id = ?`),
      insertSpan: db.prepare(`INSERT INTO spans (rid, ${SPAN_WRITE_COLUMNS}) VALUES (${placeholders(14)})`),
      updateSpan: db.prepare(`UPDATE spans SET parent_id = ?, name = ?, kind = ?, status = ?, start_us = ?,
        end_us = ?, tags = ?, tags_seq = ?, logs = ?, error = ?, rpc_service = ?, rpc_method = ?
        WHERE rid = ? AND span_id = ?`),
      insertBatch: db.prepare("INSERT INTO batches (batch_id, committed_us) VALUES (?, ?) ON CONFLICT DO NOTHING"),
      pruneBatches: db.prepare("DELETE FROM batches WHERE committed_us < ?"),
      appByName: db.prepare("SELECT app, metadata, latest, last_seen_us FROM apps WHERE app = ?"),
      upsertApp: db.prepare(`INSERT INTO apps (app, metadata, latest, last_seen_us) VALUES (?, ?, ?, ?)
        ON CONFLICT (app) DO UPDATE SET metadata = excluded.metadata, latest = excluded.latest,
        last_seen_us = excluded.last_seen_us`),
    };
    this.log = new LogChunks(db);
    this.appendTransaction = db.transaction((submissions: WireSubmission[]) => this.applySubmissions(submissions));
  }

  /** IMMEDIATE: takes the write lock first, so writers in other processes queue on busy_timeout. */
  append(submissions: WireSubmission[]): SubmitResult[] {
    return this.appendTransaction.immediate(submissions);
  }

  pruneBatches(before: Micros): number {
    return this.statements.pruneBatches.run(before).changes;
  }

  private applySubmissions(submissions: WireSubmission[]): SubmitResult[] {
    const now = nowMicros();
    const open = new Map<string, OpenRun>();
    let nextRid = 0;
    const results: SubmitResult[] = [];
    for (const submission of submissions) {
      if (submission.batchId !== undefined && this.statements.insertBatch.run(submission.batchId, now).changes === 0) {
        results.push({ duplicate: true, lateEnds: [] });
        continue;
      }
      const lateEnds: string[] = [];
      for (const [runId, text] of submission.runs) {
        const events = JSON.parse(text) as RunEvent[];
        const first = events[0];
        if (!first) continue;
        let run = open.get(runId);
        if (!run) {
          const row = this.statements.runById.get(runId) as RunRow | undefined;
          if (row) run = this.openRun(row.rid, runRecord(row), false);
          else {
            if (nextRid === 0) nextRid = (this.statements.maxRid.get() as number) + 1;
            // A coalesced span's `time` is its end: a run it creates starts when the span started.
            const firstTime = first.kind === "span" ? first.startTime : first.time;
            run = this.openRun(nextRid++, newRun(runId, submission.app, firstTime, now), true);
          }
          open.set(runId, run);
        }
        run.texts?.push(text);
        const record = run.record;
        for (const event of events) {
          // The wire text leaves the run id out, as the log does; the event model has it.
          event.runId = runId;
          const late = isLate(record, event);
          if (late) {
            record.lateCount += 1;
            run.texts = undefined;
          }
          const seq = record.lastSeq + 1;
          record.lastSeq = seq;
          if (event.kind === "run_start" || event.kind === "run_tag" || event.kind === "run_end") {
            if (!applyRunEvent(record, event, late)) lateEnds.push(record.id);
            else if (event.kind === "run_end") run.ended = true;
          } else this.applySpan(run, event, seq);
          run.appended.push({ seq, late, event });
          record.lastEventAt = now;
        }
      }
      for (const appEvent of submission.appEvents ?? []) this.applyAppEvent(appEvent, now);
      results.push({ duplicate: false, lateEnds });
    }
    for (const run of open.values()) {
      this.log.append(run.rid, run.appended, now, run.texts);
      for (const span of run.spans.values()) this.saveSpan(run.rid, span);
    }
    // Every terminal transition seals in the transaction that ends the run, from the run's final state.
    // A failed seal never fails the append: the run stays behind its log and the background folder seals it.
    for (const run of open.values()) {
      if (run.ended && run.isNew)
        run.foldedSeq = this.sealQuietly(() => this.digests?.sealNewRun(run.rid, run.appended, run.record));
      this.saveRun(run);
    }
    // The general seal, after the row is saved: runs that existed before, and new runs too big for the in-memory seal.
    for (const run of open.values())
      if (run.ended && run.foldedSeq === undefined) this.sealQuietly(() => this.digests?.seal(run.rid, run.appended));
    return results;
  }

  private openRun(rid: number, record: RunRecord, isNew: boolean): OpenRun {
    return { rid, record, isNew, spans: new Map(), appended: [], texts: [], ended: false };
  }

  private sealQuietly<T>(seal: () => T): T | undefined {
    try {
      return seal();
    } catch (error) {
      this.onFoldError(error as Error);
      return undefined;
    }
  }

  /** Applies a span event to the span, loading its row the first time this transaction touches it. */
  private applySpan(
    run: OpenRun,
    event: Exclude<RunEvent, { kind: "run_start" | "run_tag" | "run_end" }>,
    seq: number,
  ): void {
    let span = run.spans.get(event.spanId);
    const isNew = span === undefined;
    if (!span) {
      span = run.isNew ? undefined : this.loadSpan(run.rid, event.spanId);
      span ??= { record: newSpan(event.spanId), stored: false };
      run.spans.set(event.spanId, span);
    }
    const tagsBefore = span.record.tags;
    applySpanEvent(run.record, span.record, isNew && !span.stored, event);
    const tags = span.record.tags;
    // A span that took an event's tags as they are keeps them in the log only.
    if (tags !== tagsBefore && "tags" in event && tags === event.tags) span.tagsOf = { tags, seq };
  }

  private loadSpan(rid: number, spanId: string): OpenSpan | undefined {
    const row = this.statements.spanById.get(rid, spanId) as SpanRow | undefined;
    if (!row) return undefined;
    const record = spanRecord(row);
    return row.tags_seq === null
      ? { record, stored: true }
      : { record, stored: true, tagsOf: { tags: record.tags, seq: row.tags_seq } };
  }

  private saveSpan(rid: number, { record: span, stored, tagsOf }: OpenSpan): void {
    const tagsSeq = tagsOf !== undefined && tagsOf.tags === span.tags ? tagsOf.seq : null;
    const values = [
      span.parentId,
      span.name,
      span.kind,
      span.status,
      span.startTime,
      span.endTime,
      tagsSeq === null ? JSON.stringify(span.tags) : null,
      tagsSeq,
      span.logs.length === 0 ? null : JSON.stringify(span.logs),
      span.error ? JSON.stringify(span.error) : null,
      span.rpcService,
      span.rpcMethod,
    ];
    if (stored) this.statements.updateSpan.run(...values, rid, span.id);
    else this.statements.insertSpan.run(rid, span.id, ...values);
  }

  private saveRun({ rid, record: run, isNew, foldedSeq }: OpenRun): void {
    const values = [
      run.app,
      run.name,
      run.nameRank,
      run.status,
      run.reason,
      run.error ? JSON.stringify(run.error) : null,
      run.startTime,
      run.endTime,
      JSON.stringify(run.tags),
      run.host,
      run.pid,
      run.parentRunId,
      run.parentSpanId,
      run.spanCount,
      run.errorCount,
      run.errorTagged ? 1 : 0,
      run.lastSeq,
      run.lastEventAt,
      run.lateCount,
      run.endOnIdle ? 1 : 0,
    ];
    if (isNew) this.statements.insertRun.run(rid, run.id, ...values, foldedSeq ?? 0);
    else this.statements.updateRun.run(...values, rid);
  }

  private applyAppEvent(event: AppEvent, now: Micros): void {
    const row = this.statements.appByName.get(event.app) as AppRow | undefined;
    const app = row ? appRecord(row) : { app: event.app, metadata: null, latest: {}, lastSeen: now };
    if (event.eventType === "scout.metadata") app.metadata = event.value;
    else app.latest[event.eventType] = { value: event.value, time: event.time };
    this.statements.upsertApp.run(
      app.app,
      app.metadata === null ? null : JSON.stringify(app.metadata),
      JSON.stringify(app.latest),
      now,
    );
  }
}
