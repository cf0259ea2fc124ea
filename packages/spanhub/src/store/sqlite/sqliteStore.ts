import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { AppEvent, RunEvent, Submission, SubmitResult } from "../../model/event.js";
import { type Micros, nowMicros } from "../../model/time.js";
import { applyRunEvent, applySpanEvent, isLate, newRun, newSpan } from "../apply.js";
import { decodeCursor, encodeCursor } from "../cursor.js";
import type { AppRecord, RunPage, RunQuery, RunRecord, SpanRecord, StoredEvent } from "../records.js";
import type { Store, StoreConfig } from "../store.js";
import { migrate } from "./migrations.js";

const RUN_COLUMNS = `rid, id, app, name, name_rank, status, reason, error, start_us, end_us, tags, host, pid,
  parent_run_id, parent_span_id, span_count, error_count, error_tagged, last_seq, last_event_us, late_count`;

const SPAN_COLUMNS =
  "span_id, parent_id, name, kind, status, start_us, end_us, tags, logs, error, rpc_service, rpc_method";

interface RunRow {
  rid: number;
  id: string;
  app: string | null;
  name: string | null;
  name_rank: number;
  status: string;
  reason: string | null;
  error: string | null;
  start_us: number;
  end_us: number | null;
  tags: string;
  host: string | null;
  pid: number | null;
  parent_run_id: string | null;
  parent_span_id: string | null;
  span_count: number;
  error_count: number;
  error_tagged: number;
  last_seq: number;
  last_event_us: number;
  late_count: number;
}

interface SpanRow {
  span_id: string;
  parent_id: string | null;
  name: string | null;
  kind: string | null;
  status: string;
  start_us: number | null;
  end_us: number | null;
  tags: string;
  logs: string | null;
  error: string | null;
  rpc_service: string | null;
  rpc_method: string | null;
}

/** A run loaded into a write transaction, saved once at its end. */
interface OpenRun {
  rid: number;
  record: RunRecord;
  isNew: boolean;
  /** For a run created in this transaction: its spans so far (no other can exist, so no lookup is needed). */
  newSpans?: Set<string>;
}

/** The embedded engine: one SQLite file in WAL mode, shared by agent and hub processes. */
export class SqliteStore implements Store {
  readonly engine = "sqlite";
  private readonly db: Database.Database;
  private readonly statements;
  private readonly queryCache = new Map<string, Database.Statement>();
  private localCommits = 0;
  private readonly appendTransaction: Database.Transaction<(submissions: Submission[]) => SubmitResult[]>;

