import * as ingest from "./ingest.js";
import { type BenchResult, formatTable } from "./table.js";

/** Every benchmark, in order. Each measures its named baseline in the same run. */
const BENCHMARKS: { name: string; run: () => Promise<BenchResult> }[] = [{ name: "ingest", run: ingest.run }];

const only = process.argv[2];
for (const bench of BENCHMARKS) {
  if (only && bench.name !== only) continue;
  process.stderr.write(`running ${bench.name}...\n`);
  process.stdout.write(`${formatTable(await bench.run())}\n`);
}
