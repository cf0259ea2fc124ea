import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "pino";
import { VERSION } from "../config.js";
import type { Submission } from "../model/event.js";
import type { Metrics } from "../observability/metrics.js";
import { preview } from "../protocols/jsonLines.js";
import { type ExportSpan, encodeExportRequest, SpanAssembler } from "./otlpSpans.js";

export interface OtlpExporterOptions {
  /** OTLP/HTTP trace endpoints, e.g. `http://127.0.0.1:4318/v1/traces`. */
  urls: string[];
  metrics: Metrics;
  logger: Logger;
  /** Spans waiting per destination; more are dropped (counted). */
  maxQueueSpans?: number;
  /** Spans per request. */
  batchSpans?: number;
  /** How long spans wait for company before a batch leaves anyway. */
  flushDelayMs?: number;
  /** Give up on a batch that has failed for this long (counted as dropped). */
  maxRetryMs?: number;
  /** Runs and unfinished spans remembered until they end. */
  maxOpen?: number;
}

/** Statuses after which OTLP/HTTP says to retry (and network errors). */
const RETRYABLE = new Set([429, 502, 503, 504]);
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Forwards everything the process commits, from every protocol, as OTLP/HTTP protobuf
 * to each destination: the event writer hands over committed submissions, the
 * assembler turns them into finished spans, and each destination sends them in batches
 * from its own bounded queue, retrying with exponential backoff.
 */
export class OtlpExporter {
  private readonly assembler: SpanAssembler;
  private readonly destinations: Destination[];

  constructor(options: OtlpExporterOptions) {
    const { metrics } = options;
    this.assembler = new SpanAssembler({
      maxOpen: options.maxOpen ?? 100_000,
      onEvicted: (spans) => {
        for (const url of options.urls) metrics.exportDropped.labels(url, "unfinished_evicted").inc(spans);
      },
    });
    this.destinations = options.urls.map((url) => new Destination(url, options));
  }

  /** Takes committed submissions (the event writer's commit listener). */
  committed(submissions: Submission[]): void {
    const spans = this.assembler.add(submissions);
    if (spans.length === 0) return;
    for (const destination of this.destinations) destination.enqueue(spans);
  }

  /** Sends what is queued, waiting at most `timeoutMs`, then stops. */
  async close(timeoutMs = 5_000): Promise<void> {
    await Promise.all(this.destinations.map((destination) => destination.close(timeoutMs)));
  }
}

class Destination {
  private queue: ExportSpan[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private closing = false;
  private readonly abort = new AbortController();
  private readonly maxQueue: number;
  private readonly batchSpans: number;
  private readonly flushDelayMs: number;
  private readonly maxRetryMs: number;

  constructor(
    private readonly url: string,
    private readonly options: OtlpExporterOptions,
  ) {
    this.maxQueue = options.maxQueueSpans ?? 20_000;
    this.batchSpans = options.batchSpans ?? 512;
    this.flushDelayMs = options.flushDelayMs ?? 200;
    this.maxRetryMs = options.maxRetryMs ?? 5 * 60_000;
  }

  enqueue(spans: ExportSpan[]): void {
    const room = Math.max(0, this.maxQueue - this.queue.length);
    if (spans.length > room) {
      this.options.metrics.exportDropped.labels(this.url, "queue_full").inc(spans.length - room);
      spans = spans.slice(0, room);
    }
    for (const span of spans) this.queue.push(span);
    this.updateQueueGauge();
    this.schedule();
  }

  async close(timeoutMs: number): Promise<void> {
    this.closing = true;
    clearTimeout(this.timer);
    const deadline = setTimeout(() => this.abort.abort(), timeoutMs);
    try {
      while (this.queue.length > 0 && !this.abort.signal.aborted) {
        this.sending ??= this.sendAll();
        await this.sending;
      }
      await this.sending;
    } finally {
      clearTimeout(deadline);
      if (this.queue.length > 0) this.drop(this.queue.splice(0).length, "shutdown");
    }
  }

  private schedule(): void {
    if (this.sending || this.closing) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        this.sending ??= this.sendAll().finally(() => {
          this.sending = undefined;
          if (this.queue.length > 0) this.schedule();
        });
      },
      this.queue.length >= this.batchSpans ? 0 : this.flushDelayMs,
    );
    this.timer.unref();
  }

  private async sendAll(): Promise<void> {
    while (this.queue.length > 0 && !this.abort.signal.aborted) {
      const batch = this.queue.slice(0, this.batchSpans);
      const delivered = await this.sendWithRetry(batch);
      this.queue.splice(0, batch.length);
      this.updateQueueGauge();
      if (delivered) this.options.metrics.exportedSpans.labels(this.url).inc(batch.length);
    }
  }

  /** True when the destination took the batch; a batch given up on is counted as dropped. */
  private async sendWithRetry(batch: ExportSpan[]): Promise<boolean> {
    const body = encodeExportRequest(batch, VERSION);
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.post(body);
      if (outcome.ok) return true;
      if (outcome.retryAfterMs === undefined) {
        this.drop(batch.length, "rejected");
        this.options.logger.warn({ url: this.url, spans: batch.length }, `OTLP export refused: ${outcome.problem}`);
        return false;
      }
      const backoff = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
      const wait = Math.max(backoff, outcome.retryAfterMs);
      if (Date.now() + wait - started > this.maxRetryMs || this.abort.signal.aborted) {
        this.drop(batch.length, "retries_exhausted");
        this.options.logger.warn({ url: this.url, spans: batch.length }, `OTLP export gave up: ${outcome.problem}`);
        return false;
      }
      this.options.metrics.exportRetries.labels(this.url).inc();
      if (attempt === 0) this.options.logger.info({ url: this.url }, `OTLP export will retry: ${outcome.problem}`);
      await delay(wait, undefined, { signal: this.abort.signal }).catch(() => {});
    }
  }

  /** One request: ok, or the problem and (when retryable) how long to wait at least. */
  private async post(body: Uint8Array): Promise<{ ok: true } | { ok: false; problem: string; retryAfterMs?: number }> {
    try {
      const response = await fetch(this.url, {
        method: "POST",
        headers: { "content-type": "application/x-protobuf" },
        body,
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]),
      });
      const text = await response.arrayBuffer();
      if (response.ok) return { ok: true };
      const problem = `HTTP ${response.status} ${preview(Buffer.from(text))}`;
      if (!RETRYABLE.has(response.status)) return { ok: false, problem };
      const retryAfter = Number(response.headers.get("retry-after"));
      return { ok: false, problem, retryAfterMs: Number.isFinite(retryAfter) ? retryAfter * 1000 : 0 };
    } catch (error) {
      return { ok: false, problem: (error as Error).message, retryAfterMs: 0 };
    }
  }

  private drop(spans: number, reason: string): void {
    this.options.metrics.exportDropped.labels(this.url, reason).inc(spans);
  }

  private updateQueueGauge(): void {
    this.options.metrics.exportQueueSpans.labels(this.url).set(this.queue.length);
  }
}
