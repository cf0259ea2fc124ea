import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";

/** What a running agent publishes beside its socket for `status`, `stop` and `up`. */
export interface AgentInfo {
  pid: number;
  version: string;
  socket: string;
  dataDir: string;
  tcp?: string;
  http?: string;
  startedAt: string;
}

/**
 * The agent's exclusive lock beside its socket, held around the bind and for the
 * agent's whole life. It is a kernel record lock (taken through SQLite, already a
 * dependency, since Node has no flock), so it is released when the process dies,
 * however it dies, and two agents starting at once can never both hold it.
 */
export class AgentLock {
  private constructor(
    private readonly db: Database.Database,
    private readonly infoPath: string,
  ) {}

  /** The lock, or undefined when a live agent holds it. */
  static tryAcquire(socketPath: string): AgentLock | undefined {
    const path = lockPath(socketPath);
    const db = new Database(path, { timeout: 0 });
    chmodSync(path, 0o600);
    try {
      db.pragma("locking_mode = EXCLUSIVE");
      db.exec("BEGIN EXCLUSIVE");
    } catch (error) {
      db.close();
      if ((error as { code?: string }).code === "SQLITE_BUSY") return undefined;
      throw error;
    }
    return new AgentLock(db, infoPath(socketPath));
  }

  publish(info: AgentInfo): void {
    writeFileSync(this.infoPath, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
  }

  release(): void {
    rmSync(this.infoPath, { force: true });
    if (this.db.open) this.db.close();
  }
}

export function lockPath(socketPath: string): string {
  return join(dirname(socketPath), `${socketPathBase(socketPath)}.lock`);
}

function infoPath(socketPath: string): string {
  return join(dirname(socketPath), `${socketPathBase(socketPath)}.json`);
}

function socketPathBase(socketPath: string): string {
  return socketPath.slice(dirname(socketPath).length + 1).replace(/\.sock$/, "");
}

/** The info a running agent published, if any (it may be stale: check the pid). */
export function readAgentInfo(socketPath: string): AgentInfo | undefined {
  try {
    return JSON.parse(readFileSync(infoPath(socketPath), "utf8")) as AgentInfo;
  } catch {
    return undefined;
  }
}
