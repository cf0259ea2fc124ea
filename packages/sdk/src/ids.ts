import { randomBytes } from "node:crypto";

/**
 * Run and span ids shaped like W3C trace context ids, so `traceparent` carries them as they are:
 * a run id is 32 lowercase hex digits (a trace id), a span id 16 (a parent id). Each process draws
 * a random prefix once and counts after it: unique across processes, and cheap on the hot path.
 */
let runPrefix = randomBytes(10).toString("hex");
let spanPrefix = randomBytes(3).toString("hex");
let runCounter = 0;
let spanCounter = 0;
let prefixPid = process.pid;

/** A forked child (cluster workers are fresh processes, but a fork of this process is not) draws again. */
function checkPid(): void {
  if (process.pid === prefixPid) return;
  prefixPid = process.pid;
  runPrefix = randomBytes(10).toString("hex");
  spanPrefix = randomBytes(3).toString("hex");
}

export function newRunId(): string {
  checkPid();
  runCounter = (runCounter + 1) % 0x1000000000000;
  return runPrefix + runCounter.toString(16).padStart(12, "0");
}

/** A span id as a string, for code off the hot path. */
export function newSpanId(): string {
  checkPid();
  return formatSpanId(spanPrefix, nextSpanCounter());
}

/**
 * A span id in two parts, for the hot path: the process's prefix (6 hex digits) and a counter
 * (written as 10 hex digits); `formatSpanId` joins them when the id is needed as a string. The
 * prefix is as of the latest `newRunId`, which checks for a fork (reading `process.pid` costs
 * more than the rest of a span id).
 */
export function spanIdPrefix(): string {
  return spanPrefix;
}

export function nextSpanCounter(): number {
  spanCounter = (spanCounter + 1) % 0x10000000000;
  return spanCounter;
}

export function formatSpanId(prefix: string, counter: number): string {
  return prefix + counter.toString(16).padStart(10, "0");
}
