import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { digestView } from "../digest/digestView.js";
import type { EventWriter } from "../ingest/eventWriter.js";
import { type EndStatus, isEndStatus, RUN_STATUSES, type RunEvent, type RunStatus } from "../model/event.js";
import { formatMicros, type Micros, nowMicros, parseUserTime } from "../model/time.js";
import type { Metrics } from "../observability/metrics.js";
import { DecodeError, decodeJsonEvent } from "../protocols/jsonLines.js";
import { isAbandoned } from "../store/apply.js";
import { CursorError } from "../store/cursor.js";
import type { RunQuery } from "../store/records.js";
import type { Store } from "../store/store.js";
import { ApiError, badRequest, conflict, notFound } from "./apiError.js";
import { compactSpans } from "./compactSpans.js";
import { ChangeFeed, EventStream, followChanges } from "./eventStream.js";
import { otlpRoutes } from "./otlpRoutes.js";
import { registerSession } from "./session.js";
import { registerUiFiles } from "./uiFiles.js";
import { runView, spanView } from "./views.js";

export interface HubOptions {
  store: Store;
  writer: EventWriter;
  metrics: Metrics;
  logger: Logger;
  /** When set, /metrics and the API need `Authorization: Bearer <token>` or the session cookie. */
  token?: string;
  maxBodyBytes: number;
  /** False for a standalone agent's `--http`: only /healthz and /metrics. */
  apiRoutes?: boolean;
}

/** Codes for errors Fastify raises itself (bad JSON, body too large, unknown content type). */
const FRAMEWORK_CODES: Record<number, string> = {
  404: "not_found",
  413: "too_large",
  415: "unsupported_media_type",
  500: "internal",
  503: "unavailable",
};

/** How often a waiting `/api/v1/changes` request checks the store (a cheap check). */
const CHANGE_POLL_MS = 100;
/** How often open event streams check the store; updates are batched at this pace. */
const STREAM_POLL_MS = 200;
/** Events read per step when a run stream catches up. */
const STREAM_EVENTS_PER_READ = 5000;

/** Child runs listed with a span's details. */
const CHILD_RUNS_LIMIT = 100;

const PATCH_STATUSES: EndStatus[] = ["crashed", "failed", "stopped", "cancelled", "timed_out", "ok"];

