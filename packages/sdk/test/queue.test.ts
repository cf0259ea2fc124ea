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

test("finished requests are encoded after the application's turn, in slices, and at once past a backlog of 10,000 spans", async () => {
  const home = tempHome();
  const tracer = createTracer({ app: "slices", socket: home.socket, launch: false, flushIntervalMs: 3_600_000 });
  const request = (name: string, spans: number) =>
    tracer.request(name, () => {
      for (let index = 0; index < spans; index++)
        tracer.span(`s${index}`, (span) => {
          for (let tag = 0; tag < 10; tag++) span.tag(`k${tag}`, `value ${tag}`);
        });
    });
  const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
  try {
    request("one", 1);
    assert.equal(tracer.stats().queuedBatches, 0, "nothing is encoded in the application's turn");
    await waitFor(() => (tracer.stats().queuedBatches === 1 ? true : undefined), "the request encoded");

    // The first slice waits a turn; 2,000 spans cannot be encoded in one 0.05 ms slice, so it
    // takes several more, and all arrive.
    for (let index = 0; index < 200; index++) request(`burst${index}`, 9);
    await nextTurn();
    assert.equal(tracer.stats().queuedBatches, 1, "the turn after the burst belongs to timers and I/O");
    await nextTurn();
    const afterSlice = tracer.stats().queuedBatches - 1;
    assert.ok(afterSlice > 0 && afterSlice < 200, `${afterSlice} of 200 encoded in the first slice`);
    await waitFor(() => (tracer.stats().queuedBatches === 201 ? true : undefined), "the burst encoded");

    // An application that does not yield: the backlog is encoded once it reaches 10,000 spans.
    for (let index = 0; index < 1000; index++) request(`busy${index}`, 9);
    assert.equal(tracer.stats().queuedBatches, 1201, "1,000 requests of 10 spans are encoded without a turn");
    request("tail", 9);
    assert.equal(tracer.stats().queuedBatches, 1201);
    assert.equal(await tracer.flush(), false, "nothing can be acknowledged");
    assert.equal(tracer.stats().queuedBatches, 1202, "a flush encodes what is left first");
  } finally {
    await tracer.shutdown();
    await home.cleanup();
  }
});
