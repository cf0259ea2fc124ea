import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
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
});
