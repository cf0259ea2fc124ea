import type Database from "better-sqlite3";

/**
 * Schema migrations, in order; versions only increase. Pending ones run in one
 * transaction, and a database written by a newer spanhub is refused.
 */
export const MIGRATIONS: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: "runs, spans, append-only event log, batches, apps",
    sql: `
      CREATE TABLE runs (
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        app TEXT,
        name TEXT,
        name_rank INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        reason TEXT,
        error TEXT,
        start_us INTEGER NOT NULL,
        end_us INTEGER,
        tags TEXT NOT NULL DEFAULT '{}',
        host TEXT,
        pid INTEGER,
        parent_run_id TEXT,
        parent_span_id TEXT,
        span_count INTEGER NOT NULL DEFAULT 0,
        error_count INTEGER NOT NULL DEFAULT 0,
        error_tagged INTEGER NOT NULL DEFAULT 0,
        last_seq INTEGER NOT NULL DEFAULT 0,
        last_event_us INTEGER NOT NULL,
        late_count INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX runs_by_start ON runs (start_us, rid);
      CREATE INDEX runs_by_status ON runs (status, last_event_us);
      CREATE INDEX runs_by_app ON runs (app, start_us);
      CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

      CREATE TABLE events (
        rid INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts_us INTEGER NOT NULL,
        kind TEXT NOT NULL,
        late INTEGER NOT NULL DEFAULT 0,
        body TEXT NOT NULL,
        PRIMARY KEY (rid, seq)
      ) WITHOUT ROWID;

      CREATE TABLE spans (
        rid INTEGER NOT NULL,
        span_id TEXT NOT NULL,
        parent_id TEXT,
        name TEXT,
        kind TEXT,
        status TEXT NOT NULL,
        start_us INTEGER,
        end_us INTEGER,
        tags TEXT NOT NULL,
        logs TEXT,
        error TEXT,
        rpc_service TEXT,
        rpc_method TEXT,
        PRIMARY KEY (rid, span_id)
      ) WITHOUT ROWID;

      CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY,
        committed_us INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX batches_by_time ON batches (committed_us);

      CREATE TABLE apps (
        app TEXT PRIMARY KEY,
        metadata TEXT,
        latest TEXT NOT NULL DEFAULT '{}',
        last_seen_us INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    name: "index only running runs for the abandon sweep",
    // A request that arrives complete never enters this index; the old one held every run.
    sql: `
      DROP INDEX runs_by_status;
      CREATE INDEX runs_running ON runs (last_event_us) WHERE status = 'running';
    `,
  },
  {
    version: 3,
    name: "run digests and the fold's side state",
    // Runs already stored are behind their log (folded_seq 0), so the background folder backfills them.
    sql: `
      CREATE TABLE digests (
        rid INTEGER PRIMARY KEY,
        schema_version INTEGER NOT NULL,
        watermark_seq INTEGER NOT NULL,
        outcome_status TEXT,
        outcome_reason TEXT,
        failed_spans INTEGER NOT NULL,
        p95_us REAL,
        side_rows INTEGER NOT NULL,
        body TEXT NOT NULL
      );
      CREATE INDEX digests_by_schema ON digests (schema_version);

      CREATE TABLE digest_spans (
        rid INTEGER NOT NULL,
        span_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        open INTEGER NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (rid, span_id)
      ) WITHOUT ROWID;
      CREATE INDEX digest_spans_open ON digest_spans (rid, first_seq) WHERE open = 1;

      CREATE TABLE digest_waits (
        rid INTEGER NOT NULL,
        parent_id TEXT NOT NULL,
        child_id TEXT NOT NULL,
        child_seq INTEGER NOT NULL,
        PRIMARY KEY (rid, parent_id, child_id)
      ) WITHOUT ROWID;
      CREATE INDEX digest_waits_by_seq ON digest_waits (rid, child_seq);

      CREATE TABLE digest_intervals (
        rid INTEGER NOT NULL,
        start_us INTEGER NOT NULL,
        end_us INTEGER NOT NULL,
        PRIMARY KEY (rid, start_us)
      ) WITHOUT ROWID;

      ALTER TABLE runs ADD COLUMN folded_seq INTEGER NOT NULL DEFAULT 0;
      CREATE INDEX runs_unfolded ON runs (rid) WHERE folded_seq < last_seq;
    `,
  },
  {
    version: 4,
    name: "the log in chunks of consecutive events; a span's tags kept once, in the log",
    // One row per run and commit instead of one per event, and span rows that point at the event
    // holding their tags instead of a copy: an ingested span costs one row's bytes, not two.
    // A body the old log cannot parse is kept as an unreadable entry (its fold counts it malformed).
    sql: `
      CREATE TABLE log (
        rid INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        ts_us INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (rid, seq)
      );
      INSERT INTO log (rid, seq, last_seq, ts_us, body)
        SELECT rid, seq, seq, ts_us, json_array(CASE
          WHEN NOT json_valid(body) THEN json_object('kind', 'unreadable', 'text', body, 'late', json(iif(late, 'true', 'false')))
          WHEN late THEN json_set(body, '$.kind', kind, '$.late', json('true'))
          ELSE json_set(body, '$.kind', kind) END)
        FROM events;

      ALTER TABLE runs ADD COLUMN end_on_idle INTEGER NOT NULL DEFAULT 0;
      UPDATE runs SET end_on_idle = 1 WHERE rid IN (SELECT rid FROM events
        WHERE kind = 'run_start' AND json_valid(body) AND json_extract(body, '$.endOnIdle') = 1);
      DROP TABLE events;

      CREATE TABLE spans_v4 (
        rid INTEGER NOT NULL,
        span_id TEXT NOT NULL,
        parent_id TEXT,
        name TEXT,
        kind TEXT,
        status TEXT NOT NULL,
        start_us INTEGER,
        end_us INTEGER,
        tags TEXT,
        tags_seq INTEGER,
        logs TEXT,
        error TEXT,
        rpc_service TEXT,
        rpc_method TEXT,
        PRIMARY KEY (rid, span_id),
        CHECK ((tags IS NULL) <> (tags_seq IS NULL))
      ) WITHOUT ROWID;
      INSERT INTO spans_v4 SELECT rid, span_id, parent_id, name, kind, status, start_us, end_us, tags, NULL,
        logs, error, rpc_service, rpc_method FROM spans;
      DROP TABLE spans;
      ALTER TABLE spans_v4 RENAME TO spans;
    `,
  },
];

export function migrate(db: Database.Database): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  const newest = MIGRATIONS.at(-1)?.version ?? 0;
  if (current > newest)
    throw new Error(
      `this database has schema version ${current}, newer than this spanhub knows (${newest}); upgrade spanhub or point --data elsewhere`,
    );
  const pending = MIGRATIONS.filter((migration) => migration.version > current);
  if (pending.length === 0) return;
  db.transaction(() => {
    for (const migration of pending) db.exec(migration.sql);
    db.pragma(`user_version = ${newest}`);
  }).immediate();
}
