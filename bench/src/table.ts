/** What one benchmark reports: a titled table, printed by `run.ts`. */
export type Cell = string | number;

export interface BenchResult {
  title: string;
  columns: string[];
  rows: Cell[][];
  /** Lines printed under the table (settings, caveats, checks). */
  notes?: string[];
}

/** A benchmark module: `run.ts` runs each in order and prints its table. */
export interface BenchModule {
  run(): Promise<BenchResult>;
}

/** Renders the result as an aligned text table: text cells left-aligned, numbers right-aligned. */
export function formatTable(result: BenchResult): string {
  const cells = [result.columns, ...result.rows.map((row) => row.map(String))];
  const numeric = result.columns.map((_, column) => result.rows.every((row) => isNumeric(row[column])));
  const widths = result.columns.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? "").length)));
  const line = (row: string[]) =>
    row
      .map((cell, column) => {
        const width = widths[column] ?? 0;
        return numeric[column] && column > 0 ? cell.padStart(width) : cell.padEnd(width);
      })
      .join("  ")
      .trimEnd();
  const out = [result.title, "", line(result.columns), line(widths.map((width) => "-".repeat(width)))];
  for (const row of cells.slice(1)) out.push(line(row));
  if (result.notes?.length) out.push("", ...result.notes);
  return `${out.join("\n")}\n`;
}

/** Right-align columns of formatted numbers ("12,345", "48%", "1.2 ms") and dashes. */
function isNumeric(cell: Cell | undefined): boolean {
  if (typeof cell === "number") return true;
  return typeof cell === "string" && /^(-|[\d.,]+ ?(%|x|ms|s|MiB|KiB)?)$/.test(cell);
}

export function formatCount(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

export function formatPercent(fraction: number): string {
  if (!Number.isFinite(fraction)) return "-";
  return `${(fraction * 100).toFixed(fraction < 0.1 ? 1 : 0)}%`;
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "-";
  return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
}

export function formatKiB(kib: number | undefined): string {
  if (kib === undefined) return "-";
  return `${(kib / 1024).toFixed(0)} MiB`;
}

/** The value at quantile q (0..1) of numbers sorted ascending. */
export function quantile(sorted: ArrayLike<number>, q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}
