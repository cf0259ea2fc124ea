import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, type CompactSpans, type Digest, HttpError, type Run, runStreamUrl, type SpanDetails } from "../api.js";
import { formatCount, formatDuration, formatTime } from "../format.js";
import { InsightCard } from "../insight/InsightCard.js";
import { linkClick, navigate, runPath } from "../router.js";
import { SpanPanel } from "../SpanPanel.js";
import { SpanTree } from "../waterfall/spanTree.js";
import { Waterfall } from "../waterfall/Waterfall.js";

/**
 * Live updates are applied at most this often, so a busy run does not re-lay out its tree per
 * message; and at most a fifth of the time goes to relayouts, which grow with the run.
 */
const LIVE_APPLY_MS = 250;
const LIVE_APPLY_SHARE = 5;
/** The digest of a live run is re-read at most this often. */
const DIGEST_REFRESH_MS = 2000;

/** One run: header, Insight card, waterfall and the selected span's details. */
export function RunPage({ runId, url }: { runId: string; url: URL }) {
  const [run, setRun] = useState<Run | undefined>();
  const [tree, setTree] = useState<SpanTree | undefined>();
  const [version, setVersion] = useState(0);
  const [loadError, setLoadError] = useState<string | undefined>();
  const [digest, setDigest] = useState<Digest | null | undefined>();
  const [digestReason, setDigestReason] = useState<string | undefined>();
  const [selected, setSelected] = useState<number | undefined>();
  const [details, setDetails] = useState<SpanDetails | undefined>();
  const [detailsError, setDetailsError] = useState<string | undefined>();
  const [search, setSearch] = useState({ text: "", matches: [] as number[], at: -1, truncated: false });
  const [insightOpen, setInsightOpen] = useState(true);
  const searchBox = useRef<HTMLInputElement>(null);
  const bump = () => setVersion((value) => value + 1);

  const loadDigest = useCallback(() => {
    api.digest(runId).then(
      (answer) => setDigest(answer.digest),
      (error: Error) => {
        setDigest(null);
        setDigestReason(
          error instanceof HttpError && error.status === 404
            ? "The hub has no digest route for this run (404)."
            : `The digest could not be read: ${error.message}`,
        );
      },
    );
  }, [runId]);

  // Load the run and its compact spans, then follow the run's stream from the listing's lastSeq.
  useEffect(() => {
    setTree(undefined);
    setSelected(undefined);
    setDetails(undefined);
    setDigest(undefined);
    setLoadError(undefined);
    let stream: EventSource | undefined;
    let pending: CompactSpans[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    let lastDigest = 0;
    let applyEvery = LIVE_APPLY_MS;
    let closed = false;
    loadDigest();
    Promise.all([api.run(runId), api.compactSpans(runId)]).then(
      ([first, spans]) => {
        if (closed) return;
        const loaded = new SpanTree(spans.baseTime);
        loaded.merge(spans);
        loaded.rebuild();
        setRun(first);
        setTree(loaded);
        const apply = () => {
          timer = undefined;
          const updates = pending.splice(0);
          // A relayout costs time linear in the run's spans: only when spans changed.
          if (updates.length > 0) {
            const started = performance.now();
            for (const update of updates) loaded.merge(update);
            loaded.rebuild();
            applyEvery = Math.max(LIVE_APPLY_MS, (performance.now() - started) * LIVE_APPLY_SHARE);
            bump();
          }
          if (Date.now() - lastDigest > DIGEST_REFRESH_MS) {
            lastDigest = Date.now();
            loadDigest();
          }
        };
        stream = new EventSource(runStreamUrl(runId, spans.lastSeq));
        stream.addEventListener("update", (event) => {
          const update = JSON.parse((event as MessageEvent).data) as { run: Run; spans: CompactSpans };
          setRun(update.run);
          if (update.spans.count > 0) pending.push(update.spans);
          timer ??= setTimeout(apply, applyEvery);
        });
      },
      (error: Error) => setLoadError(error.message),
    );
    return () => {
      closed = true;
      stream?.close();
      if (timer) clearTimeout(timer);
      pending = [];
    };
  }, [runId, loadDigest]);

  // Open the span named in the URL (a shared link), once the spans are there.
  const wanted = url.searchParams.get("span");
  useEffect(() => {
    if (!tree || !wanted) return;
    const span = tree.indexOf(wanted);
    if (span !== undefined && span !== selected) {
      tree.reveal(span);
      setSelected(span);
      bump();
    }
  }, [tree, wanted]);

  // Fetch the selected span's details, after a short pause so holding ↓ does not fire a request per row.
  useEffect(() => {
    if (!tree || selected === undefined) return;
    const spanId = tree.ids[selected] as string;
    const controller = new AbortController();
    const timer = setTimeout(() => {
      api.span(runId, spanId, controller.signal).then(
        (answer) => {
          setDetails(answer);
          setDetailsError(undefined);
        },
        (error: Error) => {
          if (error.name !== "AbortError") setDetailsError(error.message);
        },
      );
    }, 80);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [tree, selected, runId]);

  // `/` focuses the search box.
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement;
      if (event.key === "/" && !typing) {
        event.preventDefault();
        searchBox.current?.focus();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const jumpTo = (span: number) => {
    if (!tree) return;
    tree.reveal(span);
    setSelected(span);
    bump();
  };
  const jumpToId = (spanId: string) => {
    const span = tree?.indexOf(spanId);
    if (span !== undefined) jumpTo(span);
  };

  const runSearch = async (text: string) => {
    if (!tree || text.trim() === "") {
      setSearch({ text, matches: [], at: -1, truncated: false });
      return;
    }
    const answer = await api.searchSpans(runId, text.trim());
    const matches = answer.matches.map((id) => tree.indexOf(id)).filter((span) => span !== undefined);
    setSearch({ text, matches, at: matches.length > 0 ? 0 : -1, truncated: answer.truncated });
    if (matches[0] !== undefined) jumpTo(matches[0]);
  };
  const step = (direction: 1 | -1) => {
    if (search.matches.length === 0) return;
    const at = (search.at + direction + search.matches.length) % search.matches.length;
    setSearch({ ...search, at });
    jumpTo(search.matches[at] as number);
  };
  const matchFlags = (() => {
    if (!tree || search.matches.length === 0) return undefined;
    const flags = new Uint8Array(tree.size);
    for (const span of search.matches) flags[span] = 1;
    return flags;
  })();

  if (loadError) return <main class="page error">{loadError}</main>;
  if (!run || !tree) return <main class="page muted">Loading run…</main>;
  const outcome = digest?.outcome?.status ?? run.outcome?.status ?? run.status;
  const duration = run.durationMs ?? Date.now() - Date.parse(run.startTime);

  return (
    <main class="page run-page">
      <header class="run-header card">
        <h1>
          {run.name ?? run.id} <span class={`chip status-${outcome}`}>{outcome}</span>
        </h1>
        <div class="meta">
          <span>
            app <b>{run.app ?? "–"}</b>
          </span>
          <span>
            started <b>{formatTime(run.startTime)}</b>
          </span>
          <span>
            duration <b data-testid="run-duration">{formatDuration(duration)}</b>
          </span>
          <span>
            spans <b data-testid="run-spans">{formatCount(run.spanCount)}</b>
          </span>
          <span>
            errors <b>{formatCount(run.errorCount)}</b>
          </span>
          {run.parentRunId && (
            <a
              href={runPath(run.parentRunId, run.parentSpanId ?? undefined)}
              onClick={linkClick}
              data-testid="parent-run"
            >
              ↑ parent run
            </a>
          )}
          <a href={`/compare?a=${encodeURIComponent(run.id)}`} onClick={linkClick}>
            compare…
          </a>
          <button type="button" class="link" onClick={() => setInsightOpen(!insightOpen)}>
            {insightOpen ? "hide insight" : "show insight"}
          </button>
        </div>
        {run.error && (
          <p class="error">
            {run.error.type}: {run.error.message}
          </p>
        )}
      </header>
      {insightOpen && <InsightCard digest={digest} unavailableReason={digestReason} onJump={jumpToId} />}
      <div class="search-bar">
        <input
          ref={searchBox}
          type="search"
          placeholder="Search spans by name or tag (key:value) — press /"
          aria-label="search spans"
          onKeyDown={(event) => {
            if (event.key === "Enter") {
              const text = (event.currentTarget as HTMLInputElement).value;
              if (text === search.text && search.matches.length > 0) step(event.shiftKey ? -1 : 1);
              else void runSearch(text);
            }
          }}
        />
        <span class="muted" data-testid="search-status">
          {search.text
            ? search.matches.length === 0
              ? "no match"
              : `${search.at + 1} of ${search.matches.length}${search.truncated ? "+" : ""}`
            : `${formatCount(tree.size)} spans`}
        </span>
        <button type="button" onClick={() => step(-1)} disabled={search.matches.length === 0}>
          ↑
        </button>
        <button type="button" onClick={() => step(1)} disabled={search.matches.length === 0}>
          ↓
        </button>
      </div>
      <div class="run-body">
        <Waterfall
          tree={tree}
          version={version}
          selected={selected}
          matches={matchFlags}
          onSelect={(span) => {
            setSelected(span);
            navigate(runPath(runId, tree.ids[span]), true);
          }}
          onFold={bump}
        />
        <SpanPanel details={selected === undefined ? undefined : details} error={detailsError} />
      </div>
    </main>
  );
}
