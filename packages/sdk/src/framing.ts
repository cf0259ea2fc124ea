/** The agent's framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON. */
export function frame(body: string): Buffer {
  const length = Buffer.byteLength(body);
  const buffer = Buffer.allocUnsafe(4 + length);
  buffer.writeUInt32BE(length, 0);
  buffer.write(body, 4, "utf8");
  return buffer;
}

const CHUNK_BYTES = 256 * 1024;

/** 1 for the UTF-16 code units JSON keeps as they are in one byte: printable ASCII but `"` and `\`. */
const PLAIN = new Uint8Array(0x10000);
for (let code = 0x20; code < 0x7f; code++) PLAIN[code] = code === 0x22 || code === 0x5c ? 0 : 1;

/**
 * Encoded frames, off the JavaScript heap: each batch's frames are written into a large shared
 * chunk as soon as the batch is encoded, and kept as a slice of it until acknowledged. Batches
 * encoded one after another lie side by side, so a flush writes a few slices (joined without a
 * copy) instead of every frame. A chunk is freed once no slice of it is kept.
 */
export class FrameArena {
  private chunk: Buffer = Buffer.alloc(0);
  private offset = 0;

  /** The frames of `bodies`, back to back. `ascii`: every body is ASCII (one byte per character). */
  frames(bodies: string[], ascii: boolean): Buffer {
    let room = 0;
    for (const body of bodies) room += 4 + (ascii ? body.length : Buffer.byteLength(body));
    if (this.chunk.length - this.offset < room) {
      this.chunk = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, room));
      this.offset = 0;
    }
    const chunk = this.chunk;
    const start = this.offset;
    let offset = start;
    for (const body of bodies) {
      const length = chunk.write(body, offset + 4, ascii ? "latin1" : "utf8");
      chunk.writeUInt32BE(length, offset);
      offset += 4 + length;
    }
    this.offset = offset;
    return chunk.subarray(start, offset);
  }
}

/** Slices that lie side by side in their chunk, joined without copying: the fewer, longer slices. */
export function adjacentRuns(parts: Buffer[]): Buffer[] {
  if (parts.length <= 1) return parts;
  const runs: Buffer[] = [];
  let first = parts[0] as Buffer;
  let end = first.byteOffset + first.length;
  let count = 1;
  const close = () => {
    runs.push(count === 1 ? first : Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset));
  };
  for (let index = 1; index < parts.length; index++) {
    const part = parts[index] as Buffer;
    if (part.buffer === first.buffer && part.byteOffset === end) {
      end += part.length;
      count += 1;
    } else {
      close();
      first = part;
      end = part.byteOffset + part.length;
      count = 1;
    }
  }
  close();
  return runs;
}

/** Splits a buffer of frames back into their bodies. */
export function splitFrames(data: Buffer): string[] {
  const bodies: string[] = [];
  let offset = 0;
  while (offset + 4 <= data.length) {
    const size = data.readUInt32BE(offset);
    bodies.push(data.toString("utf8", offset + 4, offset + 4 + size));
    offset += 4 + size;
  }
  return bodies;
}

/** The agent's answer to a stored batch, by far its most frequent reply: recognised by its bytes, not parsed. */
const BATCH_STORED = Buffer.from(JSON.stringify({ BatchCommand: { result: "Success" } }));
const BATCH_STORED_REPLY = Object.freeze({ BatchCommand: Object.freeze({ result: "Success" }) });

/** Splits the agent's replies into parsed messages; a reply that is not JSON becomes `undefined`. */
export class ReplyReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): unknown[] {
    let buffer = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: unknown[] = [];
    while (buffer.length >= 4) {
      const size = buffer.readUInt32BE(0);
      if (buffer.length < 4 + size) break;
      if (size === BATCH_STORED.length && BATCH_STORED.compare(buffer, 4, 4 + size) === 0) out.push(BATCH_STORED_REPLY);
      else
        try {
          out.push(JSON.parse(buffer.toString("utf8", 4, 4 + size)));
        } catch {
          out.push(undefined);
        }
      buffer = buffer.subarray(4 + size);
    }
    this.pending = buffer;
    return out;
  }
}

