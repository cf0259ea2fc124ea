import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Chunk, encodeFrame, FrameReader, LineReader } from "../src/protocols/framing.js";

/** Splits `buffer` at the given offsets. */
function splitAt(buffer: Buffer, offsets: number[]): Buffer[] {
  const parts: Buffer[] = [];
  let start = 0;
  for (const offset of [...offsets, buffer.length]) {
    parts.push(buffer.subarray(start, offset));
    start = offset;
  }
  return parts;
}

function feed<T>(reader: { push(chunk: Buffer): Chunk<T>[] }, chunks: Buffer[]): Chunk<T>[] {
  return chunks.flatMap((chunk) => reader.push(chunk));
}

/** The JSON bodies of the items, failing on anything else. */
function bodies(chunks: Chunk<Buffer>[]): unknown[] {
  return chunks.map((chunk) => {
    assert.equal(chunk.kind, "item");
    return JSON.parse((chunk as { value: Buffer }).value.toString("utf8"));
  });
}

const MESSAGES = [
  { Register: { app: "shop-web", key: "k", api_version: "1.0" } },
  { CoreAgentVersion: {} },
  { StartSpan: { request_id: "req-1", span_id: "span-1", operation: "Controller/users", note: "naïve ☃" } },
];

describe("encodeFrame", () => {
  it("writes a 4-byte big-endian length, then the UTF-8 JSON", () => {
    const frame = encodeFrame({ a: "é" });
    const body = Buffer.from('{"a":"é"}', "utf8");
    assert.equal(frame.readUInt32BE(0), body.length);
    assert.deepEqual([...frame.subarray(0, 4)], [0, 0, 0, body.length]);
    assert.deepEqual(frame.subarray(4), body);
  });
});

describe("FrameReader", () => {
  const stream = Buffer.concat(MESSAGES.map(encodeFrame));

  it("delivers several frames that arrive in one chunk", () => {
    const reader = new FrameReader(1 << 20);
    assert.deepEqual(bodies(reader.push(stream)), MESSAGES);
  });

  it("reassembles frames split at every possible boundary, including inside the header", () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const reader = new FrameReader(1 << 20);
      assert.deepEqual(bodies(feed(reader, splitAt(stream, [cut]))), MESSAGES, `cut at ${cut}`);
    }
  });

  it("reassembles frames delivered one byte at a time, each completing on its last byte", () => {
    const reader = new FrameReader(1 << 20);
    const completions: number[] = [];
    const out: Chunk<Buffer>[] = [];
    for (let i = 0; i < stream.length; i++) {
      const got = reader.push(stream.subarray(i, i + 1));
      if (got.length > 0) completions.push(i + 1);
      out.push(...got);
    }
    assert.deepEqual(bodies(out), MESSAGES);
    let end = 0;
    const frameEnds = MESSAGES.map((message) => {
      end += encodeFrame(message).length;
      return end;
    });
    assert.deepEqual(completions, frameEnds);
  });

  it("splits inside the 4-byte header across three chunks", () => {
    const frame = encodeFrame({ CoreAgentVersion: {} });
    const reader = new FrameReader(1024);
    assert.deepEqual(reader.push(frame.subarray(0, 1)), []);
    assert.deepEqual(reader.push(frame.subarray(1, 3)), []);
    assert.deepEqual(bodies(reader.push(frame.subarray(3))), [{ CoreAgentVersion: {} }]);
  });

  it("delivers a chunk that ends one frame and starts the next", () => {
    const reader = new FrameReader(1024);
    const first = encodeFrame(MESSAGES[0]);
    const cut = first.length + 6;
    assert.deepEqual(bodies(reader.push(stream.subarray(0, cut))), [MESSAGES[0]]);
    assert.deepEqual(bodies(reader.push(stream.subarray(cut))), MESSAGES.slice(1));
  });

  it("delivers an empty frame", () => {
    const reader = new FrameReader(1024);
    const out = reader.push(Buffer.from([0, 0, 0, 0, 0, 0, 0, 2, 0x7b, 0x7d]));
    assert.equal(out.length, 2);
    assert.deepEqual(out[0], { kind: "item", value: Buffer.alloc(0) });
    assert.deepEqual(bodies(out.slice(1)), [{}]);
  });

  it("delivers a large frame that arrives in many small chunks, intact", () => {
    const big = {
      BatchCommand: { commands: Array.from({ length: 5000 }, (_, i) => ({ TagSpan: { i, v: "x".repeat(40) } })) },
    };
    const frame = encodeFrame(big);
    assert.ok(frame.length > 300_000);
    const reader = new FrameReader(1 << 20);
    const offsets: number[] = [];
    for (let at = 997; at < frame.length; at += 997) offsets.push(at);
    const out: Chunk<Buffer>[] = [];
    for (const [index, chunk] of splitAt(frame, offsets).entries()) {
      const got = reader.push(chunk);
      if (index < offsets.length) assert.deepEqual(got, [], "nothing before the last chunk");
      out.push(...got);
    }
    assert.deepEqual(bodies(out), [big]);
  });

  it("reports a frame whose header announces more than the maximum, with its size", () => {
    const reader = new FrameReader(100);
    const ok = encodeFrame({ a: 1 });
    const oversized = encodeFrame({ text: "y".repeat(200) });
    const out = reader.push(Buffer.concat([ok, oversized.subarray(0, 10)]));
    assert.equal(out.length, 2);
    assert.deepEqual(bodies(out.slice(0, 1)), [{ a: 1 }]);
    assert.deepEqual(out[1], { kind: "oversized", size: oversized.length - 4 });
  });

  it("reports an oversized frame as soon as its header is complete", () => {
    const reader = new FrameReader(1000);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1001, 0);
    assert.deepEqual(reader.push(header.subarray(0, 2)), []);
    assert.deepEqual(reader.push(header.subarray(2)), [{ kind: "oversized", size: 1001 }]);
  });

  it("accepts a frame of exactly the maximum size", () => {
    const body = JSON.stringify({ t: "z".repeat(50) });
    const reader = new FrameReader(Buffer.byteLength(body));
    assert.deepEqual(bodies(reader.push(encodeFrame(JSON.parse(body)))), [JSON.parse(body)]);
  });
});

