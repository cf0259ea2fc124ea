import { performance } from "node:perf_hooks";

/**
 * Wall-clock milliseconds with microsecond resolution: `performance.now()` anchored to `Date.now()`.
 * The anchor is refreshed by `reanchor()` (the sender calls it once per flush) so a long-lived
 * process does not drift from the wall clock.
 */
let offset = Date.now() - performance.now();

export function nowMs(): number {
  return offset + performance.now();
}

export function reanchor(): void {
  offset = Date.now() - performance.now();
}

let cachedSecond = Number.NaN;
let cachedPrefix = "";

/** ISO-8601 UTC with microseconds, e.g. `2026-11-23T08:47:25.363123Z`. The date part is cached per second. */
export function isoMicros(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 20);
  }
  const micros = Math.floor((ms - second * 1000) * 1000);
  return `${cachedPrefix}${String(micros).padStart(6, "0")}Z`;
}
