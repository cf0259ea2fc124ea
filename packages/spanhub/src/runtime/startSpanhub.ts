import { dirname } from "node:path";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { AgentLock, readAgentInfo } from "../agent/agentLock.js";
import { AgentServer, socketAnswers } from "../agent/agentServer.js";
import { ensurePrivateDir } from "../agent/privateDir.js";
import { VERSION } from "../config.js";
import { OtlpExporter } from "../export/otlpExporter.js";
import { buildHubApp } from "../hub/hubApp.js";
import { buildOtlpApp } from "../hub/otlpRoutes.js";
import { AbandonSweeper } from "../ingest/abandonSweeper.js";
import { EventWriter } from "../ingest/eventWriter.js";
import { TraceIdleSweeper } from "../ingest/traceIdleSweeper.js";
import { Metrics } from "../observability/metrics.js";
import { createStore } from "../store/createStore.js";
import type { FoldMode, Store } from "../store/store.js";
import { describeCpuPriority } from "./cpuPriority.js";

export interface SpanhubOptions {
  dataDir: string;
  logger: Logger;
  /** Run the agent on this Unix socket. */
  socket?: string;
  /** Also accept agent connections on TCP `host:port`. */
  tcp?: string;
  /** Serve the hub's API on this address. */
  hub?: { host: string; port: number; token?: string };
  /** Serve only /healthz and /metrics here (a standalone agent's `--http`). */
  opsHttp?: { host: string; port: number };
  /** Take OTLP/HTTP traces (`POST /v1/traces`) here (the agent's `--otlp-http`). */
  otlpHttp?: { host: string; port: number };
  maxFrame: number;
  abandonAfterMs: number;
  /** How long a trace's run stays open after its last span arrived (default 10 s). */
  traceIdleMs?: number;
  durability?: "full" | "normal";
  /** Forward everything committed as OTLP/HTTP protobuf to these URLs. */
  exportOtlp?: string[];
  /** Test hook: called before every group commit. */
  beforeCommit?: () => void;
  /** Which digest work this process does (default all). */
  fold?: FoldMode;
}

export interface RunningSpanhub {
  dataDir: string;
  socket?: string;
  tcp?: string;
  url?: string;
  opsUrl?: string;
  otlpUrl?: string;
  store: Store;
  metrics: Metrics;
  close(): Promise<void>;
}

const DEFAULT_TRACE_IDLE_MS = 10_000;

/** A live agent already owns the socket. */
export class AgentRunningError extends Error {
  constructor(
    readonly socket: string,
    readonly pid: number | undefined,
  ) {
    super(`an agent is already running on ${socket}${pid ? ` (pid ${pid})` : ""}`);
  }
}

/** Starts the parts the options name (agent, hub, or both) over one store. */
export async function startSpanhub(options: SpanhubOptions): Promise<RunningSpanhub> {
  const { logger } = options;
  let lock: AgentLock | undefined;
  if (options.socket) {
    ensurePrivateDir(dirname(options.socket));
    lock = AgentLock.tryAcquire(options.socket);
    if (!lock) throw new AgentRunningError(options.socket, readAgentInfo(options.socket)?.pid);
    if (await socketAnswers(options.socket)) {
      lock.release();
      throw new AgentRunningError(options.socket, undefined);
    }
  }
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const closer of closers.splice(0).reverse()) await closer();
  };
  try {
    if (lock) closers.push(async () => lock.release());
    const store = createStore({
      dataDir: options.dataDir,
      ...(options.durability ? { durability: options.durability } : {}),
      ...(options.fold ? { fold: options.fold } : {}),
      onBackgroundError: (error) => logger.error({ err: error }, "digest fold failed; it is retried"),
    });
    closers.push(() => store.close());
    store.startBackground();
    const metrics = new Metrics();
    const writer = new EventWriter(
      store,
      metrics,
      logger,
      options.beforeCommit ? { beforeCommit: options.beforeCommit } : {},
    );
    if (options.exportOtlp?.length) {
      const exporter = new OtlpExporter({ urls: options.exportOtlp, metrics, logger });
      writer.onCommit((submissions) => exporter.committed(submissions));
      // Closed after the writer's last commit (closers run in reverse), so that commit is sent too.
      closers.push(() => exporter.close());
    }
    closers.push(() => writer.flush());
    const running: RunningSpanhub = { dataDir: options.dataDir, store, metrics, close };
    const startedAt = new Date().toISOString();

    if (options.socket) {
      const agent = new AgentServer({
        writer,
        metrics,
        logger,
        maxFrame: options.maxFrame,
        status: async () => ({
          version: VERSION,
          pid: process.pid,
          dataDir: options.dataDir,
          startedAt,
          cpu: describeCpuPriority(),
          counters: await metrics.summary(),
        }),
      });
      closers.push(() => agent.close());
      await agent.listenUnix(options.socket);
      running.socket = options.socket;
      if (options.tcp) {
        const [host, port] = splitHostPort(options.tcp);
        running.tcp = await agent.listenTcp(host, port);
      }
    }
    // Any process that writes also ends quiet runs and forgets old batch ids (a hub alone takes HTTP events).
    const sweeper = new AbandonSweeper(store, writer, logger, options.abandonAfterMs);
    sweeper.start();
    closers.push(() => sweeper.stop());
    const traceSweeper = new TraceIdleSweeper(store, writer, logger, options.traceIdleMs ?? DEFAULT_TRACE_IDLE_MS);
    traceSweeper.start();
    closers.push(() => traceSweeper.stop());
    const http = options.hub ?? options.opsHttp;
    if (http) {
      const app: FastifyInstance = buildHubApp({
        store,
        writer,
        metrics,
        logger,
        maxBodyBytes: options.maxFrame,
        apiRoutes: options.hub !== undefined,
        ...(options.hub?.token ? { token: options.hub.token } : {}),
      });
      const url = await listen(app, http);
      closers.push(() => app.close());
      if (options.hub) running.url = url;
      else running.opsUrl = url;
    }
    if (options.otlpHttp) {
      const otlpApp = buildOtlpApp({ writer, metrics, logger, maxBodyBytes: options.maxFrame });
      running.otlpUrl = await listen(otlpApp, options.otlpHttp);
      closers.push(() => otlpApp.close());
    }
    if (lock && options.socket)
      lock.publish({
        pid: process.pid,
        version: VERSION,
        socket: options.socket,
        dataDir: options.dataDir,
        ...(running.tcp ? { tcp: running.tcp } : {}),
        ...((running.url ?? running.opsUrl) ? { http: running.url ?? running.opsUrl } : {}),
        startedAt,
      });
    return running;
  } catch (error) {
    await close();
    throw error;
  }
}

/** Listens and returns the URL, with the port the OS chose for port 0. */
async function listen(app: FastifyInstance, at: { host: string; port: number }): Promise<string> {
  await app.listen({ host: at.host, port: at.port });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : at.port;
  return `http://${at.host.includes(":") ? `[${at.host}]` : at.host}:${port}`;
}

export function splitHostPort(text: string): [string, number] {
  const match = /^(?:tcp:\/\/)?(\[[^\]]+\]|[^:]+):(\d+)$/.exec(text);
  if (!match) throw new Error(`"${text}" is not HOST:PORT`);
  return [(match[1] as string).replace(/^\[|\]$/g, ""), Number(match[2])];
}
