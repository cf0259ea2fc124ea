import type { SpanDetails } from "./api.js";
import { formatDuration, formatTime } from "./format.js";
import { linkClick, runPath } from "./router.js";

/** A span's details, fetched when it is opened. */
export function SpanPanel({ details, error }: { details: SpanDetails | undefined; error: string | undefined }) {
  if (error) return <aside class="details card error">{error}</aside>;
  if (!details) return <aside class="details card muted">Select a span (click, or ↑ ↓ in the waterfall).</aside>;
  const tags = Object.entries(details.tags);
  return (
    <aside class="details card" data-testid="span-details" data-span={details.id}>
      <h2>{details.name ?? "(unnamed)"}</h2>
      <p>
        <span class={`chip status-${details.status}`}>{details.status}</span> {formatDuration(details.durationMs)}
        {details.kind && <span class="muted"> · {details.kind}</span>}
      </p>
      <dl>
        <dt>span</dt>
        <dd>
          <code>{details.id}</code>
        </dd>
        <dt>start</dt>
        <dd>{details.startTime ?? "–"}</dd>
        {details.rpcService && (
          <>
            <dt>rpc</dt>
            <dd data-testid="rpc">
              {details.rpcService}
              {details.rpcMethod ? ` / ${details.rpcMethod}` : ""}
            </dd>
          </>
        )}
      </dl>
      {details.error && (
        <div class="span-error" data-testid="span-error">
          <strong>{details.error.type ?? "error"}</strong>: {details.error.message}
          {details.error.stack && <pre>{details.error.stack}</pre>}
        </div>
      )}
      <h3>Tags</h3>
      {tags.length === 0 ? (
        <p class="muted">none</p>
      ) : (
        <table class="compact tags" data-testid="tags">
          <tbody>
            {tags.map(([key, value]) => (
              <tr key={key}>
                <th>{key}</th>
                <td>
                  <code>{typeof value === "string" ? value : JSON.stringify(value)}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {details.logs.length > 0 && (
        <>
          <h3>Logs</h3>
          <ul class="plain logs" data-testid="logs">
            {details.logs.map((log, index) => (
              <li key={index}>
                <time>{formatTime(log.time)}</time> {log.text}
              </li>
            ))}
          </ul>
        </>
      )}
      {details.childRuns.length > 0 && (
        <>
          <h3>Child runs</h3>
          <ul class="plain" data-testid="child-runs">
            {details.childRuns.map((child) => (
              <li key={child.id}>
                <a href={runPath(child.id)} onClick={linkClick}>
                  {child.name ?? child.id}
                </a>{" "}
                <span class={`chip status-${child.status}`}>{child.status}</span>
              </li>
            ))}
          </ul>
        </>
      )}
    </aside>
  );
}
