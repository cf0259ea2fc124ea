import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import Fastify, {
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import type { Logger } from "pino";
import type { EventWriter } from "../ingest/eventWriter.js";
import { nowMicros } from "../model/time.js";
import type { Metrics } from "../observability/metrics.js";
import { DecodeError, preview } from "../protocols/jsonLines.js";
import { decodeOtlpJson, decodeOtlpProtobuf, type OtlpDecoded } from "../protocols/otlp.js";
import { ExportTraceServiceResponse, RpcStatus } from "../protocols/otlpProto.js";

const gunzipAsync = promisify(gunzip);

const PROTOBUF = "application/x-protobuf";
const JSON_TYPE = "application/json";
/** Seconds an exporter should wait before retrying while ingest is backed up. */
const RETRY_AFTER_SECONDS = 1;

/** gRPC status codes for `google.rpc.Status` bodies, by HTTP status. */
const RPC_CODES: Record<number, number> = { 400: 3, 401: 16, 404: 5, 413: 8, 415: 3, 429: 8, 503: 14 };

export interface OtlpRouteOptions {
  writer: EventWriter;
  metrics: Metrics;
  logger: Logger;
  /** The largest body, compressed or not. */
  maxBodyBytes: number;
}

class OtlpHttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * `POST /v1/traces` as OTLP/HTTP specifies it: protobuf or JSON bodies, optionally
 * gzip-compressed; the answer (success, partial success or a `google.rpc.Status`) in
 * the request's encoding, only after the spans are committed. 400 and 413 tell the
 * exporter not to retry; 503 with Retry-After (ingest backed up, commit failed) does.
 */
export function otlpRoutes(options: OtlpRouteOptions): FastifyPluginAsync {
  const { writer, metrics, logger, maxBodyBytes } = options;
  return async (scope) => {
    // OTLP bodies are read raw (this scope only): they may be gzip, and JSON ids need OTLP's own rules.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser([PROTOBUF, JSON_TYPE], { parseAs: "buffer" }, (_request, body, done) =>
      done(null, body),
    );
    scope.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
      const status = error.statusCode ?? 500;
      if (status >= 500 && !(error instanceof OtlpHttpError)) logger.error({ err: error }, "OTLP request failed");
      if (status === 503 || status === 429) reply.header("retry-after", String(RETRY_AFTER_SECONDS));
      const message =
        status === 415 && !(error instanceof OtlpHttpError)
          ? `Content-Type "${request.headers["content-type"] ?? ""}" is not OTLP; send ${PROTOBUF} or ${JSON_TYPE}`
          : error.message;
      return sendRpcStatus(request, reply, status, message);
    });

    scope.post("/v1/traces", { bodyLimit: maxBodyBytes }, async (request, reply) => {
      if (writer.overloaded) throw new OtlpHttpError(503, "spanhub is catching up on ingest; retry later");
      const body = await decompressed(request, maxBodyBytes);
      const json = isJson(request);
      let decoded: OtlpDecoded;
      try {
        decoded = json ? decodeOtlpJson(body.toString("utf8"), nowMicros()) : decodeOtlpProtobuf(body, nowMicros());
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error;
        metrics.malformed.labels("otlp").inc();
        logger.warn({ preview: preview(body) }, `OTLP body refused: ${error.message}`);
        throw new OtlpHttpError(400, error.message);
      }
      metrics.messages.labels("otlp", "span").inc(decoded.accepted);
      if (decoded.rejected > 0) {
        metrics.malformed.labels("otlp").inc(decoded.rejected);
        logger.warn({ rejected: decoded.rejected }, `OTLP spans refused: ${decoded.errorMessage}`);
      }
      const { submission } = decoded;
      if (submission.events.length > 0) {
        metrics.countUnknownStatuses(submission.events);
        // Exporters resend the same bytes after a lost answer: the body's hash makes that a duplicate.
        submission.batchId = `otlp-${createHash("sha256").update(body).digest("base64url")}`;
        try {
          await writer.submit(submission);
        } catch {
          throw new OtlpHttpError(503, "the spans could not be stored; retry later");
        }
      }
      const partialSuccess =
        decoded.rejected > 0
          ? { rejectedSpans: decoded.rejected, errorMessage: decoded.errorMessage ?? "" }
          : undefined;
      if (json) {
        const answer = partialSuccess
          ? { partialSuccess: { ...partialSuccess, rejectedSpans: String(partialSuccess.rejectedSpans) } }
          : {};
        return reply.type(JSON_TYPE).send(JSON.stringify(answer));
      }
      const message = partialSuccess ? { partialSuccess } : {};
      return reply.type(PROTOBUF).send(Buffer.from(ExportTraceServiceResponse.encode(message).finish()));
    });
  };
}

/** An HTTP server with only `POST /v1/traces` (the agent's `--otlp-http`). */
export function buildOtlpApp(options: OtlpRouteOptions): FastifyInstance {
  const app = Fastify({ bodyLimit: options.maxBodyBytes });
  app.register(otlpRoutes(options));
  return app;
}

function isJson(request: FastifyRequest): boolean {
  return (request.headers["content-type"] ?? "").toLowerCase().startsWith(JSON_TYPE);
}

async function decompressed(request: FastifyRequest, maxBytes: number): Promise<Buffer> {
  const body = request.body as Buffer | undefined;
  if (!body) return Buffer.alloc(0);
  const encoding = (request.headers["content-encoding"] ?? "identity").toLowerCase().trim();
  if (encoding === "identity") return body;
  if (encoding !== "gzip") throw new OtlpHttpError(415, `Content-Encoding "${encoding}" is not supported; use gzip`);
  try {
    return await gunzipAsync(body, { maxOutputLength: maxBytes });
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE")
      throw new OtlpHttpError(413, `the body inflates past ${maxBytes} bytes`);
    throw new OtlpHttpError(400, `the gzip body cannot be read: ${(error as Error).message}`);
  }
}

/** An error as OTLP/HTTP answers it: a `google.rpc.Status`, as protobuf unless the request was JSON. */
function sendRpcStatus(request: FastifyRequest, reply: FastifyReply, status: number, message: string): FastifyReply {
  const code = RPC_CODES[status] ?? 13;
  reply.status(status);
  if (isJson(request) || !(request.headers["content-type"] ?? "").toLowerCase().startsWith(PROTOBUF))
    return reply.type(JSON_TYPE).send(JSON.stringify({ code, message }));
  return reply.type(PROTOBUF).send(Buffer.from(RpcStatus.encode(RpcStatus.create({ code, message })).finish()));
}
