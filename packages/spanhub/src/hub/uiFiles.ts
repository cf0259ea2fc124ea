import { existsSync } from "node:fs";
import { join, sep } from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/** Where `packages/ui` builds to: `dist/ui` of this package, beside `dist/src`. */
export const UI_DIR = fileURLToPath(new URL("../../ui/", import.meta.url));

const IMMUTABLE = "public, max-age=31536000, immutable";

/**
 * Serves the built web UI at `/`: files under `assets/` have content hashes in their
 * names and are cached for good; everything else (index.html) is revalidated each time.
 * Returns the fallback for unknown paths: it answers a page request outside `/api/` (one of
 * the UI's own routes, like `/runs/r1`) with index.html, and anything else with undefined.
 */
export function registerUiFiles(
  app: FastifyInstance,
  dir = UI_DIR,
): (request: FastifyRequest, reply: FastifyReply) => FastifyReply | undefined {
  if (!existsSync(join(dir, "index.html"))) return () => undefined;
  app.register(fastifyStatic, {
    root: dir,
    prefix: "/",
    cacheControl: false,
    setHeaders: (response, path) =>
      response.setHeader("cache-control", path.includes(`${sep}assets${sep}`) ? IMMUTABLE : "no-cache"),
  });
  return (request, reply) => {
    const wantsPage = (request.method === "GET" || request.method === "HEAD") && !request.url.startsWith("/api/");
    if (!wantsPage || !(request.headers.accept ?? "").includes("text/html")) return undefined;
    return reply.header("cache-control", "no-cache").sendFile("index.html");
  };
}
