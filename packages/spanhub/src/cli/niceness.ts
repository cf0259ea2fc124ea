import { readdirSync } from "node:fs";
import { getPriority, setPriority } from "node:os";

/**
 * Lowers the priority of every thread of this process to niceness `nice` (one already nicer keeps
 * its own; 0 changes nothing). Call it before starting worker threads: threads inherit the
 * niceness of the thread that creates them. On Linux niceness is per thread (setpriority on the
 * process id changes only the main thread), so each thread in /proc/self/task is set by its id;
 * elsewhere the process id covers the whole process.
 */
export function lowerPriority(nice: number): void {
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
