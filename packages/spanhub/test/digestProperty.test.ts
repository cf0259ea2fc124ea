import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type Database from "better-sqlite3";
import fc from "fast-check";
import { type DigestState, emptyDigest } from "../src/digest/digest.js";
import { type FoldEntry, foldAll } from "../src/digest/fold.js";
import { MemoryFoldIndex } from "../src/digest/memoryIndex.js";
import type { RunEvent, Tags } from "../src/model/event.js";
import { migrate } from "../src/store/sqlite/migrations.js";
import { openDatabase } from "../src/store/sqlite/openDatabase.js";
import { type PendingFold, SqliteDigests } from "../src/store/sqlite/sqliteDigests.js";
import { SqliteWriter } from "../src/store/sqlite/sqliteWriter.js";
import { toWire } from "../src/store/sqlite/writerWire.js";
import { makeTempDir, removeDir, T0 } from "./helpers.js";

/**
 * The digest's two paths must agree: whatever the order, batching, duplicates, corrupt log
 * rows and interleaving of folders and seals, the incremental digest (side tables, compare-and-set)
 * equals the full recompute of the same log in memory.
 */

const SPAN_IDS = ["a", "b", "c", "d", "e", "f"];
const NAMES = ["SQL/Query", "HTTP/GET", "llm.call", "step"];
const STATUSES = [undefined, "ok", "failed", "timed_out", "cancelled"] as const;

const timeArb = fc.integer({ min: 0, max: 5_000_000 }).map((offset) => T0 + offset);
const parentArb = fc.constantFrom<string | null | undefined>(undefined, null, "a", "b", "c", "ghost");
const tagsArb: fc.Arbitrary<Tags> = fc.record(
  {
    error: fc.constantFrom(true, false, "boom"),
    "gen_ai.request.model": fc.constantFrom("gpt-x", "claude-y"),
    "gen_ai.response.model": fc.constantFrom("gpt-x-2025", "claude-y-1"),
    "gen_ai.usage.input_tokens": fc.integer({ min: 0, max: 5000 }),
    "gen_ai.usage.output_tokens": fc.integer({ min: 0, max: 5000 }),
    "spanhub.cost_usd": fc.constantFrom(0.001, 0.25, "0.5"),
    rows: fc.integer(),
  },
  { requiredKeys: [] },
);
const errorArb = fc.option(
  fc.record({ type: fc.constantFrom("ValueError", "Timeout"), message: fc.string({ maxLength: 8 }) }),
  { nil: undefined },
);

/** Events of one run, with the kinds and edge cases the fold must handle. */
function eventArb(runId: string): fc.Arbitrary<RunEvent> {
  const spanId = fc.constantFrom(...SPAN_IDS);
  return fc.oneof(
    fc.record({ spanId, parentId: parentArb, time: timeArb, name: fc.constantFrom(...NAMES), tags: tagsArb }).map(
      ({ parentId, ...rest }): RunEvent => ({
        kind: "span_start",
        runId,
        ...rest,
        ...(parentId === undefined ? {} : { parentId }),
      }),
    ),
    fc
      .record({ spanId, time: timeArb, status: fc.constantFrom(...STATUSES), error: errorArb, unknown: fc.boolean() })
      .map(
        ({ status, error, unknown, ...rest }): RunEvent => ({
          kind: "span_end",
          runId,
          ...rest,
          ...(unknown ? { status: "failed", unknownStatus: "weird" } : status ? { status } : {}),
          ...(error ? { error } : {}),
        }),
      ),
    fc
      .record({
        spanId,
        parentId: parentArb,
        startTime: timeArb,
        time: timeArb,
        name: fc.constantFrom(...NAMES),
        tags: tagsArb,
        status: fc.constantFrom(...STATUSES),
      })
      .map(
        ({ parentId, status, ...rest }): RunEvent => ({
          kind: "span",
          runId,
          ...rest,
          ...(parentId === undefined ? {} : { parentId }),
          ...(status ? { status } : {}),
        }),
      ),
    fc.record({ spanId, time: timeArb, tags: tagsArb }).map((rest): RunEvent => ({ kind: "span_tag", runId, ...rest })),
    fc.record({ spanId, time: timeArb }).map((rest): RunEvent => ({ kind: "span_log", runId, ...rest, text: "x" })),
    fc.record({ time: timeArb, tags: tagsArb }).map((rest): RunEvent => ({ kind: "run_tag", runId, ...rest })),
  );
}

