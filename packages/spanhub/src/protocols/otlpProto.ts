import { createRequire } from "node:module";
import protobuf from "protobufjs";

/**
 * The OTLP trace messages, from the official opentelemetry-proto definitions.
 *
 * No npm package ships the `.proto` files themselves (opentelemetry-proto publishes
 * none), so this uses the protobufjs code that the OpenTelemetry JS project generates
 * from them (`pbjs -t static-module` over its opentelemetry-proto submodule) and ships
 * in `@opentelemetry/otlp-transformer`: the same code its own exporters encode with.
 * Pinned to one minor version, since the path is not part of that package's API.
 */
const generated = createRequire(import.meta.url)("@opentelemetry/otlp-transformer/build/src/generated/root.js");
const traceV1 = generated.opentelemetry.proto.collector.trace.v1;

/** protobufjs's 64-bit integer (the `long` package) as decoded for int64/fixed64 fields. */
export interface Long {
  low: number;
  high: number;
  unsigned: boolean;
  toNumber(): number;
  toString(): string;
}

/** A 64-bit field: Long when decoded from protobuf; a number or decimal string when built by hand. */
export type Int64 = Long | number | string;

export interface AnyValue {
  stringValue?: string | null;
  boolValue?: boolean | null;
  intValue?: Int64 | null;
  doubleValue?: number | null;
  arrayValue?: { values?: AnyValue[] | null } | null;
  kvlistValue?: { values?: KeyValue[] | null } | null;
  bytesValue?: Uint8Array | null;
}

export interface KeyValue {
  key: string;
  value?: AnyValue | null;
}

export interface OtlpEvent {
  timeUnixNano?: Int64 | null;
  name?: string | null;
  attributes?: KeyValue[] | null;
}

export interface OtlpLink {
  traceId?: Uint8Array | null;
  spanId?: Uint8Array | null;
  traceState?: string | null;
  attributes?: KeyValue[] | null;
}

export interface OtlpSpan {
  traceId?: Uint8Array | null;
  spanId?: Uint8Array | null;
  traceState?: string | null;
  parentSpanId?: Uint8Array | null;
  name?: string | null;
  kind?: number | null;
  startTimeUnixNano?: Int64 | null;
  endTimeUnixNano?: Int64 | null;
  attributes?: KeyValue[] | null;
  events?: OtlpEvent[] | null;
  links?: OtlpLink[] | null;
  status?: { message?: string | null; code?: number | null } | null;
}

export interface ScopeSpans {
  scope?: { name?: string | null; version?: string | null; attributes?: KeyValue[] | null } | null;
  spans?: OtlpSpan[] | null;
}

export interface ResourceSpans {
  resource?: { attributes?: KeyValue[] | null } | null;
  scopeSpans?: ScopeSpans[] | null;
}

export interface ExportTraceServiceRequest {
  resourceSpans?: ResourceSpans[] | null;
}

export interface ExportTraceServiceResponse {
  partialSuccess?: { rejectedSpans?: Int64 | null; errorMessage?: string | null } | null;
}

interface MessageType<T> {
  decode(bytes: Uint8Array): T;
  encode(message: T): { finish(): Uint8Array };
  fromObject(object: Record<string, unknown>): T;
  toObject(message: T, options?: Record<string, unknown>): Record<string, unknown>;
}

export const ExportTraceServiceRequest = traceV1.ExportTraceServiceRequest as MessageType<ExportTraceServiceRequest>;
export const ExportTraceServiceResponse = traceV1.ExportTraceServiceResponse as MessageType<ExportTraceServiceResponse>;

/** OTLP `SpanKind` values. */
export const SPAN_KIND = { unspecified: 0, internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;
/** OTLP `Status.StatusCode` values. */
export const STATUS_CODE = { unset: 0, ok: 1, error: 2 } as const;

/**
 * `google.rpc.Status`, the body OTLP/HTTP puts on 4xx and 5xx answers. The generated
 * code does not include it, so it is declared here through protobufjs's reflection API
 * with the field numbers of google/rpc/status.proto (details are never sent).
 */
export const RpcStatus = new protobuf.Type("Status")
  .add(new protobuf.Field("code", 1, "int32"))
  .add(new protobuf.Field("message", 2, "string"));
new protobuf.Root().define("google.rpc").add(RpcStatus);
