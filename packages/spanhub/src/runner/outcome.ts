import { constants } from "node:os";
import type { EndStatus, SpanStatus } from "../model/event.js";
import type { ChildExit } from "./childProcess.js";

/** Why `spanhub run` itself stopped the child, if it did. */
export type StopCause = { kind: "timeout"; afterMs: number } | { kind: "cancel"; signal: NodeJS.Signals };

export interface RunOutcome {
  status: EndStatus;
  /** The root span's status: a crash is a failure there (spans have no `crashed`). */
  spanStatus: Exclude<SpanStatus, "running">;
  /** Why, in a few words (`exit 1`, `signal SIGKILL`, `timeout after 2s`); absent when ok. */
  reason?: string;
  /** What `spanhub run` exits with. */
  exitCode: number;
}

/** Exit statuses as `timeout(1)` and shells use them. */
export const EXIT_TIMEOUT = 124;
export const EXIT_CANNOT_EXECUTE = 126;
export const EXIT_NOT_FOUND = 127;
export const EXIT_CANCELLED = 130;

/**
 * How a child's end maps to its run: a stop we caused wins (timed_out, cancelled, whatever the
 * child then exited with); else exit 0 is ok, another code failed, a signal we did not send
 * crashed (exit 128 + its number).
 */
export function runOutcome(exit: ChildExit, stop: StopCause | undefined): RunOutcome {
  if (stop?.kind === "timeout")
    return {
      status: "timed_out",
      spanStatus: "timed_out",
      reason: `timeout after ${formatSeconds(stop.afterMs)}`,
      exitCode: EXIT_TIMEOUT,
    };
  if (stop?.kind === "cancel")
    return { status: "cancelled", spanStatus: "cancelled", reason: stop.signal, exitCode: EXIT_CANCELLED };
  if (exit.spawnError) {
    const notFound = (exit.spawnError as NodeJS.ErrnoException).code === "ENOENT";
    return {
      status: "failed",
      spanStatus: "failed",
      reason: `cannot run: ${exit.spawnError.message}`,
      exitCode: notFound ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE,
    };
  }
  if (exit.signal)
    return {
      status: "crashed",
      spanStatus: "failed",
      reason: `signal ${exit.signal}`,
      exitCode: 128 + (constants.signals[exit.signal] ?? 0),
    };
  if (exit.code === 0) return { status: "ok", spanStatus: "ok", exitCode: 0 };
  return { status: "failed", spanStatus: "failed", reason: `exit ${exit.code}`, exitCode: exit.code ?? 1 };
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
