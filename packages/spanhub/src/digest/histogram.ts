/**
 * The digest's fixed log-scale latency buckets: ten per decade from 10 µs to one hour, plus an
 * underflow and an overflow bucket, so a database call and an hour-long step both land in real
 * buckets. Counts are kept sparse (bucket index → count) so a rarely used name costs a few bytes.
 */
const FIRST_BOUND_US = 10;
const LAST_BOUND_US = 3_600_000_000;
const PER_DECADE = 10;

/** Upper bounds in µs; bucket i holds durations in [BOUNDS_US[i-1], BOUNDS_US[i]), bucket 0 those under 10 µs. */
export const BOUNDS_US: readonly number[] = (() => {
  const bounds: number[] = [];
  for (let step = 0; ; step++) {
    const bound = Math.round(FIRST_BOUND_US * 10 ** (step / PER_DECADE));
    if (bound >= LAST_BOUND_US) break;
    bounds.push(bound);
  }
  bounds.push(LAST_BOUND_US);
  return bounds;
})();

/** Index of the overflow bucket (an hour or more). */
export const OVERFLOW_BUCKET = BOUNDS_US.length;

export type SparseCounts = Record<string, number>;

export function bucketOf(durationUs: number): number {
  if (!(durationUs >= FIRST_BOUND_US)) return 0;
  if (durationUs >= LAST_BOUND_US) return OVERFLOW_BUCKET;
  // The log gives the bucket up to rounding at the bounds; one comparison each way settles it.
  let bucket = Math.floor(PER_DECADE * Math.log10(durationUs / FIRST_BOUND_US)) + 1;
  if (bucket > OVERFLOW_BUCKET) bucket = OVERFLOW_BUCKET;
  while (bucket > 1 && durationUs < (BOUNDS_US[bucket - 1] as number)) bucket -= 1;
  while (bucket < OVERFLOW_BUCKET && durationUs >= (BOUNDS_US[bucket] as number)) bucket += 1;
  return bucket;
}

export function addTo(counts: SparseCounts, bucket: number, by = 1): void {
  counts[bucket] = (counts[bucket] ?? 0) + by;
}

export function totalOf(counts: SparseCounts): number {
  let total = 0;
  for (const key in counts) total += counts[key] as number;
  return total;
}

/**
 * The q-quantile (0..1) in µs, interpolated on a log scale inside its bucket; null when empty.
 * The underflow bucket reads as its bound, the overflow bucket as one hour.
 */
export function quantileOf(counts: SparseCounts, q: number): number | null {
  const total = totalOf(counts);
  if (total === 0) return null;
  const rank = q * total;
  let below = 0;
  // Integer-like keys iterate in ascending numeric order, so the buckets come sorted.
  for (const key in counts) {
    const bucket = Number(key);
    const count = counts[key] as number;
    if (below + count >= rank && count > 0) {
      if (bucket === 0) return FIRST_BOUND_US;
      if (bucket === OVERFLOW_BUCKET) return LAST_BOUND_US;
      const lower = BOUNDS_US[bucket - 1] as number;
      const upper = BOUNDS_US[bucket] as number;
      const within = Math.min(1, Math.max(0, (rank - below) / count));
      return lower * (upper / lower) ** within;
    }
    below += count;
  }
  return LAST_BOUND_US;
}

/** Dense counts, one per bucket, for the API. */
export function denseCounts(counts: SparseCounts): number[] {
  const dense = new Array<number>(OVERFLOW_BUCKET + 1).fill(0);
  for (const key in counts) dense[Number(key)] = counts[key] as number;
  return dense;
}
