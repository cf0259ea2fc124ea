import { context, SpanKind, SpanStatusCode, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";

/** OpenTelemetry's SDK with async context, service `checkout`, sending through the given processors. */
export function tracerProvider(processors: SpanProcessor[], service = "checkout"): BasicTracerProvider {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  return new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": service, "deployment.environment": "test" }),
    spanProcessors: processors,
  });
}

/** The sample's database span attributes: one of every attribute type. */
export const SAMPLE_QUERY_ATTRIBUTES = {
  "db.statement": "SELECT 1",
  rows: 42,
  ratio: 0.25,
  cached: false,
  "ids.list": [1, 2, 3],
  "names.list": ["a", "b"],
};

/**
 * A request as an instrumented app records it: a server span with a nested handler, a
 * database call with attributes of every type, an event, an exception and an error
 * status. Returns the trace id.
 */
export function sampleTrace(tracer: Tracer): string {
  return tracer.startActiveSpan("GET /cart", { kind: SpanKind.SERVER }, (root) => {
    root.setAttribute("http.route", "/cart");
    tracer.startActiveSpan("handler", (handler) => {
      const query = tracer.startSpan("db.query", {
        kind: SpanKind.CLIENT,
        attributes: SAMPLE_QUERY_ATTRIBUTES,
      });
      query.addEvent("retrying", { attempt: 2 });
      query.recordException(new TypeError("connection reset"));
      query.setStatus({ code: SpanStatusCode.ERROR, message: "connection reset" });
      query.end();
      handler.end();
    });
    root.setStatus({ code: SpanStatusCode.OK });
    root.end();
    return root.spanContext().traceId;
  });
}

/** The sample trace's finished spans, kept in memory. */
export function recordSampleTrace(): { spans: ReadableSpan[]; traceId: string } {
  const exporter = new InMemorySpanExporter();
  const provider = tracerProvider([new SimpleSpanProcessor(exporter)]);
  const traceId = sampleTrace(provider.getTracer("spanhub-test"));
  return { spans: exporter.getFinishedSpans(), traceId };
}
