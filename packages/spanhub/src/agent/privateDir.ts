import { chmodSync, mkdirSync, statSync } from "node:fs";

/**
 * Makes sure the socket directory exists, belongs to this user and is private (0700),
 * so no other user can connect to, replace or squat the agent's socket.
 */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = statSync(dir);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid)
    throw new Error(`${dir} belongs to another user (uid ${stat.uid}); choose another --socket`);
  if ((stat.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}
