import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { newRunId, newSpanId } from "@spanhub/sdk/ids";
import { ensurePrivateDir } from "../agent/privateDir.js";
import { childEnvironment } from "./childEnvironment.js";
import { type ChildExit, type OutputTail, TracedChild } from "./childProcess.js";
import { EventForwarder } from "./eventForwarder.js";
import { EXIT_CANCELLED, type RunOutcome, runOutcome, type StopCause } from "./outcome.js";
import { RunSocket } from "./runSocket.js";
import { SpanIntake } from "./spanIntake.js";

export interface TraceRunOptions {
  command: string[];
  /** Default: the command line. */
  name?: string;
  tags: Record<string, string>;
  timeoutMs?: number;
  /** Between SIGTERM and SIGKILL, after a timeout or a signal to us. */
  graceMs: number;
  cwd: string;
  cleanEnv: boolean;
  /** The host agent's socket (absolute); the per-run socket goes into its private directory. */
  agentSocket: string;
  /** Our environment: the child's comes from it, and a traced parent run's ids are read from it. */
  env: NodeJS.ProcessEnv;
  /** Default: the monorepo's `sdks/python`. */
  pythonSdkDir?: string;
}

/** This spanhub's CLI: the agent it launches when none runs is the same version as us. */
const CLI_MAIN = fileURLToPath(new URL("../cli/main.js", import.meta.url));
/** The last this many bytes of the child's stdout and of its stderr become logs of the root span. */
const TAIL_BYTES = 64 * 1024;
/** After the child exits: how long its output pipes and run-socket connections may still deliver. */
const DRAIN_MS = 2000;
/** How long the last events may take to be acknowledged before `spanhub run` gives up on them. */
const FLUSH_MS = 20_000;
const MAX_LINE_BYTES = 16 * 1024 * 1024;
/** The longest Unix socket path Linux accepts (108 bytes with the terminating NUL). */
const MAX_SOCKET_PATH = 107;
const CANCEL_SIGNALS: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * `spanhub run`: traces one command as a run. Creates the run and its root span, binds the
 * per-run socket, starts the child, forwards what the child writes there to the agent, and ends
 * the run with the status the child's end earns. Resolves with the exit status for `spanhub run`.
 */
export async function traceRun(options: TraceRunOptions): Promise<number> {
  const warn = (message: string) => process.stderr.write(`spanhub run: ${message}\n`);
  const runId = newRunId();
  const rootSpanId = newSpanId();
  const name = options.name ?? commandLine(options.command);
  const forwarder = new EventForwarder({
    socket: options.agentSocket,
    agentCommand: [process.execPath, CLI_MAIN],
    batchPrefix: runId,
    warn,
  });
  const intake = new SpanIntake({ runId, rootSpanId, forward: (json) => forwarder.sendJson(json), warn });
  forwarder.send({
    type: "run_start",
    run_id: runId,
    ts_ms: Date.now(),
    name,
    tags: options.tags,
    host: hostname(),
    pid: process.pid,
    parent_run_id: options.env.SPANHUB_RUN_ID,
    parent_span_id: options.env.SPANHUB_PARENT_SPAN,
  });
  forwarder.send({
    type: "span_start",
    run_id: runId,
    span_id: rootSpanId,
    name,
    kind: "flow_root",
    ts_ms: Date.now(),
    tags: { command: options.command, cwd: options.cwd },
  });

  let stop: StopCause | undefined;
  let child: TracedChild | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const stopChild = (signal: NodeJS.Signals) => {
    child?.signalGroup(signal);
    killTimer ??= setTimeout(() => child?.signalGroup("SIGKILL"), options.graceMs);
  };
  let childExited = false;
  let runSocket: RunSocket | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (childExited) {
      // The run's end is decided; only the wait for the agent is left, and the user gave up on it.
      warn(`${signal}: exiting without waiting for the agent to acknowledge the run's last events`);
      runSocket?.unlink();
      process.exit(EXIT_CANCELLED);
    }
    // A second Ctrl-C does not wait for the grace period.
    if (stop?.kind === "cancel") child?.signalGroup("SIGKILL");
    else {
      stop = { kind: "cancel", signal };
      stopChild(signal);
    }
  };
  for (const signal of CANCEL_SIGNALS) process.on(signal, onSignal);

  let exit: ChildExit = { code: null, signal: null };
  /** Why the run socket could not be set up (the command then never starts). */
  let setupError: Error | undefined;
  try {
    const socketDir = dirname(options.agentSocket);
    ensurePrivateDir(socketDir);
    const socketPath = join(socketDir, `run-${runId}.sock`);
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH)
      throw new Error(`the run socket path ${socketPath} is too long; choose a shorter --socket`);
    runSocket = await RunSocket.listen({
      path: socketPath,
      maxLine: MAX_LINE_BYTES,
      onLine: (line, receivedMs) => intake.line(line, receivedMs),
      onOversized: (size) => intake.skip(`line of ${size} bytes is over the limit of ${MAX_LINE_BYTES}`, ""),
      congested: () => forwarder.congested,
      relieved: () => forwarder.whenRelieved(),
    });
    if (!stop) {
      const started = new TracedChild(options.command, {
        cwd: options.cwd,
        tailBytes: TAIL_BYTES,
        env: childEnvironment(
          options.env,
          { runSocket: socketPath, runId, rootSpanId, agentSocket: options.agentSocket },
          { clean: options.cleanEnv, ...(options.pythonSdkDir ? { pythonSdkDir: options.pythonSdkDir } : {}) },
        ),
      });
      child = started;
      if (started.pid !== undefined)
        forwarder.send({ type: "span_tag", run_id: runId, span_id: rootSpanId, tags: { pid: started.pid } });
      const { timeoutMs } = options;
      const timeoutTimer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              if (stop) return;
              stop = { kind: "timeout", afterMs: timeoutMs };
              stopChild("SIGTERM");
            }, timeoutMs);
      exit = await started.exited;
      childExited = true;
      clearTimeout(timeoutTimer);
      clearTimeout(killTimer);
      await Promise.race([started.outputDone, sleep(DRAIN_MS)]);
      started.abandonOutput();
    }
    await runSocket.close(DRAIN_MS);
  } catch (error) {
    setupError = error as Error;
  } finally {
    childExited = true;
    runSocket?.unlink();
  }

  const outcome: RunOutcome = setupError
    ? { status: "failed", spanStatus: "failed", reason: `spanhub run: ${setupError.message}`, exitCode: 1 }
    : runOutcome(exit, stop);
  if (setupError) warn(setupError.message);
  else if (exit.spawnError) warn(outcome.reason ?? "");
  endRun(forwarder, intake, { runId, rootSpanId, outcome, exit, tails: child && [child.stdoutTail, child.stderrTail] });
  const delivered = await forwarder.flush(FLUSH_MS);
  if (!delivered)
    warn(
      `the agent on ${options.agentSocket} did not acknowledge ${forwarder.unacknowledgedBatches} batch(es) of this run within ${FLUSH_MS / 1000} s; they are lost`,
    );
  forwarder.close();
  for (const signal of CANCEL_SIGNALS) process.off(signal, onSignal);
  return outcome.exitCode;
}