/** The hub's HTTP API as a Fastify app; tests call it with `inject`, without a socket. */
export function buildHubApp(options: HubOptions): FastifyInstance {
  const { store, writer, metrics } = options;
  // Fastify's own per-request logging stays off; the error handler logs server errors.
  const app = Fastify({ bodyLimit: options.maxBodyBytes });

  app.addContentTypeParser(["application/x-ndjson", "text/plain"], { parseAs: "string" }, (_request, body, done) =>
    done(null, body),
  );

  registerSession(app, options.token);
  const uiPage = options.apiRoutes === false ? () => undefined : registerUiFiles(app);

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, _request, reply) => {
    if (error instanceof ApiError)
      return reply.status(error.status).send({ error: { code: error.code, message: error.message } });
    const status = error.statusCode ?? 500;
    if (status >= 500) options.logger.error({ err: error }, "request failed");
    return reply
      .status(status)
      .send({ error: { code: FRAMEWORK_CODES[status] ?? "bad_request", message: error.message } });
  });
  app.setNotFoundHandler(
    (request, reply) =>
      uiPage(request, reply) ??
      reply.status(404).send({ error: { code: "not_found", message: `no route ${request.method} ${request.url}` } }),
  );

  app.get("/healthz", async () => ({ ok: true, engine: store.engine }));

  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  if (options.apiRoutes === false) return app;

  app.register(otlpRoutes({ writer, metrics, logger: options.logger, maxBodyBytes: options.maxBodyBytes }));

  const listRuns = async (query: RunQuery) => {
    const page = await store.listRuns(query).catch((error) => {
      throw error instanceof CursorError ? badRequest(error.message) : error;
    });
    return { runs: page.runs.map(runView), nextCursor: page.nextCursor ?? null };
  };

  app.get("/api/v1/runs", async (request) => listRuns(runQuery(request.query as Record<string, string | undefined>)));

  app.get("/api/v1/runs/:id", async (request) => {
    const { id } = request.params as { id: string };
    const run = await store.getRun(id);
    if (!run) throw notFound(`no run "${id}"`);
    return runView(run);
  });

  app.get("/api/v1/runs/:id/spans", async (request) => {
    const { id } = request.params as { id: string };
    const query = request.query as Record<string, string | undefined>;
    if (query.q !== undefined) {
      if (!(await store.getRun(id))) throw notFound(`no run "${id}"`);
      if (query.q === "") throw badRequest('"q" must not be empty');
      const limit = integer(query.limit, "limit", 1000, 1, 10_000);
      const matches = await store.searchSpans(id, query.q, limit + 1);
      return { runId: id, q: query.q, matches: matches.slice(0, limit), truncated: matches.length > limit };
    }
    if (query.view === "compact") {
      // The run first: spans read after it are at least as new as its lastSeq, so a stream from there misses nothing.
      const run = await store.getRun(id);
      if (!run) throw notFound(`no run "${id}"`);
      const outlines = await store.listSpanOutlines(id);
      return { runId: id, lastSeq: run.lastSeq, ...compactSpans(outlines, run.startTime, "index") };
    }
    if (query.view !== undefined && query.view !== "full") throw badRequest('"view" must be "full" or "compact"');
    const [run, spans] = await Promise.all([store.getRun(id), store.listSpans(id)]);
    if (!run) throw notFound(`no run "${id}"`);
    return { runId: id, spans: spans.map(spanView) };
  });

  app.get("/api/v1/runs/:id/digest", async (request) => {
    const { id } = request.params as { id: string };
    const read = await store.getDigest(id);
    if (!read) throw notFound(`no run "${id}"`);
    return { runId: id, digest: digestView(read.digest), caughtUp: read.caughtUp, stale: read.stale };
  });

  app.get("/api/v1/runs/:id/spans/:spanId", async (request) => {
    const { id, spanId } = request.params as { id: string; spanId: string };
    const span = await store.getSpan(id, spanId);
    if (!span) throw notFound(`no span "${spanId}" in run "${id}"`);
    const children = await store.listRuns({ parentRunId: id, parentSpanId: spanId, limit: CHILD_RUNS_LIMIT });
    return {
      runId: id,
      ...spanView(span),
      childRuns: children.runs.map((run) => ({ id: run.id, name: run.name, status: run.status })),
    };
  });

  const streamFailed = (error: unknown) => options.logger.error({ err: error }, "event stream failed");
  const feed = new ChangeFeed(store, STREAM_POLL_MS, streamFailed);
  const streams = new Set<EventStream>();
  const openStream = (request: FastifyRequest, reply: FastifyReply) => {
    const stream = new EventStream(request, reply);
    streams.add(stream);
    stream.onClose(() => streams.delete(stream));
    return stream;
  };
  // Open streams would hold the server open; end them when the app closes.
  app.addHook("preClose", async () => {
    for (const stream of [...streams]) stream.close();
  });

  // A run's new and changed spans as they commit: each `update` names the run and its changed spans.
  app.get("/api/v1/runs/:id/stream", async (request, reply) => {
    const { id } = request.params as { id: string };
    const query = request.query as Record<string, string | undefined>;
    const lastEventId = request.headers["last-event-id"];
    let after = integer(query.after ?? (typeof lastEventId === "string" ? lastEventId : undefined), "after", 0, 0);
    if (!(await store.getRun(id))) throw notFound(`no run "${id}"`);
    const stream = openStream(request, reply);
    let first = true;
    followChanges(
      stream,
      feed,
      async () => {
        const run = await store.getRun(id);
        if (!run || (run.lastSeq <= after && !first)) return;
        first = false;
        const spanIds = new Set<string>();
        for (;;) {
          const events = await store.listEvents(id, after, STREAM_EVENTS_PER_READ);
          for (const event of events) if (typeof event.body.spanId === "string") spanIds.add(event.body.spanId);
          after = events.at(-1)?.seq ?? after;
          if (events.length < STREAM_EVENTS_PER_READ) break;
        }
        const outlines = spanIds.size > 0 ? await store.listSpanOutlines(id, [...spanIds]) : [];
        const current = (await store.getRun(id)) ?? run;
        stream.send("update", { run: runView(current), spans: compactSpans(outlines, current.startTime, "id") }, after);
      },
      streamFailed,
    );
    return reply;
  });

  // The runs list as `GET /api/v1/runs` gives it (same filters), sent again whenever it changes.
  app.get("/api/v1/stream/runs", async (request, reply) => {
    const query = runQuery(request.query as Record<string, string | undefined>);
    const stream = openStream(request, reply);
    let last = "";
    followChanges(
      stream,
      feed,
      async () => {
        const page = await listRuns(query);
        const text = JSON.stringify(page);
        if (text === last) return;
        last = text;
        stream.send("runs", page);
      },
      streamFailed,
    );
    return reply;
  });

  app.get("/api/v1/runs/:id/events", async (request) => {
    const { id } = request.params as { id: string };
    const query = request.query as Record<string, string | undefined>;
    if (!(await store.getRun(id))) throw notFound(`no run "${id}"`);
    const after = integer(query.after, "after", 0, 0);
    const limit = integer(query.limit, "limit", 1000, 1, 10_000);
    return { runId: id, events: await store.listEvents(id, after, limit) };
  });

  app.patch("/api/v1/runs/:id", async (request) => {
    const { id } = request.params as { id: string };
    const body = (request.body ?? {}) as { status?: unknown; reason?: unknown };
    if (!isEndStatus(body.status) || !PATCH_STATUSES.includes(body.status))
      throw badRequest(`"status" must be one of ${PATCH_STATUSES.join(", ")}`);
    if (body.reason !== undefined && typeof body.reason !== "string") throw badRequest('"reason" must be a string');
    const run = await store.getRun(id);
    if (!run) throw notFound(`no run "${id}"`);
    const endedOtherwise = () => conflict(`run "${id}" already ended as ${run.status}`);
    if (run.status !== "running" && !isAbandoned(run)) {
      if (run.status === body.status) return runView(run);
      throw endedOtherwise();
    }
    const event: RunEvent = {
      kind: "run_end",
      runId: id,
      time: nowMicros(),
      status: body.status,
      ...(body.reason ? { reason: body.reason } : {}),
    };
    const result = await writer.submit({ events: [event] });
    const ended = await store.getRun(id);
    if (result.lateEnds.includes(id) && ended?.status !== body.status) throw endedOtherwise();
    return runView(ended ?? run);
  });

  app.post("/api/v1/events", async (request, reply) => {
    const { events: raw, batchId } = eventsBody(request);
    const receivedAt = nowMicros();
    const events: RunEvent[] = [];
    const rejected: { index: number; error: string }[] = [];
    raw.forEach((value, index) => {
      try {
        if (value instanceof UnreadableLine) throw new DecodeError(value.message);
        const event = decodeJsonEvent(value, { receivedAt });
        metrics.messages.labels("http", event.kind).inc();
        events.push(event);
      } catch (error) {
        const problem = error instanceof DecodeError ? error : new DecodeError(String(error));
        if (problem.reason === "rejected") metrics.rejected.labels("http", "unknown").inc();
        else metrics.malformed.labels("http").inc();
        rejected.push({ index, error: problem.message });
      }
    });
    if (events.length === 0 && rejected.length > 0)
      throw badRequest(`no event could be read; first problem: ${rejected[0]?.error}`);
    metrics.httpEvents.inc(events.length);
    metrics.countUnknownStatuses(events);
    const result = await writer.submit({ events, ...(batchId ? { batchId } : {}) });
    reply.status(rejected.length > 0 ? 207 : 200);
    return { accepted: events.length, duplicate: result.duplicate, rejected };
  });

  // Long poll for live views: answers once any process (this hub or an agent beside it) commits.
  app.get("/api/v1/changes", async (request) => {
    const query = request.query as Record<string, string | undefined>;
    const waitMs = integer(query.waitMs, "waitMs", 25_000, 0, 60_000);
    const deadline = Date.now() + waitMs;
    let token = await store.changeToken();
    while (token === query.after && Date.now() < deadline && !request.raw.destroyed) {
      await new Promise((resolve) => setTimeout(resolve, CHANGE_POLL_MS));
      token = await store.changeToken();
    }
    return { token, changed: token !== query.after };
  });

  app.get("/api/v1/apps", async () => ({
    apps: (await store.listApps()).map((record) => ({
      ...record,
      lastSeen: formatMicros(record.lastSeen),
      latest: Object.fromEntries(
        Object.entries(record.latest).map(([type, entry]) => [type, { ...entry, time: formatMicros(entry.time) }]),
      ),
    })),
  }));

  return app;
}