describe("LineReader", () => {
  const lines = (chunks: Chunk<string>[]): string[] =>
    chunks.map((chunk) => {
      assert.equal(chunk.kind, "item");
      return (chunk as { value: string }).value;
    });

  it("splits one chunk into lines and skips empty ones", () => {
    const reader = new LineReader(1024);
    assert.deepEqual(lines(reader.push(Buffer.from('{"a":1}\n\n{"b":2}\n'))), ['{"a":1}', '{"b":2}']);
  });

  it("joins a line split across chunks, at every possible boundary", () => {
    const text = Buffer.from('{"type":"span_start","name":"naïve ☃"}\n{"type":"span_end"}\n');
    for (let cut = 1; cut < text.length; cut++) {
      const reader = new LineReader(1024);
      assert.deepEqual(
        lines(feed(reader, splitAt(text, [cut]))),
        ['{"type":"span_start","name":"naïve ☃"}', '{"type":"span_end"}'],
        `cut at ${cut}`,
      );
    }
  });

  it("joins a line split over many chunks", () => {
    const reader = new LineReader(1024);
    assert.deepEqual(reader.push(Buffer.from('{"a"')), []);
    assert.deepEqual(reader.push(Buffer.from(":")), []);
    assert.deepEqual(lines(reader.push(Buffer.from('1}\n{"b"'))), ['{"a":1}']);
    assert.deepEqual(lines(reader.push(Buffer.from(":2}\n"))), ['{"b":2}']);
  });

  it("keeps the \\r of CRLF, which JSON.parse still accepts as whitespace", () => {
    const reader = new LineReader(1024);
    const got = lines(reader.push(Buffer.from('{"a":1}\r\n{"b":2}\r\n')));
    assert.deepEqual(got, ['{"a":1}\r', '{"b":2}\r']);
    assert.deepEqual(
      got.map((line) => JSON.parse(line)),
      [{ a: 1 }, { b: 2 }],
    );
  });

  it("reports an over-long line once and skips it, while the next line still comes through", () => {
    const reader = new LineReader(10);
    const out = feed(reader, [
      Buffer.from('{"a":1}\n{"long":"'),
      Buffer.from("xxxxxxxxxxxxxxxx"),
      Buffer.from("xxxxxxxx"),
      Buffer.from('"}\n{"b":2}\n'),
    ]);
    assert.equal(out.filter((chunk) => chunk.kind === "oversized").length, 1);
    assert.equal(out[1]?.kind, "oversized");
    assert.ok(out[1]?.kind === "oversized" && out[1].size > 10);
    assert.deepEqual(lines([out[0], out[2]] as Chunk<string>[]), ['{"a":1}', '{"b":2}']);
    assert.equal(out.length, 3);
  });

  it("reports an over-long line that arrives whole in one chunk, once", () => {
    const reader = new LineReader(10);
    const out = reader.push(Buffer.from(`${"q".repeat(25)}\n{"b":2}\n`));
    assert.deepEqual(out, [
      { kind: "oversized", size: 25 },
      { kind: "item", value: '{"b":2}' },
    ]);
  });

  it("accepts a line of exactly the maximum length", () => {
    const reader = new LineReader(10);
    assert.deepEqual(lines(reader.push(Buffer.from("0123456789\n"))), ["0123456789"]);
  });

  it("end() returns a last unterminated line, once", () => {
    const reader = new LineReader(1024);
    assert.deepEqual(lines(reader.push(Buffer.from('{"a":1}\n{"b"'))), ['{"a":1}']);
    assert.deepEqual(reader.push(Buffer.from(":2}")), []);
    assert.deepEqual(reader.end(), [{ kind: "item", value: '{"b":2}' }]);
    assert.deepEqual(reader.end(), []);
  });

  it("end() returns nothing after a terminated line or while skipping an over-long one", () => {
    const done = new LineReader(1024);
    done.push(Buffer.from('{"a":1}\n'));
    assert.deepEqual(done.end(), []);
    const skipping = new LineReader(4);
    assert.deepEqual(skipping.push(Buffer.from("0123456789")), [{ kind: "oversized", size: 10 }]);
    assert.deepEqual(skipping.end(), []);
  });
});
