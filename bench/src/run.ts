import * as decode from "./decode.js";
import * as digest from "./digest.js";
import * as ingest from "./ingest.js";
import * as otlp from "./otlp.js";
import * as runner from "./runner.js";
import * as sdk from "./sdk.js";
import { type BenchModule, formatTable } from "./table.js";
import * as ui from "./ui.js";
import * as writer from "./writer.js";

/**
 * Every benchmark, in order. Each is a module exporting `run(): Promise<BenchResult>`
 * that measures its own baseline in the same run; add new ones to this list.
 * `node bench/dist/run.js [name...]` runs only the named ones.
 */
const BENCHMARKS: [name: string, module: BenchModule][] = [
  ["ingest", ingest],
  ["decode", decode],
  ["writer", writer],
  ["otlp", otlp],
  ["sdk", sdk],
  ["digest", digest],
  ["runner", runner],
  ["ui", ui],
];

const only = process.argv.slice(2);
let failed = 0;
for (const [name, module] of BENCHMARKS) {
  if (only.length > 0 && !only.includes(name)) continue;
  try {
    process.stdout.write(`${formatTable(await module.run())}\n`);
  } catch (error) {
    failed += 1;
    process.stderr.write(`\nBENCH FAILED: ${name}: ${error instanceof Error ? error.message : String(error)}\n\n`);
  }
}
process.exitCode = failed > 0 ? 1 : 0;
