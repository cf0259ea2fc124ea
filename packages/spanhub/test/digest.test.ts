import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type DigestState, emptyDigest } from "../src/digest/digest.js";
import { digestView } from "../src/digest/digestView.js";
import { type FoldEntry, foldAll, foldEntry } from "../src/digest/fold.js";
import { BOUNDS_US, bucketOf, OVERFLOW_BUCKET, quantileOf } from "../src/digest/histogram.js";
import { MemoryFoldIndex } from "../src/digest/memoryIndex.js";
import { migrate } from "../src/store/sqlite/migrations.js";
import { openDatabase } from "../src/store/sqlite/openDatabase.js";
import { SqliteDigests } from "../src/store/sqlite/sqliteDigests.js";
import { SqliteStore } from "../src/store/sqlite/sqliteStore.js";
import { SqliteWriter } from "../src/store/sqlite/sqliteWriter.js";
import { toWire } from "../src/store/sqlite/writerWire.js";
import {
  assertSealed,
  makeTempDir,
  readStoredDigest,
  removeDir,
  runEnd,
  runStart,
  span,
  spanEnd,
  spanStart,
  T0,
} from "./helpers.js";
import {
  FrameClient,
  getJson,
  runCli,
  scoutBatch,
  startCli,
  startUp,
  tempHome,
  waitFor,
  writeAndClose,
} from "./processHelpers.js";

const FIXTURES = new URL("../../test/fixtures/digest/", import.meta.url);

function vectorEntries(): FoldEntry[] {
  return readFileSync(new URL("vector.jsonl", FIXTURES), "utf8")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line))
    .map((entry) => ({ ...entry, event: entry.event && { ...entry.event, runId: "vector" } }));
}

describe("digest: the canonical vector", () => {
  it("folds the checked-in events into the checked-in digest", () => {
    const digest = emptyDigest();
    const index = new MemoryFoldIndex();
    foldAll(digest, index, vectorEntries(), { atSeq: 23, outcome: { status: "crashed", reason: "oom" } });
    const expected = JSON.parse(readFileSync(new URL("vector.expected.json", FIXTURES), "utf8"));
    assert.deepEqual(JSON.parse(JSON.stringify(digestView(digest))), expected);
  });

  it("skips entries at or below the watermark, so folding a batch twice changes nothing", () => {
    const once = emptyDigest();
    const twice = emptyDigest();
    const [onceIndex, twiceIndex] = [new MemoryFoldIndex(), new MemoryFoldIndex()];
    for (const entry of vectorEntries()) foldEntry(once, onceIndex, entry);
    for (const entry of [...vectorEntries(), ...vectorEntries()]) foldEntry(twice, twiceIndex, entry);
    assert.deepEqual(twice, once);
  });
});

describe("digest: latency buckets", () => {
  it("spans 10 µs to one hour on a log scale, with an underflow and an overflow bucket", () => {
    assert.equal(BOUNDS_US[0], 10);
    assert.equal(BOUNDS_US.at(-1), 3_600_000_000);
    assert.equal(bucketOf(0), 0);
    assert.equal(bucketOf(9), 0);
    assert.equal(bucketOf(10), 1);
    assert.equal(bucketOf(3_600_000_000), OVERFLOW_BUCKET);
    for (const [index, bound] of BOUNDS_US.entries()) {
      assert.equal(bucketOf(bound), index + 1, `a duration equal to bound ${bound} opens the next bucket`);
      assert.equal(bucketOf(bound - 0.5), index, `just under bound ${bound}`);
    }
  });

  it("reads quantiles inside the right bucket", () => {
    const counts: Record<string, number> = {};
    for (let ms = 1; ms <= 100; ms++) {
      const bucket = bucketOf(ms * 1000);
      counts[bucket] = (counts[bucket] ?? 0) + 1;
    }
    const p95 = quantileOf(counts, 0.95) as number;
    assert.ok(p95 > 89_000 && p95 < 101_000, `p95 of 1..100 ms near 95 ms, got ${p95}`);
    assert.equal(quantileOf({}, 0.5), null);
  });
});

