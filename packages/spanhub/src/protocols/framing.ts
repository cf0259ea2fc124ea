/**
 * Stream framing for the agent socket, hand-written because it is the ingest hot path:
 * a length-prefixed frame reader (4-byte big-endian length, then the body) and a
 * newline splitter, both bounded by a maximum size.
 */
export type Chunk<T> = { kind: "item"; value: T } | { kind: "oversized"; size: number };

export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The total bytes (header and body) the next frame needs, once its header is known. */
  private need = 4;

  constructor(private readonly maxFrame: number) {}

  /** Frames completed by this chunk. An oversized frame ends the stream: nothing after it is read. */
  push(chunk: Buffer): Chunk<Buffer>[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size < this.need) return [];
    // One copy per completed read, never one per chunk, so large frames cost O(size).
    let buffer = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.size);
    const out: Chunk<Buffer>[] = [];
    let offset = 0;
    while (buffer.length - offset >= 4) {
      const size = buffer.readUInt32BE(offset);
      if (size > this.maxFrame) {
        out.push({ kind: "oversized", size });
        this.chunks = [];
        this.size = 0;
        return out;
      }
      if (buffer.length - offset - 4 < size) {
        this.need = 4 + size;
        break;
      }
      out.push({ kind: "item", value: buffer.subarray(offset + 4, offset + 4 + size) });
      offset += 4 + size;
      this.need = 4;
    }
    buffer = buffer.subarray(offset);
    this.chunks = buffer.length === 0 ? [] : [buffer];
    this.size = buffer.length;
    return out;
  }
}

export function encodeFrame(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message), "utf8");
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

export class LineReader {
  private pending: Buffer[] = [];
  private pendingSize = 0;
  private skipping = false;

  constructor(private readonly maxLine: number) {}

  /** Lines completed by this chunk; a line over the limit is reported once and skipped to its end. */
  push(chunk: Buffer): Chunk<string>[] {
    const out: Chunk<string>[] = [];
    let start = 0;
    for (let newline = chunk.indexOf(10, start); newline !== -1; newline = chunk.indexOf(10, start)) {
      const part = chunk.subarray(start, newline);
      if (this.skipping) this.skipping = false;
      else if (this.pendingSize + part.length > this.maxLine)
        out.push({ kind: "oversized", size: this.pendingSize + part.length });
      else {
        const line = this.pending.length === 0 ? part : Buffer.concat([...this.pending, part]);
        if (line.length > 0) out.push({ kind: "item", value: line.toString("utf8") });
      }
      this.pending = [];
      this.pendingSize = 0;
      start = newline + 1;
    }
    if (start < chunk.length && !this.skipping) {
      const rest = chunk.subarray(start);
      if (this.pendingSize + rest.length > this.maxLine) {
        out.push({ kind: "oversized", size: this.pendingSize + rest.length });
        this.pending = [];
        this.pendingSize = 0;
        this.skipping = true;
      } else {
        this.pending.push(rest);
        this.pendingSize += rest.length;
      }
    }
    return out;
  }

  /** The last line when the stream ends without a newline. */
  end(): Chunk<string>[] {
    if (this.pendingSize === 0 || this.skipping) return [];
    const line = Buffer.concat(this.pending).toString("utf8");
    this.pending = [];
    this.pendingSize = 0;
    return [{ kind: "item", value: line }];
  }
}
