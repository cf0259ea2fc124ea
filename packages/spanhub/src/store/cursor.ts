/** Opaque paging cursors: base64url JSON of the last row's sort key. */
export function encodeCursor(key: (string | number)[]): string {
  return Buffer.from(JSON.stringify(key)).toString("base64url");
}

export class CursorError extends Error {}

export function decodeCursor(cursor: string): (string | number)[] {
  try {
    const key = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    if (Array.isArray(key)) return key;
  } catch {
    // reported below
  }
  throw new CursorError("the cursor is not one this API returned");
}
