import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type Database from "better-sqlite3";
import { DIGEST_SCHEMA_VERSION, type DigestState, emptyDigest } from "../../digest/digest.js";
import type { Submission, SubmitResult } from "../../model/event.js";
import type { Micros } from "../../model/time.js";
import { decodeCursor, encodeCursor } from "../cursor.js";
import type {
  AppRecord,
  DigestRead,
  RunPage,
  RunQuery,
  RunRecord,
  SpanOutline,
  SpanRecord,
  StoredEvent,
} from "../records.js";
import type { Store, StoreConfig } from "../store.js";
import { LogChunks } from "./logChunks.js";
import { migrate } from "./migrations.js";
import { openDatabase } from "./openDatabase.js";
import {
  type AppRow,
  appRecord,
  RUN_VIEW_FROM,
  type RunRow,
  runRecord,
  SPAN_COLUMNS,
  SPAN_ROW_COLUMNS,
  type SpanRow,
  spanRecord,
} from "./rows.js";
import { WriterThread } from "./writerThread.js";
import { toWire } from "./writerWire.js";

interface DigestOfRunRow {
  rid: number;
  last_seq: number;
  schema_version: number | null;
  watermark_seq: number | null;
  body: string | null;
}

/**
 * The embedded engine: one SQLite file in WAL mode, shared by agent and hub processes.
 * Reads run on this thread's connection; writes run on a writer thread with its own
 * connection, so commits overlap with decoding the next input.
 */
export class SqliteStore implements Store {
  readonly engine = "sqlite";
  private readonly db: Database.Database;
  private readonly statements;
  private readonly log: LogChunks;
  private readonly queryCache = new Map<string, Database.Statement>();
  private readonly dbPath: string;
  private writer: WriterThread | undefined;

  constructor(private readonly config: StoreConfig) {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    this.dbPath = join(config.dataDir, "spanhub.db");
    this.db = openDatabase(this.dbPath, config.durability ?? "full");
    try {
      migrate(this.db);
    } catch (error) {
      // A refused (newer) database must not leave its file open.
      this.db.close();
      throw error;
    }
    const db = this.db;
    this.log = new LogChunks(db);
    this.statements = {
      runById: db.prepare(`${RUN_VIEW_FROM} WHERE id = ?`),
      digestOfRun: db.prepare(`SELECT runs.rid, runs.last_seq, d.schema_version, d.watermark_seq, d.body
        FROM runs LEFT JOIN digests d ON d.rid = runs.rid WHERE runs.id = ?`),
      spansOfRun: db.prepare(`SELECT ${SPAN_ROW_COLUMNS} FROM spans WHERE rid = ? ORDER BY start_us, span_id`),
      spanById: db.prepare(
        `SELECT ${SPAN_COLUMNS} FROM spans WHERE rid = (SELECT rid FROM runs WHERE id = ?) AND span_id = ?`,
      ),
      outlinesOfRun: db
        .prepare(`SELECT ${OUTLINE_COLUMNS} FROM spans WHERE rid = (SELECT rid FROM runs WHERE id = ?)
          ORDER BY start_us, span_id`)
        .raw(),
      outlinesOfSpans: db
        .prepare(`SELECT ${OUTLINE_COLUMNS} FROM spans WHERE rid = (SELECT rid FROM runs WHERE id = ?)
          AND span_id IN (SELECT value FROM json_each(?)) ORDER BY start_us, span_id`)
        .raw(),
      ridOf: db.prepare("SELECT rid FROM runs WHERE id = ?").pluck(),
      allApps: db.prepare("SELECT app, metadata, latest, last_seen_us FROM apps ORDER BY app"),
      idleRuns: db
        .prepare("SELECT id FROM runs WHERE status = 'running' AND last_event_us < ? ORDER BY last_event_us LIMIT ?")
        .pluck(),
      // The run_start that asked for it is usually the run's first event, so the EXISTS stops early.
      idleRunsEndingOnIdle: db
        .prepare(`SELECT id FROM runs WHERE status = 'running' AND last_event_us < ? AND end_on_idle = 1
          ORDER BY last_event_us LIMIT ?`)
        .pluck(),
      dataVersion: db.prepare("PRAGMA data_version").pluck(),
    };
  }

