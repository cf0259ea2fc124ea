import type { CompactSpans } from "../api.js";

/**
 * A run's spans for the waterfall, held column by column (one array per field) so that
 * 100k spans stay cheap: the tree is rebuilt in linear time after loads and live updates,
 * and the visible rows are a flat list of span indexes. Hand-written: it is the hot path.
 */
export class SpanTree {
  readonly ids: string[] = [];
  /** Parent span index, -1 for roots (and for spans whose parent never arrived). */
  parents: number[] = [];
  private parentIds: (string | null)[] = [];
  readonly nameIndex: number[] = [];
  readonly names: string[] = [];
  readonly statuses: string[] = [];
  readonly statusIndex: number[] = [];
  /** Start in ms after `baseMs`; NaN when unknown. Typed arrays: 100k doubles as one block, not 100k heap numbers for the GC. */
  start = new Float64Array(0);
  /** NaN while running. */
  duration = new Float64Array(0);
  readonly depth: number[] = [];
  /** Children of span i are childList[childOffset[i] .. childOffset[i+1]), in start order. */
  private childOffset = new Int32Array(1);
  private childList = new Int32Array(0);
  roots: number[] = [];
  collapsed = new Uint8Array(0);
  /** Span indexes of the rows shown, in order. */
  rows = new Int32Array(0);
  /** Span index → row, -1 when hidden under a collapsed ancestor. */
  rowOf = new Int32Array(0);
  /** The time axis, ms after `baseMs`. */
  axisStart = 0;
  axisEnd = 1;
  readonly baseMs: number;
  private readonly byId = new Map<string, number>();
  private readonly nameLookup = new Map<string, number>();
  private readonly statusLookup = new Map<string, number>();

  constructor(baseTime: string) {
    this.baseMs = Date.parse(baseTime);
  }

  get size(): number {
    return this.ids.length;
  }

  indexOf(id: string): number | undefined {
    return this.byId.get(id);
  }

  name(span: number): string {
    return this.names[this.nameIndex[span] ?? -1] ?? "(unnamed)";
  }

  status(span: number): string {
    return this.statuses[this.statusIndex[span] ?? -1] ?? "running";
  }

  hasChildren(span: number): boolean {
    return (this.childOffset[span + 1] ?? 0) > (this.childOffset[span] ?? 0);
  }

  children(span: number): Int32Array {
    return this.childList.subarray(this.childOffset[span] ?? 0, this.childOffset[span + 1] ?? 0);
  }

  /** Adds or updates spans (a full listing or a stream update); call `rebuild` afterwards. */
  merge(data: CompactSpans): void {
    const shift = Date.parse(data.baseTime) - this.baseMs;
    const names = data.names.map((name) => this.intern(this.names, this.nameLookup, name));
    const statuses = data.statuses.map((status) => this.intern(this.statuses, this.statusLookup, status));
    this.reserve(this.ids.length + data.count);
    for (let at = 0; at < data.count; at++) {
      const id = data.id[at] as string;
      let span = this.byId.get(id);
      if (span === undefined) {
        span = this.ids.push(id) - 1;
        this.byId.set(id, span);
      }
      const parentAt = data.parent?.[at] ?? -1;
      this.parentIds[span] = data.parentId
        ? (data.parentId[at] ?? null)
        : parentAt >= 0
          ? (data.id[parentAt] ?? null)
          : null;
      this.nameIndex[span] = names[data.name[at] ?? -1] ?? -1;
      this.statusIndex[span] = statuses[data.status[at] ?? -1] ?? -1;
      const start = data.start[at];
      const duration = data.duration[at];
      this.start[span] = start === null || start === undefined ? Number.NaN : start + shift;
      this.duration[span] = duration === null || duration === undefined ? Number.NaN : duration;
    }
  }

  private reserve(capacity: number): void {
    if (capacity <= this.start.length) return;
    const size = Math.max(capacity, this.start.length * 2);
    const start = new Float64Array(size);
    const duration = new Float64Array(size);
    start.set(this.start);
    duration.set(this.duration);
    this.start = start;
    this.duration = duration;
  }

