import { readdirSync, readFileSync } from "node:fs";

/** A thread's time on a CPU and waiting, runnable, for one, in seconds. */
export interface ThreadTime {
  run: number;
  wait: number;
}

/** What a process's threads and the whole machine did between two snapshots. */
export interface CpuSnapshot {
  /** By thread id, from /proc/PID/task/TID/schedstat. */
  threads: Map<number, ThreadTime>;
  /** Jiffies of every CPU, all and idle (idle + iowait), from /proc/stat. */
  machineTotal: number;
  machineIdle: number;
}

export interface ThreadUse {
  /** Fractions of the interval: the main thread, the busiest other thread (the SQLite writer under load). */
  main: ThreadTime;
  busiestWorker?: ThreadTime;
  /** The machine's busy share of all its CPUs. */
  machineBusy: number;
}

/** Per-thread scheduling times of `pid` and the machine's CPU counters, if readable (Linux). */
export function cpuSnapshot(pid: number): CpuSnapshot | undefined {
  try {
    const threads = new Map<number, ThreadTime>();
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        // schedstat: nanoseconds on a CPU, nanoseconds runnable and waiting, time slices.
        const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ").map(Number);
        threads.set(Number(tid), { run: (run as number) / 1e9, wait: (wait as number) / 1e9 });
      } catch {
        // The thread ended meanwhile.
      }
    }
    const cpu = (readFileSync("/proc/stat", "utf8").split("\n")[0] as string).trim().split(/\s+/).slice(1).map(Number);
    const machineTotal = cpu.reduce((sum, value) => sum + value, 0);
    const machineIdle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    return { threads, machineTotal, machineIdle };
  } catch {
    return undefined;
  }
}

/** Each thread's share of the `seconds` between two snapshots of `pid`, and the machine's. */
export function threadUse(pid: number, before: CpuSnapshot, after: CpuSnapshot, seconds: number): ThreadUse {
  const share = (tid: number): ThreadTime => {
    const start = before.threads.get(tid) ?? { run: 0, wait: 0 };
    const end = after.threads.get(tid) ?? start;
    return { run: (end.run - start.run) / seconds, wait: (end.wait - start.wait) / seconds };
  };
  let busiestWorker: ThreadTime | undefined;
  for (const tid of after.threads.keys()) {
    if (tid === pid) continue;
    const use = share(tid);
    if (!busiestWorker || use.run > busiestWorker.run) busiestWorker = use;
  }
  const total = after.machineTotal - before.machineTotal;
  const idle = after.machineIdle - before.machineIdle;
  return {
    main: share(pid),
    ...(busiestWorker ? { busiestWorker } : {}),
    machineBusy: total > 0 ? 1 - idle / total : 0,
  };
}
