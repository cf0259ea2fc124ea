import { useEffect, useState } from "preact/hooks";
import { api, type Run, type RunPage, runsStreamUrl } from "../api.js";
import { formatCount, formatDuration, formatTime } from "../format.js";
import { linkClick, navigate, runPath } from "../router.js";

const STATUSES = ["running", "ok", "failed", "timed_out", "cancelled", "crashed", "stopped"];
const FILTERS = ["status", "name", "app", "since", "until", "tag"] as const;

/** The runs list: filters and the page cursor live in the URL, the list updates itself live. */
export function RunsPage({ url }: { url: URL }) {
  const query = new URLSearchParams();
  for (const key of [...FILTERS, "cursor"]) {
    const value = url.searchParams.get(key);
    if (value) query.set(key, key === "since" || key === "until" ? new Date(value).toISOString() : value);
  }
  const queryText = query.toString();
  const [page, setPage] = useState<RunPage | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [, tick] = useState(0);

  useEffect(() => {
    setError(undefined);
    let stream: EventSource | undefined;
    api.runs(queryText).then(
      (first) => {
        setPage(first);
        stream = new EventSource(runsStreamUrl(queryText));
        stream.addEventListener("runs", (event) => setPage(JSON.parse((event as MessageEvent).data)));
      },
      (failure: Error) => setError(failure.message),
    );
    return () => stream?.close();
  }, [queryText]);

  // Running runs' durations tick.
  useEffect(() => {
    const timer = setInterval(() => tick((value) => value + 1), 1000);
    return () => clearInterval(timer);
  }, []);

  const apply = (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const next = new URLSearchParams();
    for (const key of FILTERS) {
      const value = String(form.get(key) ?? "").trim();
      if (value) next.set(key, value);
    }
    navigate(`/?${next}`);
  };
  const olderUrl = () => {
    const next = new URLSearchParams(url.search);
    next.set("cursor", page?.nextCursor ?? "");
    return `/?${next}`;
  };
  const newestUrl = () => {
    const next = new URLSearchParams(url.search);
    next.delete("cursor");
    return `/?${next}`;
  };

  return (
    <main class="page">
      <form class="filters card" onSubmit={apply} key={url.search}>
        <label>
          status
          <select name="status">
            <option value="">any</option>
            {STATUSES.map((status) => (
              <option key={status} value={status} selected={url.searchParams.get("status") === status}>
                {status}
              </option>
            ))}
          </select>
        </label>
        <label>
          name
          <input name="name" defaultValue={url.searchParams.get("name") ?? ""} placeholder="contains" />
        </label>
        <label>
          app
          <input name="app" defaultValue={url.searchParams.get("app") ?? ""} size={10} />
        </label>
        <label>
          since
          <input name="since" type="datetime-local" step="1" defaultValue={url.searchParams.get("since") ?? ""} />
        </label>
        <label>
          until
          <input name="until" type="datetime-local" step="1" defaultValue={url.searchParams.get("until") ?? ""} />
        </label>
        <label>
          tag
          <input name="tag" defaultValue={url.searchParams.get("tag") ?? ""} placeholder="key:value" size={14} />
        </label>
        <button type="submit">Filter</button>
        <a href="/" onClick={linkClick}>
          clear
        </a>
      </form>
      {error && <p class="error">{error}</p>}
      <table class="runs card">
        <thead>
          <tr>
            <th>name</th>
            <th>app</th>
            <th>outcome</th>
            <th>start</th>
            <th class="num">duration</th>
            <th class="num">spans</th>
            <th class="num">errors</th>
            <th class="num">p95</th>
          </tr>
        </thead>
        <tbody>
          {page?.runs.map((run) => (
            <RunRow key={run.id} run={run} />
          ))}
        </tbody>
      </table>
      {page && page.runs.length === 0 && <p class="muted">No runs match.</p>}
      <nav class="pager">
        {url.searchParams.get("cursor") && (
          <a href={newestUrl()} onClick={linkClick}>
            ← newest
          </a>
        )}
        {page?.nextCursor && (
          <a href={olderUrl()} onClick={linkClick} data-testid="older">
            older →
          </a>
        )}
      </nav>
    </main>
  );
}

function RunRow({ run }: { run: Run }) {
  const outcome = run.outcome?.status ?? run.status;
  const duration = run.durationMs ?? Date.now() - Date.parse(run.startTime);
  return (
    <tr data-run={run.id}>
      <td>
        <a href={runPath(run.id)} onClick={linkClick}>
          {run.name ?? run.id}
        </a>
      </td>
      <td>{run.app ?? "–"}</td>
      <td>
        <span class={`chip status-${outcome}`} title={run.outcome?.reason ?? run.reason ?? ""}>
          {outcome}
        </span>
      </td>
      <td>{formatTime(run.startTime)}</td>
      <td class="num">{formatDuration(duration)}</td>
      <td class="num">{formatCount(run.spanCount)}</td>
      <td class="num">{formatCount(run.errorCount)}</td>
      <td class="num">{formatDuration(run.p95Ms)}</td>
    </tr>
  );
}
