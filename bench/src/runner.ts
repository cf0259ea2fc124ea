import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, withAgent } from "./agentProcess.js";
import { killOnExit, removeOnExit } from "./cleanup.js";
import { type BenchResult, type Cell, formatCount, formatMs } from "./table.js";

/**
 * Runner: spans per second from a python3 script through `spanhub run` into the store, against
 * the same script writing the same lines to /dev/null, in the same run.
 *
 * The script writes BENCH_RUNNER_SPANS spans (default 100,000), each a `span_start` and a
 * `span_end` line with times, one write call per line (as an SDK with a lock per line does),
 * either to its run socket or to /dev/null, and reports how long its writing took. Through
 * `spanhub run`, the wall time runs from spawning `spanhub run` until it exits, which it does only
 * once the agent acknowledged every batch (committed, `--durability full`): that is the
 * end-to-end rate. The stored span count must equal the spans sent plus one root span per run.
 * Each setting is measured BENCH_RUNNER_REPEATS times (default 3); the best is shown.
 */

const SPANS = positiveInt("BENCH_RUNNER_SPANS", 100_000);
const REPEATS = positiveInt("BENCH_RUNNER_REPEATS", 3);

const SCRIPT = `import json, os, socket, sys, time
target, count = sys.argv[1], int(sys.argv[2])
if target == "socket":
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.environ["SPANHUB_RUN_SOCKET"])
    write = sock.sendall
else:
    fd = os.open(target, os.O_WRONLY)
    write = lambda data: os.write(fd, data)
started = time.perf_counter()
for i in range(count):
    now = time.time() * 1000
    span_id = "s%d" % i
    write((json.dumps({"type": "span_start", "span_id": span_id, "name": "step", "kind": "step", "start_ms": now}) + "\\n").encode())
    write((json.dumps({"type": "span_end", "span_id": span_id, "status": "ok", "end_ms": now + 0.01}) + "\\n").encode())
print(json.dumps({"write_s": time.perf_counter() - started}))
`;

interface Measurement {
  /** Seconds the script spent writing its lines. */
  writeSeconds: number;
  /** From spawn to exit. */
  wallSeconds: number;
}

export async function run(): Promise<BenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "spanhub-bench-runner-"));
  removeOnExit.add(dir);
  const script = join(dir, "spans.py");
  writeFileSync(script, SCRIPT);
  try {
    progress(`runner: ${formatCount(SPANS)} spans, python3 alone to /dev/null, best of ${REPEATS}`);
    const alone = await best(() => measure(["python3", script, "/dev/null", String(SPANS)], {}));
    let runs = 0;
    const { report, stored } = await withAgent(async (socket, data) => {
      const env = { SPANHUB_SOCKET: socket, SPANHUB_DATA: data };
      const through = (target: string) => {
        runs += 1;
        return measure([process.execPath, CLI, "run", "--", "python3", script, target, String(SPANS)], env);
      };
      progress(`runner: the same script to /dev/null inside spanhub run, best of ${REPEATS}`);
      const devNull = await best(() => through("/dev/null"));
      progress(`runner: the same script to its run socket through spanhub run, best of ${REPEATS}`);
      const socketRun = await best(() => through("socket"));
      return { devNull, socketRun };
    }, "spans");
    const expected = REPEATS * SPANS + runs;
    if (stored !== expected) throw new Error(`stored ${stored} spans, expected ${expected}`);
    const row = (what: string, measured: Measurement, stores: boolean): Cell[] => [
      what,
      formatCount(SPANS / measured.writeSeconds),
      formatMs(measured.writeSeconds * 1000),
      formatMs(measured.wallSeconds * 1000),
      stores ? formatCount(SPANS / measured.wallSeconds) : "-",
    ];
    return {
      title: `Runner: ${formatCount(SPANS)} spans from a python3 script (span_start + span_end lines)`,
      columns: ["setup", "script spans/s", "script writing", "wall (spawn to exit)", "stored spans/s"],
      rows: [
        row("baseline: python3 writes the lines to /dev/null", alone, false),
        row("spanhub run, the script writes to /dev/null", report.devNull, false),
        row("spanhub run, the script writes to its run socket -> agent -> store", report.socketRun, true),
      ],
      notes: [
        `script spans/s: spans / the script's own writing time (one write call per line). wall: from spawning the process to its exit; spanhub run exits only after the agent acknowledged every batch (committed with --durability full), so stored spans/s = spans / wall. Best of ${REPEATS}; ${formatCount(stored)} spans stored (${REPEATS} x ${formatCount(SPANS)} and one root span per run).`,
      ],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    removeOnExit.delete(dir);
  }
}

async function best(measureOnce: () => Promise<Measurement>): Promise<Measurement> {
  let top: Measurement | undefined;
  for (let repeat = 0; repeat < REPEATS; repeat++) {
    const next = await measureOnce();
    if (!top || next.wallSeconds < top.wallSeconds) top = next;
  }
  return top as Measurement;
}

function measure(command: string[], env: NodeJS.ProcessEnv): Promise<Measurement> {
  const [file, ...args] = command as [string, ...string[]];
  const started = process.hrtime.bigint();
  const child = spawn(file, args, {
    env: { ...process.env, SPANHUB_LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  killOnExit(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding("utf8").on("data", (text: string) => {
    stderr = (stderr + text).slice(-4000);
  });
  return new Promise((resolve, reject) =>
    child.once("exit", (code) => {
      const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
      const report = /\{"write_s": ([\d.e-]+)\}/.exec(stdout);
      if (code !== 0 || !report) reject(new Error(`${command.join(" ")} exited with ${code}\n${stderr}`));
      else resolve({ writeSeconds: Number(report[1]), wallSeconds });
    }),
  );
}

function positiveInt(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
}

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}
