import type { CompactSpans } from "../../spanhub/src/hub/compactSpans.js";

/** The hub's API as the UI uses it; shapes follow docs/api.md. */

export interface Run {
  id: string;
  app: string | null;
  name: string | null;
  status: string;
  reason: string | null;
  error: SpanError | null;
  startTime: string;
  endTime: string | null;
  durationMs: number | null;
  spanCount: number;
  errorCount: number;
  tags: Record<string, unknown>;
  host: string | null;
  pid: number | null;
  parentRunId: string | null;
  parentSpanId: string | null;
  lastSeq: number;
  lateEvents: number;
  /** From the digest, when the hub has it. */
  outcome?: { status: string; reason: string | null } | null;
  p95Ms?: number | null;
}

export interface RunPage {
  runs: Run[];
  nextCursor: string | null;
}

export interface SpanError {
  type?: string;
  message?: string;
  stack?: string;
}

/** `GET /api/v1/runs/:id/spans?view=compact` and the `spans` of a stream update: the hub's own type. */
export type { CompactSpans };

export interface SpanDetails {
  runId: string;
  id: string;
  parentId: string | null;
  name: string | null;
  kind: string | null;
  status: string;
  startTime: string | null;
  endTime: string | null;
  durationMs: number | null;
  tags: Record<string, unknown>;
  logs: { time: string; text: string }[];
  error: SpanError | null;
  rpcService?: string;
  rpcMethod?: string;
  childRuns: { id: string; name: string | null; status: string }[];
}

export interface Digest {
  schemaVersion: number;
  watermarkSeq: number;
  sealed: boolean;
  eventCount: number;
  spanCount: number;
  openSpans: number;
  failedSpans: number;
  firstTime: string | null;
  lastTime: string | null;
  durationMs: number | null;
  activeMs: number;
  errors: { class: string; count: number; samples: { spanId: string; seq: number; message?: string }[] }[];
  operations: {
    name: string;
    calls: number;
    failed: number;
    totalMs: number;
    maxMs: number;
    p50Ms: number;
    p95Ms: number;
  }[];
  latency: { boundsMs: number[]; counts: number[]; p50Ms: number | null; p95Ms: number | null; p99Ms: number | null };
  models: { model: string; calls: number; inputTokens: number; outputTokens: number; costUsd: number }[];
  totals: { inputTokens: number; outputTokens: number; costUsd: number };
  anomalies: { kind: string; count: number; samples: { spanId: string; seq: number }[] }[];
  outcome: { status: string; reason: string | null } | null;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the hub answers 401: the UI then asks for the token. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

export async function getJson<T>(path: string, init?: RequestInit): Promise<T> {
  const response = await fetch(path, { credentials: "same-origin", ...init });
  const text = await response.text();
  // biome-ignore lint/suspicious/noExplicitAny: error bodies are read loosely
  const body: any = text ? JSON.parse(text) : undefined;
  if (!response.ok) {
    if (response.status === 401) onUnauthorized();
    throw new HttpError(response.status, body?.error?.message ?? `${response.status} ${response.statusText}`);
  }
  return body as T;
}

export const api = {
  session: () => getJson<{ tokenRequired: boolean; authenticated: boolean }>("/api/v1/session"),
  signIn: (token: string) =>
    getJson<{ authenticated: boolean }>("/api/v1/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token }),
    }),
  runs: (query: string) => getJson<RunPage>(`/api/v1/runs?${query}`),
  run: (id: string) => getJson<Run>(`/api/v1/runs/${encodeURIComponent(id)}`),
  compactSpans: (id: string) =>
    getJson<CompactSpans & { lastSeq: number }>(`/api/v1/runs/${encodeURIComponent(id)}/spans?view=compact`),
  span: (runId: string, spanId: string, signal?: AbortSignal) =>
    getJson<SpanDetails>(
      `/api/v1/runs/${encodeURIComponent(runId)}/spans/${encodeURIComponent(spanId)}`,
      signal ? { signal } : {},
    ),
  searchSpans: (runId: string, q: string) =>
    getJson<{ matches: string[]; truncated: boolean }>(
      `/api/v1/runs/${encodeURIComponent(runId)}/spans?q=${encodeURIComponent(q)}&limit=10000`,
    ),
  digest: (id: string) =>
    getJson<{ digest: Digest; caughtUp: number }>(`/api/v1/runs/${encodeURIComponent(id)}/digest`),
};

export const runStreamUrl = (id: string, after: number) =>
  `/api/v1/runs/${encodeURIComponent(id)}/stream?after=${after}`;
export const runsStreamUrl = (query: string) => `/api/v1/stream/runs?${query}`;
