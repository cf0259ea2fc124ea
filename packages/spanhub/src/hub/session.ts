import { createHmac, timingSafeEqual } from "node:crypto";
import fastifyCookie from "@fastify/cookie";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError, badRequest } from "./apiError.js";

export const SESSION_COOKIE = "spanhub_session";

/**
 * Token checks for the API: `Authorization: Bearer <token>` or the session cookie that
 * `POST /api/v1/session` sets after the UI asked for the token once. The cookie holds a
 * value derived from the token (so it never carries the token itself), HttpOnly and
 * SameSite=Strict so other sites' pages can neither read nor send it.
 * The UI's static files need no token: they hold no data.
 */
export function registerSession(app: FastifyInstance, token: string | undefined): void {
  app.register(fastifyCookie);
  const expectedHeader = token === undefined ? undefined : Buffer.from(`Bearer ${token}`);
  const expectedCookie = token === undefined ? undefined : Buffer.from(sessionValue(token));
  const authenticated = (request: FastifyRequest) =>
    !expectedHeader ||
    sameBytes(request.headers.authorization, expectedHeader) ||
    sameBytes(request.cookies[SESSION_COOKIE], expectedCookie as Buffer);

  if (token !== undefined)
    app.addHook("onRequest", async (request) => {
      const path = request.url.split("?")[0] ?? "";
      const guarded = path === "/metrics" || (path.startsWith("/api/") && path !== "/api/v1/session");
      if (guarded && !authenticated(request))
        throw new ApiError(
          401,
          "unauthorized",
          "send the hub's token as `Authorization: Bearer <token>` (or sign in through POST /api/v1/session)",
        );
    });

  app.get("/api/v1/session", async (request) => ({
    tokenRequired: token !== undefined,
    authenticated: authenticated(request),
  }));

  app.post("/api/v1/session", async (request, reply) => {
    const given = (request.body as { token?: unknown } | undefined)?.token;
    if (typeof given !== "string" || given === "") throw badRequest('send {"token": "<the hub\'s token>"}');
    if (token === undefined) return { tokenRequired: false, authenticated: true };
    if (!sameBytes(given, Buffer.from(token))) throw new ApiError(401, "unauthorized", "wrong token");
    reply.setCookie(SESSION_COOKIE, sessionValue(token), { httpOnly: true, sameSite: "strict", path: "/" });
    return { tokenRequired: true, authenticated: true };
  });

  app.delete("/api/v1/session", async (_request, reply) => {
    reply.clearCookie(SESSION_COOKIE, { path: "/" });
    return { tokenRequired: token !== undefined, authenticated: false };
  });
}

function sessionValue(token: string): string {
  return createHmac("sha256", token).update("spanhub session v1").digest("base64url");
}

function sameBytes(given: string | undefined, expected: Buffer): boolean {
  const bytes = Buffer.from(given ?? "");
  return bytes.length === expected.length && timingSafeEqual(bytes, expected);
}
