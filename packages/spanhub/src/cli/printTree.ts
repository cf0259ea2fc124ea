import type { DigestView } from "../digest/digestView.js";
import { formatMicros } from "../model/time.js";
import type { RunRecord, SpanRecord } from "../store/records.js";

/** The run's header and span tree as text, children in start order. */
export function formatRunTree(run: RunRecord, spans: SpanRecord[]): string {
  const lines = [
    `${run.name ?? "(unnamed)"}  [${run.id}]`,
    `  status ${run.status}${run.reason ? ` (${run.reason})` : ""}  app ${run.app ?? "-"}  started ${formatMicros(run.startTime)}` +
      `  duration ${duration(run.startTime, run.endTime)}  spans ${run.spanCount}  errors ${run.errorCount}`,
  ];
  const ids = new Set(spans.map((span) => span.id));
  const children = new Map<string | null, SpanRecord[]>();
  for (const span of spans) {
    const parent = span.parentId !== null && ids.has(span.parentId) ? span.parentId : null;
    const siblings = children.get(parent) ?? [];
    siblings.push(span);
    children.set(parent, siblings);
  }
  const walk = (parent: string | null, prefix: string) => {
    const list = children.get(parent) ?? [];
    list.forEach((span, index) => {
      const last = index === list.length - 1;
      const orphan = span.parentId !== null && !ids.has(span.parentId) ? "  (parent missing)" : "";
      const error = span.error?.message
        ? `  ${span.error.type ? `${span.error.type}: ` : ""}${span.error.message.split("\n")[0]}`
        : "";
      lines.push(
        `${prefix}${last ? "└─ " : "├─ "}${span.name ?? "(unnamed)"}  ${span.status}  ${duration(span.startTime, span.endTime)}${orphan}${error}`,
      );
      walk(span.id, `${prefix}${last ? "   " : "│  "}`);
    });
  };
  walk(null, "");
  return lines.join("\n");
}

function duration(start: number | null, end: number | null): string {
  if (start === null || end === null) return "-";
  const ms = (end - start) / 1000;
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)}s` : `${ms.toFixed(ms < 10 ? 2 : 1)}ms`;
}

const TOP = 5;

/** The digest's summary, printed above the tree: what a reader wants before the details. */
export function formatDigest(digest: DigestView): string {
  const ms = (value: number | null) => (value === null ? "-" : `${value}ms`);
  const outcome = digest.outcome
    ? `${digest.outcome.status}${digest.outcome.reason ? ` (${digest.outcome.reason})` : ""}`
    : "not sealed";
  const lines = [
    `digest  outcome ${outcome}  events ${digest.eventCount}  spans ${digest.spanCount} (open ${digest.openSpans}, failed ${digest.failedSpans})  active ${ms(digest.activeMs)}`,
    `  latency p50 ${ms(digest.latency.p50Ms)}  p95 ${ms(digest.latency.p95Ms)}  p99 ${ms(digest.latency.p99Ms)}`,
  ];
  const list = <T>(title: string, items: T[], show: (item: T) => string) => {
    if (items.length > 0) lines.push(`  ${title}: ${items.slice(0, TOP).map(show).join(", ")}`);
  };
  list("errors", digest.errors, (error) => `${error.class} ×${error.count}`);
  list("operations", digest.operations, (op) => `${op.name} ×${op.calls} p95 ${ms(op.p95Ms)}`);
  list(
    "models",
    digest.models,
    (model) => `${model.model} in ${model.inputTokens} out ${model.outputTokens} $${model.costUsd}`,
  );
  list("anomalies", digest.anomalies, (anomaly) => `${anomaly.kind} ×${anomaly.count}`);
  return `${lines.join("\n")}\n`;
}
