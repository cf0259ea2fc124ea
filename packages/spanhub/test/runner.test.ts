import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { readAgentInfo } from "../src/agent/agentLock.js";
import { childEnvironment } from "../src/runner/childEnvironment.js";
import { OutputTail } from "../src/runner/childProcess.js";
import { runOutcome } from "../src/runner/outcome.js";
import { SpanIntake } from "../src/runner/spanIntake.js";
import { commandLine } from "../src/runner/traceRun.js";
import { createStore } from "../src/store/createStore.js";
import type { RunRecord, SpanRecord, StoredEvent } from "../src/store/records.js";
import { assertSealed } from "./helpers.js";
import { CLI, captureOutput, spawnCli, startCli, tempHome, waitFor } from "./processHelpers.js";

type Home = ReturnType<typeof tempHome>;
const homes: Home[] = [];
const children: ChildProcess[] = [];

function home(): Home {
  const made = tempHome();
  homes.push(made);
  return made;
}

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  for (const made of homes.splice(0)) {
    // Agents launched by `spanhub run` are daemons: stop them by the pid they publish (their data goes too).
    const pid = readAgentInfo(made.socket)?.pid;
    if (pid !== undefined && isAlive(pid)) {
      process.kill(pid, "SIGKILL");
      await waitFor(async () => (isAlive(pid) ? undefined : true), `agent ${pid} to stop`);
    }
    made.cleanup();
  }
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The env under which `spanhub run` (and any agent it launches) uses only this home, outside any traced run. */
function homeEnv(made: Home): NodeJS.ProcessEnv {
  return {
    SPANHUB_SOCKET: made.socket,
    SPANHUB_DATA: made.data,
    SPANHUB_RUN_ID: undefined,
    SPANHUB_PARENT_SPAN: undefined,
  };
}

/**
 * A python3 child that connects to its run socket on its very first line (so it fails if the
 * socket is not bound yet) and has `emit(**event)` to write one JSON line.
 */
function pythonChild(made: Home, name: string, body: string): string {
  const path = join(made.root, `${name}.py`);
  writeFileSync(
    path,
    `import os, socket; sock = socket.socket(socket.AF_UNIX); sock.connect(os.environ["SPANHUB_RUN_SOCKET"])
import json, signal, subprocess, sys, time
def emit(**event):
    sock.sendall((json.dumps(event) + "\\n").encode())
${body}
`,
  );
  return path;
}

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

function startRun(made: Home, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawnCli(["run", ...args], { ...homeEnv(made), ...env });
  children.push(child);
  const output = captureOutput(child);
  const finished = new Promise<Finished>((resolve) =>
    child.once("exit", (code) => resolve({ code, stdout: output.out(), stderr: output.err() })),
  );
  return { child, output, finished };
}