function runQuery(query: Record<string, string | undefined>): RunQuery {
  const result: RunQuery = { limit: integer(query.limit, "limit", 50, 1, 1000) };
  if (query.status) {
    if (!(RUN_STATUSES as readonly string[]).includes(query.status))
      throw badRequest(`"status" must be one of ${RUN_STATUSES.join(", ")}`);
    result.status = query.status as RunStatus;
  }
  if (query.name) result.name = query.name;
  if (query.app) result.app = query.app;
  if (query.since) result.since = time(query.since, "since");
  if (query.until) result.until = time(query.until, "until");
  if (query.tag) {
    const at = query.tag.indexOf(":");
    if (at <= 0) throw badRequest('"tag" must read key:value');
    result.tag = { key: query.tag.slice(0, at), value: query.tag.slice(at + 1) };
  }
  if (query.parentRunId) result.parentRunId = query.parentRunId;
  if (query.parentSpanId) result.parentSpanId = query.parentSpanId;
  if (query.cursor) result.cursor = query.cursor;
  return result;
}

function time(text: string, name: string): Micros {
  const value = parseUserTime(text);
  if (value === undefined) throw badRequest(`"${name}" must be an RFC 3339 time or epoch milliseconds`);
  return value;
}

function integer(text: string | undefined, name: string, fallback: number, min: number, max = 2 ** 53): number {
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max)
    throw badRequest(`"${name}" must be an integer from ${min} to ${max}`);
  return value;
}

class UnreadableLine {
  constructor(readonly message: string) {}
}

/** A JSON array, `{"batch_id","events"}`, or NDJSON text. */
function eventsBody(request: FastifyRequest): { events: unknown[]; batchId?: string } {
  const body = request.body;
  if (typeof body === "string") {
    const events: unknown[] = [];
    for (const [index, line] of body.split("\n").entries()) {
      if (line.trim() === "") continue;
      try {
        events.push(JSON.parse(line));
      } catch {
        // Skipped like a bad line on the socket; reported among the rejected.
        events.push(new UnreadableLine(`line ${index + 1} is not valid JSON`));
      }
    }
    return { events };
  }
  if (Array.isArray(body)) return { events: body };
  if (body && typeof body === "object" && Array.isArray((body as { events?: unknown }).events)) {
    const { events, batch_id: batchId } = body as { events: unknown[]; batch_id?: unknown };
    if (batchId !== undefined && (typeof batchId !== "string" || batchId === ""))
      throw badRequest('"batch_id" must be a non-empty string');
    return { events, ...(batchId ? { batchId } : {}) };
  }
  throw badRequest('send a JSON array of events, {"batch_id": "...", "events": [...]}, or NDJSON');
}