/** The run's last events: unfinished spans closed, the root span's tags, logs and end, the run's end. */
function endRun(
  forwarder: EventForwarder,
  intake: SpanIntake,
  ending: {
    runId: string;
    rootSpanId: string;
    outcome: RunOutcome;
    exit: ChildExit;
    tails: [stdout: OutputTail, stderr: OutputTail] | undefined;
  },
): void {
  const { runId, rootSpanId, outcome, exit } = ending;
  const now = Date.now();
  const unfinishedStatus = outcome.spanStatus === "ok" ? "failed" : outcome.spanStatus;
  for (const spanId of intake.unfinishedSpans)
    forwarder.send({
      type: "span_end",
      run_id: runId,
      span_id: spanId,
      ts_ms: now,
      status: unfinishedStatus,
      error: { type: "unfinished", message: `the span was still open when the run ended (${outcome.reason ?? "ok"})` },
    });
  const tags: Record<string, unknown> = { skipped_lines: intake.skipped };
  if (exit.code !== null) tags.exit_code = exit.code;
  if (exit.signal) tags.signal = exit.signal;
  forwarder.send({ type: "span_tag", run_id: runId, span_id: rootSpanId, ts_ms: now, tags });
  if (intake.skipped > 0)
    forwarder.send({
      type: "span_log",
      run_id: runId,
      span_id: rootSpanId,
      ts_ms: now,
      text: `spanhub run skipped ${intake.skipped} bad line(s) on the run socket`,
    });
  const [stdout, stderr] = ending.tails ?? [];
  for (const [stream, tail] of [
    ["stdout", stdout],
    ["stderr", stderr],
  ] as const) {
    if (!tail || tail.total === 0) continue;
    const heading = tail.total > TAIL_BYTES ? `${stream} (last ${TAIL_BYTES} of ${tail.total} bytes)` : stream;
    forwarder.send({
      type: "span_log",
      run_id: runId,
      span_id: rootSpanId,
      ts_ms: now,
      text: `${heading}:\n${tail.text()}`,
    });
  }
  const error = outcome.reason ? { type: outcome.status, message: outcome.reason } : undefined;
  forwarder.send({
    type: "span_end",
    run_id: runId,
    span_id: rootSpanId,
    ts_ms: now,
    status: outcome.spanStatus,
    error,
  });
  forwarder.send({ type: "run_end", run_id: runId, ts_ms: now, status: outcome.status, reason: outcome.reason });
}

/** The command as a shell would show it: arguments with spaces or quotes are quoted. */
export function commandLine(command: string[]): string {
  return command.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`)).join(" ");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
