import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Starts the host's shared agent when none answers, so that however many processes try at
 * once, one launches and the others connect:
 *
 * 1. probe the socket; 2. take the launch lock beside it (`<name>.launch`, created with `wx`,
 * holding pid and time; stale when its pid is dead or it is older than `STALE_MS`); 3. probe
 * again; 4. spawn `spanhub agent --daemonize --socket PATH` fully detached and wait (bounded)
 * until the socket answers; 5. release the lock. Processes that find the lock taken keep
 * probing until the agent answers. The lock only avoids needless spawns: the agent's own
 * kernel lock guarantees a single agent (a second one exits with status 3).
 */
const STALE_MS = 10_000;
const POLL_MS = 50;
const EXIT_ALREADY_RUNNING = 3;

export type Probe<T> = () => Promise<T | undefined>;

export interface LaunchResult<T> {
  /** What the probe returned once the agent answered. */
  value?: T;
  /** Why it could not launch, as one line. */
  problem?: string;
}

export async function launchAgent<T>(
  socketPath: string,
  command: string[],
  probe: Probe<T>,
  timeoutMs = 20_000,
): Promise<LaunchResult<T>> {
  const deadline = Date.now() + timeoutMs;
  const dir = dirname(socketPath);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch {
    // The spawn reports a real problem with the directory.
  }
  const lock = join(dir, `${basename(socketPath).replace(/\.sock$/, "")}.launch`);
  while (Date.now() < deadline) {
    const found = await probe();
    if (found !== undefined) return { value: found };
    const token = tryLock(lock);
    if (token === undefined) {
      await sleep(POLL_MS);
      continue;
    }
    try {
      const again = await probe();
      if (again !== undefined) return { value: again };
      return await spawnAndWait(socketPath, command, probe, deadline);
    } finally {
      releaseLock(lock, token);
    }
  }
  return { problem: `the agent on ${socketPath} did not answer within ${Math.round(timeoutMs / 1000)} s` };
}

async function spawnAndWait<T>(
  socketPath: string,
  command: string[],
  probe: Probe<T>,
  deadline: number,
): Promise<LaunchResult<T>> {
  const [file, ...args] = command as [string, ...string[]];
  let exit: number | null | undefined;
  let spawnError: Error | undefined;
  try {
    const child = spawn(file, [...args, "agent", "--daemonize", "--socket", socketPath], {
      detached: true,
      stdio: "ignore",
    });
    child.once("error", (error) => {
      spawnError = error;
    });
    child.once("exit", (code) => {
      exit = code;
    });
    child.unref();
  } catch (error) {
    return { problem: `cannot run ${command.join(" ")}: ${(error as Error).message}` };
  }
  while (Date.now() < deadline) {
    await sleep(POLL_MS);
    if (spawnError) return { problem: `cannot run ${command.join(" ")}: ${spawnError.message}` };
    const found = await probe();
    if (found !== undefined) return { value: found };
    if (exit !== undefined && exit !== 0 && exit !== EXIT_ALREADY_RUNNING)
      return { problem: `\`${command.join(" ")} agent --daemonize\` exited with status ${exit} (see its agent.log)` };
  }
  return { problem: `the agent launched on ${socketPath} did not answer in time` };
}

/** The lock's token when taken, else undefined; a stale lock is removed on the way. */
function tryLock(path: string): string | undefined {
  const token = `${process.pid} ${Date.now()}`;
  try {
    const fd = openSync(path, "wx", 0o600);
    try {
      writeSync(fd, token);
    } finally {
      closeSync(fd);
    }
    return token;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") return token; // Cannot lock here: launch anyway.
  }
  if (isStale(path)) {
    try {
      unlinkSync(path);
    } catch {
      // Another process removed it first.
    }
  }
  return undefined;
}

function isStale(path: string): boolean {
  try {
    const [pid, time] = readFileSync(path, "utf8").trim().split(" ").map(Number);
    if (pid !== undefined && time !== undefined && Number.isInteger(pid) && Number.isFinite(time))
      return !isAlive(pid) || Date.now() - time > STALE_MS;
    // Being written, or written by a process that died at once: judge by age.
    return Date.now() - statSync(path).mtimeMs > STALE_MS;
  } catch {
    return false;
  }
}

function releaseLock(path: string, token: string): void {
  try {
    if (readFileSync(path, "utf8") === token) unlinkSync(path);
  } catch {
    // Already gone.
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * The argv that runs the `spanhub` CLI, in this order: the `agentCommand` option; the
 * `SPANHUB_AGENT_BIN` environment variable (a `.js` file runs under this Node); the bin of an
 * installed `spanhub` package (resolved from this SDK, then from the working directory); else
 * `spanhub` on PATH.
 */
export function findAgentCommand(option: string[] | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  if (option && option.length > 0) return option;
  const fromEnv = env.SPANHUB_AGENT_BIN;
  if (fromEnv) return runnable(fromEnv);
  const bin = installedBin();
  if (bin) return runnable(bin);
  return ["spanhub"];
}

function runnable(path: string): string[] {
  return /\.[cm]?js$/.test(path) ? [process.execPath, path] : [path];
}

function installedBin(): string | undefined {
  const starts = [fileURLToPath(import.meta.url), join(process.cwd(), "noop.js")];
  for (const start of starts) {
    try {
      const entry = createRequire(start).resolve("spanhub");
      const bin = binOf(entry);
      if (bin) return bin;
    } catch {
      // Not resolvable from here (not installed, or not built): look for the package folder.
    }
    for (let dir = dirname(start); ; dir = dirname(dir)) {
      const bin = binOf(join(dir, "node_modules", "spanhub", "package.json"));
      if (bin) return bin;
      if (dirname(dir) === dir) break;
    }
  }
  return undefined;
}

/** The `spanhub` bin of the package that holds `path`. */
function binOf(path: string): string | undefined {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      try {
        const pkg = JSON.parse(readFileSync(manifest, "utf8")) as {
          name?: string;
          bin?: string | Record<string, string>;
        };
        if (pkg.name !== "spanhub") return undefined;
        const bin = typeof pkg.bin === "string" ? pkg.bin : pkg.bin?.spanhub;
        return bin ? join(dir, bin) : undefined;
      } catch {
        return undefined;
      }
    }
    if (dirname(dir) === dir) return undefined;
  }
}
