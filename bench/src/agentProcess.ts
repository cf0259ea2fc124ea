import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { killOnExit, removeOnExit } from "./cleanup.js";

/** The `spanhub` CLI of the workspace. */
export const CLI = fileURLToPath(new URL("../../bin/spanhub.js", import.meta.resolve("spanhub")));
const START_TIMEOUT_MS = 30_000;

/**
 * A fresh agent on a temp socket and data dir for `body`; stopped with `agent stop`, then the
 * rows of `table` counted in its store.
 */
export async function withAgent<T>(
  body: (socket: string, data: string) => Promise<T>,
  table: "runs" | "spans" = "runs",
): Promise<{ report: T; stored: number }> {
  const root = mkdtempSync(join(tmpdir(), "spanhub-bench-"));
  removeOnExit.add(root);
  const socket = join(root, "run", "agent.sock");
  const data = join(root, "data");
  let agent: ChildProcess | undefined;
  try {
    // BENCH_AGENT_NICE: the agent's --nice (unset: its default), to compare the agent's priorities.
    const nice = process.env.BENCH_AGENT_NICE ? ["--nice", process.env.BENCH_AGENT_NICE] : [];
    agent = spawn(process.execPath, [CLI, "agent", "--socket", socket, "--data", data, ...nice], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, SPANHUB_LOG_LEVEL: process.env.SPANHUB_LOG_LEVEL ?? "warn" },
    });
    killOnExit(agent);
    let stderr = "";
    agent.stderr?.setEncoding("utf8").on("data", (text: string) => {
      stderr = (stderr + text).slice(-4000);
    });
    const child = agent;
    await new Promise<void>((ready, fail) => {
      let stdout = "";
      const timer = setTimeout(
        () => fail(new Error(`the agent did not start within 30 s\n${stderr}`)),
        START_TIMEOUT_MS,
      );
      child.stdout?.setEncoding("utf8").on("data", (text: string) => {
        stdout += text;
        if (/^spanhub agent \d+ on /m.test(stdout)) {
          clearTimeout(timer);
          ready();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        fail(new Error(`the agent exited with ${code}\n${stderr}`));
      });
    });
    const report = await body(socket, data);
    await new Promise<void>((done, fail) =>
      execFile(process.execPath, [CLI, "agent", "stop", "--socket", socket], (error) => (error ? fail(error) : done())),
    );
    if (child.exitCode === null && child.signalCode === null) await new Promise((exited) => child.once("exit", exited));
    return { report, stored: countRows(join(data, "spanhub.db"), table) };
  } finally {
    if (agent && agent.exitCode === null && agent.signalCode === null) agent.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
    removeOnExit.delete(root);
  }
}

function countRows(path: string, table: "runs" | "spans"): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
  } finally {
    db.close();
  }
}