/**
 * Bytes pre-encoded for `FrameWriter.encoded`: their little-endian 32-bit words, so that a copy
 * moves four bytes a step (reading a string's characters one by one is the writer's slowest work).
 */
export interface Encoded {
  readonly words: Uint32Array;
  /** The length in bytes (the last word may be padded). */
  readonly length: number;
}

/** `text` as UTF-8, pre-encoded. */
export function encodeText(text: string): Encoded {
  return encodeBytes(Buffer.from(text, "utf8"));
}

/** A copy of `bytes`, pre-encoded. */
export function encodeBytes(bytes: Uint8Array): Encoded {
  const words = new Uint32Array((bytes.length + 3) >>> 2);
  new Uint8Array(words.buffer).set(bytes);
  if (LITTLE_ENDIAN) return { words, length: bytes.length };
  const view = new DataView(words.buffer);
  for (let index = 0; index < words.length; index++) words[index] = view.getUint32(index * 4, true);
  return { words, length: bytes.length };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Two characters as a little-endian 16-bit value (the first in the low byte). */
const pairOf = (text: string) => text.charCodeAt(0) | (text.charCodeAt(1) << 8);
/** "00" to "ff" by byte value, and "00" to "99" by number, for `hex10` and `sixDigits`. */
const HEX_PAIRS = Uint16Array.from({ length: 256 }, (_, byte) => pairOf(byte.toString(16).padStart(2, "0")));
const DECIMAL_PAIRS = Uint16Array.from({ length: 100 }, (_, value) => pairOf(String(value).padStart(2, "0")));

/**
 * Writes one frame's JSON straight into a `FrameArena`'s chunk, byte by byte: no intermediate
 * strings. `begin`, then `raw`/`str`/`value`/`time`, then `end` returns the frame (length header
 * included). A frame that outgrows the chunk moves to a new, larger one.
 */
export class FrameWriter {
  private buf: Buffer = Buffer.alloc(0);
  /** `buf` as a DataView, for word copies (`encoded`). */
  private view = new DataView(this.buf.buffer, this.buf.byteOffset, 0);
  private pos = 0;
  private start = 0;

  begin(): void {
    if (this.buf.length - this.pos < 4096) {
      this.use(Buffer.allocUnsafe(CHUNK_BYTES));
      this.pos = 0;
    }
    this.start = this.pos;
    this.pos += 4;
  }

  /** The frame written since `begin`, as a slice of the chunk. */
  end(): Buffer {
    const { buf, start, pos } = this;
    buf.writeUInt32BE(pos - start - 4, start);
    return buf.subarray(start, pos);
  }

  /** Forgets the frame being written. */
  abort(): void {
    this.pos = this.start;
  }

  /** Bytes written since `begin`, the header excluded. */
  get length(): number {
    return this.pos - this.start - 4;
  }

  private grow(bytes: number): void {
    const used = this.pos - this.start;
    const next = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, (used + bytes) * 2));
    this.buf.copy(next, 0, this.start, this.pos);
    this.use(next);
    this.start = 0;
    this.pos = used;
  }

  private use(buf: Buffer): void {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  }

  /**
   * Pre-encoded bytes (fixed JSON, or text already escaped), four at a time. The last word may
   * write up to 3 bytes past the end: room the next writes overwrite, never part of the frame.
   */
  encoded(bytes: Encoded): void {
    const length = bytes.length;
    if (this.pos + length + 3 > this.buf.length) this.grow(length + 3);
    const { words } = bytes;
    const view = this.view;
    const count = words.length;
    let pos = this.pos;
    let index = 0;
    // Two words a step: fewer loop turns for the usual 10 to 60 bytes.
    for (; index + 1 < count; index += 2, pos += 8) {
      view.setUint32(pos, words[index] as number, true);
      view.setUint32(pos + 4, words[index + 1] as number, true);
    }
    if (index < count) view.setUint32(pos, words[index] as number, true);
    this.pos += length;
  }

  /** The bytes written in this frame from `mark` on, pre-encoded (to write them again cheaply). */
  encodedSince(mark: number): Encoded {
    return encodeBytes(this.buf.subarray(this.start + mark, this.pos));
  }

  /** Text known to be ASCII and to need no JSON escaping (ids, numbers, fixed JSON). */
  raw(text: string): void {
    const length = text.length;
    if (this.pos + length > this.buf.length) this.grow(length);
    const buf = this.buf;
    let pos = this.pos;
    for (let index = 0; index < length; index++) buf[pos++] = text.charCodeAt(index);
    this.pos = pos;
  }

  /** Replaces the byte at `mark` (counted like `mark`) written earlier in this frame. */
  setByte(mark: number, code: number): void {
    this.buf[this.start + mark] = code;
  }

  /** One byte of fixed JSON. */
  byte(code: number): void {
    if (this.pos + 1 > this.buf.length) this.grow(1);
    this.buf[this.pos++] = code;
  }

  /** Where the next byte goes, counted from the frame's start (for `encodedSince`). */
  get mark(): number {
    return this.pos - this.start;
  }

  /** A JSON string: copied as it is while it is printable ASCII with no quote or backslash, else JSON.stringify's. */
  str(text: string): void {
    const length = text.length;
    if (this.pos + length + 2 > this.buf.length) this.grow(length + 2);
    const buf = this.buf;
    const begin = this.pos;
    let pos = begin;
    buf[pos++] = 0x22;
    for (let index = 0; index < length; index++) {
      const code = text.charCodeAt(index);
      if (PLAIN[code] === 0) {
        this.pos = begin;
        this.utf8(JSON.stringify(text));
        return;
      }
      buf[pos++] = code;
    }
    buf[pos++] = 0x22;
    this.pos = pos;
  }

  /** Any text, as UTF-8. */
  utf8(text: string): void {
    const bytes = Buffer.byteLength(text);
    if (this.pos + bytes > this.buf.length) this.grow(bytes);
    this.pos += this.buf.write(text, this.pos, bytes, "utf8");
  }

  /** A non-negative integer below 2^40 as 10 lowercase hex digits, zero-padded: five byte pairs from a table. */
  hex10(value: number): void {
    if (this.pos + 10 > this.buf.length) this.grow(10);
    const view = this.view;
    const pos = this.pos;
    const low = value % 0x100000000;
    view.setUint16(pos, HEX_PAIRS[(value - low) / 0x100000000] as number, true);
    view.setUint16(pos + 2, HEX_PAIRS[low >>> 24] as number, true);
    view.setUint16(pos + 4, HEX_PAIRS[(low >>> 16) & 0xff] as number, true);
    view.setUint16(pos + 6, HEX_PAIRS[(low >>> 8) & 0xff] as number, true);
    view.setUint16(pos + 8, HEX_PAIRS[low & 0xff] as number, true);
    this.pos = pos + 10;
  }

  /** A number from 0 to 999,999 as six digits: three pairs from a table. */
  sixDigits(value: number): void {
    if (this.pos + 6 > this.buf.length) this.grow(6);
    const high = (value / 10_000) | 0;
    const low = value - high * 10_000;
    const middle = (low / 100) | 0;
    const view = this.view;
    const pos = this.pos;
    view.setUint16(pos, DECIMAL_PAIRS[high] as number, true);
    view.setUint16(pos + 2, DECIMAL_PAIRS[middle] as number, true);
    view.setUint16(pos + 4, DECIMAL_PAIRS[low - middle * 100] as number, true);
    this.pos = pos + 6;
  }

  /** A non-negative integer below 10^9, as JSON. */
  int(value: number): void {
    let digits = 1;
    for (let limit = 10; value >= limit && digits < 9; limit *= 10) digits++;
    this.digits(value, digits);
  }

  /** A non-negative integer below 10^digits, zero-padded to `digits`. */
  digits(value: number, digits: number): void {
    if (this.pos + digits > this.buf.length) this.grow(digits);
    const buf = this.buf;
    let pos = this.pos + digits;
    this.pos = pos;
    for (let index = 0; index < digits; index++) {
      const next = (value / 10) | 0;
      buf[--pos] = 0x30 + value - next * 10;
      value = next;
    }
  }
}
