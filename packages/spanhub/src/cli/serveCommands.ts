import { resolve } from "node:path";
import { Command } from "commander";
import { readAgentInfo } from "../agent/agentLock.js";
import { socketAnswers } from "../agent/agentServer.js";
import { type CpuPriority, lowerPriority } from "../runtime/cpuPriority.js";
import { AgentRunningError, type RunningSpanhub, type SpanhubOptions, startSpanhub } from "../runtime/startSpanhub.js";
import type { FoldMode } from "../store/store.js";
import {
  abandonOption,
  createLogger,
  dataOption,
  durabilityOption,
  exportOtlpOption,
  foldOption,
  hostOption,
  isLoopback,
  maxFrameOption,
  niceOption,
  portOption,
  socketOption,
  tokenOption,
  traceIdleOption,
} from "./options.js";

interface ServeFlags {
  data: string;
  socket: string;
  tcp?: string;
  host: string;
  port: number;
  token?: string;
  maxFrame: number;
  abandonAfter: number;
  traceIdle: number;
  exportOtlp?: string[];
  durability: "full" | "normal";
  fold: FoldMode;
  nice?: CpuPriority;
}

export function upCommand(): Command {
  return withHubOptions(new Command("up"))
    .description("run the agent and the hub in one process on embedded SQLite (or the hub over a running agent's data)")
    .addOption(socketOption())
    .option("--tcp <host:port>", "also accept agent connections on TCP (Scout agents default to 127.0.0.1:6590)")
    .addOption(exportOtlpOption())
    .addOption(niceOption())
    .action(async (flags: ServeFlags, command: Command) => {
      checkToken(flags);
      lowerPriority(flags.nice ?? 0);
      const dataGiven = command.getOptionValueSource("data") !== "default" || Boolean(process.env.SPANHUB_DATA);
      const running = await startUp(flags, dataGiven);
      printAndWait(running, running.socket ? undefined : flags.socket);
    });
}

export function hubCommand(): Command {
  return withHubOptions(new Command("hub"))
    .description("serve only the hub's HTTP API over a data directory")
    .action(async (flags: ServeFlags) => {
      checkToken(flags);
      printAndWait(await startSpanhub(baseOptions(flags, { hub: true, agent: false })), undefined);
    });
}

/** The options every command that serves the hub takes. */
function withHubOptions(command: Command): Command {
  return command
    .addOption(dataOption())
    .addOption(hostOption())
    .addOption(portOption())
    .addOption(tokenOption())
    .addOption(maxFrameOption())
    .addOption(abandonOption())
    .addOption(traceIdleOption())
    .addOption(durabilityOption())
    .addOption(foldOption());
}

async function startUp(flags: ServeFlags, dataGiven: boolean): Promise<RunningSpanhub> {
  for (let attempt = 0; ; attempt++) {
    if (await socketAnswers(flags.socket)) {
      const info = readAgentInfo(flags.socket);
      if (!info) throw new Error(`something answers on ${flags.socket} but it is not a spanhub agent`);
      if (dataGiven && resolve(flags.data) !== resolve(info.dataDir))
        throw new Error(
          `the agent on ${flags.socket} (pid ${info.pid}) stores in ${info.dataDir}, not ${flags.data}; stop it with \`spanhub agent stop\` or pass its --data`,
        );
      process.stderr.write(`using the running agent (pid ${info.pid}) on ${flags.socket}\n`);
      return startSpanhub(baseOptions({ ...flags, data: info.dataDir }, { hub: true, agent: false }));
    }
    try {
      return await startSpanhub(baseOptions(flags, { hub: true, agent: true }));
    } catch (error) {
      // Another agent won the race to the socket: serve the hub over it instead.
      if (!(error instanceof AgentRunningError) || attempt > 0) throw error;
    }
  }
}

function baseOptions(flags: ServeFlags, parts: { hub: boolean; agent: boolean }): SpanhubOptions {
  return {
    dataDir: resolve(flags.data),
    logger: createLogger(),
    maxFrame: flags.maxFrame,
    abandonAfterMs: flags.abandonAfter,
    traceIdleMs: flags.traceIdle,
    durability: flags.durability,
    fold: flags.fold,
    ...(parts.agent ? { socket: resolve(flags.socket), ...(flags.tcp ? { tcp: flags.tcp } : {}) } : {}),
    // Every process forwards what it commits itself (a hub beside a running agent takes HTTP and OTLP).
    ...(flags.exportOtlp?.length ? { exportOtlp: flags.exportOtlp } : {}),
    ...(parts.hub
      ? { hub: { host: flags.host, port: flags.port, ...(flags.token ? { token: flags.token } : {}) } }
      : {}),
    ...testHooks(),
  };
}

/** SPANHUB_TEST_KILL_BEFORE_COMMIT=N kills the process before its Nth group commit (tests only). */
export function testHooks(): Pick<SpanhubOptions, "beforeCommit"> {
  const killAt = Number(process.env.SPANHUB_TEST_KILL_BEFORE_COMMIT ?? 0);
  if (!killAt) return {};
  let commits = 0;
  return {
    beforeCommit: () => {
      commits += 1;
      if (commits >= killAt) process.kill(process.pid, "SIGKILL");
    },
  };
}

function checkToken(flags: ServeFlags): void {
  if (!isLoopback(flags.host) && !flags.token)
    throw new Error(`binding ${flags.host} exposes the API beyond this machine: pass --token (or set SPANHUB_TOKEN)`);
}

function printAndWait(running: RunningSpanhub, sharedSocket: string | undefined): void {
  const lines = ["spanhub is up"];
  if (running.url) lines.push(`  hub:    ${running.url}`, `  otlp:   ${running.url}/v1/traces`);
  if (running.socket ?? sharedSocket) lines.push(`  agent:  ${running.socket ?? sharedSocket}`);
  if (running.tcp) lines.push(`  tcp:    ${running.tcp}`);
  lines.push(`  data:   ${running.dataDir}`);
  process.stdout.write(`${lines.join("\n")}\n`);
  stopOnSignals(running);
}

export function stopOnSignals(running: RunningSpanhub): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`spanhub: ${signal}, stopping\n`);
    void running.close().then(
      () => process.exit(0),
      (error: Error) => {
        process.stderr.write(`spanhub: stop failed: ${error.message}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  process.on("SIGHUP", stop);
}
