import { homedir } from "node:os";
import { join } from "node:path";

/** Defaults read from the environment. Only the CLI calls these; modules take explicit options. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SPANHUB_SOCKET) return env.SPANHUB_SOCKET;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "spanhub", "agent.sock");
  return join("/tmp", `spanhub-${process.getuid?.() ?? "user"}`, "agent.sock");
}

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.SPANHUB_DATA || join(homedir(), ".local", "share", "spanhub");
}

export function defaultPort(env: NodeJS.ProcessEnv = process.env): number {
  return env.SPANHUB_PORT ? Number(env.SPANHUB_PORT) : 7700;
}

export const VERSION = "0.2.0";