describe("digest: every terminal path seals", () => {
  const home = tempHome();
  let hub: Awaited<ReturnType<typeof startCli>>;
  // No background folding: whatever is sealed was sealed by the transition itself.
  before(async () => {
    hub = await startUp(home, ["--abandon-after", "400ms", "--fold", "seal-only"]);
  });
  after(async () => {
    await hub.stop();
    home.cleanup();
  });

  it("Scout FinishRequest", async () => {
    const client = await FrameClient.open(home.socket);
    await client.send(scoutBatch("scout-1", 10));
    client.close();
    const digest = assertSealed(home.data, "scout-1", "ok");
    assert.equal(digest.spanCount, 10);
    assert.equal(digest.openSpans, 0);
    const shown = await runCli(["show", "scout-1", "--data", home.data]);
    assert.match(shown.stdout, /^digest {2}outcome ok {2}events \d+ {2}spans 10 \(open 0, failed 0\)/);
    assert.match(shown.stdout, /operations: .*Controller\/users ×1/);
    const { body } = await getJson(`${hub.url}/api/v1/runs/scout-1`);
    assert.deepEqual(body.outcome, { status: "ok", reason: null });
    assert.equal(typeof body.p95Ms, "number");
  });

  it("JSON-lines run_end, with failed and crashed statuses", async () => {
    const lines = [
      { type: "run_start", run_id: "jl-1", name: "job", ts_ms: 1795423645000 },
      { type: "span_start", run_id: "jl-1", span_id: "s1", name: "load", ts_ms: 1795423645001 },
      { type: "span_end", run_id: "jl-1", span_id: "s1", ts_ms: 1795423645009, status: "failed", error: "boom" },
      { type: "run_end", run_id: "jl-1", ts_ms: 1795423645010 },
      { type: "run_start", run_id: "jl-2", ts_ms: 1795423645000 },
      { type: "run_end", run_id: "jl-2", ts_ms: 1795423645010, status: "crashed", reason: "SIGSEGV" },
    ];
    await writeAndClose(home.socket, `${lines.map((line) => JSON.stringify(line)).join("\n")}\n`);
    await waitFor(
      async () => (readStoredDigest(home.data, "jl-2")?.status === "crashed" ? true : undefined),
      "jl-2 ended",
    );
    const failed = assertSealed(home.data, "jl-1", "failed");
    assert.equal(failed.failedSpans, 1);
    assert.deepEqual(Object.keys(failed.errors), ["span_failed:load"]);
    assertSealed(home.data, "jl-2", "crashed", "SIGSEGV");
  });

  for (const status of ["crashed", "failed", "stopped", "cancelled", "timed_out", "ok"]) {
    it(`PATCH status=${status}`, async () => {
      const runId = `patch-${status}`;
      const client = await FrameClient.open(home.socket);
      await client.send({ StartRequest: { request_id: runId } });
      await client.send({ StartSpan: { request_id: runId, span_id: "open", operation: "Job/work" } });
      client.close();
      const response = await getJson(`${hub.url}/api/v1/runs/${runId}`, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ status, reason: "reconciler" }),
      });
      assert.equal(response.status, 200);
      const digest = assertSealed(home.data, runId, status, "reconciler");
      assert.equal(digest.anomalies.unfinished_span?.count, 1, "the open span is recorded at seal");
    });
  }

  it("an abandoned run, and the real end that replaces it", async () => {
    const client = await FrameClient.open(home.socket);
    await client.send({ StartRequest: { request_id: "quiet" } });
    await waitFor(
      async () => (readStoredDigest(home.data, "quiet").status === "crashed" ? true : undefined),
      "abandon",
    );
    assertSealed(home.data, "quiet", "crashed", "abandoned");
    await client.send({ FinishRequest: { request_id: "quiet" } });
    client.close();
    assertSealed(home.data, "quiet", "ok");
  });
});

describe("digest: an ingest-only agent (--fold off) beside a hub", () => {
  it("leaves the seal to the hub's background folder, which seals ended runs without any read", async () => {
    const home = tempHome();
    const agent = await startCli(["agent", "--data", home.data, "--socket", home.socket, "--fold", "off"]);
    const hub = await startCli(["hub", "--data", home.data, "--port", "0"]);
    try {
      const client = await FrameClient.open(home.socket);
      await client.send(scoutBatch("split-1", 6));
      client.close();
      const sealed = await waitFor(async () => {
        const row = readStoredDigest(home.data, "split-1");
        return row.outcome_status ? row : undefined;
      }, "the hub's folder to seal the run");
      assert.equal(sealed.watermark_seq, sealed.last_seq);
      assertSealed(home.data, "split-1", "ok");
    } finally {
      await Promise.all([agent.stop(), hub.stop()]);
      home.cleanup();
    }
  });
});

