import type { Digest } from "../api.js";
import { formatCount, formatDuration } from "../format.js";

const WIDTH = 320;
const HEIGHT = 120;
const AXIS = 18;
/** Room a quantile label needs beside its line, in chart units. */
const LABEL_ROOM = 70;

/**
 * The latency histogram as SVG bars, one per bucket (`counts[i]` holds spans up to
 * `boundsMs[i]`, the last one everything above), with the p50 and p95 marked where they
 * fall inside their bucket.
 */
export function LatencyChart({ latency }: { latency: Digest["latency"] }) {
  const buckets = latency.counts.length;
  if (buckets === 0) return <p class="muted">No finished spans.</p>;
  const highest = Math.max(1, ...latency.counts);
  const barWidth = WIDTH / buckets;
  const plot = HEIGHT - AXIS;
  const label = (index: number) =>
    index < latency.boundsMs.length
      ? `≤${formatDuration(latency.boundsMs[index])}`
      : `>${formatDuration(latency.boundsMs.at(-1))}`;
  return (
    <svg
      class="latency"
      viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
      role="img"
      aria-label="span latency histogram"
      data-testid="latency"
    >
      {latency.counts.map((count, index) => {
        const height = (count / highest) * (plot - 4);
        return (
          <rect
            key={index}
            class="bar"
            x={index * barWidth + 1}
            y={plot - height}
            width={Math.max(1, barWidth - 2)}
            height={height}
            data-count={count}
          >
            <title>{`${label(index)}: ${formatCount(count)} spans`}</title>
          </rect>
        );
      })}
      <line class="axis" x1={0} x2={WIDTH} y1={plot} y2={plot} />
      <text class="tick" x={2} y={HEIGHT - 4}>
        {label(0)}
      </text>
      <text class="tick" x={WIDTH - 2} y={HEIGHT - 4} text-anchor="end">
        {label(buckets - 1)}
      </text>
      <Mark name="p50" value={latency.p50Ms} bounds={latency.boundsMs} barWidth={barWidth} plot={plot} row={0} />
      <Mark name="p95" value={latency.p95Ms} bounds={latency.boundsMs} barWidth={barWidth} plot={plot} row={1} />
    </svg>
  );
}

/**
 * A quantile's line and label. The lower quantile's label sits left of its line and the higher's
 * right of it (each on its own row), so close quantiles never cross; near an edge a label turns inward.
 */
function Mark(props: {
  name: string;
  value: number | null;
  bounds: number[];
  barWidth: number;
  plot: number;
  row: number;
}) {
  const { name, value, bounds, barWidth, plot, row } = props;
  if (value === null) return null;
  const bucket = bounds.findIndex((bound) => value <= bound);
  const index = bucket === -1 ? bounds.length : bucket;
  const low = index === 0 ? 0 : (bounds[index - 1] as number);
  const high = bounds[index] ?? low;
  const within = high > low ? (value - low) / (high - low) : 0.5;
  const x = (index + within) * barWidth;
  const leftward = row === 0 ? x >= LABEL_ROOM : x > WIDTH - LABEL_ROOM;
  return (
    <g class={`mark ${name}`} data-testid={`mark-${name}`} data-value={value}>
      <line x1={x} x2={x} y1={0} y2={plot} />
      <text x={leftward ? x - 3 : x + 3} y={10 + row * 12} text-anchor={leftward ? "end" : "start"}>
        {`${name} ${formatDuration(value)}`}
      </text>
    </g>
  );
}