  /** The writer thread starts on the first write, so read-only users (the CLI) never start one. */
  private writerThread(): WriterThread {
    if (!this.writer || this.writer.dead)
      this.writer = new WriterThread(
        this.dbPath,
        this.config.durability ?? "full",
        this.config.fold ?? "all",
        this.config.onBackgroundError ??
          ((error) => process.stderr.write(`spanhub: digest fold failed: ${error.message}\n`)),
      );
    return this.writer;
  }

  append(submissions: Submission[]): Promise<SubmitResult[]> {
    return this.writerThread().append(submissions.map(toWire));
  }

  pruneBatches(before: Micros): Promise<number> {
    return this.writerThread().pruneBatches(before);
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
    if (query.tag) where.push(tagEquals(query.tag, params));
    if (query.parentRunId) where.push("parent_run_id = ?") && params.push(query.parentRunId);
    if (query.parentSpanId) where.push("parent_span_id = ?") && params.push(query.parentSpanId);
    if (query.cursor) {
      const [startUs, rid] = decodeCursor(query.cursor);
      where.push("(start_us, runs.rid) < (?, ?)");
      params.push(startUs, rid);
    }
    const sql = `${RUN_VIEW_FROM} ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY start_us DESC, runs.rid DESC LIMIT ?`;
    const rows = this.cached(sql).all(...params, query.limit + 1) as RunRow[];
    const page = rows.slice(0, query.limit);
    const last = page.at(-1);
    return {
      runs: page.map(runRecord),
      ...(rows.length > query.limit && last ? { nextCursor: encodeCursor([last.start_us, last.rid]) } : {}),
    };
  }

  async listSpans(runId: string): Promise<SpanRecord[]> {
    const rid = this.statements.ridOf.get(runId) as number | undefined;
    if (rid === undefined) return [];
    const rows = this.statements.spansOfRun.all(rid) as SpanRow[];
    const inLog = new Set<number>();
    for (const row of rows) if (row.tags_seq !== null) inLog.add(row.tags_seq);
    const logged = this.log.tagsOf(rid, inLog);
    return rows.map((row) => {
      const span = spanRecord(row);
      if (row.tags_seq !== null) span.tags = logged.get(row.tags_seq) ?? {};
      return span;
    });
  }

  async getSpan(runId: string, spanId: string): Promise<SpanRecord | undefined> {
    const row = this.statements.spanById.get(runId, spanId) as SpanRow | undefined;
    return row ? spanRecord(row) : undefined;
  }

  async listSpanOutlines(runId: string, spanIds?: string[]): Promise<SpanOutline[]> {
    const rows = (
      spanIds
        ? this.statements.outlinesOfSpans.all(runId, JSON.stringify(spanIds))
        : this.statements.outlinesOfRun.all(runId)
    ) as OutlineRow[];
    return rows.map(([id, parentId, name, status, startTime, endTime]) => ({
      id,
      parentId,
      name,
      status: status as SpanOutline["status"],
      startTime,
      endTime,
    }));
  }