describe("digest: store reads and refolds", () => {
  let dir: string;
  before(() => {
    dir = makeTempDir();
  });
  after(() => removeDir(dir));

  it("catches a lagging digest up on read and says how much it folded; a sealed crash keeps its outcome on refold", async () => {
    const store = new SqliteStore({ dataDir: dir, fold: "seal-only" });
    try {
      await store.append([
        {
          events: [runStart("long", T0), spanStart("long", "a", null, T0 + 1), span("long", "b", "a", T0 + 2, T0 + 5)],
        },
      ]);
      await store.append([{ events: [spanEnd("long", "a", T0 + 9)] }]);
      const read = await store.getDigest("long");
      assert.equal(read?.caughtUp, 4, "the folder never ran: the read folded the tail");
      assert.equal(read?.digest.spanCount, 2);
      assert.equal((await store.getDigest("long"))?.caughtUp, 0, "a current digest is read as it is");

      await store.append([{ events: [runEnd("long", T0 + 10, { status: "crashed", reason: "oom" })] }]);
      const sealed = (await store.getDigest("long"))?.digest;
      assert.deepEqual(sealed?.outcome, { status: "crashed", reason: "oom" });
      assert.equal(sealed?.watermarkSeq, 5);
    } finally {
      await store.close();
    }
    // An upgrade that changes the fold: old digests are recomputed in the background, outcomes kept.
    const db = openDatabase(join(dir, "spanhub.db"), "normal");
    try {
      db.prepare("UPDATE digests SET schema_version = 0, body = json_set(body, '$.spanCount', 99)").run();
      const digests = new SqliteDigests(db);
      assert.equal(digests.recomputeOld(10), 1);
      const body: DigestState = JSON.parse(db.prepare("SELECT body FROM digests").pluck().get() as string);
      assert.equal(body.spanCount, 2);
      assert.deepEqual(body.outcome, { status: "crashed", reason: "oom" });
      assert.equal(body.sealSeq, 5);
      assert.equal(digests.recomputeOld(10), 0);
    } finally {
      db.close();
    }
  });

  it("keeps folding other runs when one run's fold fails, and leaves the failing one alone for a while", async () => {
    const db = openDatabase(join(dir, "poison.db"), "normal");
    try {
      migrate(db);
      const writer = new SqliteWriter(db, undefined, (error) => {
        throw error;
      });
      writer.append([toWire({ events: [spanStart("bad", "a", null, T0), spanStart("good", "b", null, T0)] })]);
      // A digest row nobody can read: folding "bad" throws.
      db.prepare(
        "INSERT INTO digests (rid, schema_version, watermark_seq, failed_spans, side_rows, body) SELECT rid, 1, 0, 0, 1, '{bad' FROM runs WHERE id = 'bad'",
      ).run();
      const digests = new SqliteDigests(db);
      const errors: Error[] = [];
      assert.equal(
        digests.foldDirty(10, 100, (error) => errors.push(error)),
        1,
        "the good run is folded",
      );
      assert.equal(errors.length, 1);
      const good = db.prepare("SELECT d.watermark_seq FROM digests d JOIN runs r ON r.rid = d.rid WHERE r.id = 'good'");
      assert.equal(good.pluck().get(), 1);
      assert.equal(
        digests.foldDirty(10, 100, (error) => errors.push(error)),
        0,
      );
      assert.equal(errors.length, 1, "the failing run waits before it is tried again");
    } finally {
      db.close();
    }
  });

  it("seals a run too big for the in-memory seal in the commit that creates and ends it", async () => {
    const store = new SqliteStore({ dataDir: join(dir, "big"), fold: "seal-only" });
    try {
      const spans = Array.from({ length: 1500 }, (_, index) =>
        span("big", `s${index}`, index === 0 ? null : "s0", T0 + index, T0 + index + 10, { name: "step" }),
      );
      await store.append([{ events: [runStart("big", T0), ...spans, runEnd("big", T0 + 2000)] }]);
    } finally {
      await store.close();
    }
    const digest = assertSealed(join(dir, "big"), "big", "ok");
    assert.equal(digest.spanCount, 1500);
  });

  it("folds events that arrive after the seal as late events", async () => {
    const store = new SqliteStore({ dataDir: join(dir, "late"), fold: "seal-only" });
    try {
      await store.append([{ events: [runStart("r", T0), spanStart("r", "a", null, T0 + 1), runEnd("r", T0 + 5)] }]);
      await store.append([{ events: [spanEnd("r", "a", T0 + 7)] }]);
      const read = await store.getDigest("r");
      assert.equal(read?.caughtUp, 1);
      assert.equal(read?.digest.anomalies.late_event?.count, 1);
      assert.equal(read?.digest.openSpans, 0);
      // Folding an ended run seals it again: the span its late end closed is no longer unfinished.
      assert.equal(read?.digest.anomalies.unfinished_span, undefined);
      assert.deepEqual(read?.digest.outcome, { status: "ok", reason: null });
    } finally {
      await store.close();
    }
  });
});