  /** Links parents and children, orders children by start, and lays out the rows. */
  rebuild(nowMs = Date.now()): void {
    const count = this.ids.length;
    const parents = new Array<number>(count);
    const childCount = new Int32Array(count + 1);
    for (let span = 0; span < count; span++) {
      const parentId = this.parentIds[span];
      const parent = parentId === null || parentId === undefined ? -1 : (this.byId.get(parentId) ?? -1);
      const linked = parent === span ? -1 : parent;
      parents[span] = linked;
      if (linked !== -1) childCount[linked] = (childCount[linked] as number) + 1;
    }
    const offset = new Int32Array(count + 1);
    for (let span = 0; span < count; span++) offset[span + 1] = (offset[span] as number) + (childCount[span] as number);
    const fill = offset.slice(0, count);
    const list = new Int32Array(count);
    const roots: number[] = [];
    for (let span = 0; span < count; span++) {
      const parent = parents[span] as number;
      if (parent === -1) roots.push(span);
      else list[(fill[parent] as number)++] = span;
    }
    const byStart = (a: number, b: number) => this.sortKey(a) - this.sortKey(b) || a - b;
    for (let span = 0; span < count; span++) {
      const from = offset[span] as number;
      const to = offset[span + 1] as number;
      if (to - from > 1 && !this.inOrder(list, from, to)) list.subarray(from, to).sort(byStart);
    }
    roots.sort(byStart);
    this.parents = parents;
    this.childOffset = offset;
    this.childList = list;
    this.roots = roots;
    if (this.collapsed.length < count) {
      const grown = new Uint8Array(count);
      grown.set(this.collapsed);
      this.collapsed = grown;
    }
    this.computeDepths();
    this.computeAxis(nowMs);
    this.layout();
  }

  /** Recomputes the visible rows after folding. */
  layout(): void {
    const count = this.ids.length;
    const rows = new Int32Array(count);
    const rowOf = new Int32Array(count).fill(-1);
    let row = 0;
    const stack: number[] = [];
    for (let at = this.roots.length - 1; at >= 0; at--) stack.push(this.roots[at] as number);
    while (stack.length > 0) {
      const span = stack.pop() as number;
      rowOf[span] = row;
      rows[row++] = span;
      if (this.collapsed[span]) continue;
      const from = this.childOffset[span] as number;
      for (let at = (this.childOffset[span + 1] as number) - 1; at >= from; at--)
        stack.push(this.childList[at] as number);
    }
    this.rows = rows.subarray(0, row);
    this.rowOf = rowOf;
  }

  setCollapsed(span: number, collapsed: boolean): void {
    this.collapsed[span] = collapsed ? 1 : 0;
    this.layout();
  }

  /** Unfolds every ancestor of the span, so it has a row. */
  reveal(span: number): void {
    let changed = false;
    // Bounded: a parent cycle in bad data must not hang the page.
    let steps = this.ids.length;
    for (let parent = this.parents[span] ?? -1; parent !== -1 && steps-- > 0; parent = this.parents[parent] ?? -1) {
      if (this.collapsed[parent]) changed = true;
      this.collapsed[parent] = 0;
    }
    if (changed) this.layout();
  }

  /** End of a span on the axis: its end, or now while it runs. */
  end(span: number, nowMs = Date.now()): number {
    const start = this.start[span] as number;
    const duration = this.duration[span] as number;
    if (!Number.isNaN(duration)) return start + duration;
    return Math.max(start, nowMs - this.baseMs);
  }

  private sortKey(span: number): number {
    const start = this.start[span] as number;
    return Number.isNaN(start) ? Number.NEGATIVE_INFINITY : start;
  }

  private inOrder(list: Int32Array, from: number, to: number): boolean {
    for (let at = from + 1; at < to; at++)
      if (this.sortKey(list[at - 1] as number) > this.sortKey(list[at] as number)) return false;
    return true;
  }

  private computeDepths(): void {
    const stack: number[] = [];
    for (const root of this.roots) {
      this.depth[root] = 0;
      stack.push(root);
    }
    while (stack.length > 0) {
      const span = stack.pop() as number;
      const childDepth = (this.depth[span] as number) + 1;
      for (const child of this.children(span)) {
        this.depth[child] = childDepth;
        stack.push(child);
      }
    }
  }

  private computeAxis(nowMs: number): void {
    let low = Number.POSITIVE_INFINITY;
    let high = Number.NEGATIVE_INFINITY;
    for (let span = 0; span < this.ids.length; span++) {
      const start = this.start[span] as number;
      if (Number.isNaN(start)) continue;
      if (start < low) low = start;
      const end = this.end(span, nowMs);
      if (end > high) high = end;
    }
    if (!Number.isFinite(low)) {
      low = 0;
      high = 1;
    }
    this.axisStart = Math.min(low, 0);
    this.axisEnd = Math.max(high, this.axisStart + 0.001);
  }

  private intern(table: string[], lookup: Map<string, number>, value: string): number {
    let at = lookup.get(value);
    if (at === undefined) {
      at = table.push(value) - 1;
      lookup.set(value, at);
    }
    return at;
  }
}
