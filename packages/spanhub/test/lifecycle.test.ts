import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { getPriority } from "node:os";
import { afterEach, describe, it } from "node:test";
import { FrameClient, getJson, runCli, scoutBatch, sleep, startCli, tempHome, waitFor } from "./processHelpers.js";

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

describe("agent and hub lifecycle", () => {
  it("keeps every committed run across a restart of spanhub up", async () => {
    const { data, socket } = home();
    const first = await startCli(["up", "--data", data, "--socket", socket, "--port", "0"]);
    const client = await FrameClient.open(socket);
    for (let index = 0; index < 20; index++) await client.send(scoutBatch(`keep-${index}`, 5));
    client.close();
    assert.equal(await first.stop(), 0);
    const second = await startCli(["up", "--data", data, "--socket", socket, "--port", "0"]);
    const { body } = await getJson(`${second.url}/api/v1/runs?limit=100`);
    assert.equal(body.runs.length, 20);
    assert.ok(
      body.runs.every((run: { spanCount: number; status: string }) => run.spanCount === 5 && run.status === "ok"),
    );
    await second.stop();
  });

  it("never acknowledges a batch whose commit did not happen (killed between receive and commit)", async () => {
    const { data, socket } = home();
    // The agent kills itself with SIGKILL right before its 6th group commit.
    const agent = await startCli(["agent", "--data", data, "--socket", socket], {
      SPANHUB_TEST_KILL_BEFORE_COMMIT: "6",
    });
    const client = await FrameClient.open(socket);
    const acknowledged: string[] = [];
    let sent = 0;
    const closed = client.closed.then(() => "closed" as const);
    for (let index = 0; index < 50; index++) {
      const requestId = `ack-${index}`;
      sent += 1;
      const reply = await Promise.race([client.send(scoutBatch(requestId, 3)), closed]);
      if (reply === "closed") break;
      assert.deepEqual(reply, { BatchCommand: { result: "Success" } });
      acknowledged.push(requestId);
    }
    assert.equal(await agent.exited, null, "the agent died of SIGKILL");
    assert.equal(acknowledged.length, 5, "five commits happened before the kill");
    assert.equal(sent, 6, "the sixth batch was received but never acknowledged");
    const hub = await startCli(["hub", "--data", data, "--port", "0"]);
    for (const requestId of acknowledged) {
      const { status, body } = await getJson(`${hub.url}/api/v1/runs/${requestId}`);
      assert.equal(status, 200, `${requestId} was acknowledged, so it must be stored`);
      assert.equal(body.spanCount, 3);
    }
    assert.equal((await getJson(`${hub.url}/api/v1/runs/ack-5`)).status, 404);
    await hub.stop();
  });

  it("lets only one agent own a socket: the second exits with status 3", async () => {
    const { data, socket } = home();
    const first = await startCli(["agent", "--data", data, "--socket", socket]);
    const second = await runCli(["agent", "--data", data, "--socket", socket]);
    assert.equal(second.code, 3);
    assert.match(second.stderr, /already running/);
    assert.equal(first.child.exitCode, null, "the first agent keeps running");
    const client = await FrameClient.open(socket);
    assert.ok((await client.send({ CoreAgentVersion: {} })).CoreAgentVersion);
    client.close();
    await first.stop();
  });

  it("replaces a stale socket left by an agent killed with SIGKILL", async () => {
    const { data, socket } = home();
    const first = await startCli(["agent", "--data", data, "--socket", socket]);
    first.child.kill("SIGKILL");
    await first.exited;
    assert.ok(existsSync(socket), "the dead agent left its socket file");
    const second = await startCli(["agent", "--data", data, "--socket", socket]);
    const client = await FrameClient.open(socket);
    assert.ok((await client.send({ CoreAgentVersion: {} })).CoreAgentVersion);
    client.close();
    await second.stop();
  });

  it("daemonizes, reports status, survives its launcher, and stops only by the operator's command", async () => {
    const { data, socket } = home();
    const started = await runCli(["agent", "--daemonize", "--data", data, "--socket", socket]);
    assert.equal(started.code, 0, started.stderr);
    const info = JSON.parse(readFileSync(socket.replace(/\.sock$/, ".json"), "utf8"));
    pids.push(info.pid);
    assert.match(started.stdout, new RegExp(`agent ${info.pid} started`));
    const again = await runCli(["agent", "--daemonize", "--data", data, "--socket", socket]);
    assert.equal(again.code, 3, "a second launch finds the running agent");
    const client = await FrameClient.open(socket);
    await client.send(scoutBatch("daemon-1", 2));
    client.close();
    const status = await runCli(["agent", "status", "--socket", socket, "--json"]);
    assert.equal(status.code, 0);
    const parsed = JSON.parse(status.stdout);
    assert.equal(parsed.running, true);
    assert.equal(parsed.pid, info.pid);
    assert.equal(parsed.dataDir, data);
    assert.ok(parsed.counters.eventsCommitted >= 2);
    const before = await runCli(["agent", "--socket", socket, "status", "--json"]);
    assert.equal(JSON.parse(before.stdout).pid, info.pid, "--socket before the subcommand counts too");
    // `up` finds the live agent and serves the hub over its data directory.
    const up = await startCli(["up", "--socket", socket, "--port", "0"], { SPANHUB_DATA: "" });
    assert.match(up.stderr(), /using the running agent/);
    assert.equal((await getJson(`${up.url}/api/v1/runs/daemon-1`)).body.spanCount, 2);
    await up.stop();
    const refused = await runCli(["up", "--socket", socket, "--data", `${data}-other`, "--port", "0"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /stores in/);
    const stopped = await runCli(["agent", "stop", "--socket", socket]);
    assert.equal(stopped.code, 0);
    assert.match(stopped.stdout, /stopped agent/);
    assert.equal((await runCli(["agent", "status", "--socket", socket])).code, 1);
  });

  it("refuses to bind beyond loopback without a token, and enforces the token it is given", async () => {
    const { data, socket } = home();
    const refused = await runCli(["up", "--data", data, "--socket", socket, "--host", "0.0.0.0", "--port", "0"], {
      SPANHUB_TOKEN: "",
    });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /--token/);
    const hub = await startCli(["up", "--data", data, "--socket", socket, "--port", "0", "--token", "s3cret"]);
    assert.equal((await getJson(`${hub.url}/api/v1/runs`)).status, 401);
    assert.equal((await getJson(`${hub.url}/api/v1/runs`, { headers: { authorization: "Bearer wrong" } })).status, 401);
    assert.equal(
      (await getJson(`${hub.url}/api/v1/runs`, { headers: { authorization: "Bearer s3cret" } })).status,
      200,
    );
    assert.equal((await getJson(`${hub.url}/healthz`)).status, 200);
    await hub.stop();
  });

  it("marks a quiet run crashed (abandoned), and a real end replaces that outcome", async () => {
    const { data, socket } = home();
    const hub = await startCli(["up", "--data", data, "--socket", socket, "--port", "0", "--abandon-after", "300ms"]);
    const client = await FrameClient.open(socket);
    await client.send({ StartRequest: { request_id: "quiet" } });
    const crashed = await waitFor(async () => {
      const { body } = await getJson(`${hub.url}/api/v1/runs/quiet`);
      return body.status === "crashed" ? body : undefined;
    }, "the quiet run to be abandoned");
    assert.equal(crashed.reason, "abandoned");
    await sleep(50);
    await client.send({ FinishRequest: { request_id: "quiet" } });
    client.close();
    const { body } = await getJson(`${hub.url}/api/v1/runs/quiet`);
    assert.equal(body.status, "ok");
    assert.equal(body.reason, null);
    await hub.stop();
  });

  it("lets a hub process notice commits made by an agent process on the same store", async () => {
    const { data, socket } = home();
    const agent = await startCli(["agent", "--data", data, "--socket", socket]);
    const hub = await startCli(["hub", "--data", data, "--port", "0"]);
    const { body: first } = await getJson(`${hub.url}/api/v1/changes?waitMs=0`);
    const waiting = getJson(`${hub.url}/api/v1/changes?after=${first.token}&waitMs=10000`);
    await sleep(150);
    const client = await FrameClient.open(socket);
    await client.send(scoutBatch("cross-process", 2));
    client.close();
    const { body: next } = await waiting;
    assert.equal(next.changed, true);
    assert.notEqual(next.token, first.token);
    assert.equal((await getJson(`${hub.url}/api/v1/runs/cross-process`)).body.spanCount, 2);
    // Background work in either process (a fold slice, a sweep) may commit once more just after;
    // what must hold is that the token settles once nothing commits.
    let token = next.token;
    let settled = false;
    for (let attempt = 0; attempt < 10 && !settled; attempt++) {
      const quiet = await getJson(`${hub.url}/api/v1/changes?after=${token}&waitMs=200`);
      settled = quiet.body.changed === false;
      token = quiet.body.token;
    }
    assert.ok(settled, "the change token settles once nothing commits");
    await hub.stop();
    await agent.stop();
  });

  it("serves Scout agents on TCP and a standalone agent's /healthz and /metrics on --http", async () => {
    const { data, socket } = home();
    const agent = await startCli([
      "agent",
      "--data",
      data,
      "--socket",
      socket,
      "--tcp",
      "127.0.0.1:0",
      "--http",
      "127.0.0.1:0",
    ]);
    const tcp = /and tcp ([\d.]+):(\d+)/.exec(agent.stdout());
    const metricsUrl = /(http:\/\/\S+)\/metrics/.exec(agent.stdout())?.[1];
    assert.ok(tcp && metricsUrl, agent.stdout());
    const { connect } = await import("node:net");
    const { encodeFrame, FrameReader } = await import("../src/protocols/framing.js");
    const reply = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const client = connect(Number(tcp[2]), tcp[1]);
      const reader = new FrameReader(1 << 20);
      client.once("error", reject);
      client.on("data", (chunk) => {
        const [frame] = reader.push(chunk);
        if (frame?.kind !== "item") return;
        client.end();
        resolve(JSON.parse(frame.value.toString("utf8")));
      });
      client.write(encodeFrame(scoutBatch("over-tcp", 3)));
    });
    assert.deepEqual(reply, { BatchCommand: { result: "Success" } });
    assert.equal((await getJson(`${metricsUrl}/healthz`)).status, 200);
    const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
    assert.match(metrics, /spanhub_agent_messages_total\{protocol="scout",command="BatchCommand"\} 1/);
    assert.equal((await getJson(`${metricsUrl}/api/v1/runs`)).status, 404, "a standalone agent serves no API");
    await agent.stop();
  });
});

