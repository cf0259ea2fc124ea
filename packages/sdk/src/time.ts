import { performance } from "node:perf_hooks";

/**
 * Wall-clock milliseconds with microsecond resolution: `performance.now()` anchored to `Date.now()`.
 * The anchor is refreshed by `reanchor()` (the tracer calls it once per flush) so a long-lived
 * process does not drift from the wall clock.
 */
let offset = Date.now() - performance.now();

export function nowMs(): number {
  return offset + performance.now();
}

export function reanchor(): void {
  offset = Date.now() - performance.now();
}

/** "00." to "59.": the seconds of a timestamp with their dot. */
const SECONDS: string[] = Array.from({ length: 60 }, (_, second) => `${String(second).padStart(2, "0")}.`);
/** "000" to "999": three digits of the fraction. */
const DIGITS3: string[] = Array.from({ length: 1000 }, (_, value) => String(value).padStart(3, "0"));

let cachedMinute = Number.NaN;
/** `2026-11-23T08:47:` for `cachedMinute`. */
let cachedPrefix = "";

/** `2026-11-23T08:47:` for the minute of `ms` (cached): what `isoMicros` puts before the seconds. */
export function isoMinutePrefix(ms: number): string {
  const minute = Math.floor(ms / 60_000);
  if (minute !== cachedMinute) {
    cachedMinute = minute;
    cachedPrefix = new Date(minute * 60_000).toISOString().slice(0, 17);
  }
  return cachedPrefix;
}

/** Microseconds of `ms` into its minute: 0 to 59,999,999. */
export function microsIntoMinute(ms: number): number {
  const micros = Math.floor((ms - Math.floor(ms / 60_000) * 60_000) * 1000);
  return Math.min(59_999_999, Math.max(0, micros));
}

/**
 * ISO-8601 UTC with microseconds, e.g. `2026-11-23T08:47:25.363123Z`. The date, hour and minute
 * are cached per minute; only seconds and microseconds are formatted, from lookup tables.
 */
export function isoMicros(ms: number): string {
  const prefix = isoMinutePrefix(ms);
  const micros = microsIntoMinute(ms);
  const second = (micros / 1_000_000) | 0;
  const fraction = micros - second * 1_000_000;
  const high = (fraction / 1000) | 0;
  return `${prefix}${SECONDS[second]}${DIGITS3[high]}${DIGITS3[fraction - high * 1000]}Z`;
}
