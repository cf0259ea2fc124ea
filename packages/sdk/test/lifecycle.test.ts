import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  agentInfoPid,
  agentPids,
  captureOutput,
  type Home,
  readStore,
  SPANHUB_BIN,
  sleep,
  tempHome,
  waitFor,
} from "./helpers.js";

const APP = fileURLToPath(new URL("./apps/app.js", import.meta.url));

interface App {
  child: ChildProcess;
  send: (line: string) => void;
  result: Promise<{ ids: string[]; byWorker: string[][] }>;
}

/** Runs test/apps/app.js with no agent configured but the socket and data dir of `home`. */
function runApp(home: Home, mode: string, env: Record<string, string>): App {
  const child = spawn(process.execPath, [APP], {
    env: {
      ...process.env,
      SPANHUB_SDK_TEST_APP: mode,
      SPANHUB_SOCKET: home.socket,
      SPANHUB_DATA: home.data,
      SPANHUB_AGENT_BIN: SPANHUB_BIN,
      SPANHUB_LOG_LEVEL: "warn",
      ...env,
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const output = captureOutput(child);
  const result = new Promise<{ ids: string[]; byWorker: string[][] }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`app timed out:\n${output.out()}\n${output.err()}`));
    }, 40_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      const line = output
        .out()
        .split("\n")
        .find((row) => row.startsWith('{"ids"'));
      if (code !== 0 || !line) reject(new Error(`app exited ${code}:\n${output.out()}\n${output.err()}`));
      else resolve(JSON.parse(line));
    });
  });
  return { child, send: (line) => child.stdin?.write(`${line}\n`), result };
}

/** Every id stored exactly once: present, complete, and no batch applied twice (nothing late). */
function assertStoredOnce(home: Home, ids: string[], spansPerRun = 3): void {
  const { runs } = readStore(home);
  const byId = new Map(runs.map((run) => [run.id, run]));
  assert.equal(new Set(ids).size, ids.length);
  const missing = ids.filter((id) => !byId.has(id));
  assert.deepEqual(missing, [], `${missing.length} of ${ids.length} requests missing`);
  for (const id of ids) {
    const run = byId.get(id) as (typeof runs)[number] & { late_count: number };
    assert.equal(run.status, "ok", id);
    assert.equal(run.span_count, spansPerRun, id);
    assert.equal(run.late_count, 0, `${id} received a batch twice`);
  }
}

test("a process that just returns delivers its tail on beforeExit and is not kept alive", async () => {
  const home = tempHome();
  try {
    const started = Date.now();
    const { ids } = await runApp(home, "natural", { REQUESTS: "5" }).result;
    assert.ok(Date.now() - started < 30_000);
    assertStoredOnce(home, ids);
  } finally {
    await home.cleanup();
  }
});

test("16 workers starting at once with no agent end with exactly one agent; every request stored once", async () => {
  const home = tempHome();
  try {
    const app = runApp(home, "burst", { WORKERS: "16", REQUESTS: "20" });
    const { ids } = await app.result;
    assert.equal(ids.length, 16 * 20);
    const pids = agentPids(home);
    assert.equal(pids.length, 1, `agent processes: ${pids.join(", ")}`);
    assert.equal(agentInfoPid(home), pids[0]);
    assertStoredOnce(home, ids);
  } finally {
    await home.cleanup();
  }
});

test("kill -9 of one worker and shutdown() of another leave the agent serving the rest", async () => {
  const home = tempHome();
  try {
    const app = runApp(home, "steady", { WORKERS: "3" });
    const agentPid = await waitFor(() => agentInfoPid(home), "the launched agent");
    await waitFor(() => (readStore(home).runs.length >= 30 ? true : undefined), "traffic");
    app.send("kill 0");
    app.send("shutdown 1");
    await sleep(300);
    const before = readStore(home).runs.length;
    await waitFor(() => (readStore(home).runs.length >= before + 20 ? true : undefined), "traffic after the exits");
    app.send("stop");
    const { byWorker } = await app.result;
    assert.deepEqual(agentPids(home), [agentPid], "the same agent still runs");
    assertStoredOnce(home, [...(byWorker[1] ?? []), ...(byWorker[2] ?? [])]);
  } finally {
    await home.cleanup();
  }
});

test("kill -9 of the agent during steady traffic: relaunched, every request stored exactly once", async () => {
  const home = tempHome();
  try {
    const app = runApp(home, "steady", { WORKERS: "2" });
    const first = await waitFor(() => agentInfoPid(home), "the launched agent");
    await waitFor(() => (readStore(home).runs.length >= 30 ? true : undefined), "traffic");
    process.kill(first, "SIGKILL");
    const second = await waitFor(() => {
      const pid = agentInfoPid(home);
      return pid !== undefined && pid !== first && agentPids(home).includes(pid) ? pid : undefined;
    }, "a relaunched agent");
    const before = readStore(home).runs.length;
    await waitFor(() => (readStore(home).runs.length >= before + 20 ? true : undefined), "traffic after the relaunch");
    app.send("stop");
    const { ids } = await app.result;
    assert.deepEqual(agentPids(home), [second]);
    assertStoredOnce(home, ids);
  } finally {
    await home.cleanup();
  }
});
