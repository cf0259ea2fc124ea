/**
 * An application process for the lifecycle tests (does nothing unless SPANHUB_SDK_TEST_APP is
 * set, since the test runner also loads every file under test/). Modes:
 * - `burst`: node:cluster with WORKERS workers started at once, each sends REQUESTS requests,
 *   flushes, shuts down and exits; the primary prints `{"ids":[...]}` when all have exited.
 * - `steady`: WORKERS workers each send a request every 10 ms until the primary is told `stop` on
 *   stdin; `kill <n>` kills worker n with SIGKILL, `shutdown <n>` makes worker n call shutdown().
 *   Every acknowledged id is reported as `{"id":...,"worker":n}` lines; `{"ids":[...]}` at the end.
 * - `natural`: one process records REQUESTS requests and returns without flush or shutdown.
 * The agent is found through SPANHUB_AGENT_BIN; it inherits SPANHUB_DATA.
 */
import cluster, { type Worker } from "node:cluster";
import { createInterface } from "node:readline";
import { createTracer } from "../../src/index.js";

const mode = process.env.SPANHUB_SDK_TEST_APP;
const workers = Number(process.env.WORKERS ?? 1);
const requests = Number(process.env.REQUESTS ?? 10);

if (mode === "natural") void natural();
else if (mode && cluster.isPrimary) primary();
else if (mode) void worker();

/** Records a few requests and simply returns: the beforeExit flush must deliver them, and the SDK must not keep the process up. */
async function natural(): Promise<void> {
  const tracer = createTracer({ app: "natural", socket: process.env.SPANHUB_SOCKET });
  const ids: string[] = [];
  for (let n = 0; n < requests; n++)
    await tracer.request(`r${n}`, async (root) => {
      ids.push(root.runId);
      await tracer.span("SQL/Query", async () => {});
      tracer.span("Render", () => {});
    });
  process.stdout.write(`${JSON.stringify({ ids, byWorker: [ids] })}\n`);
}

function primary(): void {
  const ids: string[] = [];
  const byWorker: string[][] = [];
  const forked: Worker[] = [];
  for (let index = 0; index < workers; index++) {
    const child = cluster.fork({ WORKER_INDEX: String(index) });
    byWorker[index] = [];
    child.on("message", (message: { ids?: string[] }) => {
      if (!message.ids) return;
      ids.push(...message.ids);
      byWorker[index]?.push(...message.ids);
    });
    forked.push(child);
  }
  let exited = 0;
  cluster.on("exit", () => {
    exited += 1;
    if (exited === workers) {
      process.stdout.write(`${JSON.stringify({ ids, byWorker })}\n`);
      process.exit(0);
    }
  });
  createInterface({ input: process.stdin }).on("line", (line) => {
    const [command, target] = line.trim().split(" ");
    if (command === "stop") for (const child of forked) if (child.isConnected()) child.send("stop");
    const child = forked[Number(target)];
    if (command === "kill" && child) child.process.kill("SIGKILL");
    if (command === "shutdown" && child) child.send("shutdown");
  });
}

async function worker(): Promise<void> {
  const index = Number(process.env.WORKER_INDEX);
  const tracer = createTracer({ app: "lifecycle", socket: process.env.SPANHUB_SOCKET, flushIntervalMs: 100 });
  const ids: string[] = [];
  const one = async (n: number) => {
    await tracer.request(`w${index} r${n}`, async (root) => {
      ids.push(root.runId);
      await tracer.span("SQL/Query", async (span) => {
        span.tag("n", n);
        await new Promise((resolve) => setTimeout(resolve, 1));
      });
      tracer.span("Render", () => {});
    });
  };
  if (mode === "burst") {
    for (let n = 0; n < requests; n++) await one(n);
    await tracer.shutdown();
    process.send?.({ ids });
    process.disconnect?.();
    return;
  }
  let running = true;
  let shutDown = false;
  process.on("message", (message) => {
    if (message === "stop") running = false;
    if (message === "shutdown") {
      shutDown = true;
      void tracer.shutdown();
    }
  });
  // Keep the worker alive on its own (the SDK never does).
  const keepAlive = setInterval(() => {}, 1000);
  let n = 0;
  while (running) {
    if (!shutDown) {
      await one(n++);
      // Report ids as they are sent. A request that overlapped shutdown() may be cut off (work after
      // shutdown is dropped, and the agent later marks such a run abandoned), so it is not reported.
      const finished = ids.splice(0);
      if (!shutDown) process.send?.({ ids: finished });
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await tracer.shutdown();
  clearInterval(keepAlive);
  process.disconnect?.();
}