  constructor(config: StoreConfig) {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    this.db = new Database(join(config.dataDir, "spanhub.db"));
    this.db.pragma("journal_mode = WAL");
    this.db.pragma(`synchronous = ${config.durability === "normal" ? "NORMAL" : "FULL"}`);
    this.db.pragma("busy_timeout = 10000");
    this.db.pragma("cache_size = -65536");
    try {
      migrate(this.db);
    } catch (error) {
      this.db.close();
      throw error;
    }
    const db = this.db;
    this.statements = {
      runById: db.prepare(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = ?`),
      maxRid: db.prepare("SELECT coalesce(max(rid), 0) AS rid FROM runs").pluck(),
      insertRun: db.prepare(`INSERT INTO runs (${RUN_COLUMNS}) VALUES (${placeholders(21)})`),
      updateRun: db.prepare(`UPDATE runs SET app = ?, name = ?, name_rank = ?, status = ?, reason = ?, error = ?,
        start_us = ?, end_us = ?, tags = ?, host = ?, pid = ?, parent_run_id = ?, parent_span_id = ?,
        span_count = ?, error_count = ?, error_tagged = ?, last_seq = ?, last_event_us = ?, late_count = ?
        WHERE rid = ?`),
      insertEvent: db.prepare("INSERT INTO events (rid, seq, ts_us, kind, late, body) VALUES (?, ?, ?, ?, ?, ?)"),
      spanById: db.prepare(`SELECT ${SPAN_COLUMNS} FROM spans WHERE rid = ? AND span_id = ?`),
      insertSpan: db.prepare(`INSERT INTO spans (rid, ${SPAN_COLUMNS}) VALUES (${placeholders(13)})`),
      updateSpan: db.prepare(`UPDATE spans SET parent_id = ?, name = ?, kind = ?, status = ?, start_us = ?,
        end_us = ?, tags = ?, logs = ?, error = ?, rpc_service = ?, rpc_method = ? WHERE rid = ? AND span_id = ?`),
      spansOfRun: db.prepare(
        `SELECT ${SPAN_COLUMNS} FROM spans WHERE rid = (SELECT rid FROM runs WHERE id = ?) ORDER BY start_us, span_id`,
      ),
      eventsOfRun: db.prepare(`SELECT seq, ts_us, kind, late, body FROM events
        WHERE rid = (SELECT rid FROM runs WHERE id = ?) AND seq > ? ORDER BY seq LIMIT ?`),
      insertBatch: db.prepare("INSERT INTO batches (batch_id, committed_us) VALUES (?, ?) ON CONFLICT DO NOTHING"),
      pruneBatches: db.prepare("DELETE FROM batches WHERE committed_us < ?"),
      appByName: db.prepare("SELECT app, metadata, latest, last_seen_us FROM apps WHERE app = ?"),
      upsertApp: db.prepare(`INSERT INTO apps (app, metadata, latest, last_seen_us) VALUES (?, ?, ?, ?)
        ON CONFLICT (app) DO UPDATE SET metadata = excluded.metadata, latest = excluded.latest,
        last_seen_us = excluded.last_seen_us`),
      allApps: db.prepare("SELECT app, metadata, latest, last_seen_us FROM apps ORDER BY app"),
      idleRuns: db
        .prepare("SELECT id FROM runs WHERE status = 'running' AND last_event_us < ? ORDER BY last_event_us LIMIT ?")
        .pluck(),
      dataVersion: db.prepare("PRAGMA data_version").pluck(),
    };
    this.appendTransaction = db.transaction((submissions: Submission[]) => this.applySubmissions(submissions));
  }

  async append(submissions: Submission[]): Promise<SubmitResult[]> {
    // IMMEDIATE: take the write lock first, so concurrent writer processes queue on busy_timeout.
    const results = this.appendTransaction.immediate(submissions);
    this.localCommits += 1;
    return results;
  }

  private applySubmissions(submissions: Submission[]): SubmitResult[] {
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
      for (const event of submission.events) {
        let spanTagsJson: TagsJson | undefined;
        let run = open.get(event.runId);
        if (!run) {
          const row = this.statements.runById.get(event.runId) as RunRow | undefined;
          if (row) run = { rid: row.rid, record: runRecord(row), isNew: false };
          else {
            if (nextRid === 0) nextRid = (this.statements.maxRid.get() as number) + 1;
            // A coalesced span's `time` is its end: a run it creates starts when the span started.
            const firstTime = event.kind === "span" ? event.startTime : event.time;
            const record = newRun(event.runId, submission.app, firstTime, now);
            run = { rid: nextRid++, record, isNew: true, newSpans: new Set() };
          }
          open.set(event.runId, run);
        }
        const record = run.record;
        const late = isLate(record, event);
        if (late) record.lateCount += 1;
        if (event.kind === "run_start" || event.kind === "run_tag" || event.kind === "run_end") {
          if (!applyRunEvent(record, event, late)) lateEnds.push(record.id);
        } else spanTagsJson = this.applySpan(run, event);
        record.lastSeq += 1;
        record.lastEventAt = now;
        this.statements.insertEvent.run(
          run.rid,
          record.lastSeq,
          now,
          event.kind,
          late ? 1 : 0,
          eventBody(event, spanTagsJson),
        );
      }
      for (const appEvent of submission.appEvents ?? []) this.applyAppEvent(appEvent, now);
      results.push({ duplicate: false, lateEnds });
    }
    for (const run of open.values()) this.saveRun(run);
    return results;
  }

  /** Applies a span event to its row; returns the row's tags JSON with the tags object it encodes. */
  private applySpan(run: OpenRun, event: Exclude<RunEvent, { kind: "run_start" | "run_tag" | "run_end" }>): TagsJson {
    const known = run.newSpans ? run.newSpans.has(event.spanId) : true;
    const row = known ? (this.statements.spanById.get(run.rid, event.spanId) as SpanRow | undefined) : undefined;
    run.newSpans?.add(event.spanId);
    const span = row ? spanRecord(row) : newSpan(event.spanId);
    applySpanEvent(run.record, span, !row, event);
    const tags = JSON.stringify(span.tags);
    const logs = span.logs.length === 0 ? null : JSON.stringify(span.logs);
    const error = span.error ? JSON.stringify(span.error) : null;
    if (row)
      this.statements.updateSpan.run(
        span.parentId,
        span.name,
        span.kind,
        span.status,
        span.startTime,
        span.endTime,
        tags,
        logs,
        error,
        span.rpcService,
        span.rpcMethod,
        run.rid,
        span.id,
      );
    else
      this.statements.insertSpan.run(
        run.rid,
        span.id,
        span.parentId,
        span.name,
        span.kind,
        span.status,
        span.startTime,
        span.endTime,
        tags,
        logs,
        error,
        span.rpcService,
        span.rpcMethod,
      );
    return { tags: span.tags, json: tags };
  }

  private saveRun({ rid, record: run, isNew }: OpenRun): void {
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
    ];
    if (isNew) this.statements.insertRun.run(rid, run.id, ...values);
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

  async getRun(id: string): Promise<RunRecord | undefined> {
    const row = this.statements.runById.get(id) as RunRow | undefined;
    return row ? runRecord(row) : undefined;
  }

  async listRuns(query: RunQuery): Promise<RunPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.status) where.push("status = ?") && params.push(query.status);
    if (query.app) where.push("app = ?") && params.push(query.app);
    if (query.name) where.push("name LIKE ? ESCAPE '\\'") && params.push(`%${escapeLike(query.name)}%`);
    if (query.since !== undefined) where.push("start_us >= ?") && params.push(query.since);
    if (query.until !== undefined) where.push("start_us < ?") && params.push(query.until);
    if (query.tag) {
      // json_extract gives 1/0 for JSON true/false; compare booleans by their JSON text, as other engines do.
      where.push(
        "(CASE json_type(tags, ?) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(json_extract(tags, ?) AS TEXT) END) = ?",
      );
      const path = `$."${query.tag.key.replaceAll('"', '\\"')}"`;
      params.push(path, path, query.tag.value);
    }
    if (query.cursor) {
      const [startUs, rid] = decodeCursor(query.cursor);
      where.push("(start_us, rid) < (?, ?)");
      params.push(startUs, rid);
    }
    const sql = `SELECT ${RUN_COLUMNS} FROM runs ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY start_us DESC, rid DESC LIMIT ?`;
    const rows = this.cached(sql).all(...params, query.limit + 1) as RunRow[];
    const page = rows.slice(0, query.limit);
    const last = page.at(-1);
    return {
      runs: page.map(runRecord),
      ...(rows.length > query.limit && last ? { nextCursor: encodeCursor([last.start_us, last.rid]) } : {}),
    };
  }

  async listSpans(runId: string): Promise<SpanRecord[]> {
    return (this.statements.spansOfRun.all(runId) as SpanRow[]).map(spanRecord);
  }

  async listEvents(runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
    const rows = this.statements.eventsOfRun.all(runId, afterSeq, limit) as {
      seq: number;
      ts_us: number;
      kind: string;
      late: number;
      body: string;
    }[];
    return rows.map((row) => ({
      seq: row.seq,
      ts: row.ts_us,
      kind: row.kind,
      late: row.late === 1,
      body: JSON.parse(row.body),
    }));
  }

  async listApps(): Promise<AppRecord[]> {
    return (this.statements.allApps.all() as AppRow[]).map(appRecord);
  }

  async findIdleRuns(before: Micros, limit: number): Promise<string[]> {
    return this.statements.idleRuns.all(before, limit) as string[];
  }

  async pruneBatches(before: Micros): Promise<number> {
    return this.statements.pruneBatches.run(before).changes;
  }

  async changeToken(): Promise<string> {
    return `${this.statements.dataVersion.get()}.${this.localCommits}`;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private cached(sql: string): Database.Statement {
    let statement = this.queryCache.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.queryCache.set(sql, statement);
    }
    return statement;
  }
}

interface AppRow {
  app: string;
  metadata: string | null;
  latest: string;
  last_seen_us: number;
}

function placeholders(count: number): string {
  return Array.from({ length: count }, () => "?").join(", ");
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (char) => `\\${char}`);
}

/** Tags already encoded for a span row, so the event body can reuse the text. */
interface TagsJson {
  tags: Record<string, unknown>;
  json: string;
}

/** The stored body: the event without the fields its row already holds. */
function eventBody(event: RunEvent, encoded: TagsJson | undefined): string {
  const { runId: _run, kind: _kind, ...body } = event;
  if (!encoded || !("tags" in body) || body.tags !== encoded.tags) return JSON.stringify(body);
  // Hot path, hand-spliced: the tags of a new span are encoded once, for its row and its event.
  const { tags: _tags, ...rest } = body;
  const head = JSON.stringify(rest);
  return `${head.slice(0, -1)}${head.length > 2 ? "," : ""}"tags":${encoded.json}}`;
}

function runRecord(row: RunRow): RunRecord {
  return {
    id: row.id,
    app: row.app,
    name: row.name,
    status: row.status as RunRecord["status"],
    reason: row.reason,
    error: row.error === null ? null : JSON.parse(row.error),
    startTime: row.start_us,
    endTime: row.end_us,
    tags: JSON.parse(row.tags),
    host: row.host,
    pid: row.pid,
    parentRunId: row.parent_run_id,
    parentSpanId: row.parent_span_id,
    spanCount: row.span_count,
    errorCount: row.error_count,
    errorTagged: row.error_tagged === 1,
    lastSeq: row.last_seq,
    lastEventAt: row.last_event_us,
    lateCount: row.late_count,
    nameRank: row.name_rank,
  };
}

function spanRecord(row: SpanRow): SpanRecord {
  return {
    id: row.span_id,
    parentId: row.parent_id,
    name: row.name,
    kind: row.kind,
    status: row.status as SpanRecord["status"],
    startTime: row.start_us,
    endTime: row.end_us,
    tags: JSON.parse(row.tags),
    logs: row.logs === null ? [] : JSON.parse(row.logs),
    error: row.error === null ? null : JSON.parse(row.error),
    rpcService: row.rpc_service,
    rpcMethod: row.rpc_method,
  };
}

function appRecord(row: AppRow): AppRecord {
  return {
    app: row.app,
    metadata: row.metadata === null ? null : JSON.parse(row.metadata),
    latest: JSON.parse(row.latest),
    lastSeen: row.last_seen_us,
  };
}
