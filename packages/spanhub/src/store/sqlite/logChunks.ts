import type Database from "better-sqlite3";
import type { FoldEntry } from "../../digest/fold.js";
import type { RunEvent, Tags } from "../../model/event.js";
import type { Micros } from "../../model/time.js";

/**
 * The SQLite log: a run's events in chunks of consecutive seqs, one row per run and commit
 * (at most MAX_CHUNK_EVENTS a row), the body a JSON array of the events without their run id,
 * `late: true` on those that came after the run ended.
 */
export const MAX_CHUNK_EVENTS = 64;

/** One logged event as read back; `event` is null when its entry cannot be read. */
export interface LoggedEvent extends FoldEntry {
  /** When the commit that appended it was made (server time). */
  receivedAt: Micros;
}

interface ChunkRow {
  seq: number;
  last_seq: number;
  ts_us: number;
  body: string;
}

const EVENT_KINDS = new Set<string>([
  "run_start",
  "run_tag",
  "run_end",
  "span_start",
  "span_tag",
  "span_log",
  "span_end",
  "span",
]);

export class LogChunks {
  private readonly insert: Database.Statement;
  private readonly chunksAfter: Database.Statement;
  private readonly chunksBetween: Database.Statement;

  constructor(db: Database.Database) {
    this.insert = db.prepare("INSERT INTO log (rid, seq, last_seq, ts_us, body) VALUES (?, ?, ?, ?, ?)");
    // A chunk holds at most MAX_CHUNK_EVENTS, so the one holding seq N starts above N - MAX_CHUNK_EVENTS:
    // that bound lets the primary key find it instead of scanning the run's log from its start.
    this.chunksAfter = db.prepare(`SELECT seq, last_seq, ts_us, body FROM log
      WHERE rid = ? AND seq > ? - ${MAX_CHUNK_EVENTS} AND last_seq > ? ORDER BY seq LIMIT ?`);
    this.chunksBetween = db.prepare(`SELECT seq, last_seq, ts_us, body FROM log
      WHERE rid = ? AND seq > ? - ${MAX_CHUNK_EVENTS} AND last_seq >= ? AND seq <= ? ORDER BY seq`);
  }

  /**
   * The tags of the given events of a run, each chunk parsed once (in seq order, so a long run
   * is read a chunk at a time); an event without tags, or unreadable, maps to `{}`.
   */
  tagsOf(rid: number, seqs: Set<number>): Map<number, Tags> {
    const tags = new Map<number, Tags>();
    if (seqs.size === 0) return tags;
    let min = Number.POSITIVE_INFINITY;
    let max = 0;
    for (const seq of seqs) {
      if (seq < min) min = seq;
      if (seq > max) max = seq;
    }
    for (const row of this.chunksBetween.iterate(rid, min, min, max) as IterableIterator<ChunkRow>) {
      const entries = readChunk(row.body);
      for (let index = 0; index <= row.last_seq - row.seq; index++) {
        const seq = row.seq + index;
        if (!seqs.has(seq)) continue;
        const found = entries[index]?.tags;
        tags.set(seq, typeof found === "object" && found !== null ? (found as Tags) : {});
      }
    }
    return tags;
  }

  /**
   * Appends consecutive entries (seqs ascending, no gaps) of one run. `texts`, when given, are the
   * entries already as JSON arrays of their stored form, in order: a chunk's body is made of them.
   */
  append(rid: number, entries: FoldEntry[], at: Micros, texts?: string[]): void {
    const seq = entries[0]?.seq;
    if (seq === undefined) return;
    if (texts && entries.length <= MAX_CHUNK_EVENTS) {
      const body = texts.length === 1 ? (texts[0] as string) : `[${texts.map((text) => text.slice(1, -1)).join(",")}]`;
      this.insert.run(rid, seq, seq + entries.length - 1, at, body);
      return;
    }
    for (let start = 0; start < entries.length; start += MAX_CHUNK_EVENTS) {
      const chunk = entries.slice(start, start + MAX_CHUNK_EVENTS);
      const first = chunk[0] as FoldEntry;
      this.insert.run(rid, first.seq, first.seq + chunk.length - 1, at, JSON.stringify(chunk.map(storedEntry)));
    }
  }

  /** Up to `limit` events of the run after `afterSeq`, in seq order. */
  after(rid: number, afterSeq: number, limit: number): LoggedEvent[] {
    const events: LoggedEvent[] = [];
    // Each chunk holds at least one wanted event, so `limit` chunks always hold `limit` events.
    for (const row of this.chunksAfter.all(rid, afterSeq, afterSeq, limit) as ChunkRow[]) {
      const entries = readChunk(row.body);
      // An unreadable chunk still yields each of its seqs (as unreadable events), so folds see no gap.
      for (let index = 0; index <= row.last_seq - row.seq && events.length < limit; index++) {
        const seq = row.seq + index;
        if (seq <= afterSeq) continue;
        const entry = entries[index];
        events.push({ seq, receivedAt: row.ts_us, late: entry?.late === true, event: eventOf(entry) });
      }
      if (events.length === limit) break;
    }
    return events;
  }
}

/** The event as stored: without its run id (the row has it), and marked when late. */
function storedEntry({ event, late }: FoldEntry): Record<string, unknown> {
  const { runId: _run, ...stored } = event as RunEvent;
  return late ? { ...stored, late: true } : stored;
}

function readChunk(body: string): (Record<string, unknown> | undefined)[] {
  try {
    const entries = JSON.parse(body);
    return Array.isArray(entries) ? entries : [];
  } catch {
    return [];
  }
}

/** An entry as an event of the model (run id left empty: readers know their run), or null when unreadable. */
function eventOf(entry: Record<string, unknown> | undefined): RunEvent | null {
  if (typeof entry !== "object" || entry === null || !EVENT_KINDS.has(entry.kind as string)) return null;
  const { late: _late, ...event } = entry;
  return { ...event, runId: "" } as unknown as RunEvent;
}