type Step =
  | { op: "append"; events: RunEvent[]; duplicate: boolean }
  | { op: "end"; status: "ok" | "crashed" | undefined; reason?: string }
  | { op: "fold"; max: number }
  | { op: "foldDirty" }
  | { op: "corrupt" };

function stepsArb(runId: string): fc.Arbitrary<Step[]> {
  const step: fc.Arbitrary<Step> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        op: fc.constant("append" as const),
        events: fc.array(eventArb(runId), { minLength: 1, maxLength: 8 }),
        duplicate: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant("end" as const),
        status: fc.constantFrom("ok" as const, "crashed" as const, undefined),
        reason: fc.constantFrom("abandoned", "oom"),
      }),
    },
    { weight: 3, arbitrary: fc.record({ op: fc.constant("fold" as const), max: fc.integer({ min: 1, max: 6 }) }) },
    { weight: 1, arbitrary: fc.constant({ op: "foldDirty" as const }) },
    { weight: 1, arbitrary: fc.constant({ op: "corrupt" as const }) },
  );
  return fc.array(step, { minLength: 1, maxLength: 30 });
}

interface Engine {
  db: Database.Database;
  writer: SqliteWriter;
  digests: SqliteDigests;
}

function openEngine(path: string): Engine {
  const db = openDatabase(path, "normal");
  migrate(db);
  const digests = new SqliteDigests(db);
  const writer = new SqliteWriter(db, digests, (error) => {
    throw error;
  });
  return { db, writer, digests };
}

function ridOf(engine: Engine, runId: string): number | undefined {
  return engine.db.prepare("SELECT rid FROM runs WHERE id = ?").pluck().get(runId) as number | undefined;
}

function applyStep(engine: Engine, runId: string, step: Step): void {
  const rid = ridOf(engine, runId);
  switch (step.op) {
    case "append":
      engine.writer.append([toWire({ events: step.events })]);
      // A resend without a batch id lands twice: the fold must still count each span once.
      if (step.duplicate) engine.writer.append([toWire({ events: step.events })]);
      return;
    case "end":
      engine.writer.append([
        toWire({
          events: [
            {
              kind: "run_end",
              runId,
              time: T0 + 6_000_000,
              ...(step.status ? { status: step.status, reason: step.reason } : {}),
            },
          ],
        }),
      ]);
      return;
    case "fold":
      if (rid !== undefined) engine.digests.foldRun(rid, step.max);
      return;
    case "foldDirty":
      engine.digests.foldDirty(10, 4, (error) => {
        throw error;
      });
      return;
    case "corrupt":
      // A log chunk whose body cannot be read: its event is counted as malformed, never fatal.
      if (rid !== undefined)
        engine.db.transaction(() => {
          const seq = (engine.db.prepare("SELECT last_seq FROM runs WHERE rid = ?").pluck().get(rid) as number) + 1;
          engine.db
            .prepare("INSERT INTO log (rid, seq, last_seq, ts_us, body) VALUES (?, ?, ?, 0, '[{no')")
            .run(rid, seq, seq);
          engine.db.prepare("UPDATE runs SET last_seq = ? WHERE rid = ?").run(seq, rid);
        })();
      return;
  }
}

function storedDigest(engine: Engine, rid: number): DigestState {
  return JSON.parse(engine.db.prepare("SELECT body FROM digests WHERE rid = ?").pluck().get(rid) as string);
}

/** The full recompute, in memory, from the log as stored. */
function recompute(engine: Engine, rid: number, sealedAs: DigestState): DigestState {
  const chunks = engine.db.prepare("SELECT seq, last_seq, body FROM log WHERE rid = ? ORDER BY seq").all(rid) as {
    seq: number;
    last_seq: number;
    body: string;
  }[];
  const entries: FoldEntry[] = chunks.flatMap((chunk) => {
    let stored: { late?: boolean; runId?: string }[] | undefined;
    try {
      stored = JSON.parse(chunk.body);
    } catch {
      stored = undefined;
    }
    return Array.from({ length: chunk.last_seq - chunk.seq + 1 }, (_, index) => {
      const entry = stored?.[index];
      if (!entry) return { seq: chunk.seq + index, late: false, event: null };
      const { late, ...event } = entry;
      return { seq: chunk.seq + index, late: late === true, event: { ...event, runId: "" } as RunEvent };
    });
  });
  const digest = emptyDigest();
  const seal =
    sealedAs.outcome && sealedAs.sealSeq !== null ? { atSeq: sealedAs.sealSeq, outcome: sealedAs.outcome } : undefined;
  foldAll(digest, new MemoryFoldIndex(), entries, seal);
  return digest;
}

