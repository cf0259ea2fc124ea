import { formatMicros, type Micros } from "../model/time.js";
import type { SpanOutline } from "../store/records.js";

/**
 * The waterfall's form of a run's spans: one array per field (columnar), names and
 * statuses as indexes into string tables, times in milliseconds relative to `baseTime`.
 * A full listing gives each span's parent as an index into `id` (-1: none, or not in the
 * run); a stream update, which holds only changed spans, gives `parentId` instead.
 */
export interface CompactSpans {
  baseTime: string;
  count: number;
  id: string[];
  parent?: number[];
  parentId?: (string | null)[];
  names: string[];
  /** Index into `names`; -1 when the span has no name yet. */
  name: number[];
  statuses: string[];
  status: number[];
  /** Start in ms after `baseTime` (null: the start has not arrived). */
  start: (number | null)[];
  /** Null while the span runs or when its start is unknown. */
  duration: (number | null)[];
}

// Hot path (100k spans per request): plain loops and lookup maps instead of array helpers.
export function compactSpans(outlines: SpanOutline[], base: Micros, parents: "index" | "id"): CompactSpans {
  const count = outlines.length;
  const ids = new Array<string>(count);
  const nameIndex = new Array<number>(count);
  const statusIndex = new Array<number>(count);
  const start = new Array<number | null>(count);
  const duration = new Array<number | null>(count);
  const names = new StringTable();
  const statuses = new StringTable();
  for (let index = 0; index < count; index++) {
    const span = outlines[index] as SpanOutline;
    ids[index] = span.id;
    nameIndex[index] = span.name === null ? -1 : names.indexOf(span.name);
    statusIndex[index] = statuses.indexOf(span.status);
    start[index] = span.startTime === null ? null : (span.startTime - base) / 1000;
    duration[index] = span.startTime === null || span.endTime === null ? null : (span.endTime - span.startTime) / 1000;
  }
  const result: CompactSpans = {
    baseTime: formatMicros(base),
    count,
    id: ids,
    names: names.values,
    name: nameIndex,
    statuses: statuses.values,
    status: statusIndex,
    start,
    duration,
  };
  if (parents === "id") result.parentId = outlines.map((span) => span.parentId);
  else {
    const positions = new Map<string, number>();
    for (let index = 0; index < count; index++) positions.set(ids[index] as string, index);
    result.parent = outlines.map((span) => (span.parentId === null ? -1 : (positions.get(span.parentId) ?? -1)));
  }
  return result;
}

class StringTable {
  readonly values: string[] = [];
  private readonly positions = new Map<string, number>();

  indexOf(value: string): number {
    let position = this.positions.get(value);
    if (position === undefined) {
      position = this.values.push(value) - 1;
      this.positions.set(value, position);
    }
    return position;
  }
}
