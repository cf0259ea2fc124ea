import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { createStore } from "../src/store/createStore.js";
import { MIGRATIONS, migrate } from "../src/store/sqlite/migrations.js";
import { tempHome } from "./processHelpers.js";

/** Applies migrations up to `version` only, as an older spanhub would have. */
function migrateTo(db: Database.Database, version: number): void {
  for (const migration of MIGRATIONS.filter((candidate) => candidate.version <= version)) db.exec(migration.sql);
  db.pragma(`user_version = ${version}`);
}

function plan(db: Database.Database, sql: string, ...params: unknown[]): string {
  return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[])
    .map((row) => row.detail)
    .join("; ");
}

describe("SQLite migrations", () => {
  it("1: the listing, app filter, child-run and batch-pruning queries use their indexes", () => {
    const home = tempHome();
    try {
      const db = new Database(join(home.root, "one.db"));
      migrateTo(db, 1);
      const insert = db.prepare(
        "INSERT INTO runs (id, app, status, start_us, last_event_us, parent_run_id) VALUES (?, ?, 'ok', ?, ?, ?)",
      );
      for (let index = 0; index < 200; index++)
        insert.run(`run-${index}`, `app-${index % 5}`, index, index, index % 7 ? null : "run-0");
      db.exec("ANALYZE");
      assert.match(
        plan(
          db,
          "SELECT id FROM runs WHERE (start_us, rid) < (?, ?) ORDER BY start_us DESC, rid DESC LIMIT 50",
          100,
          100,
        ),
        /runs_by_start/,
      );
      assert.match(
        plan(db, "SELECT id FROM runs WHERE app = ? ORDER BY start_us DESC, rid DESC LIMIT 50", "app-1"),
        /runs_by_app/,
      );
      assert.match(plan(db, "SELECT id FROM runs WHERE parent_run_id = ?", "run-0"), /runs_by_parent/);
      assert.match(plan(db, "DELETE FROM batches WHERE committed_us < ?", 5), /batches_by_time/);
      db.close();
    } finally {
      home.cleanup();
    }
  });

  it("2: upgrades a version-1 database in place and sweeps idle runs through the partial index", () => {
    const home = tempHome();
    try {
      const db = new Database(join(home.root, "old.db"));
      migrateTo(db, 1);
      const insert = db.prepare("INSERT INTO runs (id, status, start_us, last_event_us) VALUES (?, ?, ?, ?)");
      for (let index = 0; index < 200; index++) insert.run(`run-${index}`, index % 10 ? "ok" : "running", index, index);
      migrate(db);
      assert.equal(db.pragma("user_version", { simple: true }), MIGRATIONS.at(-1)?.version);
      const indexes = (
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'").all() as {
          name: string;
        }[]
      ).map((row) => row.name);
      assert.ok(indexes.includes("runs_running"));
      assert.ok(!indexes.includes("runs_by_status"));
      const sweep = "SELECT id FROM runs WHERE status = 'running' AND last_event_us < ? ORDER BY last_event_us LIMIT ?";
      assert.match(plan(db, sweep, 1000, 10), /USING INDEX runs_running/);
      const idle = db.prepare(sweep).pluck().all(1000, 100) as string[];
      assert.equal(idle.length, 20);
      assert.deepEqual(idle.slice(0, 2), ["run-0", "run-10"]);
      db.close();
    } finally {
      home.cleanup();
    }
  });

  it("4: turns a version-3 log into chunks and span tags into log references, keeping every event and tag", async () => {
    const home = tempHome();
    try {
      const dataDir = join(home.root, "data");
      mkdirSync(dataDir);
      const db = new Database(join(dataDir, "spanhub.db"));
      migrateTo(db, 3);
      db.exec(`
        INSERT INTO runs (rid, id, status, start_us, last_event_us, last_seq) VALUES
          (1, 'trace', 'running', 10, 10, 2), (2, 'req', 'ok', 10, 10, 4);
        INSERT INTO events (rid, seq, ts_us, kind, late, body) VALUES
          (1, 1, 100, 'run_start', 0, '{"time":10,"endOnIdle":true}'),
          (1, 2, 101, 'span', 0, '{"spanId":"a","name":"GET","time":12,"startTime":11,"tags":{"k":"v"}}'),
          (2, 1, 100, 'run_start', 0, '{"time":10}'),
          (2, 2, 100, 'span_start', 0, '{"spanId":"s","time":11,"tags":{"n":1}}'),
          (2, 3, 102, 'run_end', 0, '{"time":13}'),
          (2, 4, 103, 'span_end', 1, '{no');
        INSERT INTO spans (rid, span_id, name, status, start_us, end_us, tags) VALUES
          (1, 'a', 'GET', 'ok', 11, 12, '{"k":"v"}'), (2, 's', NULL, 'running', 11, NULL, '{"n":1}');
      `);
      db.close();
      const store = createStore({ dataDir, fold: "off" });
      try {
        assert.deepEqual(
          (await store.listEvents("req", 0, 10)).map(({ seq, ts, kind, late, body }) => [seq, ts, kind, late, body]),
          [
            [1, 100, "run_start", false, { time: 10 }],
            [2, 100, "span_start", false, { spanId: "s", time: 11, tags: { n: 1 } }],
            [3, 102, "run_end", false, { time: 13 }],
            [4, 103, "unreadable", true, {}],
          ],
        );
        assert.deepEqual((await store.listEvents("trace", 1, 10))[0]?.body.tags, { k: "v" });
        assert.deepEqual((await store.getSpan("trace", "a"))?.tags, { k: "v" });
        assert.deepEqual((await store.getSpan("req", "s"))?.tags, { n: 1 });
        assert.deepEqual(await store.findIdleRunsEndingOnIdle(1_000, 10), ["trace"]);
        await store.append([{ events: [{ kind: "span_tag", runId: "req", spanId: "s", time: 14, tags: { m: 2 } }] }]);
        assert.deepEqual((await store.getSpan("req", "s"))?.tags, { n: 1, m: 2 });
      } finally {
        await store.close();
      }
    } finally {
      home.cleanup();
    }
  });
});
