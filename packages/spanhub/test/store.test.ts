import assert from "node:assert/strict";
import { existsSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import Database from "better-sqlite3";
import type { RunEvent } from "../src/model/event.js";
import { createStore } from "../src/store/createStore.js";
import { MIGRATIONS } from "../src/store/sqlite/migrations.js";
import type { Store, StoreConfig } from "../src/store/store.js";
import {
  makeTempDir,
  removeDir,
  runEnd,
  runStart,
  runTag,
  span,
  spanEnd,
  spanLog,
  spanStart,
  spanTag,
  T0,
} from "./helpers.js";
import { runStoreConformance } from "./storeConformance.js";

/** How many of this process's file descriptors are open on `file` (Linux); undefined elsewhere. */
function openHandles(file: string): number | undefined {
  if (!existsSync("/proc/self/fd")) return undefined;
  let count = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === file) count += 1;
    } catch {
      // closed while listing
    }
  }
  return count;
}

/** Data directories made by the current test; removed after it (after the suite has closed its store). */
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) removeDir(dir);
});

function newDataDir(): string {
  const dir = makeTempDir("spanhub-store-");
  dirs.push(dir);
  return dir;
}

runStoreConformance("sqlite", async () => createStore({ dataDir: newDataDir() }));

describe("SQLite store", () => {
  /** Opens a store and closes it after `use`, even when `use` fails. */
  async function withStore<T>(config: StoreConfig, use: (store: Store) => Promise<T>): Promise<T> {
    const store = createStore(config);
    try {
      return await use(store);
    } finally {
      await store.close();
    }
  }

  it("creates its database file in the data directory, which it makes when missing", async () => {
    const dataDir = join(newDataDir(), "nested", "data");
    await withStore({ dataDir }, async (store) => {
      assert.equal(store.engine, "sqlite");
    });
    assert.ok(existsSync(join(dataDir, "spanhub.db")));
    const db = new Database(join(dataDir, "spanhub.db"), { readonly: true });
    try {
      assert.equal(db.pragma("user_version", { simple: true }), MIGRATIONS.at(-1)?.version);
    } finally {
      db.close();
    }
  });

  it("keeps everything across close and reopen of the same data directory", async () => {
    const dataDir = newDataDir();
    await withStore({ dataDir }, async (store) => {
      await store.append([
        {
          batchId: "b-durable",
          app: "shop",
          events: [
            runStart("r", T0, { name: "kept", tags: { env: "prod" } }),
            spanStart("r", "s", null, T0 + 1, { name: "Controller/users" }),
            spanLog("r", "s", T0 + 2, "hello"),
            runTag("r", T0 + 3, { user: 7 }),
          ],
          appEvents: [{ app: "shop", eventType: "scout.metadata", value: { framework: "express" }, time: T0 }],
        },
      ]);
    });
    const snapshot = await withStore({ dataDir }, async (store) => ({
      run: await store.getRun("r"),
      spans: await store.listSpans("r"),
      events: await store.listEvents("r", 0, 100),
      apps: await store.listApps(),
    }));
    assert.equal(snapshot.run?.name, "kept");
    assert.equal(snapshot.run?.app, "shop");
    assert.deepEqual(snapshot.run?.tags, { env: "prod", user: 7 });
    assert.equal(snapshot.run?.lastSeq, 4);
    assert.deepEqual(snapshot.spans[0]?.logs, [{ time: T0 + 2, text: "hello" }]);
    assert.deepEqual(
      snapshot.events.map((event) => event.seq),
      [1, 2, 3, 4],
    );
    assert.deepEqual(snapshot.apps[0]?.metadata, { framework: "express" });

    await withStore({ dataDir, durability: "normal" }, async (store) => {
      assert.deepEqual(await store.getRun("r"), snapshot.run, "a reopen reads the same run");
      assert.deepEqual(await store.listSpans("r"), snapshot.spans);
      assert.deepEqual(await store.listEvents("r", 0, 100), snapshot.events);
      assert.deepEqual(
        await store.append([{ batchId: "b-durable", events: [runTag("r", T0, { again: true })] }]),
        [{ duplicate: true, lateEnds: [] }],
        "batch ids survive a reopen",
      );
      await store.append([{ events: [span("r", "t", "s", T0 + 4, T0 + 5), runEnd("r", T0 + 6)] }]);
      assert.deepEqual(
        (await store.listEvents("r", 4, 100)).map((event) => event.seq),
        [5, 6],
        "seq continues where it stopped",
      );
      assert.equal((await store.getRun("r"))?.spanCount, 2);
      assert.equal((await store.getRun("r"))?.status, "ok");
    });
  });

  it("sees what another handle on the same data directory commits (agent and hub processes)", async () => {
    const dataDir = newDataDir();
    await withStore({ dataDir }, async (writer) => {
      await withStore({ dataDir }, async (reader) => {
        const before = await reader.changeToken();
        await writer.append([{ events: [runStart("shared", T0)] }]);
        assert.notEqual(await reader.changeToken(), before);
        assert.equal((await reader.getRun("shared"))?.status, "running");
        const results = await reader.append([{ events: [runEnd("shared", T0 + 1)] }]);
        assert.deepEqual(results, [{ duplicate: false, lateEnds: [] }]);
        assert.equal((await writer.getRun("shared"))?.status, "ok");
      });
    });
  });

  it("refuses, with a clear error, a database written by a newer spanhub, and leaves it as it was", async () => {
    const dataDir = newDataDir();
    await withStore({ dataDir }, async (store) => {
      await store.append([{ events: [runStart("r", T0)] }]);
    });
    const file = join(dataDir, "spanhub.db");
    const newer = (MIGRATIONS.at(-1)?.version ?? 0) + 1;
    const bump = new Database(file);
    bump.pragma(`user_version = ${newer}`);
    bump.close();

    const handlesBefore = openHandles(file);
    assert.throws(
      () => createStore({ dataDir }),
      (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.match(error.message, new RegExp(`schema version ${newer}, newer than this spanhub knows`));
        assert.match(error.message, /upgrade spanhub/);
        return true;
      },
    );
    assert.equal(openHandles(file), handlesBefore, "the refused database is not left open");
    const check = new Database(file);
    try {
      assert.equal(check.pragma("user_version", { simple: true }), newer);
      assert.equal(check.prepare("SELECT count(*) FROM runs").pluck().get(), 1);
    } finally {
      check.close();
    }
  });

  it("writes a span's tags once, in the log, and the log as one row per run and commit of at most 64 events", async () => {
    const dataDir = newDataDir();
    await withStore({ dataDir }, async (store) => {
      const request: RunEvent[] = [runStart("req", T0)];
      for (let index = 0; index < 10; index++)
        request.push(span("req", `s${index}`, null, T0, T0 + 1, { tags: { statement: `SELECT ${index}` } }));
      await store.append([{ events: [...request, runEnd("req", T0 + 2)] }]);
      const long: RunEvent[] = [runStart("long", T0)];
      for (let index = 0; index < 100; index++)
        long.push(spanStart("long", `s${index}`, null, T0, { tags: { index } }));
      await store.append([{ events: long }]);
      await store.append([{ events: [spanTag("long", "s0", T0 + 1, { more: true }), spanEnd("long", "s1", T0 + 1)] }]);
      assert.deepEqual((await store.getSpan("long", "s0"))?.tags, { index: 0, more: true });
    });
    const db = new Database(join(dataDir, "spanhub.db"), { readonly: true });
    try {
      const chunks = (runId: string) =>
        db
          .prepare("SELECT seq, last_seq FROM log WHERE rid = (SELECT rid FROM runs WHERE id = ?) ORDER BY seq")
          .raw()
          .all(runId);
      assert.deepEqual(chunks("req"), [[1, 12]]);
      assert.deepEqual(chunks("long"), [
        [1, 64],
        [65, 101],
        [102, 103],
      ]);
      const copies = db
        .prepare(`SELECT span_id, tags IS NOT NULL FROM spans WHERE rid = (SELECT rid FROM runs WHERE id = ?)
          AND (tags IS NOT NULL OR tags_seq IS NULL) ORDER BY span_id`)
        .raw();
      assert.deepEqual(copies.all("req"), [], "every span of a whole request points at its event");
      assert.deepEqual(copies.all("long"), [["s0", 1]], "only the span tagged later keeps its merged tags");
    } finally {
      db.close();
    }
  });

  it("keeps each chunk's body as the run's events in arrival order without their run id, however submissions mix runs", async () => {
    const dataDir = newDataDir();
    const a1 = runStart("a", T0, { name: "first" });
    const b1 = runStart("b", T0);
    const a2 = span("a", "s1", null, T0, T0 + 1, { tags: { k: "v" } });
    const b2 = runEnd("b", T0 + 2);
    const a3 = spanLog("a", "s1", T0 + 3, "line");
    const bLate = spanTag("b", "s9", T0 + 4, { after: "end" });
    await withStore({ dataDir }, async (store) => {
      // One transaction: two submissions, each interleaving both runs.
      await store.append([{ events: [a1, b1, a2] }, { events: [b2, a3] }]);
      await store.append([{ events: [bLate] }]);
    });
    const stored = ({ runId: _run, ...event }: RunEvent) => event;
    const db = new Database(join(dataDir, "spanhub.db"), { readonly: true });
    try {
      const bodies = (runId: string) =>
        (
          db
            .prepare("SELECT body FROM log WHERE rid = (SELECT rid FROM runs WHERE id = ?) ORDER BY seq")
            .pluck()
            .all(runId) as string[]
        ).map((body) => JSON.parse(body));
      assert.deepEqual(bodies("a"), [[stored(a1), stored(a2), stored(a3)]]);
      assert.deepEqual(bodies("b"), [[stored(b1), stored(b2)], [{ ...stored(bLate), late: true }]]);
    } finally {
      db.close();
    }
  });

  it("names an unknown engine in the error", () => {
    assert.throws(
      () => createStore({ engine: "cassandra", dataDir: newDataDir() }),
      /unknown store engine "cassandra"/,
    );
  });
});
