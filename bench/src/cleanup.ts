import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

/** Safety net: children still running when the bench process exits (even on a crash) are killed, temp dirs removed. */
const killOnExitChildren = new Set<ChildProcess>();
export const removeOnExit = new Set<string>();
process.once("exit", () => {
  for (const child of killOnExitChildren)
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const dir of removeOnExit) rmSync(dir, { recursive: true, force: true });
});

export function killOnExit(child: ChildProcess): void {
  killOnExitChildren.add(child);
  child.once("exit", () => killOnExitChildren.delete(child));
}