function run(made: Home, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Finished> {
  return startRun(made, args, env).finished;
}

interface StoredRun {
  run: RunRecord;
  spans: SpanRecord[];
  events: StoredEvent[];
  root: SpanRecord;
}

/** Every run in the home's store, read straight from its SQLite files. */
async function readRuns(made: Home): Promise<StoredRun[]> {
  const store = createStore({ dataDir: made.data });
  try {
    const { runs } = await store.listRuns({ limit: 100 });
    const out: StoredRun[] = [];
    for (const stored of runs) {
      const spans = await store.listSpans(stored.id);
      const events = await store.listEvents(stored.id, 0, 100_000);
      const root = spans.find((span) => span.kind === "flow_root") as SpanRecord;
      out.push({ run: stored, spans, events, root });
    }
    return out;
  } finally {
    await store.close();
  }
}

/** The home's one run; once it ended, its digest must have been sealed by that end. */
async function onlyRun(made: Home): Promise<StoredRun> {
  const runs = await readRuns(made);
  assert.equal(runs.length, 1, `runs: ${runs.map((stored) => stored.run.name).join(", ")}`);
  const only = runs[0] as StoredRun;
  if (only.run.status !== "running") assertSealed(made.data, only.run.id, only.run.status, only.run.reason);
  return only;
}

/** Resolves once the runner relayed a line starting with `marker` from its child. */
function waitForOutput(output: { out: () => string }, marker: string): Promise<string> {
  return waitFor(
    async () =>
      output
        .out()
        .split("\n")
        .find((line) => line.startsWith(marker)),
    `"${marker}" on stdout`,
  );
}

function runSockets(made: Home): string[] {
  return readdirSync(join(made.root, "run")).filter((name) => name.startsWith("run-"));
}

describe("spanhub run", () => {
  it("launches the agent when none runs; the child connects on its first line; its tree lands under the root span", async () => {
    const made = home();
    const script = pythonChild(
      made,
      "tree",
      `emit(type="span_tag", span_id=os.environ["SPANHUB_PARENT_SPAN"], tags={"seen_run": os.environ["SPANHUB_RUN_ID"], "agent": os.environ["SPANHUB_SOCKET"]})
emit(type="span_start", span_id="load", name="load", kind="step", tags={"source": "s3"})
emit(type="span_start", span_id="page", parent_id="load", name="fetch page", kind="rpc", rpc_service="api", rpc_method="get")
emit(type="span_log", span_id="page", text="fetched page 1")
emit(type="span_end", span_id="page", status="ok")
emit(type="span_tag", span_id="load", tags={"rows": 10})
emit(type="span_end", span_id="load")
emit(type="span_start", span_id="save", parent_id=None, name="save")
emit(type="span_end", span_id="save", status="failed", error={"type": "IOError", "message": "disk full"})
emit(type="run_tag", tags={"rows": 10})`,
    );
    const started = startRun(made, [
      "--name",
      "etl",
      "--tag",
      "team=data",
      "--tag",
      "env=test",
      "--",
      "python3",
      script,
    ]);
    const result = await started.finished;
    assert.equal(result.code, 0, result.stderr);
    assert.ok(readAgentInfo(made.socket), "an agent was launched on the home's socket");
    const { run: stored, spans, root } = await onlyRun(made);
    assert.equal(stored.name, "etl");
    assert.equal(stored.status, "ok");
    assert.deepEqual(stored.tags, { team: "data", env: "test", rows: 10 });
    assert.equal(stored.pid, started.child.pid);
    assert.ok(stored.host);
    assert.equal(root.name, "etl");
    assert.equal(root.parentId, null);
    assert.equal(root.status, "ok");
    assert.equal(root.tags.seen_run, stored.id, "SPANHUB_RUN_ID is the run");
    assert.equal(root.tags.agent, made.socket, "SPANHUB_SOCKET keeps naming the agent");
    assert.deepEqual(root.tags.command, ["python3", script]);
    assert.equal(root.tags.exit_code, 0);
    assert.equal(root.tags.skipped_lines, 0);
    const byId = new Map(spans.map((span) => [span.id, span]));
    assert.equal(spans.length, 4);
    assert.equal(byId.get("load")?.parentId, root.id, "a span without parent hangs under the root");
    assert.deepEqual(byId.get("load")?.tags, { source: "s3", rows: 10 });
    assert.equal(byId.get("load")?.kind, "step");
    assert.equal(byId.get("page")?.parentId, "load");
    assert.equal(byId.get("page")?.rpcService, "api");
    assert.deepEqual(
      byId.get("page")?.logs.map((log) => log.text),
      ["fetched page 1"],
    );
    assert.equal(byId.get("save")?.parentId, root.id, "an explicit null parent also means the root");
    assert.equal(byId.get("save")?.status, "failed");
    assert.deepEqual(runSockets(made), [], "the run socket is removed");
  });

  it("traces a script written with the Python SDK: nesting, tags, logs, rpc proxies, async tasks, threads, failures", async () => {
    const made = home();
    const script = join(made.root, "flow.py");
    writeFileSync(
      script,
      `import asyncio, threading
from spanhub import Failed, instrument, span, traced

class Store:
    def get(self, key): return key.upper()
    async def fetch(self, key):
        await asyncio.sleep(0.001)
        return key
    def _secret(self): return 1

@traced
def transform(rows):
    with span("double", rows=len(rows)):
        return [row * 2 for row in rows]

async def fetch_all(store):
    async def one(index):
        with span("task-%d" % index):
            return await store.fetch(str(index))
    return await asyncio.gather(one(0), one(1))

with span("load", source="s3") as load:
    load.tag(rows=3)
    load.log("fetched page 1")
    store = instrument(Store())
    store.get("a")
    store._secret()
transform([1, 2, 3])
with span("gather"):
    asyncio.run(fetch_all(instrument(Store())))
def worker():
    with span("in thread"): pass
thread = threading.Thread(target=worker)
thread.start(); thread.join()
try:
    with span("validate"): raise Failed("no rows")
except Failed: pass
try:
    with span("explode"): raise ValueError("bad value")
except ValueError: pass
`,
    );
    const result = await run(made, ["--name", "flow", "--", "python3", script]);
    assert.equal(result.code, 0, result.stderr);
    const { run: stored, spans, root } = await onlyRun(made);
    const byName = new Map(spans.map((span) => [span.name, span]));
    const byId = new Map(spans.map((span) => [span.id, span]));
    assert.deepEqual(
      spans
        .filter((span) => span !== root)
        .map((span) => [span.name, byId.get(span.parentId ?? "")?.name])
        .sort(),
      [
        ["double", "transform"],
        ["explode", "flow"],
        ["gather", "flow"],
        ["in thread", "flow"],
        ["load", "flow"],
        ["rpc:Store.fetch", "task-0"],
        ["rpc:Store.fetch", "task-1"],
        ["rpc:Store.get", "load"],
        ["task-0", "gather"],
        ["task-1", "gather"],
        ["transform", "flow"],
        ["validate", "flow"],
      ],
    );
    assert.equal(spans.filter((span) => span.name?.includes("_secret")).length, 0, "private members pass through");
    const load = byName.get("load");
    assert.deepEqual(load?.tags, { source: "s3", rows: 3 });
    assert.deepEqual(
      load?.logs.map((log) => log.text),
      ["fetched page 1"],
    );
    assert.equal(byName.get("rpc:Store.get")?.rpcService, "Store");
    assert.equal(byName.get("rpc:Store.get")?.rpcMethod, "get");
    assert.deepEqual(
      byName.get("validate")?.error,
      { type: "Failed", message: "no rows" },
      "Failed: the reason, no traceback",
    );
    assert.equal(byName.get("validate")?.status, "failed");
    const explode = byName.get("explode");
    assert.equal(explode?.status, "failed");
    assert.equal(explode?.error?.type, "ValueError");
    assert.equal(explode?.error?.message, "bad value");
    assert.match(explode?.error?.stack ?? "", /Traceback[\s\S]*ValueError: bad value/);
    assert.equal(assertSealed(made.data, stored.id, "ok").failedSpans, 2);
  });

  it("gives the child our terminal as stdin: it reads a line typed at it (its own session, so no SIGTTIN)", async () => {
    const made = home();
    const ask = join(made.root, "ask.py");
    writeFileSync(
      ask,
      `import sys\nprint("name?", flush=True)\nprint("hello", sys.stdin.readline().strip(), flush=True)\n`,
    );
    // python3's pty module gives \`spanhub run\` a real terminal as its stdin and stdout.
    const driver = join(made.root, "drive.py");
    writeFileSync(
      driver,
      `import json, os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out, deadline = b"", time.time() + 20
while b"name?" not in out and time.time() < deadline:
    out += os.read(fd, 1024)
os.write(fd, b"world\\n")
while time.time() < deadline:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
print(json.dumps({"out": out.decode(errors="replace"), "code": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}))
`,
    );
    const driven = spawn("python3", [driver, process.execPath, CLI, "run", "--", "python3", ask], {
      env: { ...process.env, ...homeEnv(made) },
    });
    children.push(driven);
    const report = JSON.parse(
      await new Promise<string>((resolve) => {
        let text = "";
        driven.stdout.on("data", (chunk) => {
          text += chunk;
        });
        driven.once("exit", () => resolve(text));
      }),
    );
    assert.match(report.out, /hello world/);
    assert.equal(report.code, 0);
    assert.equal((await onlyRun(made)).run.status, "ok");
  });

  it("fails the run with the child's exit code (in --cwd, with --clean-env)", async () => {
    const made = home();
    const script = pythonChild(
      made,
      "exit1",
      `emit(type="span_tag", span_id=os.environ["SPANHUB_PARENT_SPAN"], tags={"child_cwd": os.getcwd(), "names": sorted(os.environ)})
emit(type="span_start", span_id="s", name="step")
sys.exit(3)`,
    );
    const workDir = join(made.root, "work");
    mkdirSync(workDir);
    const result = await run(made, ["--cwd", workDir, "--clean-env", "--", "python3", script], { NOT_PASSED: "x" });
    assert.equal(result.code, 3);
    const { run: stored, root, spans } = await onlyRun(made);
    assert.equal(root.tags.child_cwd, workDir);
    const names = root.tags.names as string[];
    assert.ok(names.includes("PATH") && names.includes("SPANHUB_RUN_SOCKET") && names.includes("SPANHUB_DATA"));
    assert.ok(!names.includes("NOT_PASSED"), "--clean-env passes only the listed variables");
    assert.equal(stored.status, "failed");
    assert.equal(stored.reason, "exit 3");
    assert.equal(root.status, "failed");
    assert.equal(root.tags.exit_code, 3);
    const open = spans.find((span) => span.id === "s");
    assert.equal(open?.status, "failed", "a span left open is closed with the run");
    assert.equal(open?.error?.type, "unfinished");
  });

  it("marks a child killed from outside crashed and exits 128+9", async () => {
    const made = home();
    const script = pythonChild(made, "victim", `print("pid", os.getpid(), flush=True)\ntime.sleep(60)`);
    const started = startRun(made, ["--", "python3", script]);
    const line = await waitForOutput(started.output, "pid ");
    process.kill(Number(line.split(" ")[1]), "SIGKILL");
    const result = await started.finished;
    assert.equal(result.code, 137);
    const { run: stored, root } = await onlyRun(made);
    assert.equal(stored.status, "crashed");
    assert.equal(stored.reason, "signal SIGKILL");
    assert.equal(root.tags.signal, "SIGKILL");
  });

  it("times out a sleeping child: SIGTERM, then SIGKILL after the grace period; exit 124", async () => {
    const made = home();
    const script = pythonChild(
      made,
      "sleeper",
      `signal.signal(signal.SIGTERM, lambda *_: emit(type="span_log", span_id="nap", text="got SIGTERM"))
emit(type="span_start", span_id="nap", name="nap")
while True: time.sleep(0.05)`,
    );
    const result = await run(made, ["--timeout", "1s", "--grace", "300ms", "--", "python3", script]);
    assert.equal(result.code, 124, result.stderr);
    const { run: stored, spans, root } = await onlyRun(made);
    assert.equal(stored.status, "timed_out");
    assert.equal(stored.reason, "timeout after 1s");
    assert.equal(root.status, "timed_out");
    assert.equal(root.tags.signal, "SIGKILL", "the child ignored SIGTERM and was killed");
    const nap = spans.find((span) => span.id === "nap");
    assert.deepEqual(
      nap?.logs.map((log) => log.text),
      ["got SIGTERM"],
    );
    assert.equal(nap?.status, "timed_out");
  });

  it("passes Ctrl-C to the child's group and cancels the run; exit 130", async () => {
    const made = home();
    const script = pythonChild(
      made,
      "interrupted",
      `try:
    print("ready", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    emit(type="span_start", span_id="cleanup", name="cleanup")
    emit(type="span_end", span_id="cleanup", status="ok")
    sys.exit(1)`,
    );
    const started = startRun(made, ["--", "python3", script]);
    await waitForOutput(started.output, "ready");
    started.child.kill("SIGINT");
    const result = await started.finished;
    assert.equal(result.code, 130);
    const { run: stored, spans, root } = await onlyRun(made);
    assert.equal(stored.status, "cancelled");
    assert.equal(stored.reason, "SIGINT");
    assert.equal(root.status, "cancelled");
    assert.equal(root.tags.exit_code, 1);
    assert.equal(
      spans.find((span) => span.id === "cleanup")?.status,
      "ok",
      "the child got SIGINT and wrote its last span",
    );
    assert.deepEqual(runSockets(made), []);
  });

  it("delivers 10,000 spans from one child", async () => {
    const made = home();
    const script = pythonChild(
      made,
      "many",
      `lines = []
for i in range(10000):
    lines.append(json.dumps({"type": "span_start", "span_id": "s%d" % i, "name": "step %d" % i, "parent_id": "s%d" % (i - 1) if i % 100 else None}))
    lines.append(json.dumps({"type": "span_end", "span_id": "s%d" % i, "status": "ok"}))
sock.sendall(("\\n".join(lines) + "\\n").encode())`,
    );
    const result = await run(made, ["--", "python3", script]);
    assert.equal(result.code, 0, result.stderr);
    const { run: stored, spans, root } = await onlyRun(made);
    assert.equal(stored.spanCount, 10_001);
    assert.equal(spans.filter((span) => span.status === "ok").length, 10_001);
    assert.equal(spans.filter((span) => span.parentId === root.id).length, 100);
  });

  it("skips and counts bad lines while the good lines around them land", async () => {
    const made = home();
    const script = pythonChild(
      made,
      "garbage",
      `emit(type="span_start", span_id="a", name="before")
sock.sendall(b"not json at all\\n")
emit(type="bogus", span_id="x")
sock.sendall(b"[1, 2]\\n")
emit(type="span_end")
emit(type="run_end", status="ok")
emit(type="span_end", span_id="a", status="ok")
sock.sendall(b'{"type": "span_start", "span_id": "b", "name": "last line, no newline"}')`,
    );
    const result = await run(made, ["--", "python3", script]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /skipped line \(1 so far\): line is not valid JSON: not json at all/);
    assert.match(result.stderr, /unknown event type "bogus"/);
    assert.match(result.stderr, /run_end is sent by spanhub run itself/);
    const { run: stored, spans, root } = await onlyRun(made);
    assert.equal(stored.status, "ok");
    assert.equal(root.tags.skipped_lines, 5);
    assert.ok(root.logs.some((log) => log.text === "spanhub run skipped 5 bad line(s) on the run socket"));
    assert.equal(spans.find((span) => span.id === "a")?.status, "ok");
    assert.equal(spans.find((span) => span.id === "b")?.name, "last line, no newline");
  });

  it("relays stdout and stderr line by line and keeps their last 64 KiB on the root span", async () => {
    const made = home();
    const script = pythonChild(
      made,
      "chatty",
      `print("first line")
print("to stderr", file=sys.stderr)
for i in range(2000): print("filler %05d " % i + "x" * 40)
print("last line")`,
    );
    const result = await run(made, ["--", "python3", script]);
    assert.equal(result.code, 0);
    assert.ok(result.stdout.startsWith("first line\nfiller 00000 "));
    assert.ok(result.stdout.endsWith("filler 01999 ".concat("x".repeat(40), "\nlast line\n")));
    assert.equal(result.stderr, "to stderr\n");
    const { root } = await onlyRun(made);
    const stdoutLog = root.logs.find((log) => log.text.startsWith("stdout"))?.text ?? "";
    assert.match(stdoutLog, new RegExp(`^stdout \\(last 65536 of ${Buffer.byteLength(result.stdout)} bytes\\):\n`));
    assert.ok(stdoutLog.endsWith("\nlast line\n"));
    assert.ok(!stdoutLog.includes("first line"));
    assert.deepEqual(
      root.logs.filter((log) => log.text.startsWith("stderr")).map((log) => log.text),
      ["stderr:\nto stderr\n"],
    );
  });

  it("makes a spanhub run inside a traced run a sub-run linked to the step that started it", async () => {
    const made = home();
    const inner = pythonChild(made, "inner", `emit(type="span_start", span_id="work", name="inner work")`);
    const outer = pythonChild(
      made,
      "outer",
      `emit(type="span_start", span_id="step", name="call inner")
env = dict(os.environ, SPANHUB_PARENT_SPAN="step")
code = subprocess.call([${JSON.stringify(process.execPath)}, ${JSON.stringify(CLI)}, "run", "--name", "inner", "--", "python3", ${JSON.stringify(inner)}], env=env)
emit(type="span_end", span_id="step", status="ok" if code == 0 else "failed")`,
    );
    const result = await run(made, ["--name", "outer", "--", "python3", outer]);
    assert.equal(result.code, 0, result.stderr);
    const runs = await readRuns(made);
    const outerRun = runs.find((stored) => stored.run.name === "outer") as StoredRun;
    const innerRun = runs.find((stored) => stored.run.name === "inner") as StoredRun;
    assert.equal(innerRun.run.parentRunId, outerRun.run.id);
    assert.equal(innerRun.run.parentSpanId, "step");
    assert.equal(outerRun.run.parentRunId, null);
    assert.equal(outerRun.spans.find((span) => span.id === "step")?.status, "ok");
    assert.equal(innerRun.spans.find((span) => span.id === "work")?.parentId, innerRun.root.id);
  });

  it("loses and doubles nothing when the agent is killed with kill -9 mid-run and relaunched", async () => {
    const made = home();
    const agent = await startCli(["agent", "--data", made.data, "--socket", made.socket]);
    children.push(agent.child);
    const go = join(made.root, "go");
    const script = pythonChild(
      made,
      "steady",
      `def spans(first, last):
    for i in range(first, last):
        emit(type="span_start", span_id="s%d" % i, name="step")
        emit(type="span_end", span_id="s%d" % i, status="ok")
        if i % 50 == 0: time.sleep(0.01)
spans(0, 500)
while not os.path.exists(${JSON.stringify(go)}): time.sleep(0.01)
spans(500, 3000)`,
    );
    const started = startRun(made, ["--", "python3", script]);
    await waitFor(async () => {
      const runs = await readRuns(made);
      return (runs[0]?.spans.length ?? 0) >= 501 ? true : undefined;
    }, "the first 500 spans");
    agent.child.kill("SIGKILL");
    await agent.exited;
    writeFileSync(go, "");
    const result = await started.finished;
    assert.equal(result.code, 0, result.stderr);
    const relaunched = readAgentInfo(made.socket)?.pid;
    assert.ok(relaunched !== undefined && relaunched !== agent.child.pid && isAlive(relaunched), "a new agent runs");
    const { run: stored, spans, events } = await onlyRun(made);
    assert.equal(stored.status, "ok");
    assert.equal(spans.length, 3001);
    assert.equal(stored.lateCount, 0);
    const starts = new Map<string, number>();
    for (const event of events)
      if (event.kind === "span_start" || event.kind === "span") {
        const spanId = event.body.spanId as string;
        starts.set(spanId, (starts.get(spanId) ?? 0) + 1);
      }
    assert.equal(starts.size, 3001);
    assert.deepEqual(
      [...starts].filter(([, count]) => count !== 1),
      [],
      "every span's start is stored exactly once",
    );
  });
});

describe("spanhub run, its parts", () => {
  it("maps a child's end to the run's status and our exit status", () => {
    const exit = (code: number | null, signal: NodeJS.Signals | null = null) => ({ code, signal });
    assert.deepEqual(runOutcome(exit(0), undefined), { status: "ok", spanStatus: "ok", exitCode: 0 });
    assert.deepEqual(runOutcome(exit(2), undefined), {
      status: "failed",
      spanStatus: "failed",
      reason: "exit 2",
      exitCode: 2,
    });
    assert.deepEqual(runOutcome(exit(null, "SIGSEGV"), undefined), {
      status: "crashed",
      spanStatus: "failed",
      reason: "signal SIGSEGV",
      exitCode: 139,
    });
    assert.equal(runOutcome(exit(0), { kind: "timeout", afterMs: 1500 }).reason, "timeout after 1500ms");
    assert.equal(runOutcome(exit(0), { kind: "timeout", afterMs: 1500 }).exitCode, 124);
    assert.equal(runOutcome(exit(null, "SIGTERM"), { kind: "cancel", signal: "SIGTERM" }).status, "cancelled");
    const missing = Object.assign(new Error("spawn nope ENOENT"), { code: "ENOENT" });
    assert.equal(runOutcome({ ...exit(null), spawnError: missing }, undefined).exitCode, 127);
  });

  it("builds the child's environment: clean subset, run variables, the Python SDK first on PYTHONPATH", () => {
    const made = home();
    const sdk = join(made.root, "sdks", "python");
    mkdirSync(sdk, { recursive: true });
    const base = {
      PATH: "/bin",
      HOME: "/home/u",
      LANG: "C.UTF-8",
      LC_ALL: "C",
      PYTHONPATH: "/lib/py",
      SPANHUB_TOKEN: "t",
      AWS_SECRET_ACCESS_KEY: "secret",
    };
    const run = { runSocket: "/s/run.sock", runId: "r1", rootSpanId: "root", agentSocket: "/s/agent.sock" };
    const clean = childEnvironment(base, run, { clean: true, pythonSdkDir: sdk });
    assert.deepEqual(clean, {
      PATH: "/bin",
      HOME: "/home/u",
      LANG: "C.UTF-8",
      LC_ALL: "C",
      PYTHONPATH: `${sdk}:/lib/py`,
      SPANHUB_TOKEN: "t",
      SPANHUB_RUN_SOCKET: "/s/run.sock",
      SPANHUB_RUN_ID: "r1",
      SPANHUB_PARENT_SPAN: "root",
      SPANHUB_SOCKET: "/s/agent.sock",
      PYTHONUNBUFFERED: "1",
    });
    const full = childEnvironment(base, run, { clean: false, pythonSdkDir: join(made.root, "absent") });
    assert.equal(full.AWS_SECRET_ACCESS_KEY, "secret");
    assert.equal(full.PYTHONPATH, "/lib/py", "no SDK directory, PYTHONPATH unchanged");
  });

  it("hangs top-level spans under the root, keeps explicit parents, and tracks unfinished spans", () => {
    const forwarded: Record<string, unknown>[] = [];
    const warnings: string[] = [];
    const intake = new SpanIntake({
      runId: "r1",
      rootSpanId: "root",
      forward: (json) => forwarded.push(JSON.parse(json)),
      warn: (message) => warnings.push(message),
    });
    intake.line('\ufeff {"type":"span_start","span_id":"a","name":"a","run_id":"elsewhere"} \r', 1000);
    intake.line('{"type":"span_start","span_id":"b","parent_id":"a","start_ms":900}', 1000);
    intake.line('{"type":"span_start","span_id":"a","tags":{"k":1}}', 1001);
    intake.line('{"type":"span_end","span_id":"b"}', 1002);
    intake.line(`{"type":"span_tag","span_id":"a","tags":{"long":"${"x".repeat(500)}"}}`, 1003);
    intake.line("{oops", 1004);
    assert.deepEqual(forwarded.slice(0, 4), [
      { type: "span_start", span_id: "a", name: "a", run_id: "r1", ts_ms: 1000, parent_id: "root" },
      { type: "span_start", span_id: "b", parent_id: "a", start_ms: 900, run_id: "r1" },
      { type: "span_start", span_id: "a", tags: { k: 1 }, run_id: "r1", ts_ms: 1001 },
      { type: "span_end", span_id: "b", run_id: "r1", ts_ms: 1002 },
    ]);
    assert.deepEqual(intake.unfinishedSpans, ["a"]);
    assert.equal(intake.skipped, 1);
    assert.equal(warnings.length, 1);
    assert.ok((warnings[0] as string).length < 200, "the preview is short");
  });

  it("keeps the last bytes of output at a character boundary", () => {
    const tail = new OutputTail(4);
    tail.push(Buffer.from("abcdef"));
    tail.push(Buffer.from("ghé"));
    tail.push(Buffer.from("éz"));
    assert.equal(tail.total, 13);
    assert.equal(tail.text(), "éz", "the last 4 bytes are half an é, é and z: the half character is dropped");
  });

  it("names a run after its command line, quoted as a shell would", () => {
    assert.equal(commandLine(["python3", "job.py", "--day", "2026-11-23"]), "python3 job.py --day 2026-11-23");
    assert.equal(commandLine(["sh", "-c", "echo 'hi' there"]), `sh -c 'echo '\\''hi'\\'' there'`);
  });
});
