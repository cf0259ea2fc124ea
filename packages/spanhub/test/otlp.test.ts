import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JsonTraceSerializer, ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import type { SpanEvent } from "../src/model/event.js";
import { DecodeError } from "../src/protocols/jsonLines.js";
import { decodeOtlpJson, decodeOtlpProtobuf, nanosToMicros } from "../src/protocols/otlp.js";
import { ExportTraceServiceRequest } from "../src/protocols/otlpProto.js";
import { recordSampleTrace, SAMPLE_QUERY_ATTRIBUTES } from "./otlpHelpers.js";

const RECEIVED = 1_795_423_645_363_000;

describe("OTLP decoding", () => {
  it("protobuf and OTLP/JSON of the same spans (from the OpenTelemetry serializers) decode alike", () => {
    const { spans, traceId } = recordSampleTrace();
    const fromProtobuf = decodeOtlpProtobuf(ProtobufTraceSerializer.serializeRequest(spans) as Uint8Array, RECEIVED);
    const json = new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans));
    const fromJson = decodeOtlpJson(json, RECEIVED);
    assert.deepEqual(fromJson, fromProtobuf);
    assert.equal(fromProtobuf.accepted, spans.length);
    assert.equal(fromProtobuf.rejected, 0);
    const events = fromProtobuf.submission.events;
    assert.ok(events.every((event) => event.runId === traceId));
    const start = events.find((event) => event.kind === "run_start");
    assert.deepEqual(
      { app: start?.app, endOnIdle: start?.kind === "run_start" && start.endOnIdle },
      { app: "checkout", endOnIdle: true },
    );
    const byName = new Map(
      events.filter((event): event is SpanEvent => event.kind === "span").map((event) => [event.name, event]),
    );
    const query = byName.get("db.query");
    assert.deepEqual(query?.tags, { ...SAMPLE_QUERY_ATTRIBUTES, "service.name": "checkout" });
    assert.equal(query?.spanKind, "client");
    assert.equal(query?.status, "failed");
    assert.deepEqual(
      { type: query?.error?.type, message: query?.error?.message },
      { type: "TypeError", message: "connection reset" },
    );
    assert.match(query?.error?.stack ?? "", /TypeError: connection reset/);
    assert.deepEqual(
      query?.logs?.map((log) => log.text),
      ['retrying {"attempt":2}'],
    );
    assert.equal(query?.parentId, byName.get("handler")?.spanId);
  });

  it("keeps int64 beyond 2^53 as text, bytes as base64 and key-value lists as objects", () => {
    const request = ExportTraceServiceRequest.fromObject({
      resourceSpans: [
        {
          scopeSpans: [
            {
              spans: [
                {
                  traceId: Buffer.from("0af7651916cd43dd8448eb211c80319c", "hex"),
                  spanId: Buffer.from("b7ad6b7169203331", "hex"),
                  name: "s",
                  startTimeUnixNano: "1795423645363123999",
                  endTimeUnixNano: "1795423645364000000",
                  attributes: [
                    { key: "big", value: { intValue: "9007199254740993" } },
                    { key: "raw", value: { bytesValue: Buffer.from([1, 2, 255]) } },
                    { key: "kv", value: { kvlistValue: { values: [{ key: "a", value: { intValue: 1 } }] } } },
                  ],
                },
              ],
            },
          ],
        },
      ],
    });
    const decoded = decodeOtlpProtobuf(ExportTraceServiceRequest.encode(request).finish(), RECEIVED);
    const span = decoded.submission.events.find((event) => event.kind === "span") as SpanEvent;
    assert.deepEqual(span.tags, { big: "9007199254740993", raw: "AQL/", kv: { a: 1 } });
    assert.equal(span.startTime, 1795423645363123);
    assert.equal(span.time, 1795423645364000);
  });

  it("refuses spans with bad ids as a partial success and keeps the others", () => {
    const span = (traceId: string) => ({
      traceId: Buffer.from(traceId, "hex"),
      spanId: Buffer.from("b7ad6b7169203331", "hex"),
      name: "s",
    });
    const request = ExportTraceServiceRequest.fromObject({
      resourceSpans: [
        {
          scopeSpans: [{ spans: [span("0af7651916cd43dd8448eb211c80319c"), span("00000000000000000000000000000000")] }],
        },
      ],
    });
    const decoded = decodeOtlpProtobuf(ExportTraceServiceRequest.encode(request).finish(), RECEIVED);
    assert.equal(decoded.accepted, 1);
    assert.equal(decoded.rejected, 1);
    assert.match(decoded.errorMessage ?? "", /trace_id must be 16 bytes/);
  });

  it("refuses bytes that are not a request, and JSON of another shape", () => {
    assert.throws(() => decodeOtlpProtobuf(Buffer.from([0x0a, 0xff, 0xff, 0xff]), RECEIVED), DecodeError);
    assert.throws(() => decodeOtlpJson("[1,2]", RECEIVED), DecodeError);
    assert.throws(() => decodeOtlpJson('{"resourceSpans": 5}', RECEIVED), DecodeError);
    assert.throws(() => decodeOtlpJson("{", RECEIVED), DecodeError);
  });

  it("divides 64-bit nanoseconds exactly", () => {
    const request = ExportTraceServiceRequest.decode(
      ExportTraceServiceRequest.encode(
        ExportTraceServiceRequest.fromObject({
          resourceSpans: [{ scopeSpans: [{ spans: [{ startTimeUnixNano: "7258118400123456789" }] }] }],
        }),
      ).finish(),
    );
    const start = request.resourceSpans?.[0]?.scopeSpans?.[0]?.spans?.[0]?.startTimeUnixNano;
    assert.equal(nanosToMicros(start), 7258118400123456);
    assert.equal(nanosToMicros("1795423645363123999"), 1795423645363123);
    assert.equal(nanosToMicros(0), undefined);
  });
});
