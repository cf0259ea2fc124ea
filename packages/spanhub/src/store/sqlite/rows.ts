import type { EndStatus } from "../../model/event.js";
import type { AppRecord, RunRecord, SpanRecord } from "../records.js";

/** SQLite rows and their mapping to records, shared by the read side and the writer thread. */
export const RUN_COLUMNS = `rid, id, app, name, name_rank, status, reason, error, start_us, end_us, tags, host, pid,
  parent_run_id, parent_span_id, span_count, error_count, error_tagged, last_seq, last_event_us, late_count,
  end_on_idle`;

/** Runs with their digest's summary, for the read side; `runs.rid` is the run's key. */
export const RUN_VIEW_FROM = `SELECT ${RUN_COLUMNS.replace(/\b(rid)\b/, "runs.rid")},
  d.outcome_status, d.outcome_reason, d.failed_spans, d.p95_us
  FROM runs LEFT JOIN digests d ON d.rid = runs.rid`;

/** The columns a span row is written with, in order. */
export const SPAN_WRITE_COLUMNS =
  "span_id, parent_id, name, kind, status, start_us, end_us, tags, tags_seq, logs, error, rpc_service, rpc_method";

/**
 * One span's tags as JSON text: its own column, or (`tags_seq`) the tags of the log event they
 * are, read from that event's chunk. For single rows: reading many, resolve them per chunk instead.
 */
export const SPAN_TAGS = `coalesce(spans.tags, (SELECT json_extract(log.body, '$[' || (spans.tags_seq - log.seq) || '].tags')
  FROM log WHERE log.rid = spans.rid AND log.seq <= spans.tags_seq ORDER BY log.seq DESC LIMIT 1), '{}')`;

/** A single span's columns, its tags resolved. */
export const SPAN_COLUMNS = `span_id, parent_id, name, kind, status, start_us, end_us, ${SPAN_TAGS} AS tags, tags_seq,
  logs, error, rpc_service, rpc_method`;

/** Many spans' columns: `tags` is null where `tags_seq` points into the log (see LogChunks.tagsOf). */
export const SPAN_ROW_COLUMNS = SPAN_WRITE_COLUMNS;

export interface RunRow {
  rid: number;
  id: string;
  app: string | null;
  name: string | null;
  name_rank: number;
  status: string;
  reason: string | null;
  error: string | null;
  start_us: number;
  end_us: number | null;
  tags: string;
  host: string | null;
  pid: number | null;
  parent_run_id: string | null;
  parent_span_id: string | null;
  span_count: number;
  error_count: number;
  error_tagged: number;
  last_seq: number;
  last_event_us: number;
  late_count: number;
  end_on_idle: number;
  outcome_status?: string | null;
  outcome_reason?: string | null;
  failed_spans?: number | null;
  p95_us?: number | null;
}

export interface SpanRow {
  span_id: string;
  parent_id: string | null;
  name: string | null;
  kind: string | null;
  status: string;
  start_us: number | null;
  end_us: number | null;
  tags: string | null;
  tags_seq: number | null;
  logs: string | null;
  error: string | null;
  rpc_service: string | null;
  rpc_method: string | null;
}

export interface AppRow {
  app: string;
  metadata: string | null;
  latest: string;
  last_seen_us: number;
}

export function placeholders(count: number): string {
  return Array.from({ length: count }, () => "?").join(", ");
}

export function runRecord(row: RunRow): RunRecord {
  return {
    id: row.id,
    app: row.app,
    name: row.name,
    status: row.status as RunRecord["status"],
    reason: row.reason,
    error: row.error === null ? null : JSON.parse(row.error),
    startTime: row.start_us,
    endTime: row.end_us,
    tags: JSON.parse(row.tags),
    host: row.host,
    pid: row.pid,
    parentRunId: row.parent_run_id,
    parentSpanId: row.parent_span_id,
    spanCount: row.span_count,
    errorCount: row.error_count,
    errorTagged: row.error_tagged === 1,
    lastSeq: row.last_seq,
    lastEventAt: row.last_event_us,
    lateCount: row.late_count,
    nameRank: row.name_rank,
    endOnIdle: row.end_on_idle === 1,
    ...(row.failed_spans === undefined || row.failed_spans === null
      ? {}
      : {
          digest: {
            outcome:
              row.outcome_status === null || row.outcome_status === undefined
                ? null
                : { status: row.outcome_status as EndStatus, reason: row.outcome_reason ?? null },
            failedSpans: row.failed_spans,
            p95Us: row.p95_us ?? null,
          },
        }),
  };
}

export function spanRecord(row: SpanRow): SpanRecord {
  return {
    id: row.span_id,
    parentId: row.parent_id,
    name: row.name,
    kind: row.kind,
    status: row.status as SpanRecord["status"],
    startTime: row.start_us,
    endTime: row.end_us,
    tags: row.tags === null ? {} : JSON.parse(row.tags),
    logs: row.logs === null ? [] : JSON.parse(row.logs),
    error: row.error === null ? null : JSON.parse(row.error),
    rpcService: row.rpc_service,
    rpcMethod: row.rpc_method,
  };
}

export function appRecord(row: AppRow): AppRecord {
  return {
    app: row.app,
    metadata: row.metadata === null ? null : JSON.parse(row.metadata),
    latest: JSON.parse(row.latest),
    lastSeen: row.last_seen_us,
  };
}
