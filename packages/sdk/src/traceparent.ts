/**
 * W3C trace context (`traceparent: 00-<trace-id>-<parent-id>-<flags>`). spanhub's run id is the
 * trace id and its span id the parent id, so a downstream service's run links to the exact span
 * that called it. (Each run keeps its own id, so the downstream run starts a new trace id.)
 */
export interface Parent {
  runId: string;
  spanId: string;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

export function formatTraceparent(runId: string, spanId: string): string {
  return `00-${runId}-${spanId}-01`;
}

/** The parent named by a `traceparent` header, or undefined when absent or invalid. */
export function parseTraceparent(value: unknown): Parent | undefined {
  if (typeof value !== "string") return undefined;
  const match = TRACEPARENT.exec(value.trim().toLowerCase());
  if (!match) return undefined;
  const [, version, traceId, parentId, , rest] = match;
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId as string) || /^0+$/.test(parentId as string)) return undefined;
  return { runId: traceId as string, spanId: parentId as string };
}

/** Reads a header from a plain object (any letter case, string or string[]) or a `Headers`-like `get()`. */
export function readHeader(headers: unknown, name: string): unknown {
  if (typeof headers !== "object" || headers === null) return undefined;
  const getter = (headers as { get?: unknown }).get;
  if (typeof getter === "function") {
    try {
      return (getter as (key: string) => unknown).call(headers, name) ?? undefined;
    } catch {
      return undefined;
    }
  }
  const record = headers as Record<string, unknown>;
  let value = record[name];
  if (value === undefined) {
    for (const key of Object.keys(record)) if (key.toLowerCase() === name) value = record[key];
  }
  return Array.isArray(value) ? value[0] : value;
}

/** Writes a header into a plain object or a `Headers`-like `set()`. */
export function writeHeader(headers: unknown, name: string, value: string): void {
  if (typeof headers !== "object" || headers === null) return;
  const setter = (headers as { set?: unknown }).set;
  if (typeof setter === "function") (setter as (key: string, value: string) => void).call(headers, name, value);
  else (headers as Record<string, unknown>)[name] = value;
}
