import { millisToMicros } from "../model/time.js";
import { DecodeError, decodeJsonEvent, isLoggedProblem, parseJsonLine, preview } from "../protocols/jsonLines.js";

/** Types a child may send: the run's own start and end belong to `spanhub run`. */
const CHILD_TYPES = new Set(["run_tag", "span_start", "span_tag", "span_log", "span_end"]);

export interface SpanIntakeOptions {
  runId: string;
  rootSpanId: string;
  /** Takes each accepted event as JSON text: a JSON-lines object with the run id and a time. */
  forward: (json: string) => void;
  /** Where skipped lines are reported, one line each. */
  warn: (message: string) => void;
}

/**
 * Turns the JSON lines a child writes to its per-run socket into events of its run: each gets
 * the run's id (whatever it says) and, without a time of its own, the time it was read; a span
 * started with no parent hangs under the run's root span. Bad lines are counted, reported with a
 * preview and skipped. Spans started and not ended are remembered, so the run's end can close them.
 */
export class SpanIntake {
  private skippedLines = 0;
  private readonly openSpans = new Set<string>();
  private readonly runIdField: string;
  private readonly rootParentField: string;

  constructor(private readonly options: SpanIntakeOptions) {
    this.runIdField = `,"run_id":${JSON.stringify(options.runId)}`;
    this.rootParentField = `,"parent_id":${JSON.stringify(options.rootSpanId)}`;
  }

  get skipped(): number {
    return this.skippedLines;
  }

  /** Span ids started and not yet ended. */
  get unfinishedSpans(): string[] {
    return [...this.openSpans];
  }

  /** Takes one line read at `receivedMs` (milliseconds since the epoch). */
  line(text: string, receivedMs: number): void {
    try {
      this.accept(text, receivedMs);
    } catch (error) {
      this.skip(error instanceof DecodeError ? error.message : String(error), text);
    }
  }

  /** Counts a line that could not be read at all (over the size limit). */
  skip(reason: string, text: string): void {
    this.skippedLines += 1;
    if (isLoggedProblem(this.skippedLines))
      this.options.warn(`skipped line (${this.skippedLines} so far): ${reason}: ${preview(text)}`);
  }

  private accept(text: string, receivedMs: number): void {
    const { runId, rootSpanId } = this.options;
    const value = parseJsonLine(text);
    const event = decodeJsonEvent(value, { runId, receivedAt: millisToMicros(receivedMs) });
    const raw = value as Record<string, unknown>;
    if (!CHILD_TYPES.has(raw.type as string))
      throw new DecodeError(`${raw.type} is sent by spanhub run itself, not through the run's socket`);
    // Hot path: the line is forwarded as it came, with our fields appended (JSON's last duplicate key wins).
    let added = this.runIdField;
    if (!hasOwnTime(raw)) added += `,"ts_ms":${receivedMs}`;
    if (event.kind === "span_start" && event.spanId !== rootSpanId) {
      // An explicit null parent, or none on a span's first start, means top level: under the root.
      if (event.parentId === null || (event.parentId === undefined && !this.openSpans.has(event.spanId)))
        added += this.rootParentField;
      this.openSpans.add(event.spanId);
    } else if (event.kind === "span_end") this.openSpans.delete(event.spanId);
    this.options.forward(`${text.slice(text.indexOf("{"), text.lastIndexOf("}"))}${added}}`);
  }
}

function hasOwnTime(raw: Record<string, unknown>): boolean {
  const alias = raw.type === "span_start" ? raw.start_ms : raw.type === "span_end" ? raw.end_ms : undefined;
  return (raw.ts_ms ?? alias ?? null) !== null;
}
