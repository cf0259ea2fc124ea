import { InvalidArgumentError, Option } from "commander";
import pino, { type Logger } from "pino";
import { defaultDataDir, defaultPort, defaultSocketPath } from "../config.js";
import { parseDurationMs } from "../model/time.js";
import type { CpuPriority } from "../runtime/cpuPriority.js";

/** Options shared by several commands, with their environment defaults. */
export const dataOption = () =>
  new Option("--data <dir>", "data directory (env SPANHUB_DATA)").default(defaultDataDir(), "~/.local/share/spanhub");
export const socketOption = () =>
  new Option("--socket <path>", "agent Unix socket (env SPANHUB_SOCKET)").default(defaultSocketPath());
export const hostOption = () => new Option("--host <host>", "HTTP address to bind").default("127.0.0.1");
export const portOption = () =>
  new Option("--port <port>", "HTTP port (env SPANHUB_PORT)").default(defaultPort()).argParser(parsePort);
export const tokenOption = () =>
  new Option("--token <token>", "API token, required off loopback (env SPANHUB_TOKEN)").default(
    process.env.SPANHUB_TOKEN,
    "$SPANHUB_TOKEN",
  );
export const maxFrameOption = () =>
  new Option("--max-frame <bytes>", "largest frame, line or request body accepted")
    .default(64 * 1024 * 1024, "64 MiB")
    .argParser(parseBytes);
export const abandonOption = () =>
  new Option("--abandon-after <duration>", "mark a run crashed (abandoned) after this long without events")
    .default(30 * 60_000, "30m")
    .argParser(parseDuration);
export const traceIdleOption = () =>
  new Option(
    "--trace-idle <duration>",
    "end an OpenTelemetry trace's run this long after its root ended and it went quiet",
  )
    .default(10_000, "10s")
    .argParser(parseDuration);
export const exportOtlpOption = () =>
  new Option("--export-otlp <url>", "forward everything stored as OTLP/HTTP protobuf to this URL (repeatable)")
    .default([], "none")
    .argParser(collectUrl);
export const durabilityOption = () =>
  new Option("--durability <mode>", "full: acknowledged data survives power loss; normal: process crashes only")
    .choices(["full", "normal"])
    .default("full");

export const foldOption = () =>
  new Option(
    "--fold <mode>",
    "digest work here: all (seal at run ends, fold in the background), seal-only, or off (another process folds)",
  )
    .choices(["all", "seal-only", "off"])
    .default("all");

/**
 * The agent shares the host's cores with the applications it traces, so by default it takes only
 * CPU time they leave free (the idle class): an application's event loop that wakes up runs at once.
 */
export const niceOption = () =>
  new Option(
    "--nice <n|idle>",
    "CPU priority of every thread: idle (only CPU time the applications leave free; niceness 19 where Linux's idle class is missing), or a niceness 0 to 19 (0 keeps the inherited priority)",
  )
    .env("SPANHUB_NICE")
    .default("idle" satisfies CpuPriority)
    .argParser(parseNice);

function parseNice(text: string): CpuPriority {
  if (text.trim() === "idle") return "idle";
  const nice = Number(text);
  if (!/^\d+$/.test(text.trim()) || nice > 19)
    throw new InvalidArgumentError("the priority is idle, or a niceness 0 (the inherited priority) to 19 (the lowest)");
  return nice;
}

const MAX_FRAME_LIMIT = 128 * 1024 * 1024;

export function parsePort(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError("a port is 0 to 65535");
  return port;
}

export function parseDuration(text: string): number {
  const ms = parseDurationMs(text);
  if (ms === undefined) throw new InvalidArgumentError("write a duration like 250ms, 30s, 5m or 1h30m");
  return ms;
}

function collectUrl(text: string, previous: string[]): string[] {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgumentError("write a URL like http://127.0.0.1:4318/v1/traces");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new InvalidArgumentError("an http(s) URL");
  return [...previous, text];
}

function parseBytes(text: string): number {
  const match = /^(\d+)\s*(k|ki|kib|m|mi|mib|g|gib)?b?$/i.exec(text.trim());
  if (!match) throw new InvalidArgumentError("write a size like 1048576, 512KiB or 64MiB");
  const unit = (match[2] ?? "").toLowerCase()[0];
  const factor = unit === "k" ? 1024 : unit === "m" ? 1024 ** 2 : unit === "g" ? 1024 ** 3 : 1;
  const bytes = Number(match[1]) * factor;
  // Larger frames would begin with a byte that also starts JSON lines (a tab), breaking protocol detection.
  if (bytes > MAX_FRAME_LIMIT) throw new InvalidArgumentError("at most 128MiB");
  return bytes;
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

export function createLogger(): Logger {
  return pino({ level: process.env.SPANHUB_LOG_LEVEL ?? "info" }, pino.destination({ fd: 2, sync: false }));
}
