import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { getPriority } from "node:os";
import { afterEach, describe, it } from "node:test";
import { FrameClient, runCli, scoutBatch, startCli, tempHome } from "./processHelpers.js";

const homes: ReturnType<typeof tempHome>[] = [];
const pids: number[] = [];
function home() {
  const made = tempHome();
  homes.push(made);
  return made;
}
afterEach(() => {
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const made of homes.splice(0)) made.cleanup();
});

/** The niceness of each thread of `pid`, as the kernel reports it (field 19 of /proc/<pid>/task/<tid>/stat). */
function threadNiceness(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((thread) => {
    const stat = readFileSync(`/proc/${pid}/task/${thread}/stat`, "utf8");
    // Fields after the command name (field 2, in parentheses, may hold spaces) start at field 3.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19 - 3]);
  });
}

/** Sends a batch and waits for its acknowledgement, so the store's writer threads are running. */
async function storeOneRun(socket: string): Promise<void> {
  const client = await FrameClient.open(socket);
  await client.send(scoutBatch("nice-1", 2));
  client.close();
}

// The test's own niceness: a process can only be made nicer, never less nice, than it is.
const inherited = getPriority();

describe("agent CPU priority (--nice)", { skip: !existsSync("/proc/self/task") && "needs Linux /proc" }, () => {
  it("runs every thread of `spanhub agent` at niceness 10 by default", async () => {
    const { data, socket } = home();
    const agent = await startCli(["agent", "--data", data, "--socket", socket]);
    await storeOneRun(socket);
    const niceness = threadNiceness(agent.child.pid as number);
    assert.ok(niceness.length > 3, `the agent has worker threads (${niceness.length} threads)`);
    assert.deepEqual(new Set(niceness), new Set([Math.max(inherited, 10)]));
    assert.equal(await agent.stop(), 0);
  });

  it("keeps the inherited priority with --nice 0, and sets `spanhub up` to the niceness given", async () => {
    const { data, socket } = home();
    const agent = await startCli(["agent", "--data", data, "--socket", socket, "--nice", "0"]);
    await storeOneRun(socket);
    assert.deepEqual(new Set(threadNiceness(agent.child.pid as number)), new Set([inherited]));
    assert.equal(await agent.stop(), 0);

    const up = await startCli(["up", "--data", data, "--socket", socket, "--port", "0", "--nice", "15"]);
    await storeOneRun(socket);
    assert.deepEqual(new Set(threadNiceness(up.child.pid as number)), new Set([Math.max(inherited, 15)]));
    assert.equal(await up.stop(), 0);
  });

  it("passes --nice on to a daemonized agent", async () => {
    const { data, socket } = home();
    const started = await runCli(["agent", "--daemonize", "--data", data, "--socket", socket, "--nice", "3"]);
    assert.equal(started.code, 0, started.stderr);
    const pid = Number(/agent (\d+) started/.exec(started.stdout)?.[1]);
    pids.push(pid);
    await storeOneRun(socket);
    assert.deepEqual(new Set(threadNiceness(pid)), new Set([Math.max(inherited, 3)]));
    assert.equal((await runCli(["agent", "stop", "--socket", socket])).code, 0);
  });

  it("refuses a niceness outside 0 to 19 with a clear error", async () => {
    const { data, socket } = home();
    for (const nice of ["20", "-5", "ten"]) {
      const refused = await runCli(["agent", "--data", data, "--socket", socket, `--nice=${nice}`]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /a niceness is 0 \(the inherited priority\) to 19/);
    }
  });
});
