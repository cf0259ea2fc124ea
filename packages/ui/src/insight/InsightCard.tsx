import { useState } from "preact/hooks";
import type { Digest } from "../api.js";
import { formatCount, formatDuration, formatUsd } from "../format.js";
import { LatencyChart } from "./LatencyChart.js";

interface Props {
  /** undefined while loading; null when the hub has no digest for the run. */
  digest: Digest | null | undefined;
  unavailableReason?: string;
  onJump: (spanId: string) => void;
}

type OperationKey = keyof Digest["operations"][number];

const OPERATION_COLUMNS: [OperationKey, string][] = [
  ["name", "operation"],
  ["calls", "calls"],
  ["failed", "failed"],
  ["totalMs", "total"],
  ["p50Ms", "p50"],
  ["p95Ms", "p95"],
  ["maxMs", "max"],
];

/** The run's digest first: errors, latency, operations, tokens and cost, anomalies. */
export function InsightCard({ digest, unavailableReason, onJump }: Props) {
  const [sort, setSort] = useState<{ key: OperationKey; descending: boolean }>({ key: "totalMs", descending: true });
  if (digest === undefined) return <section class="card insight">Loading the digest…</section>;
  if (digest === null)
    return (
      <section class="card insight unavailable" data-testid="insight-unavailable">
        <strong>Digest unavailable.</strong> {unavailableReason ?? "This hub does not serve run digests yet."}
      </section>
    );
  const operations = [...digest.operations].sort((a, b) => {
    const order = a[sort.key] < b[sort.key] ? -1 : a[sort.key] > b[sort.key] ? 1 : 0;
    return sort.descending ? -order : order;
  });
  return (
    <section class="card insight" data-testid="insight">
      <div class="insight-stats">
        <Stat label="spans" value={formatCount(digest.spanCount)} testid="spanCount" />
        <Stat label="failed" value={formatCount(digest.failedSpans)} testid="failedSpans" />
        <Stat label="open" value={formatCount(digest.openSpans)} testid="openSpans" />
        <Stat label="events" value={formatCount(digest.eventCount)} testid="eventCount" />
        <Stat label="duration" value={formatDuration(digest.durationMs)} testid="durationMs" />
        <Stat label="active" value={formatDuration(digest.activeMs)} testid="activeMs" />
        <Stat label="p50" value={formatDuration(digest.latency.p50Ms)} testid="p50Ms" />
        <Stat label="p95" value={formatDuration(digest.latency.p95Ms)} testid="p95Ms" />
        <Stat label="p99" value={formatDuration(digest.latency.p99Ms)} testid="p99Ms" />
        {digest.sealed ? null : <span class="chip status-running">live</span>}
      </div>
      <div class="insight-grid">
        <div>
          <h3>Errors</h3>
          {digest.errors.length === 0 ? (
            <p class="muted">No errors.</p>
          ) : (
            <ul class="plain" data-testid="errors">
              {digest.errors.map((error) => (
                <li key={error.class} data-class={error.class} data-count={error.count}>
                  <span class="chip status-failed">{error.count}</span> <code>{error.class}</code>
                  {error.samples[0] && (
                    <>
                      {" "}
                      <button type="button" class="link" onClick={() => onJump(error.samples[0]?.spanId as string)}>
                        first: {error.samples[0].message ?? error.samples[0].spanId}
                      </button>
                    </>
                  )}
                </li>
              ))}
            </ul>
          )}
          <h3>Anomalies</h3>
          {digest.anomalies.length === 0 ? (
            <p class="muted">None.</p>
          ) : (
            <ul class="plain" data-testid="anomalies">
              {digest.anomalies.map((anomaly) => (
                <li key={anomaly.kind} data-kind={anomaly.kind} data-count={anomaly.count}>
                  {anomaly.kind} ×{anomaly.count}
                  {anomaly.samples[0] && (
                    <>
                      {" "}
                      <button type="button" class="link" onClick={() => onJump(anomaly.samples[0]?.spanId as string)}>
                        show
                      </button>
                    </>
                  )}
                </li>
              ))}
            </ul>
          )}
        </div>
        <div>
          <h3>Span latency</h3>
          <LatencyChart latency={digest.latency} />
        </div>
        <div>
          <h3>Tokens and cost</h3>
          {digest.models.length === 0 ? (
            <p class="muted">No model calls.</p>
          ) : (
            <table class="compact" data-testid="models">
              <thead>
                <tr>
                  <th>model</th>
                  <th class="num">calls</th>
                  <th class="num">in</th>
                  <th class="num">out</th>
                  <th class="num">cost</th>
                </tr>
              </thead>
              <tbody>
                {digest.models.map((model) => (
                  <tr key={model.model} data-model={model.model}>
                    <td>{model.model}</td>
                    <td class="num">{formatCount(model.calls)}</td>
                    <td class="num">{formatCount(model.inputTokens)}</td>
                    <td class="num">{formatCount(model.outputTokens)}</td>
                    <td class="num">{formatUsd(model.costUsd)}</td>
                  </tr>
                ))}
                <tr class="total" data-model="total">
                  <td>total</td>
                  <td />
                  <td class="num">{formatCount(digest.totals.inputTokens)}</td>
                  <td class="num">{formatCount(digest.totals.outputTokens)}</td>
                  <td class="num">{formatUsd(digest.totals.costUsd)}</td>
                </tr>
              </tbody>
            </table>
          )}
        </div>
      </div>
      <h3>Operations</h3>
      <div class="ops-scroll">
        <table class="compact" data-testid="operations">
          <thead>
            <tr>
              {OPERATION_COLUMNS.map(([key, label]) => (
                <th key={key} class={key === "name" ? "" : "num"}>
                  <button
                    type="button"
                    class="sort"
                    data-sort={key}
                    onClick={() => setSort({ key, descending: sort.key === key ? !sort.descending : key !== "name" })}
                  >
                    {label}
                    {sort.key === key ? (sort.descending ? " ↓" : " ↑") : ""}
                  </button>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {operations.map((operation) => (
              <tr key={operation.name} data-operation={operation.name} data-calls={operation.calls}>
                <td>{operation.name}</td>
                <td class="num">{formatCount(operation.calls)}</td>
                <td class="num">{formatCount(operation.failed)}</td>
                <td class="num">{formatDuration(operation.totalMs)}</td>
                <td class="num">{formatDuration(operation.p50Ms)}</td>
                <td class="num">{formatDuration(operation.p95Ms)}</td>
                <td class="num">{formatDuration(operation.maxMs)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function Stat({ label, value, testid }: { label: string; value: string; testid: string }) {
  return (
    <div class="stat">
      <div class="stat-value" data-testid={`stat-${testid}`}>
        {value}
      </div>
      <div class="stat-label">{label}</div>
    </div>
  );
}
