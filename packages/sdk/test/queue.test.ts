import assert from "node:assert/strict";
import { test } from "node:test";
import { createTracer, type DropReport } from "../src/index.js";
import { readStore, startAgent, tempHome, waitFor } from "./helpers.js";

test("with the agent down the queue stays within maxQueueBytes, drops the oldest once-reported, then resumes", async () => {
  const home = tempHome();
  const warnings: string[] = [];
  const onWarning = (warning: Error) => {
    if (warning.name === "SpanhubWarning") warnings.push(warning.message);
  };
  process.on("warning", onWarning);
  const reports: DropReport[] = [];
  const maxQueueBytes = 8 * 1024;
  const tracer = createTracer({
    app: "queue",
    socket: home.socket,
    launch: false,
    flushIntervalMs: 100,
    maxQueueBytes,
    onDrop: (report) => reports.push(report),
  });
  try {
    const ids: string[] = [];
    const burst = async (count: number) => {
      for (let index = 0; index < count; index++)
        await tracer.request(`r${ids.length}`, async (root) => {
          ids.push(root.runId);
          await tracer.span("work", (span) => span.tag("payload", "x".repeat(200)));
        });
      assert.equal(await tracer.flush(), false, "nothing can be acknowledged");
    };
    await burst(100);
    const first = tracer.stats();
    assert.equal(reports.length, 1);
    assert.equal(reports[0]?.droppedBatches, first.droppedBatches, "the report counts what was dropped");
    await burst(100);
    const stats = tracer.stats();
    assert.ok(stats.queuedBytes <= maxQueueBytes, `${stats.queuedBytes} queued bytes`);
    assert.equal(stats.queuedBatches + stats.droppedBatches, 200);
    assert.ok(stats.droppedBatches > 100, `${stats.droppedBatches} dropped`);
    assert.equal(reports.length, 1, "onDrop is called once per outage");
    // process.emitWarning delivers on the next tick; the bursts above may all run in one microtask drain.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(warnings.filter((text) => text.includes("dropped")).length, 1);

    // The agent comes back: sending resumes by itself, and the newest requests arrive.
    const agent = await startAgent(home);
    const kept = ids.slice(-stats.queuedBatches);
    const runs = await waitFor(() => {
      const stored = readStore(home).runs;
      return stored.length >= kept.length ? stored : undefined;
    }, "the queued requests");
    assert.deepEqual(runs.map((run) => run.id).sort(), [...kept].sort());
    // The store can show a commit before its acknowledgement reaches the SDK.
    await waitFor(() => (tracer.stats().queuedBatches === 0 ? true : undefined), "the acknowledgements");
    agent.child.kill("SIGTERM");
  } finally {
    process.removeListener("warning", onWarning);
    await tracer.shutdown();
    await home.cleanup();
  }
});

test("finished requests are encoded after the application's turn, in slices, and at once past a backlog of 256 spans", async () => {
  const home = tempHome();
  const tracer = createTracer({ app: "slices", socket: home.socket, launch: false, flushIntervalMs: 3_600_000 });
  const request = (name: string) =>
    tracer.request(name, () => {
      for (let index = 0; index < 9; index++)
        tracer.span(`s${index}`, (span) => {
          for (let tag = 0; tag < 10; tag++) span.tag(`k${tag}`, `value ${tag}`);
        });
    });
  const queued = () => tracer.stats().queuedBatches;
  const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
  try {
    request("one");
    assert.equal(queued(), 0, "nothing is encoded in the application's turn");
    await waitFor(() => (queued() === 1 ? true : undefined), "the request encoded");

    // The first slice waits a turn; 200 spans of 10 tags cannot be encoded in one 0.05 ms slice,
    // so it takes several more, and all arrive.
    for (let index = 0; index < 20; index++) request(`burst${index}`);
    await nextTurn();
    assert.equal(queued(), 1, "the turn after the burst belongs to timers and I/O");
    await nextTurn();
    const afterSlice = queued() - 1;
    assert.ok(afterSlice > 0 && afterSlice < 20, `${afterSlice} of 20 encoded in the first slice`);
    await waitFor(() => (queued() === 21 ? true : undefined), "the burst encoded");

    // A turn that does not yield: the backlog is encoded once it reaches 256 spans.
    for (let index = 0; index < 25; index++) request(`busy${index}`);
    assert.equal(queued(), 21, "250 spans wait for the slices");
    request("busy25");
    assert.equal(queued(), 47, "the 256th span's request takes all 26 along at once");
    request("tail");
    assert.equal(queued(), 47);
    assert.equal(await tracer.flush(), false, "nothing can be acknowledged");
    assert.equal(queued(), 48, "a flush encodes what is left first");
  } finally {
    await tracer.shutdown();
    await home.cleanup();
  }
});
