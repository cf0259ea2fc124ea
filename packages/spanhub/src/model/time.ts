/** Times are microseconds since the Unix epoch, held in a JS number (exact up to year 2255). */
export type Micros = number;

const ISO_TIME = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

/** The current time with microsecond resolution. */
export function nowMicros(): Micros {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/**
 * Parses the ISO-8601 forms real agents send (`...Z`, `...+00:00`, 3 to 9 fraction
 * digits, no zone meaning UTC). Returns undefined when the text is not such a time.
 */
export function parseIsoMicros(text: string): Micros | undefined {
  const fast = parseUtcFast(text);
  if (fast !== undefined) return fast;
  const match = ISO_TIME.exec(text);
  if (!match) return undefined;
  const [, date, clock, fraction = "", zoneText] = match;
  let zone = zoneText === undefined || zoneText === "z" ? "Z" : zoneText;
  if (/^[+-]\d{2}$/.test(zone)) zone = `${zone}:00`;
  else if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const seconds = Date.parse(`${date}T${clock}${zone}`);
  if (Number.isNaN(seconds) || !isRealDate(date as string)) return undefined;
  const micros = fraction === "" ? 0 : Number(fraction.slice(0, 6).padEnd(6, "0"));
  return seconds * 1000 + micros;
}

let cachedDay = "";
let cachedDayMs = 0;

/**
 * Hand-written because it is on the ingest path (three timestamps a span): the common
 * `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)` read without a regex, the day cached.
 * Anything else returns undefined and takes the general path.
 */
function parseUtcFast(text: string): Micros | undefined {
  if (text.length < 20 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || text.charCodeAt(10) !== 84)
    return undefined;
  if (text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58) return undefined;
  const hours = twoDigits(text, 11);
  const minutes = twoDigits(text, 14);
  const seconds = twoDigits(text, 17);
  if (hours > 23 || minutes > 59 || seconds > 59) return undefined;
  let at = 19;
  let fraction = 0;
  let scale = 100_000;
  if (text.charCodeAt(at) === 46) {
    for (at += 1; at < text.length; at++) {
      const digit = text.charCodeAt(at) - 48;
      if (digit < 0 || digit > 9) break;
      fraction += digit * scale;
      scale /= 10;
    }
    if (scale === 100_000) return undefined;
  }
  const zone = text.length - at;
  if (!(zone === 1 && text.charCodeAt(at) === 90) && !(zone === 6 && text.endsWith("+00:00"))) return undefined;
  const day = text.slice(0, 10);
  if (day !== cachedDay) {
    const dayMs = Date.parse(`${day}T00:00:00Z`);
    if (Number.isNaN(dayMs) || !isRealDate(day)) return undefined;
    cachedDay = day;
    cachedDayMs = dayMs;
  }
  return (cachedDayMs + ((hours * 60 + minutes) * 60 + seconds) * 1000) * 1000 + Math.floor(fraction);
}

/** Two ASCII digits at `at`, or 99 (out of every range checked) when they are not digits. */
function twoDigits(text: string, at: number): number {
  const tens = text.charCodeAt(at) - 48;
  const ones = text.charCodeAt(at + 1) - 48;
  return tens >= 0 && tens <= 9 && ones >= 0 && ones <= 9 ? tens * 10 + ones : 99;
}

/** Date.parse rolls 2026-02-30 over to March; a real date survives the round trip. */
function isRealDate(date: string): boolean {
  // Only days past the 28th can roll over; skipping the rest keeps the ingest path cheap.
  return Number(date.slice(8, 10)) <= 28 || new Date(`${date}T00:00:00Z`).toISOString().startsWith(date);
}

/** Milliseconds since the epoch (possibly fractional) to microseconds. */
export function millisToMicros(ms: number): Micros {
  return Math.round(ms * 1000);
}

/** RFC 3339 UTC with exactly six fraction digits: `2026-11-23T08:47:25.363123Z`. */
export function formatMicros(us: Micros): string {
  const ms = Math.floor(us / 1000);
  const iso = new Date(ms).toISOString();
  const micros = String(us - ms * 1000).padStart(3, "0");
  return `${iso.slice(0, 23)}${micros}Z`;
}

/**
 * A time given by a user: RFC 3339 text, or epoch milliseconds as a number or digits.
 * Returns undefined when it is neither.
 */
export function parseUserTime(value: string | number): Micros | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? millisToMicros(value) : undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return millisToMicros(Number(value));
  return parseIsoMicros(value);
}

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|us|µs|h|m|s)/gy;
const UNIT_MS: Record<string, number> = { us: 0.001, µs: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `250ms`, `30s`, `5m`, `1h30m` into milliseconds; undefined when malformed. */
export function parseDurationMs(text: string): number | undefined {
  if (text === "") return undefined;
  DURATION_PART.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  for (let match = DURATION_PART.exec(text); match; match = DURATION_PART.exec(text)) {
    total += Number(match[1]) * (UNIT_MS[match[2] as string] as number);
    consumed = DURATION_PART.lastIndex;
  }
  return consumed === text.length ? total : undefined;
}
