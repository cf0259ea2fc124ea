/** The agent's framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON. */
export function frame(body: string): Buffer {
  const length = Buffer.byteLength(body);
  const buffer = Buffer.allocUnsafe(4 + length);
  buffer.writeUInt32BE(length, 0);
  buffer.write(body, 4, "utf8");
  return buffer;
}

/** The frames of many entries in one buffer (one allocation and one socket write per flush). */
export function writeFrames(entries: { bodies: string[]; size: number }[]): Buffer {
  let total = 0;
  for (const entry of entries) total += entry.size;
  const buffer = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const entry of entries) {
    for (const body of entry.bodies) {
      const length = buffer.write(body, offset + 4, "utf8");
      buffer.writeUInt32BE(length, offset);
      offset += 4 + length;
    }
  }
  return buffer;
}

/** Splits the agent's replies into parsed messages; a reply that is not JSON becomes `undefined`. */
export class ReplyReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): unknown[] {
    let buffer = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: unknown[] = [];
    while (buffer.length >= 4) {
      const size = buffer.readUInt32BE(0);
      if (buffer.length < 4 + size) break;
      const body = buffer.subarray(4, 4 + size).toString("utf8");
      try {
        out.push(JSON.parse(body));
      } catch {
        out.push(undefined);
      }
      buffer = buffer.subarray(4 + size);
    }
    this.pending = buffer;
    return out;
  }
}
