import { readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { type Cell, formatTable } from "./table.js";

/**
 * Summarizes V8 `.cpuprofile` files (as `node --cpu-prof` writes them, one per thread)
 * by self time per function: `node bench/dist/cpuProfile.js FILE_OR_DIR... [--top N]`.
 * Use with `BENCH_CPU_PROF=DIR node bench/dist/run.js ingest`.
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Samples where the thread waited (in libuv / for a message); `(program)` is native work and counts as busy. */
const IDLE = "(idle)";

export function summarize(path: string, top: number): string {
  const profile = JSON.parse(readFileSync(path, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMicros = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let busy = 0;
  let idle = 0;
  // timeDeltas[i] is the time before sample i; attribute the time until the next sample to sample i.
  for (let index = 0; index < samples.length; index++) {
    const node = byId.get(samples[index] as number);
    const micros = deltas[index + 1] ?? 0;
    if (!node) continue;
    const frame = node.callFrame;
    if (frame.functionName === IDLE) {
      idle += micros;
      continue;
    }
    busy += micros;
    const where = frame.url ? `${shortUrl(frame.url)}:${frame.lineNumber + 1}` : "";
    const key = `${frame.functionName || "(anonymous)"}${where ? `  ${where}` : ""}`;
    selfMicros.set(key, (selfMicros.get(key) ?? 0) + micros);
  }
  const rows: Cell[][] = [...selfMicros.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, micros]) => [key, `${(micros / 1000).toFixed(0)} ms`, `${((micros / busy) * 100).toFixed(1)}%`]);
  const wall = (profile.endTime - profile.startTime) / 1000;
  return formatTable({
    title: `${basename(path)}: ${(busy / 1000).toFixed(0)} ms busy, ${(idle / 1000).toFixed(0)} ms idle, ${wall.toFixed(0)} ms wall`,
    columns: ["function (self time)", "self", "of busy"],
    rows,
  });
}

function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, "");
  const at = path.search(/\/(packages|node_modules)\//);
  return at >= 0 ? path.slice(at + 1) : path;
}

function profilesIn(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .filter((name) => name.endsWith(".cpuprofile"))
    .sort()
    .map((name) => join(path, name));
}

if (process.argv[1] && import.meta.url.endsWith(basename(process.argv[1]))) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf("--top");
  const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
  if (args.length === 0) {
    process.stderr.write("usage: node bench/dist/cpuProfile.js FILE_OR_DIR... [--top N]\n");
    process.exitCode = 2;
  }
  for (const path of args.flatMap(profilesIn)) process.stdout.write(`${summarize(path, top)}\n`);
}
