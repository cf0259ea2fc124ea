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
