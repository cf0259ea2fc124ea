/**
 * Shared test helpers. Append new helpers at the end; other test files depend on these.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { DigestState } from "../src/digest/digest.js";
import type {
  RunEndEvent,
  RunStartEvent,
  RunTagEvent,
  SpanEndEvent,
  SpanEvent,
  SpanLogEvent,
  SpanStartEvent,
  SpanTagEvent,
  Tags,
} from "../src/model/event.js";
import type { Micros } from "../src/model/time.js";

/** 2026-11-23T08:47:25.363Z in microseconds: a base time for hand-built events. */
export const T0: Micros = 1_795_423_645_363_000;

/** A JSON fixture from the source tree's `test/fixtures` (tests run from `dist/test`). */
export function readFixture<T = unknown>(path: string): T {
  return JSON.parse(readFileSync(new URL(`../../test/fixtures/${path}`, import.meta.url), "utf8")) as T;
}

/** A fresh, empty directory under the OS temp directory; remove it with `removeDir`. */
export function makeTempDir(prefix = "spanhub-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/* Event builders: the required fields positionally, anything else in `extra`. */

type Extra<T> = Partial<Omit<T, "kind" | "runId">>;

export function runStart(runId: string, time: Micros, extra: Extra<RunStartEvent> = {}): RunStartEvent {
  return { kind: "run_start", runId, time, ...extra };
}

export function runTag(runId: string, time: Micros, tags: Tags, extra: Extra<RunTagEvent> = {}): RunTagEvent {
  return { kind: "run_tag", runId, time, tags, ...extra };
}

export function runEnd(runId: string, time: Micros, extra: Extra<RunEndEvent> = {}): RunEndEvent {
  return { kind: "run_end", runId, time, ...extra };
}

/** `parentId` undefined: the event carries none (a repeated start that leaves the parent as it was). */
export function spanStart(
  runId: string,
  spanId: string,
  parentId: string | null | undefined,
  time: Micros,
  extra: Extra<SpanStartEvent> = {},
): SpanStartEvent {
  return { kind: "span_start", runId, spanId, ...(parentId === undefined ? {} : { parentId }), time, ...extra };
}

export function spanTag(runId: string, spanId: string, time: Micros, tags: Tags): SpanTagEvent {
  return { kind: "span_tag", runId, spanId, time, tags };
}

export function spanLog(runId: string, spanId: string, time: Micros, text: string): SpanLogEvent {
  return { kind: "span_log", runId, spanId, time, text };
}

export function spanEnd(runId: string, spanId: string, time: Micros, extra: Extra<SpanEndEvent> = {}): SpanEndEvent {
  return { kind: "span_end", runId, spanId, time, ...extra };
}

/** A coalesced span: started at `startTime`, ended at `time`. */
export function span(
  runId: string,
  spanId: string,
  parentId: string | null | undefined,
  startTime: Micros,
  time: Micros,
  extra: Extra<SpanEvent> = {},
): SpanEvent {
  return { kind: "span", runId, spanId, ...(parentId === undefined ? {} : { parentId }), startTime, time, ...extra };
}

/** A run's digest row as stored, read straight from the file: no API read can have folded anything. */
export function readStoredDigest(dataDir: string, runId: string) {
  const db = new Database(join(dataDir, "spanhub.db"), { readonly: true });
  try {
    return db
      .prepare(`SELECT r.last_seq, r.status, d.watermark_seq, d.outcome_status, d.outcome_reason, d.body
        FROM runs r LEFT JOIN digests d ON d.rid = r.rid WHERE r.id = ?`)
      .get(runId) as {
      last_seq: number;
      status: string;
      watermark_seq: number | null;
      outcome_status: string | null;
      outcome_reason: string | null;
      body: string | null;
    };
  } finally {
    db.close();
  }
}

/** Asserts the run's digest was sealed by its end (the whole log folded, the outcome stamped) and returns it. */
export function assertSealed(
  dataDir: string,
  runId: string,
  status: string,
  reason: string | null = null,
): DigestState {
  const row = readStoredDigest(dataDir, runId);
  assert.equal(row.status, status, `${runId}: run status`);
  assert.equal(row.watermark_seq, row.last_seq, `${runId}: the seal folded the whole log`);
  assert.equal(row.outcome_status, status, `${runId}: outcome stamped from the final status`);
  assert.equal(row.outcome_reason, reason, `${runId}: outcome reason`);
  return JSON.parse(row.body as string);
}
