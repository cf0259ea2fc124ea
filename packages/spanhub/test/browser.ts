/**
 * Real-browser helpers shared by the UI tests and `bench/ui`: Debian's Chromium driven by
 * playwright-core, and synthetic runs sent through the agent socket as `Events` frames.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";
import { FrameClient } from "./processHelpers.js";

export const CHROMIUM = process.env.SPANHUB_CHROMIUM ?? "/usr/bin/chromium";

/** Why the browser tests cannot run here, or undefined when they can. */
export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM)
    ? undefined
    : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set SPANHUB_CHROMIUM)`;
}

/** Headless Chromium on a fresh profile directory, 1280x800 in UTC; `close` also removes the profile. */
export async function launchChromium(): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), "spanhub-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    timezoneId: "UTC",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
      "--disable-sync",
      "--disable-quic",
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export interface TreeRunOptions {
  name?: string;
  app?: string;
  /** Epoch ms of the run's start. */
  base?: number;
  /** Leave the run running (no run_end). */
  open?: boolean;
  /** Children per span. */
  fanOut?: number;
}

/** Span `index` of a tree run: its parent, name and tags, the same wherever it is built. */
export function treeSpan(runId: string, index: number, fanOut = 8) {
  return {
    id: `${runId}-s${index}`,
    parent: index === 0 ? null : `${runId}-s${Math.floor((index - 1) / fanOut)}`,
    name: index === 0 ? "Job/main" : ["SQL/Query", "HTTP/GET", "Template/Render", "Cache/read"][index % 4],
    tags: { i: index, "db.rows": index % 100 },
  };
}

/**
 * A run of `count` spans as `Events` frames of at most 5,000 events each: a tree with
 * `fanOut` children per span, parents starting before and ending after their children.
 */
export function treeRunFrames(runId: string, count: number, options: TreeRunOptions = {}): unknown[] {
  const base = options.base ?? Date.now() - 60_000;
  const fanOut = options.fanOut ?? 8;
  const events: unknown[] = [
    { type: "run_start", run_id: runId, name: options.name ?? runId, app: options.app ?? "bench", ts_ms: base },
  ];
  for (let index = 0; index < count; index++) {
    const span = treeSpan(runId, index, fanOut);
    const start = base + index * 0.02;
    events.push(
      {
        type: "span_start",
        run_id: runId,
        span_id: span.id,
        parent_id: span.parent,
        name: span.name,
        tags: span.tags,
        start_ms: start,
      },
      { type: "span_end", run_id: runId, span_id: span.id, end_ms: base + count * 0.02 + (count - index) * 0.01 },
    );
  }
  if (!options.open) events.push({ type: "run_end", run_id: runId, ts_ms: base + count * 0.04 });
  const frames: unknown[] = [];
  for (let at = 0; at < events.length; at += 5000) frames.push({ Events: { events: events.slice(at, at + 5000) } });
  return frames;
}

/** Sends frames on one agent connection and checks every reply is Success. */
export async function sendFrames(socket: string, frames: unknown[]): Promise<void> {
  const client = await FrameClient.open(socket);
  try {
    for (const frame of frames) {
      const reply = (await client.send(frame)) as { Events?: { result?: string } };
      if (reply.Events?.result !== "Success") throw new Error(`agent refused a frame: ${JSON.stringify(reply)}`);
    }
  } finally {
    client.close();
  }
}
