import type { Page } from "playwright-core";
import { killOnExit } from "./cleanup.js";
import { type BenchResult, type Cell, formatCount, formatMs, quantile } from "./table.js";

/**
 * UI: how fast the run page shows a large run in headless Chromium, against a real
 * `spanhub up` holding runs of 1k, 10k and 100k spans (sent through its agent socket).
 *
 * - Baseline, in the same browser and run: fetching the run's compact spans JSON and
 *   parsing it (`fetch` + `json()`), the least any page drawing the run must do.
 * - First rows: from navigation start to the first waterfall rows being on screen (the
 *   frame after they entered the DOM), on a fresh page each time; median of the repeats.
 * - Scrolling: the 100k run's waterfall scrolled by 440 px (20 rows) every frame, from
 *   top to bottom, with the time between frames recorded; a long frame takes over 50 ms.
 *
 * Environment: BENCH_UI_SIZES (default "1000,10000,100000"), BENCH_UI_REPEATS (default 5),
 * SPANHUB_CHROMIUM (default /usr/bin/chromium).
 */

// The tests' helpers: the same browser launch and synthetic runs (they live with spanhub's tests).
type Browser = typeof import("../../packages/spanhub/test/browser.js");
type Processes = typeof import("../../packages/spanhub/test/processHelpers.js");
const testDir = new URL("../test/", import.meta.resolve("spanhub"));

const SIZES = (process.env.BENCH_UI_SIZES ?? "1000,10000,100000").split(",").map(Number);
const REPEATS = Number(process.env.BENCH_UI_REPEATS ?? 5);
const LONG_FRAME_MS = 50;
const SCROLL_STEP_PX = 440;

interface SizeResult {
  spans: number;
  jsonBytes: number;
  fetchMs: number[];
  firstRowsMs: number[];
  domRows: number;
}

interface ScrollResult {
  frames: number[];
  maxDomRows: number;
  /** Durations of the page's main-thread tasks over 50 ms while scrolling. */
  longTasks: number[];
  scrollHeight: number;
}

export async function run(): Promise<BenchResult> {
  const browserHelpers: Browser = await import(new URL("browser.js", testDir).href);
  const processHelpers: Processes = await import(new URL("processHelpers.js", testDir).href);
  const missing = browserHelpers.chromiumMissing();
  if (missing) throw new Error(missing);
  const home = processHelpers.tempHome();
  const hub = await processHelpers.startCli(["up", "--data", home.data, "--socket", home.socket, "--port", "0"]);
  killOnExit(hub.child);
  const browser = await browserHelpers.launchChromium();
  try {
    const results: SizeResult[] = [];
    for (const spans of SIZES) {
      const runId = `ui-${spans}`;
      progress(`ui: sending a run of ${formatCount(spans)} spans`);
      await browserHelpers.sendFrames(home.socket, browserHelpers.treeRunFrames(runId, spans));
      const result: SizeResult = { spans, jsonBytes: 0, fetchMs: [], firstRowsMs: [], domRows: 0 };
      progress(`ui: ${formatCount(spans)} spans, ${REPEATS} page loads`);
      for (let repeat = 0; repeat < REPEATS; repeat++) {
        const page = await browser.context.newPage();
        await page.addInitScript(FIRST_ROWS_PROBE);
        await page.goto(`${hub.url}/runs/${runId}`);
        await page.waitForFunction("window.firstRowsMs !== undefined", undefined, { timeout: 120_000 });
        result.firstRowsMs.push(Number(await page.evaluate("window.firstRowsMs")));
        result.domRows = await page.locator(".wf-row").count();
        const fetched = (await page.evaluate(`(async () => {
          const start = performance.now();
          const response = await fetch("/api/v1/runs/${runId}/spans?view=compact");
          const text = await response.text();
          JSON.parse(text);
          return { ms: performance.now() - start, bytes: text.length };
        })()`)) as { ms: number; bytes: number };
        result.fetchMs.push(fetched.ms);
        result.jsonBytes = fetched.bytes;
        await page.close();
      }
      results.push(result);
    }
    const largest = SIZES.at(-1) as number;
    progress(`ui: scrolling the ${formatCount(largest)}-span run`);
    const scroll = await scrollRun(await browser.context.newPage(), `${hub.url}/runs/ui-${largest}`);
    progress("ui: scrolling a static page of the same height (noise floor)");
    const empty = await scrollEmpty(await browser.context.newPage(), scroll.scrollHeight);
    return table(results, scroll, empty, largest);
  } finally {
    await browser.close();
    await hub.stop();
    home.cleanup();
  }
}

