import type { JSX } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { formatDuration } from "../format.js";
import type { SpanTree } from "./spanTree.js";

export const ROW_HEIGHT = 22;
/** Rows rendered above and below the viewport, so fast scrolling shows no gaps. */
const OVERSCAN = 12;

interface Props {
  tree: SpanTree;
  /** Changes whenever the tree's rows change (loads, live updates, folding). */
  version: number;
  selected: number | undefined;
  matches: Uint8Array | undefined;
  onSelect: (span: number) => void;
  onFold: () => void;
}

/**
 * The span tree on a time axis. Virtualized: only the rows in view (plus a margin) are in
 * the DOM, reusing the same elements while scrolling, so 100k spans scroll like 50.
 */
export function Waterfall({ tree, version, selected, matches, onSelect, onFold }: Props) {
  const scroller = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(600);
  const frame = useRef(0);

  useLayoutEffect(() => {
    const element = scroller.current;
    if (!element) return;
    const observer = new ResizeObserver(() => setViewport(element.clientHeight));
    observer.observe(element);
    setViewport(element.clientHeight);
    return () => observer.disconnect();
  }, []);

  // Keep the selected row in view (keyboard moves, jumps from search and the Insight card).
  useEffect(() => {
    const element = scroller.current;
    if (!element || selected === undefined) return;
    const row = tree.rowOf[selected] ?? -1;
    if (row < 0) return;
    const top = row * ROW_HEIGHT;
    if (top < element.scrollTop) element.scrollTop = top;
    else if (top + ROW_HEIGHT > element.scrollTop + element.clientHeight)
      element.scrollTop = top - element.clientHeight + ROW_HEIGHT * 3;
  }, [selected, version, tree]);

  const onScroll = () => {
    if (frame.current) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = 0;
      setScrollTop(scroller.current?.scrollTop ?? 0);
    });
  };

  // One handler for every row (rows are recycled while scrolling).
  const onClick = (event: MouseEvent) => {
    const target = event.target as Element;
    const toggle = target.closest<HTMLElement>("[data-fold]");
    if (toggle) {
      const span = Number(toggle.dataset.fold);
      tree.setCollapsed(span, !tree.collapsed[span]);
      onFold();
      return;
    }
    const row = target.closest<HTMLElement>("[data-index]");
    if (row) onSelect(Number(row.dataset.index));
  };

  const onKeyDown = (event: KeyboardEvent) => {
    const row = selected === undefined ? -1 : (tree.rowOf[selected] ?? -1);
    const select = (at: number) => {
      const span = tree.rows[Math.max(0, Math.min(tree.rows.length - 1, at))];
      if (span !== undefined) onSelect(span);
    };
    const fold = (span: number, collapsed: boolean) => {
      tree.setCollapsed(span, collapsed);
      onFold();
    };
    switch (event.key) {
      case "ArrowDown":
        select(row + 1);
        break;
      case "ArrowUp":
        select(row <= 0 ? 0 : row - 1);
        break;
      case "ArrowLeft":
        if (selected === undefined) return;
        if (tree.hasChildren(selected) && !tree.collapsed[selected]) fold(selected, true);
        else if ((tree.parents[selected] ?? -1) >= 0) onSelect(tree.parents[selected] as number);
        break;
      case "ArrowRight":
        if (selected === undefined) return;
        if (tree.collapsed[selected]) fold(selected, false);
        else if (tree.hasChildren(selected)) onSelect(tree.children(selected)[0] as number);
        break;
      case "Home":
        select(0);
        break;
      case "End":
        select(tree.rows.length - 1);
        break;
      default:
        return;
    }
    event.preventDefault();
  };

  const total = tree.rows.length;
  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(total, Math.ceil((scrollTop + viewport) / ROW_HEIGHT) + OVERSCAN);
  const span = tree.axisEnd - tree.axisStart;
  const now = Date.now();
  // Each visible row lives in slot `row % slots` for as long as it is in view, and slots never
  // change order: scrolling rewrites only the slots of rows that come into view, and moves nothing.
  const slots = Math.ceil(viewport / ROW_HEIGHT) + 2 * OVERSCAN + 1;
  const rows: (JSX.Element | null)[] = new Array(slots).fill(null);
  for (let row = first; row < last; row++) {
    const index = tree.rows[row] as number;
    const start = tree.start[index] as number;
    const known = !Number.isNaN(start);
    const left = known ? ((start - tree.axisStart) / span) * 100 : 0;
    const width = known ? ((tree.end(index, now) - start) / span) * 100 : 0;
    const status = tree.status(index);
    const parent = tree.hasChildren(index);
    const classes = `wf-row${index === selected ? " selected" : ""}${matches?.[index] ? " match" : ""}`;
    rows[row % slots] = (
      <div
        class={classes}
        style={{ top: `${row * ROW_HEIGHT}px` }}
        data-span={tree.ids[index]}
        data-index={index}
        role="treeitem"
        tabIndex={-1}
        aria-level={(tree.depth[index] ?? 0) + 1}
        aria-selected={index === selected}
        aria-expanded={parent ? !tree.collapsed[index] : undefined}
      >
        <div class="wf-label" style={{ paddingLeft: `${6 + (tree.depth[index] ?? 0) * 14}px` }}>
          {/* Always a button (hidden on leaves), so a slot never swaps elements. */}
          <button
            type="button"
            class="wf-toggle"
            data-fold={index}
            aria-label={tree.collapsed[index] ? "unfold" : "fold"}
            hidden={!parent}
          >
            {tree.collapsed[index] ? "▸" : "▾"}
          </button>
          <span class="wf-name" title={tree.name(index)}>
            {tree.name(index)}
          </span>
        </div>
        <div class="wf-track">
          {known && (
            <div class={`wf-bar status-${status}`} style={{ left: `${left}%`, width: `${width}%` }}>
              <span class="wf-duration">
                {Number.isNaN(tree.duration[index] as number)
                  ? "running"
                  : formatDuration(tree.duration[index] as number)}
              </span>
            </div>
          )}
        </div>
      </div>
    );
  }

  return (
    <div class="waterfall">
      <Axis start={tree.axisStart} end={tree.axisEnd} />
      <div
        class="wf-scroll"
        ref={scroller}
        onScroll={onScroll}
        onKeyDown={onKeyDown}
        onClick={onClick}
        tabIndex={0}
        role="tree"
        aria-label="spans"
        data-rows={total}
      >
        <div class="wf-canvas" style={{ height: `${total * ROW_HEIGHT}px` }}>
          {rows}
        </div>
      </div>
    </div>
  );
}

function Axis({ start, end }: { start: number; end: number }) {
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  return (
    <div class="wf-axis">
      <div class="wf-label">span</div>
      <div class="wf-track">
        {ticks.map((fraction) => (
          <span key={fraction} class="wf-tick" style={{ left: `${fraction * 100}%` }}>
            {formatDuration(start + (end - start) * fraction)}
          </span>
        ))}
      </div>
    </div>
  );
}
