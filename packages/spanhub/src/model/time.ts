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