/** Fields of each thread of `pid` from /proc/<pid>/task/<tid>/stat, by their 1-based number in proc(5). */
function threadStat(pid: number, field: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((thread) => {
    const stat = readFileSync(`/proc/${pid}/task/${thread}/stat`, "utf8");
    // Fields after the command name (field 2, in parentheses, may hold spaces) start at field 3.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[field - 3]);
  });
}
const threadNiceness = (pid: number) => threadStat(pid, 19);
/** Each thread's scheduling policy (field 41): 0 is SCHED_OTHER, 5 SCHED_IDLE. */
const threadPolicies = (pid: number) => threadStat(pid, 41);
const SCHED_OTHER = 0;
const SCHED_IDLE = 5;

/** Sends a batch and waits for its acknowledgement, so the store's writer threads are running. */
async function storeOneRun(socket: string): Promise<void> {
  const client = await FrameClient.open(socket);
  await client.send(scoutBatch("nice-1", 2));
  client.close();
}

// The test's own niceness: a process can only be made nicer, never less nice, than it is.
const inherited = getPriority();

describe("agent CPU priority (--nice)", { skip: !existsSync("/proc/self/task") && "needs Linux /proc" }, () => {
  it("runs every thread of `spanhub agent` in the idle CPU class by default", async () => {
    const { data, socket } = home();
    const agent = await startCli(["agent", "--data", data, "--socket", socket]);
    await storeOneRun(socket);
    const policies = threadPolicies(agent.child.pid as number);
    assert.ok(policies.length > 3, `the agent has worker threads (${policies.length} threads)`);
    assert.deepEqual(new Set(policies), new Set([SCHED_IDLE]));
    assert.doesNotMatch(agent.stderr(), /no idle CPU class/);
    const status = await runCli(["agent", "status", "--socket", socket]);
    assert.match(status.stdout, /^ {2}cpu {6}idle$/m);
    assert.equal(await agent.stop(), 0);
  });

  it("falls back to niceness 19, with a warning, when the idle class cannot be entered", async () => {
    const { data, socket } = home();
    // Without a PATH there is no `chrt` to enter the idle class with.
    const agent = await startCli(["agent", "--data", data, "--socket", socket], { PATH: "" });
    await storeOneRun(socket);
    assert.deepEqual(new Set(threadPolicies(agent.child.pid as number)), new Set([SCHED_OTHER]));
    assert.deepEqual(new Set(threadNiceness(agent.child.pid as number)), new Set([Math.max(inherited, 19)]));
    assert.match(agent.stderr(), /no idle CPU class \(chrt: .*\); running at niceness 19 instead/);
    assert.equal(await agent.stop(), 0);
  });

  it("keeps the inherited priority with --nice 0, and takes a niceness from --nice or SPANHUB_NICE", async () => {
    const { data, socket } = home();
    const agent = await startCli(["agent", "--data", data, "--socket", socket, "--nice", "0"]);
    await storeOneRun(socket);
    assert.deepEqual(new Set(threadNiceness(agent.child.pid as number)), new Set([inherited]));
    assert.deepEqual(new Set(threadPolicies(agent.child.pid as number)), new Set([SCHED_OTHER]));
    assert.equal(await agent.stop(), 0);

    const up = await startCli(["up", "--data", data, "--socket", socket, "--port", "0", "--nice", "15"]);
    await storeOneRun(socket);
    assert.deepEqual(new Set(threadNiceness(up.child.pid as number)), new Set([Math.max(inherited, 15)]));
    assert.equal(await up.stop(), 0);

    // SPANHUB_NICE is the default, so an agent an SDK launches takes it from the application's environment.
    const fromEnv = await startCli(["agent", "--data", data, "--socket", socket], { SPANHUB_NICE: "7" });
    await storeOneRun(socket);
    assert.deepEqual(new Set(threadNiceness(fromEnv.child.pid as number)), new Set([Math.max(inherited, 7)]));
    assert.deepEqual(new Set(threadPolicies(fromEnv.child.pid as number)), new Set([SCHED_OTHER]));
    const status = JSON.parse((await runCli(["agent", "status", "--json", "--socket", socket])).stdout);
    assert.equal(status.cpu, `nice ${Math.max(inherited, 7)}`);
    assert.equal(await fromEnv.stop(), 0);
  });

  it("passes --nice on to a daemonized agent, which is idle by default", async () => {
    const { data, socket } = home();
    const started = await runCli(["agent", "--daemonize", "--data", data, "--socket", socket, "--nice", "3"]);
    assert.equal(started.code, 0, started.stderr);
    const pid = Number(/agent (\d+) started/.exec(started.stdout)?.[1]);
    pids.push(pid);
    await storeOneRun(socket);
    assert.deepEqual(new Set(threadNiceness(pid)), new Set([Math.max(inherited, 3)]));
    assert.equal((await runCli(["agent", "stop", "--socket", socket])).code, 0);

    const idle = await runCli(["agent", "--daemonize", "--data", data, "--socket", socket]);
    assert.equal(idle.code, 0, idle.stderr);
    const idlePid = Number(/agent (\d+) started/.exec(idle.stdout)?.[1]);
    pids.push(idlePid);
    await storeOneRun(socket);
    assert.deepEqual(new Set(threadPolicies(idlePid)), new Set([SCHED_IDLE]));
    assert.equal((await runCli(["agent", "stop", "--socket", socket])).code, 0);
  });

  it("refuses a priority other than idle or a niceness 0 to 19, with a clear error", async () => {
    const { data, socket } = home();
    for (const nice of ["20", "-5", "ten", "idler"]) {
      const refused = await runCli(["agent", "--data", data, "--socket", socket, `--nice=${nice}`]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /the priority is idle, or a niceness 0 \(the inherited priority\) to 19/);
    }
    const fromEnv = await runCli(["agent", "--data", data, "--socket", socket], { SPANHUB_NICE: "lowest" });
    assert.equal(fromEnv.code, 1);
    assert.match(fromEnv.stderr, /the priority is idle, or a niceness 0/);
  });
});
