import { formatMicros } from "../model/time.js";
import type { DigestState, Tally } from "./digest.js";
import { BOUNDS_US, denseCounts, quantileOf, type SparseCounts } from "./histogram.js";

const BOUNDS_MS = BOUNDS_US.map((bound) => bound / 1000);

export type DigestView = ReturnType<typeof digestView>;

/** The digest as the API shows it: times in RFC 3339, durations in ms, lists sorted by weight. */
export function digestView(digest: DigestState) {
  const models = Object.entries(digest.models)
    .map(([model, usage]) => ({ model, ...usage }))
    .sort((a, b) => b.calls - a.calls || a.model.localeCompare(b.model));
  return {
    schemaVersion: digest.schemaVersion,
    watermarkSeq: digest.watermarkSeq,
    sealed: digest.outcome !== null,
    eventCount: digest.eventCount,
    spanCount: digest.spanCount,
    openSpans: digest.openSpans,
    failedSpans: digest.failedSpans,
    firstTime: digest.firstTime === null ? null : formatMicros(digest.firstTime),
    lastTime: digest.lastTime === null ? null : formatMicros(digest.lastTime),
    durationMs:
      digest.firstTime === null || digest.lastTime === null ? null : (digest.lastTime - digest.firstTime) / 1000,
    activeMs: digest.activeUs / 1000,
    errors: tallies(digest.errors).map(({ key, ...tally }) => ({ class: key, ...tally })),
    operations: Object.entries(digest.operations)
      .map(([name, stats]) => ({
        name,
        calls: stats.calls,
        failed: stats.failed,
        totalMs: stats.totalUs / 1000,
        maxMs: stats.maxUs / 1000,
        p50Ms: quantileMs(stats.histogram, 0.5),
        p95Ms: quantileMs(stats.histogram, 0.95),
        // Sparse (bucket index → count): 200 names of dense buckets would make the digest heavy to read.
        histogram: { ...stats.histogram },
      }))
      .sort((a, b) => b.calls - a.calls || a.name.localeCompare(b.name)),
    latency: {
      boundsMs: BOUNDS_MS,
      counts: denseCounts(digest.latency),
      p50Ms: quantileMs(digest.latency, 0.5),
      p95Ms: quantileMs(digest.latency, 0.95),
      p99Ms: quantileMs(digest.latency, 0.99),
    },
    models,
    totals: {
      inputTokens: models.reduce((sum, model) => sum + model.inputTokens, 0),
      outputTokens: models.reduce((sum, model) => sum + model.outputTokens, 0),
      costUsd: models.reduce((sum, model) => sum + model.costUsd, 0),
    },
    anomalies: tallies(digest.anomalies).map(({ key, ...tally }) => ({ kind: key, ...tally })),
    outcome: digest.outcome,
  };
}

export function quantileMs(counts: SparseCounts, q: number): number | null {
  const us = quantileOf(counts, q);
  return us === null ? null : Math.round(us) / 1000;
}

function tallies(byKey: Record<string, Tally>) {
  return Object.entries(byKey)
    .map(([key, tally]) => ({ key, count: tally.count, samples: tally.samples }))
    .sort((a, b) => b.count - a.count || a.key.localeCompare(b.key));
}