  async searchSpans(runId: string, text: string, limit: number): Promise<string[]> {
    const rid = this.statements.ridOf.get(runId) as number | undefined;
    if (rid === undefined) return [];
    const like = `%${escapeLike(text)}%`;
    const at = text.indexOf(":");
    const tag = at > 0 ? { key: text.slice(0, at), value: text.slice(at + 1) } : undefined;
    const tagsMatch = (tags: string, params: unknown[]) => {
      params.push(like);
      return `(${tags} LIKE ? ESCAPE '\\'${tag ? ` OR ${tagEquals(tag, params, tags)}` : ""})`;
    };
    // Tags kept in the log are searched in the chunks that mention the text (or the key), each parsed once.
    const chunkParams: unknown[] = [rid, like];
    const chunkMatch = tag ? "(l.body LIKE ? ESCAPE '\\' OR l.body LIKE ? ESCAPE '\\')" : "l.body LIKE ? ESCAPE '\\'";
    if (tag) chunkParams.push(`%${escapeLike(JSON.stringify(tag.key))}%`);
    const ownParams: unknown[] = [rid, like];
    const ownMatch = `s.name LIKE ? ESCAPE '\\' OR (s.tags_seq IS NULL AND ${tagsMatch("s.tags", ownParams)})`;
    const loggedParams: unknown[] = [rid];
    const loggedMatch = tagsMatch("g.tags", loggedParams);
    const sql = `WITH logged AS MATERIALIZED (
        SELECT json_extract(e.value, '$.spanId') AS span_id, l.seq + e.key AS seq, json_extract(e.value, '$.tags') AS tags
        FROM log l, json_each(l.body) e WHERE l.rid = ? AND ${chunkMatch})
      SELECT span_id FROM (
        SELECT s.span_id, s.start_us FROM spans s WHERE s.rid = ? AND (${ownMatch})
        UNION
        SELECT s.span_id, s.start_us FROM logged g CROSS JOIN spans s ON s.rid = ? AND s.span_id = g.span_id AND s.tags_seq = g.seq
        WHERE ${loggedMatch})
      ORDER BY start_us, span_id LIMIT ?`;
    return this.cached(sql)
      .pluck()
      .all(...chunkParams, ...ownParams, ...loggedParams, limit) as string[];
  }

  async listEvents(runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
    const rid = this.statements.ridOf.get(runId) as number | undefined;
    if (rid === undefined) return [];
    return this.log.after(rid, afterSeq, limit).map(({ seq, receivedAt, late, event }) => {
      const { kind, runId: _run, ...body } = event ?? { kind: "unreadable", runId: "" };
      return { seq, ts: receivedAt, kind, late, body };
    });
  }

  async listApps(): Promise<AppRecord[]> {
    return (this.statements.allApps.all() as AppRow[]).map(appRecord);
  }

  async getDigest(runId: string): Promise<DigestRead | undefined> {
    let caughtUp = 0;
    for (;;) {
      const row = this.statements.digestOfRun.get(runId) as DigestOfRunRow | undefined;
      if (!row) return undefined;
      const watermark = row.watermark_seq ?? 0;
      // Behind the log only when a folder fell behind or died: fold the tail (never the whole log), then read.
      if (watermark < row.last_seq && caughtUp === 0) {
        caughtUp = await this.writerThread().catchUp(row.rid);
        if (caughtUp > 0) continue;
      }
      const digest: DigestState = row.body ? JSON.parse(row.body) : emptyDigest();
      return { digest, caughtUp, stale: (row.schema_version ?? DIGEST_SCHEMA_VERSION) < DIGEST_SCHEMA_VERSION };
    }
  }

  async findIdleRuns(before: Micros, limit: number): Promise<string[]> {
    return this.statements.idleRuns.all(before, limit) as string[];
  }

  async findIdleRunsEndingOnIdle(before: Micros, limit: number): Promise<string[]> {
    return this.statements.idleRunsEndingOnIdle.all(before, limit) as string[];
  }

  startBackground(): void {
    if ((this.config.fold ?? "all") === "all") this.writerThread();
  }

  async changeToken(): Promise<string> {
    // data_version moves whenever another connection commits: the writer thread or another process.
    return String(this.statements.dataVersion.get());
  }

  async close(): Promise<void> {
    await this.writer?.close();
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

const OUTLINE_COLUMNS = "span_id, parent_id, name, status, start_us, end_us";
type OutlineRow = [string, string | null, string | null, string, number | null, number | null];

/** A condition that the JSON `tags` column's `key` equals `value` as text; pushes its parameters. */
function tagEquals(tag: { key: string; value: string }, params: unknown[], tags = "tags"): string {
  const path = `$."${tag.key.replaceAll('"', '\\"')}"`;
  params.push(path, path, tag.value);
  // json_extract gives 1/0 for JSON true/false; compare booleans by their JSON text, as other engines do.
  return `(CASE json_type(${tags}, ?) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(json_extract(${tags}, ?) AS TEXT) END) = ?`;
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (char) => `\\${char}`);
}
