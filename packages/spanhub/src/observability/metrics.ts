import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { RunEvent } from "../model/event.js";

/** Every Prometheus metric a spanhub process exposes, on a registry of its own. */
export class Metrics {
  readonly registry = new Registry();
  readonly messages = new Counter({
    name: "spanhub_agent_messages_total",
    help: "Messages received, by protocol (scout, jsonl, http) and command or event type",
    labelNames: ["protocol", "command"] as const,
    registers: [this.registry],
  });
  readonly malformed = new Counter({
    name: "spanhub_agent_malformed_total",
    help: "Frames, lines or batch members that could not be decoded and were skipped",
    labelNames: ["protocol"] as const,
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: "spanhub_agent_rejected_total",
    help: "Well-formed input refused: unknown command or event type, oversized frame or line",
    labelNames: ["protocol", "reason"] as const,
    registers: [this.registry],
  });
  readonly unknownStatus = new Counter({
    name: "spanhub_unknown_status_total",
    help: "End events whose status was not a known one (stored as failed)",
    registers: [this.registry],
  });
  readonly eventsCommitted = new Counter({
    name: "spanhub_events_committed_total",
    help: "Run events committed to the store",
    registers: [this.registry],
  });
  readonly duplicateBatches = new Counter({
    name: "spanhub_duplicate_batches_total",
    help: "Batches whose batch_id was already committed: acknowledged, not applied again",
    registers: [this.registry],
  });
  readonly commitFailures = new Counter({
    name: "spanhub_commit_failures_total",
    help: "Submissions that could not be committed (not acknowledged)",
    registers: [this.registry],
  });
  readonly commitBatchEvents = new Histogram({
    name: "spanhub_commit_batch_events",
    help: "Events per group commit",
    buckets: [1, 10, 100, 1000, 5000, 20000, 100000],
    registers: [this.registry],
  });
  readonly commitSeconds = new Histogram({
    name: "spanhub_commit_seconds",
    help: "Time to commit one group",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });
  readonly openConnections = new Gauge({
    name: "spanhub_agent_open_connections",
    help: "Agent connections open now",
    labelNames: ["listener"] as const,
    registers: [this.registry],
  });
  readonly httpEvents = new Counter({
    name: "spanhub_http_events_total",
    help: "Events received through POST /api/v1/events",
    registers: [this.registry],
  });

  readonly exportedSpans = new Counter({
    name: "spanhub_otlp_export_spans_total",
    help: "Spans an --export-otlp destination accepted",
    labelNames: ["destination"] as const,
    registers: [this.registry],
  });
  readonly exportDropped = new Counter({
    name: "spanhub_otlp_export_dropped_spans_total",
    help: "Spans not forwarded to an --export-otlp destination, by reason (queue_full, rejected, retries_exhausted, unfinished_evicted, shutdown)",
    labelNames: ["destination", "reason"] as const,
    registers: [this.registry],
  });
  readonly exportRetries = new Counter({
    name: "spanhub_otlp_export_retries_total",
    help: "OTLP export requests retried after a network error or a retryable status",
    labelNames: ["destination"] as const,
    registers: [this.registry],
  });
  readonly exportQueueSpans = new Gauge({
    name: "spanhub_otlp_export_queue_spans",
    help: "Spans waiting to be sent to an --export-otlp destination",
    labelNames: ["destination"] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Counts end events whose wire status was not a known one. */
  countUnknownStatuses(events: RunEvent[]): void {
    for (const event of events)
      if ((event.kind === "span_end" || event.kind === "span" || event.kind === "run_end") && event.unknownStatus)
        this.unknownStatus.inc();
  }

  /** Totals for `spanhub agent status`. */
  async summary(): Promise<Record<string, number>> {
    const total = async (counter: Counter<string> | Gauge<string>) =>
      (await counter.get()).values.reduce((sum, value) => sum + value.value, 0);
    return {
      messages: await total(this.messages),
      malformed: await total(this.malformed),
      rejected: await total(this.rejected),
      eventsCommitted: await total(this.eventsCommitted),
      duplicateBatches: await total(this.duplicateBatches),
      commitFailures: await total(this.commitFailures),
      openConnections: await total(this.openConnections),
    };
  }
}
