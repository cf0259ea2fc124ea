import { resolve } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { digestView } from "../digest/digestView.js";
import { runView, spanView } from "../hub/views.js";
import type { RunStatus } from "../model/event.js";
import { RUN_STATUSES } from "../model/event.js";
import { formatMicros } from "../model/time.js";
import { createStore } from "../store/createStore.js";
import { dataOption } from "./options.js";
import { formatDigest, formatRunTree } from "./printTree.js";

export function runsCommand(): Command {
  return new Command("runs")
    .description("list runs, newest first")
    .addOption(dataOption())
    .option("--status <status>", `only runs with this status (${RUN_STATUSES.join(", ")})`)
    .option("--name <text>", "only runs whose name contains this")
    .option("--app <app>", "only runs of this app")
    .option("--limit <n>", "how many (1 to 1000)", parseLimit, 20)
    .option("--json", "print JSON")
    .action(
      async (flags: { data: string; status?: string; name?: string; app?: string; limit: number; json?: boolean }) => {
        if (flags.status && !(RUN_STATUSES as readonly string[]).includes(flags.status))
          throw new Error(`--status must be one of ${RUN_STATUSES.join(", ")}`);
        const store = createStore({ dataDir: resolve(flags.data) });
        try {
          const page = await store.listRuns({
            limit: flags.limit,
            ...(flags.status ? { status: flags.status as RunStatus } : {}),
            ...(flags.name ? { name: flags.name } : {}),
            ...(flags.app ? { app: flags.app } : {}),
          });
          if (flags.json) {
            process.stdout.write(`${JSON.stringify(page.runs.map(runView), null, 2)}\n`);
            return;
          }
          const rows = page.runs.map((run) => [
            run.id,
            run.name ?? "-",
            run.status,
            formatMicros(run.startTime).slice(0, 23),
            run.endTime === null ? "-" : `${((run.endTime - run.startTime) / 1000).toFixed(1)}ms`,
            String(run.spanCount),
            String(run.digest?.failedSpans ?? run.errorCount),
            run.digest?.p95Us == null ? "-" : `${(run.digest.p95Us / 1000).toFixed(1)}ms`,
          ]);
          process.stdout.write(table(["ID", "NAME", "STATUS", "START", "DURATION", "SPANS", "ERRORS", "P95"], rows));
        } finally {
          await store.close();
        }
      },
    );
}

export function showCommand(): Command {
  return new Command("show")
    .description("print a run and its span tree")
    .argument("<run>", "run id")
    .addOption(dataOption())
    .option("--json", "print the run and its spans as JSON")
    .action(async (runId: string, flags: { data: string; json?: boolean }) => {
      const store = createStore({ dataDir: resolve(flags.data) });
      try {
        const run = await store.getRun(runId);
        if (!run) throw new Error(`no run "${runId}" in ${flags.data}`);
        const [spans, read] = await Promise.all([store.listSpans(runId), store.getDigest(runId)]);
        const digest = read ? digestView(read.digest) : null;
        if (flags.json)
          process.stdout.write(
            `${JSON.stringify({ run: runView(run), digest, spans: spans.map(spanView) }, null, 2)}\n`,
          );
        else process.stdout.write(`${digest ? formatDigest(digest) : ""}${formatRunTree(run, spans)}\n`);
      } finally {
        await store.close();
      }
    });
}

function parseLimit(text: string): number {
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new InvalidArgumentError("a whole number from 1 to 1000");
  return limit;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}
