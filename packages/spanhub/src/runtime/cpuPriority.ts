import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { getPriority, setPriority } from "node:os";

/** How much CPU priority the agent gives up: a niceness 0 to 19, or `idle` (only CPU time nothing else wants). */
export type CpuPriority = number | "idle";

/** The niceness used where the idle scheduling class is not available. */
const LOWEST_NICE = 19;

/**
 * Lowers the CPU priority of every thread of this process. Call it before starting worker
 * threads: threads inherit the scheduling of the thread that creates them.
 *
 * `idle` puts every thread in Linux's SCHED_IDLE class, set with util-linux's `chrt` (Node has no
 * binding for sched_setscheduler): a thread of the application that wakes up preempts the agent at
 * once, where niceness only shortens the agent's turns. Where that fails, niceness 19 is used,
 * with a warning on stderr.
 *
 * A niceness: one already nicer keeps its own; 0 changes nothing. On Linux niceness is per thread
 * (setpriority on the process id changes only the main thread), so each thread in /proc/self/task
 * is set by its id; elsewhere the process id covers the whole process.
 */
export function lowerPriority(priority: CpuPriority): void {
  if (priority !== "idle") {
    lowerNiceness(priority);
    return;
  }
  const problem = enterIdleClass();
  if (problem === undefined) return;
  lowerNiceness(LOWEST_NICE);
  process.stderr.write(`spanhub: no idle CPU class (${problem}); running at niceness ${LOWEST_NICE} instead\n`);
}

/** The CPU priority this process's main thread runs at now: `idle`, or `nice N`. */
export function describeCpuPriority(): string {
  try {
    // Field 41 of /proc/PID/stat is the scheduling policy; 5 is SCHED_IDLE.
    const stat = readFileSync("/proc/self/stat", "utf8");
    if (stat.slice(stat.lastIndexOf(")") + 2).split(" ")[41 - 3] === "5") return "idle";
  } catch {
    // Not Linux: niceness is all there is.
  }
  return `nice ${getPriority()}`;
}

function enterIdleClass(): string | undefined {
  if (process.platform !== "linux") return "not on Linux";
  const chrt = spawnSync("chrt", ["--all-tasks", "--idle", "--pid", "0", String(process.pid)], {
    encoding: "utf8",
    timeout: 5000,
  });
  if (chrt.error) return `chrt: ${chrt.error.message}`;
  if (chrt.status !== 0) return `chrt: ${chrt.stderr.trim() || `exit status ${chrt.status}`}`;
  return undefined;
}

function lowerNiceness(nice: number): void {
  if (nice <= 0) return;
  for (const thread of threadIds()) {
    try {
      if (getPriority(thread) < nice) setPriority(thread, nice);
    } catch {
      // The thread ended meanwhile.
    }
  }
}

/** This process's thread ids on Linux; [0] (the process) elsewhere. */
function threadIds(): number[] {
  try {
    return readdirSync("/proc/self/task").map(Number);
  } catch {
    return [0];
  }
}