function assertAgrees(engine: Engine, runId: string): void {
  const rid = ridOf(engine, runId);
  if (rid === undefined) return;
  engine.digests.foldRun(rid);
  const run = engine.db.prepare("SELECT last_seq, status, reason FROM runs WHERE rid = ?").get(rid) as {
    last_seq: number;
    status: string;
    reason: string | null;
  };
  const lastSeq = run.last_seq;
  const incremental = storedDigest(engine, rid);
  // The seal's own record, checked against the run itself, so a lost seal cannot hide in the recompute.
  if (run.status === "running") assert.equal(incremental.outcome, null);
  else {
    assert.deepEqual(incremental.outcome, { status: run.status, reason: run.reason });
    assert.notEqual(incremental.sealSeq, null);
  }
  assert.equal(incremental.watermarkSeq, lastSeq, "the digest is current");
  assert.equal(incremental.eventCount, lastSeq, "every event counted exactly once");
  assert.deepEqual(incremental, recompute(engine, rid, incremental));
}

describe("digest: incremental fold equals the full recompute", () => {
  let dir: string;
  let engine: Engine;
  let second: Engine;
  let runNumber = 0;
  let lostRaces = 0;
  before(() => {
    dir = makeTempDir();
    engine = openEngine(join(dir, "spanhub.db"));
    second = openEngine(join(dir, "spanhub.db"));
  });
  after(() => {
    engine.db.close();
    second.db.close();
    removeDir(dir);
  });

  it("over random event sequences, batches, duplicates, corrupt rows, folds and seals", () => {
    fc.assert(
      fc.property(
        fc.nat().chain(() => {
          runNumber += 1;
          const runId = `run-${runNumber}`;
          return stepsArb(runId).map((steps) => ({ runId, steps }));
        }),
        ({ runId, steps }) => {
          for (const step of steps) applyStep(engine, runId, step);
          assertAgrees(engine, runId);
        },
      ),
      { numRuns: 1500 },
    );
  });

  it("when two folders and seals on two connections interleave at random, no event is applied twice", () => {
    fc.assert(
      fc.property(
        fc.nat().chain(() => {
          runNumber += 1;
          const runId = `race-${runNumber}`;
          return fc.record({
            runId: fc.constant(runId),
            steps: stepsArb(runId),
            // Where each connection's pending fold is prepared and committed, relative to the steps.
            schedule: fc.array(
              fc.record({ who: fc.constantFrom(0, 1), at: fc.nat(40), max: fc.integer({ min: 1, max: 5 }) }),
              { maxLength: 12 },
            ),
          });
        }),
        ({ runId, steps, schedule }) => {
          const engines = [engine, second];
          const pending: (PendingFold | undefined)[] = [undefined, undefined];
          steps.forEach((step, position) => {
            // Alternate the connection that ingests, so each sees the other's commits.
            applyStep(engines[position % 2] as Engine, runId, step);
            for (const slot of schedule.filter((entry) => entry.at === position)) {
              const mine = engines[slot.who] as Engine;
              const held = pending[slot.who];
              if (held) {
                if (!mine.digests.commit(held)) lostRaces += 1;
                pending[slot.who] = undefined;
              } else {
                const rid = ridOf(mine, runId);
                if (rid !== undefined) pending[slot.who] = mine.digests.prepare(rid, slot.max);
              }
            }
          });
          // A fold prepared before a seal or another fold must lose, whatever the order of commits.
          for (const [who, held] of pending.entries())
            if (held && !(engines[who] as Engine).digests.commit(held)) lostRaces += 1;
          assertAgrees(engine, runId);
        },
      ),
      { numRuns: 1500 },
    );
    assert.ok(lostRaces > 100, `the schedules must make folds lose races (lost ${lostRaces})`);
  });
});
