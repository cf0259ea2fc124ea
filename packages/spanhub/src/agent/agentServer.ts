import { chmodSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import type { EventWriter } from "../ingest/eventWriter.js";
import type { Metrics } from "../observability/metrics.js";
import { type ConnectionContext, serveConnection } from "./connection.js";

export interface AgentServerOptions {
  writer: EventWriter;
  metrics: Metrics;
  logger: Logger;
  maxFrame: number;
  status: ConnectionContext["status"];
}

/** The agent's listeners: a Unix socket, and optionally TCP (Scout agents default to 127.0.0.1:6590). */
export class AgentServer {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private unixPath: string | undefined;

  constructor(private readonly options: AgentServerOptions) {}

  /** Binds the Unix socket with mode 0600. The caller holds the agent lock, so a leftover file is stale. */
  async listenUnix(path: string): Promise<void> {
    rmSync(path, { force: true });
    await this.listen("unix", (server) => server.listen(path));
    chmodSync(path, 0o600);
    this.unixPath = path;
  }

  async listenTcp(host: string, port: number): Promise<string> {
    const server = await this.listen("tcp", (candidate) => candidate.listen(port, host));
    const address = server.address();
    return typeof address === "object" && address ? `${address.address}:${address.port}` : `${host}:${port}`;
  }

  private listen(listener: string, bind: (server: Server) => void): Promise<Server> {
    const { metrics } = this.options;
    // Half open: a client that ends its side after its last frame still gets every reply.
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      this.sockets.add(socket);
      metrics.openConnections.labels(listener).inc();
      void serveConnection(socket, this.options).then(() => {
        this.sockets.delete(socket);
        metrics.openConnections.labels(listener).dec();
      });
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.once("listening", () => {
        server.off("error", reject);
        this.servers.push(server);
        resolve(server);
      });
      bind(server);
    });
  }

  /** Stops accepting, lets connections finish their replies, then closes them. */
  async close(): Promise<void> {
    const closed = this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    await this.options.writer.flush();
    for (const socket of this.sockets) socket.end();
    const deadline = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, 2000);
    await Promise.all(closed);
    clearTimeout(deadline);
    if (this.unixPath) rmSync(this.unixPath, { force: true });
  }
}

/** True when something accepts connections on the socket path. */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const timer = setTimeout(() => done(false), timeoutMs);
    const done = (alive: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(alive);
    };
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}
