import { spawn } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { requestFrame } from "../agent/agentClient.js";
import { readAgentInfo } from "../agent/agentLock.js";
import { socketAnswers } from "../agent/agentServer.js";
import { type CpuPriority, lowerPriority } from "../runtime/cpuPriority.js";
import { AgentRunningError, startSpanhub } from "../runtime/startSpanhub.js";
import type { FoldMode } from "../store/store.js";
import {
  abandonOption,
  createLogger,
  dataOption,
  durabilityOption,
  exportOtlpOption,
  foldOption,
  isLoopback,
  maxFrameOption,
  niceOption,
  parseDuration,
  socketOption,
  traceIdleOption,
} from "./options.js";
import { stopOnSignals, testHooks } from "./serveCommands.js";

/** Exit status of an agent that finds another one already running (as Scout's launchers expect). */
export const EXIT_ALREADY_RUNNING = 3;

interface AgentFlags {
  data: string;
  socket: string;
  tcp?: string;
  http?: string;
  otlpHttp?: string | true;
  daemonize?: boolean;
  maxFrame: number;
  abandonAfter: number;
  traceIdle: number;
  exportOtlp: string[];
  durability: "full" | "normal";
  fold: FoldMode;
  nice: CpuPriority;
}

export function agentCommand(): Command {
  const agent = new Command("agent")
    .description("run the host's agent: Scout core-agent frames and JSON lines on a Unix socket, into the store")
    .addOption(dataOption())
    .addOption(socketOption())
    .option("--tcp <host:port>", "also listen on TCP (Scout agents default to 127.0.0.1:6590)")
    .option("--http <host:port>", "serve /healthz and /metrics")
    .option("--otlp-http [host:port]", `take OTLP/HTTP traces at POST /v1/traces (alone: ${DEFAULT_OTLP_HTTP})`)
    .option("--daemonize", "detach: own session, output to <data>/agent.log; exits once the agent answers")
    .addOption(maxFrameOption())
    .addOption(abandonOption())
    .addOption(traceIdleOption())
    .addOption(exportOtlpOption())
    .addOption(durabilityOption())
    .addOption(foldOption())
    .addOption(niceOption())
    // Options after `status`/`stop` belong to them, not to `agent`.
    .enablePositionalOptions()
    .action(async (flags: AgentFlags) => {
      if (flags.daemonize) return daemonize(flags);
      const [httpHost, httpPort] = flags.http ? splitAddress(flags.http) : [];
      const otlpHttp = otlpAddress(flags.otlpHttp);
      lowerPriority(flags.nice);
      try {
        const running = await startSpanhub({
          dataDir: resolve(flags.data),
          socket: resolve(flags.socket),
          logger: createLogger(),
          maxFrame: flags.maxFrame,
          abandonAfterMs: flags.abandonAfter,
          traceIdleMs: flags.traceIdle,
          exportOtlp: flags.exportOtlp,
          durability: flags.durability,
          fold: flags.fold,
          ...(flags.tcp ? { tcp: flags.tcp } : {}),
          ...(httpHost !== undefined ? { opsHttp: { host: httpHost, port: httpPort as number } } : {}),
          ...(otlpHttp ? { otlpHttp } : {}),
          ...testHooks(),
        });
        process.stdout.write(
          `spanhub agent ${process.pid} on ${running.socket}${running.tcp ? ` and tcp ${running.tcp}` : ""}${running.opsUrl ? `, ${running.opsUrl}/metrics` : ""}${running.otlpUrl ? `, OTLP ${running.otlpUrl}/v1/traces` : ""}, data ${running.dataDir}\n`,
        );
        stopOnSignals(running);
      } catch (error) {
        if (!(error instanceof AgentRunningError)) throw error;
        process.stderr.write(`spanhub: ${error.message}\n`);
        process.exit(EXIT_ALREADY_RUNNING);
      }
    });

  agent
    .command("status")
    .description("whether an agent runs on the socket: pid, version, data directory, CPU priority, counters")
    .addOption(socketOption())
    .option("--json", "print JSON")
    .action(async (flags: { socket: string; json?: boolean }, command: Command) => {
      const socket = chosenSocket(command);
      if (!(await socketAnswers(socket))) {
        if (flags.json) process.stdout.write(`${JSON.stringify({ running: false, socket })}\n`);
        else process.stdout.write(`no agent is running on ${socket}\n`);
        process.exitCode = 1;
        return;
      }
      const reply = (await requestFrame(socket, { Status: {} })).Status as Record<string, unknown> | undefined;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ running: true, socket, ...reply })}\n`);
        return;
      }
      const counters = (reply?.counters ?? {}) as Record<string, number>;
      process.stdout.write(
        `${[
          `agent running on ${socket}`,
          `  pid      ${reply?.pid}`,
          `  version  ${reply?.version}`,
          `  data     ${reply?.dataDir}`,
          `  since    ${reply?.startedAt}`,
          `  cpu      ${reply?.cpu}`,
          ...Object.entries(counters).map(([name, value]) => `  ${name.padEnd(17)}${value}`),
        ].join("\n")}\n`,
      );
    });

  agent
    .command("stop")
    .description("stop the agent on the socket (the operator's way; no client can stop it)")
    .addOption(socketOption())
    .option("--wait <duration>", "how long to wait for it to exit", parseDuration, 10_000)
    .action(async (flags: { wait: number }, command: Command) => {
      const socket = chosenSocket(command);
      const info = readAgentInfo(socket);
      if (!info || !isAlive(info.pid)) {
        process.stdout.write(`no agent is running on ${socket}\n`);
        return;
      }
      process.kill(info.pid, "SIGTERM");
      const deadline = Date.now() + flags.wait;
      while (isAlive(info.pid) && Date.now() < deadline) await sleep(50);
      if (isAlive(info.pid)) throw new Error(`agent ${info.pid} did not stop within ${flags.wait} ms`);
      process.stdout.write(`stopped agent ${info.pid}\n`);
    });
  return agent;
}

/** Starts the agent detached, in its own session with output to a log file, and returns once it answers. */
async function daemonize(flags: AgentFlags): Promise<void> {
  const dataDir = resolve(flags.data);
  const socket = resolve(flags.socket);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const log = openSync(join(dataDir, "agent.log"), "a", 0o600);
  const args = [
    fileURLToPath(new URL("./main.js", import.meta.url)),
    "agent",
    "--data",
    dataDir,
    "--socket",
    socket,
    "--max-frame",
    String(flags.maxFrame),
    "--abandon-after",
    `${flags.abandonAfter}ms`,
    "--trace-idle",
    `${flags.traceIdle}ms`,
    ...flags.exportOtlp.flatMap((url) => ["--export-otlp", url]),
    "--durability",
    flags.durability,
    "--fold",
    flags.fold,
    "--nice",
    String(flags.nice),
    ...(flags.tcp ? ["--tcp", flags.tcp] : []),
    ...(flags.http ? ["--http", flags.http] : []),
    ...(flags.otlpHttp ? ["--otlp-http", flags.otlpHttp === true ? DEFAULT_OTLP_HTTP : flags.otlpHttp] : []),
  ];
  const child = spawn(process.execPath, args, { detached: true, stdio: ["ignore", log, log] });
  child.unref();
  const exited = new Promise<number>((resolveExit) => child.once("exit", (code) => resolveExit(code ?? 1)));
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const code = await Promise.race([exited, sleep(50).then(() => undefined)]);
    if (code !== undefined) {
      const info = readAgentInfo(socket);
      if (code === EXIT_ALREADY_RUNNING)
        process.stderr.write(`spanhub: an agent is already running on ${socket}${info ? ` (pid ${info.pid})` : ""}\n`);
      else process.stderr.write(`spanhub: the agent exited with status ${code}; see ${join(dataDir, "agent.log")}\n`);
      process.exit(code);
    }
    if (readAgentInfo(socket)?.pid === child.pid && (await socketAnswers(socket))) {
      process.stdout.write(`spanhub agent ${child.pid} started on ${socket}, log ${join(dataDir, "agent.log")}\n`);
      process.exit(0);
    }
  }
  throw new Error(`the agent did not answer within 15 s; see ${join(dataDir, "agent.log")}`);
}

/** `agent status --socket P` and `agent --socket P status` both mean P. */
function chosenSocket(command: Command): string {
  const parent = command.parent;
  const own = command.getOptionValueSource("socket") !== "default";
  const fromParent = parent !== null && parent.getOptionValueSource("socket") !== "default";
  return resolve(own || !fromParent ? command.opts().socket : parent.opts().socket);
}

/** OTLP/HTTP's usual port, on loopback. */
const DEFAULT_OTLP_HTTP = "127.0.0.1:4318";

/** The `--otlp-http` address; loopback only, since the agent has no token to guard what it stores. */
function otlpAddress(flag: string | true | undefined): { host: string; port: number } | undefined {
  if (flag === undefined) return undefined;
  const [host, port] = splitAddress(flag === true ? DEFAULT_OTLP_HTTP : flag);
  if (!isLoopback(host))
    throw new Error(
      `--otlp-http ${host} would take traces from beyond this machine without a token; bind loopback, or serve OTLP from \`spanhub hub --host ${host} --token ...\` (POST /v1/traces)`,
    );
  return { host, port };
}

function splitAddress(text: string): [string, number] {
  const at = text.lastIndexOf(":");
  return [text.slice(0, at).replace(/^\[|\]$/g, "") || "127.0.0.1", Number(text.slice(at + 1))];
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}