/** Records, in the page, when the first waterfall rows are on screen (ms after navigation start). */
const FIRST_ROWS_PROBE = `
  new MutationObserver((_, observer) => {
    if (!document.querySelector(".wf-row")) return;
    observer.disconnect();
    requestAnimationFrame(() => setTimeout(() => { window.firstRowsMs = performance.now(); }, 0));
  }).observe(document, { childList: true, subtree: true });
`;

async function scrollRun(page: Page, url: string): Promise<ScrollResult> {
  await page.goto(url);
  await page.locator(".wf-row").first().waitFor({ timeout: 120_000 });
  return scrollLoop(page);
}

/** The same scroll over a static page of the same height: the frames this machine drops anyway. */
async function scrollEmpty(page: Page, height: number): Promise<ScrollResult> {
  await page.setContent(
    `<div class="wf-scroll" style="height:600px;overflow:auto"><div style="height:${height}px"></div></div>`,
  );
  return scrollLoop(page);
}

async function scrollLoop(page: Page): Promise<ScrollResult> {
  await page.evaluate("new Promise((resolve) => setTimeout(resolve, 500))");
  return (await page.evaluate(`new Promise((resolve) => {
    const scroller = document.querySelector(".wf-scroll");
    const longTasks = [];
    new PerformanceObserver((list) => longTasks.push(...list.getEntries().map((entry) => entry.duration))).observe({ type: "longtask" });
    const frames = [];
    let maxDomRows = 0;
    let last = performance.now();
    const step = (now) => {
      frames.push(now - last);
      last = now;
      maxDomRows = Math.max(maxDomRows, document.querySelectorAll(".wf-row").length);
      if (scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight) return resolve({ frames, maxDomRows, longTasks, scrollHeight: scroller.scrollHeight });
      scroller.scrollTop += ${SCROLL_STEP_PX};
      requestAnimationFrame(step);
    };
    requestAnimationFrame((now) => { last = now; requestAnimationFrame(step); });
  })`)) as ScrollResult;
}

function table(results: SizeResult[], scroll: ScrollResult, empty: ScrollResult, largest: number): BenchResult {
  const median = (values: number[]) =>
    quantile(
      [...values].sort((a, b) => a - b),
      0.5,
    );
  const frames = [...scroll.frames].sort((a, b) => a - b);
  const emptyFrames = [...empty.frames].sort((a, b) => a - b);
  const longFrames = (sorted: number[]) => sorted.filter((ms) => ms > LONG_FRAME_MS).length;
  const columns = ["measure", ...results.map((result) => `${formatCount(result.spans)} spans`)];
  const perSize = (label: string, cell: (result: SizeResult) => Cell): Cell[] => [label, ...results.map(cell)];
  const scrollRow = (label: string, value: Cell): Cell[] => [
    label,
    ...results.map((result) => (result.spans === largest ? value : "-")),
  ];
  return {
    title: "UI: run page in headless Chromium (median of page loads)",
    columns,
    rows: [
      perSize("baseline: fetch + parse compact spans JSON", (result) => formatMs(median(result.fetchMs))),
      perSize("navigation to first waterfall rows", (result) => formatMs(median(result.firstRowsMs))),
      perSize("  slowest load", (result) => formatMs(Math.max(...result.firstRowsMs))),
      perSize("compact spans JSON", (result) => `${(result.jsonBytes / 1024).toFixed(0)} KiB`),
      perSize("rows in the DOM after load", (result) => result.domRows),
      scrollRow("scroll: frames", formatCount(frames.length)),
      scrollRow("scroll: frame p50", formatMs(quantile(frames, 0.5))),
      scrollRow("scroll: frame p95", formatMs(quantile(frames, 0.95))),
      scrollRow("scroll: frame max", formatMs(frames.at(-1))),
      scrollRow(`scroll: long frames (>${LONG_FRAME_MS} ms)`, longFrames(frames)),
      scrollRow(`scroll: page tasks over ${LONG_FRAME_MS} ms`, scroll.longTasks.length),
      scrollRow("scroll: most rows in the DOM", scroll.maxDomRows),
      scrollRow("noise floor: static page, frame p95", formatMs(quantile(emptyFrames, 0.95))),
      scrollRow("noise floor: static page, frame max", formatMs(emptyFrames.at(-1))),
      scrollRow(`noise floor: static page, long frames`, longFrames(emptyFrames)),
    ],
    notes: [
      `Runs are trees with 8 children per span, sent as Events frames through the agent socket of a real \`spanhub up\`.`,
      `${REPEATS} loads per size, each on a fresh page of one browser (the UI's hashed assets come from its cache after the first).`,
      `Scrolling moves ${SCROLL_STEP_PX} px (20 rows) per frame from top to bottom; frame time = time between animation frames.`,
      "Chromium is headless with --disable-gpu on a shared 2-core machine: the noise floor scrolls an empty page of the same height the same way.",
    ],
  };
}

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}
