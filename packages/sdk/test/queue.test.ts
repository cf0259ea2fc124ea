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
