import { decodeScoutMessage } from "spanhub/internal/protocols/scout.js";
import { positive, progress } from "./progress.js";
import { ScoutLoad, SPANS_PER_REQUEST } from "./scoutLoad.js";
import type { BenchResult } from "./table.js";

/**
 * Decode: what the agent's main thread spends turning bench/ingest's frames into events, per
 * span, against `JSON.parse` of the same frames alone (the baseline: no decoder can skip
 * reading its input). In process, best of BENCH_DECODE_ROUNDS (default 15) rounds over
 * BENCH_DECODE_FRAMES (default 2000) frames of each shape, so machine noise mostly drops out.
 */

const ROUNDS = positive("BENCH_DECODE_ROUNDS", 15);
const FRAMES = positive("BENCH_DECODE_FRAMES", 2000);

interface Timing {
  parse: number;
  decode: number;
}

function measure(shape: "scout" | "sdk"): Timing {
  const load = new ScoutLoad(shape);
  const bodies = Array.from({ length: FRAMES }, () => load.nextFrame().subarray(4).toString("utf8"));
  const spans = FRAMES * SPANS_PER_REQUEST;
  const best: Timing = { parse: Number.POSITIVE_INFINITY, decode: Number.POSITIVE_INFINITY };
  const connection = { app: "bench" };
  for (let round = 0; round < ROUNDS; round++) {
    let started = performance.now();
    const messages = bodies.map((body) => JSON.parse(body) as unknown);
    best.parse = Math.min(best.parse, ((performance.now() - started) * 1000) / spans);
    started = performance.now();
    let events = 0;
    for (const message of messages)
      events += decodeScoutMessage(message, connection, Date.now() * 1000).submission?.events.length ?? 0;
    best.decode = Math.min(best.decode, ((performance.now() - started) * 1000) / spans);
    // Every request decodes to its run start, its spans and its run end, coalesced.
    if (events !== FRAMES * (SPANS_PER_REQUEST + 2)) throw new Error(`decoded ${events} events, not one a span`);
  }
  return best;
}

export async function run(): Promise<BenchResult> {
  const rows = (["scout", "sdk"] as const).map((shape) => {
    progress(`decode: ${FRAMES} ${shape} frames, best of ${ROUNDS}`);
    const { parse, decode } = measure(shape);
    return [
      shape === "scout" ? "Scout agent frames (TagSpan per tag)" : "SDK frames (tags on StartSpan)",
      parse.toFixed(2),
      decode.toFixed(2),
      (parse + decode).toFixed(2),
      `${((decode / parse) * 100).toFixed(0)}%`,
    ];
  });
  return {
    title: `decode: bench/ingest's frames (${SPANS_PER_REQUEST} spans a request) into events on one thread, µs per span`,
    columns: ["frames", "JSON.parse (baseline)", "decode", "together", "decode vs parse"],
    rows,
    notes: [
      `best of ${ROUNDS} rounds over ${FRAMES} frames each; decode = decodeScoutMessage on the parsed frames, coalescing included.`,
    ],
  };
}
