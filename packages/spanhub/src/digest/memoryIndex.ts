import type { Micros } from "../model/time.js";
import type { Sample, SpanState } from "./digest.js";
import type { FoldIndex } from "./fold.js";

/** The fold's side state held in memory: the full recompute's index, and the base of the side-table one. */
export class MemoryFoldIndex implements FoldIndex {
  protected readonly spans = new Map<string, SpanState>();
  /** parent id → waiting children (id → first seq). */
  protected readonly waits = new Map<string, Map<string, number>>();
  /** Disjoint, sorted [start, end) intervals. */
  protected intervals: [Micros, Micros][] = [];

  span(id: string): SpanState | undefined {
    return this.spans.get(id);
  }

  saveSpan(id: string, span: SpanState): void {
    this.spans.set(id, span);
  }

  addWait(parentId: string, childId: string, seq: number): void {
    let children = this.waits.get(parentId);
    if (!children) {
      children = new Map();
      this.waits.set(parentId, children);
    }
    children.set(childId, seq);
  }

  takeWaits(parentId: string): number {
    const children = this.waits.get(parentId);
    if (!children) return 0;
    this.waits.delete(parentId);
    return children.size;
  }

  cover(start: Micros, end: Micros): number {
    if (end <= start) return 0;
    const kept: [Micros, Micros][] = [];
    let mergedStart = start;
    let mergedEnd = end;
    let alreadyCovered = 0;
    for (const interval of this.intervals) {
      if (interval[1] < start || interval[0] > end) kept.push(interval);
      else {
        alreadyCovered += interval[1] - interval[0];
        mergedStart = Math.min(mergedStart, interval[0]);
        mergedEnd = Math.max(mergedEnd, interval[1]);
      }
    }
    kept.push([mergedStart, mergedEnd]);
    kept.sort((a, b) => a[0] - b[0]);
    this.intervals = kept;
    return mergedEnd - mergedStart - alreadyCovered;
  }

  openSamples(limit: number): Sample[] {
    const open: Sample[] = [];
    for (const [spanId, span] of this.spans) if (span.end === null) open.push({ spanId, seq: span.firstSeq });
    return firstSeen(open, limit);
  }

  waitSamples(limit: number): Sample[] {
    const waiting: Sample[] = [];
    for (const children of this.waits.values()) for (const [spanId, seq] of children) waiting.push({ spanId, seq });
    return firstSeen(waiting, limit);
  }
}

function firstSeen(samples: Sample[], limit: number): Sample[] {
  return samples.sort((a, b) => a.seq - b.seq || (a.spanId ?? "").localeCompare(b.spanId ?? "")).slice(0, limit);
}
