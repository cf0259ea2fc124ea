import { useEffect, useState } from "preact/hooks";
import { api, type CompactSpans, type Run } from "../api.js";
import { formatCount, formatDuration, formatTime, signed } from "../format.js";
import { linkClick, navigate, runPath } from "../router.js";

interface OperationStats {
  count: number;
  totalMs: number;
}

/** Count and total duration of each operation (span name) of a run. */
function operations(spans: CompactSpans): Map<string, OperationStats> {
  const result = new Map<string, OperationStats>();
  for (let at = 0; at < spans.count; at++) {
    const name = spans.names[spans.name[at] ?? -1] ?? "(unnamed)";
    const stats = result.get(name) ?? { count: 0, totalMs: 0 };
    stats.count += 1;
    stats.totalMs += spans.duration[at] ?? 0;
    result.set(name, stats);
  }
  return result;
}

/** Two runs of the same name side by side: per-operation count and duration deltas (B − A). */
export function ComparePage({ url }: { url: URL }) {
  const a = url.searchParams.get("a") ?? "";
  const b = url.searchParams.get("b") ?? "";
  const [runA, setRunA] = useState<Run | undefined>();
  const [candidates, setCandidates] = useState<Run[]>([]);
  const [rows, setRows] = useState<{ name: string; a: OperationStats; b: OperationStats }[] | undefined>();
  const [runB, setRunB] = useState<Run | undefined>();
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    setError(undefined);
    setRows(undefined);
    api.run(a).then(
      async (first) => {
        setRunA(first);
        const sameName = await api.runs(new URLSearchParams({ name: first.name ?? "", limit: "50" }).toString());
        setCandidates(sameName.runs.filter((run) => run.name === first.name && run.id !== first.id));
      },
      (failure: Error) => setError(failure.message),
    );
  }, [a]);

  useEffect(() => {
    if (!b) return;
    Promise.all([api.run(b), api.compactSpans(a), api.compactSpans(b)]).then(
      ([second, spansA, spansB]) => {
        setRunB(second);
        const left = operations(spansA);
        const right = operations(spansB);
        const empty = { count: 0, totalMs: 0 };
        const names = [...new Set([...left.keys(), ...right.keys()])];
        const merged = names.map((name) => ({ name, a: left.get(name) ?? empty, b: right.get(name) ?? empty }));
        merged.sort((x, y) => Math.abs(y.b.totalMs - y.a.totalMs) - Math.abs(x.b.totalMs - x.a.totalMs));
        setRows(merged);
      },
      (failure: Error) => setError(failure.message),
    );
  }, [a, b]);

  if (error) return <main class="page error">{error}</main>;
  if (!runA) return <main class="page muted">Loading…</main>;
  return (
    <main class="page">
      <section class="card">
        <h1>Compare “{runA.name ?? runA.id}”</h1>
        <p>
          A:{" "}
          <a href={runPath(runA.id)} onClick={linkClick}>
            {runA.id}
          </a>{" "}
          ({formatTime(runA.startTime)}, {formatDuration(runA.durationMs)})
          {runB && (
            <>
              {" "}
              · B:{" "}
              <a href={runPath(runB.id)} onClick={linkClick}>
                {runB.id}
              </a>{" "}
              ({formatTime(runB.startTime)}, {formatDuration(runB.durationMs)})
            </>
          )}
        </p>
        <label>
          B:{" "}
          <select
            value={b}
            onChange={(event) => {
              const next = new URLSearchParams({ a, b: (event.currentTarget as HTMLSelectElement).value });
              navigate(`/compare?${next}`);
            }}
          >
            <option value="">pick a run of the same name</option>
            {candidates.map((run) => (
              <option key={run.id} value={run.id}>
                {formatTime(run.startTime)} · {run.status} · {formatDuration(run.durationMs)} · {run.id}
              </option>
            ))}
          </select>
        </label>
      </section>
      {rows && (
        <table class="card compact" data-testid="compare">
          <thead>
            <tr>
              <th>operation</th>
              <th class="num">count A</th>
              <th class="num">count B</th>
              <th class="num">Δ count</th>
              <th class="num">total A</th>
              <th class="num">total B</th>
              <th class="num">Δ total</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.name}>
                <td>{row.name}</td>
                <td class="num">{formatCount(row.a.count)}</td>
                <td class="num">{formatCount(row.b.count)}</td>
                <td class={`num delta ${row.b.count > row.a.count ? "up" : row.b.count < row.a.count ? "down" : ""}`}>
                  {signed(row.b.count - row.a.count, formatCount)}
                </td>
                <td class="num">{formatDuration(row.a.totalMs)}</td>
                <td class="num">{formatDuration(row.b.totalMs)}</td>
                <td
                  class={`num delta ${row.b.totalMs > row.a.totalMs ? "up" : row.b.totalMs < row.a.totalMs ? "down" : ""}`}
                >
                  {signed(row.b.totalMs - row.a.totalMs, formatDuration)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
