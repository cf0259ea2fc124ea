import { join } from "node:path";

/** Where the agent listens by default, as the agent itself decides it. */
export function defaultSocket(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SPANHUB_SOCKET) return env.SPANHUB_SOCKET;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "spanhub", "agent.sock");
  return join("/tmp", `spanhub-${process.getuid?.() ?? "user"}`, "agent.sock");
}

export type Endpoint = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/** `tcp://host:port` (or `host:port` with a scheme) is TCP; anything else a Unix socket path. */
export function parseEndpoint(socket: string): Endpoint {
  const match = /^tcp:\/\/(\[[^\]]+\]|[^:]+):(\d+)\/?$/.exec(socket);
  if (match) return { kind: "tcp", host: (match[1] as string).replace(/^\[|\]$/g, ""), port: Number(match[2]) };
  return { kind: "unix", path: socket };
}
