import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { buildHubApp, type HubOptions } from "../src/hub/hubApp.js";
import { UI_DIR } from "../src/hub/uiFiles.js";
import { EventWriter } from "../src/ingest/eventWriter.js";
import { Metrics } from "../src/observability/metrics.js";
import { SqliteStore } from "../src/store/sqlite/sqliteStore.js";
import type { Store } from "../src/store/store.js";
import { tempHome } from "./processHelpers.js";

const T0 = Date.UTC(2026, 10, 23, 8, 0, 0);

/** A hub over a fresh SQLite store; `close` stops both. */
function makeHub(extra: Partial<HubOptions> = {}): { app: FastifyInstance; store: Store; close: () => Promise<void> } {
  const home = tempHome();
  const store = new SqliteStore({ dataDir: home.data });
  const metrics = new Metrics();
  const logger = pino({ level: "silent" });
  const app = buildHubApp({
    store,
    writer: new EventWriter(store, metrics, logger),
    metrics,
    logger,
    maxBodyBytes: 1 << 20,
    ...extra,
  });
  return {
    app,
    store,
    close: async () => {
      await app.close();
      await store.close();
      home.cleanup();
    },
  };
}

const flowEvents = [
  { type: "run_start", run_id: "flow", name: "etl", ts_ms: T0 },
  { type: "span_start", run_id: "flow", span_id: "root", name: "main", start_ms: T0 + 1 },
  { type: "span_start", run_id: "flow", span_id: "a", parent_id: "root", name: "step", start_ms: T0 + 2.5 },
  { type: "span_end", run_id: "flow", span_id: "a", end_ms: T0 + 4 },
  {
    type: "span_start",
    run_id: "flow",
    span_id: "b",
    parent_id: "root",
    name: "step",
    tags: { rows: 5, table: "Users" },
    rpc_service: "db",
    rpc_method: "Load",
    start_ms: T0 + 5,
  },
  { type: "span_log", run_id: "flow", span_id: "b", text: "slow", ts_ms: T0 + 6 },
  { type: "span_end", run_id: "flow", span_id: "b", error: { type: "E", message: "bad" }, end_ms: T0 + 9 },
  { type: "span_tag", run_id: "flow", span_id: "late", tags: { k: 1 } },
  { type: "run_start", run_id: "sub", name: "sub", parent_run_id: "flow", parent_span_id: "b", ts_ms: T0 + 7 },
];

describe("hub routes for the web UI (in process, real SQLite file)", () => {
  let hub: ReturnType<typeof makeHub>;
  before(async () => {
    hub = makeHub();
    const response = await hub.app.inject({ method: "POST", url: "/api/v1/events", payload: flowEvents });
    assert.equal(response.statusCode, 200, response.body);
  });
  after(() => hub.close());

  it("lists spans in the compact encoding: columns, string tables, parent indexes, ms after the run start", async () => {
    const body = (await hub.app.inject("/api/v1/runs/flow/spans?view=compact")).json();
    assert.equal(body.baseTime, "2026-11-23T08:00:00.000000Z");
    assert.equal(body.lastSeq, (await hub.app.inject("/api/v1/runs/flow")).json().lastSeq);
    assert.equal(body.count, 4);
    assert.deepEqual(body.id, ["late", "root", "a", "b"]);
    assert.deepEqual(body.parent, [-1, -1, 1, 1]);
    assert.deepEqual(
      body.name.map((index: number) => body.names[index] ?? null),
      [null, "main", "step", "step"],
    );
    assert.equal(body.names.length, 2, "each name is sent once");
    assert.deepEqual(
      body.status.map((index: number) => body.statuses[index]),
      ["running", "running", "ok", "failed"],
    );
    assert.deepEqual(body.start, [null, 1, 2.5, 5]);
    assert.deepEqual(body.duration, [null, null, 1.5, 4]);
    assert.equal(body.tags, undefined, "no tags or logs in the compact form");
  });

  it("refuses an unknown view and answers 404 for an unknown run", async () => {
    assert.equal((await hub.app.inject("/api/v1/runs/flow/spans?view=tiny")).statusCode, 400);
    assert.equal((await hub.app.inject("/api/v1/runs/nope/spans?view=compact")).statusCode, 404);
    assert.equal((await hub.app.inject("/api/v1/runs/flow/spans?view=full")).json().spans.length, 4);
  });

  it("gives one span's details with its child runs, and 404 for an unknown span", async () => {
    const span = (await hub.app.inject("/api/v1/runs/flow/spans/b")).json();
    assert.equal(span.runId, "flow");
    assert.equal(span.status, "failed");
    assert.deepEqual(span.tags, { rows: 5, table: "Users" });
    assert.deepEqual(
      span.logs.map((log: { text: string }) => log.text),
      ["slow"],
    );
    assert.deepEqual(span.error, { type: "E", message: "bad" });
    assert.equal(span.rpcService, "db");
    assert.equal(span.rpcMethod, "Load");
    assert.deepEqual(span.childRuns, [{ id: "sub", name: "sub", status: "running" }]);
    assert.deepEqual((await hub.app.inject("/api/v1/runs/flow/spans/a")).json().childRuns, []);
    const missing = await hub.app.inject("/api/v1/runs/flow/spans/zzz");
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, "not_found");
  });

  it("searches a run's spans by name, tag text and key:value", async () => {
    const search = async (q: string, limit = "") =>
      (await hub.app.inject(`/api/v1/runs/flow/spans?q=${encodeURIComponent(q)}${limit}`)).json();
    assert.deepEqual((await search("STEP")).matches, ["a", "b"]);
    assert.deepEqual((await search("users")).matches, ["b"]);
    assert.deepEqual((await search("rows:5")).matches, ["b"]);
    assert.deepEqual(await search("step", "&limit=1"), { runId: "flow", q: "step", matches: ["a"], truncated: true });
    assert.equal((await hub.app.inject("/api/v1/runs/flow/spans?q=")).statusCode, 400);
    assert.equal((await hub.app.inject("/api/v1/runs/nope/spans?q=x")).statusCode, 404);
  });

  it("lists runs started from a run or span", async () => {
    const ids = async (query: string) =>
      (await hub.app.inject(`/api/v1/runs?${query}`)).json().runs.map((run: { id: string }) => run.id);
    assert.deepEqual(await ids("parentRunId=flow"), ["sub"]);
    assert.deepEqual(await ids("parentRunId=flow&parentSpanId=a"), []);
  });

  it("serves the built UI: hashed assets cached for good, index.html and UI routes revalidated", async () => {
    const assets = readdirSync(join(UI_DIR, "assets"));
    assert.ok(assets.length > 0, `no built UI in ${UI_DIR}: run npm run build`);
    const index = await hub.app.inject("/");
    assert.equal(index.statusCode, 200);
    assert.equal(index.headers["cache-control"], "no-cache");
    assert.match(index.body, /<div id="app">/);
    const asset = await hub.app.inject(`/assets/${assets[0]}`);
    assert.equal(asset.statusCode, 200);
    assert.equal(asset.headers["cache-control"], "public, max-age=31536000, immutable");
    const route = await hub.app.inject({ url: "/runs/flow?span=b", headers: { accept: "text/html" } });
    assert.equal(route.statusCode, 200);
    assert.equal(route.headers["cache-control"], "no-cache");
    assert.equal(route.body, index.body);
    const api = await hub.app.inject({ url: "/api/v1/nothing", headers: { accept: "text/html" } });
    assert.equal(api.statusCode, 404);
    assert.equal(api.json().error.code, "not_found");
    assert.equal((await hub.app.inject("/no-such-file.js")).statusCode, 404, "only page requests fall back");
  });
});

describe("hub token: Bearer header or the session cookie", () => {
  let hub: ReturnType<typeof makeHub>;
  before(() => {
    hub = makeHub({ token: "s3cret" });
  });
  after(() => hub.close());

  it("serves the UI without the token, and the API only with the header or the cookie", async () => {
    assert.equal((await hub.app.inject("/")).statusCode, 200);
    assert.equal((await hub.app.inject("/api/v1/runs")).statusCode, 401);
    assert.equal((await hub.app.inject("/metrics")).statusCode, 401);
    assert.deepEqual((await hub.app.inject("/api/v1/session")).json(), { tokenRequired: true, authenticated: false });
    const post = (token: unknown) =>
      hub.app.inject({ method: "POST", url: "/api/v1/session", payload: { token } as object });
    assert.equal((await post("wrong")).statusCode, 401);
    assert.equal((await post(7)).statusCode, 400);
    const signedIn = await post("s3cret");
    assert.equal(signedIn.statusCode, 200);
    const setCookie = String(signedIn.headers["set-cookie"]);
    assert.match(setCookie, /^spanhub_session=[^;]+;/);
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    assert.doesNotMatch(setCookie, /s3cret/);
    const cookie = setCookie.split(";")[0] as string;
    assert.equal((await hub.app.inject({ url: "/api/v1/runs", headers: { cookie } })).statusCode, 200);
    assert.deepEqual((await hub.app.inject({ url: "/api/v1/session", headers: { cookie } })).json(), {
      tokenRequired: true,
      authenticated: true,
    });
    const forged = "spanhub_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert.equal((await hub.app.inject({ url: "/api/v1/runs", headers: { cookie: forged } })).statusCode, 401);
    const bearer = { authorization: "Bearer s3cret" };
    assert.equal((await hub.app.inject({ url: "/api/v1/runs", headers: bearer })).statusCode, 200);
    const signedOut = await hub.app.inject({ method: "DELETE", url: "/api/v1/session", headers: { cookie } });
    assert.match(String(signedOut.headers["set-cookie"]), /spanhub_session=;/);
  });
});

/** Reads Server-Sent Events from a streaming response, one parsed event at a time. */
class EventReader {
  private buffer = "";
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();

  constructor(response: Response) {
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
    this.reader = (response.body as ReadableStream<Uint8Array>).getReader();
  }

  // biome-ignore lint/suspicious/noExplicitAny: events carry several shapes
  async next(): Promise<{ event: string; id?: string; data: any }> {
    for (;;) {
      const end = this.buffer.indexOf("\n\n");
      if (end >= 0) {
        const block = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 2);
        const fields = new Map<string, string>();
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const at = line.indexOf(": ");
          fields.set(line.slice(0, at), line.slice(at + 2));
        }
        if (!fields.has("data")) continue;
        return {
          event: fields.get("event") ?? "message",
          id: fields.get("id"),
          data: JSON.parse(fields.get("data") as string),
        };
      }
      const { value, done } = await this.reader.read();
      if (done) throw new Error("the stream ended");
      this.buffer += this.decoder.decode(value, { stream: true });
    }
  }

  close(): Promise<void> {
    return this.reader.cancel();
  }
}

describe("event streams (a listening hub, real HTTP)", () => {
  let hub: ReturnType<typeof makeHub>;
  let url: string;
  const post = (events: unknown[]) =>
    fetch(`${url}/api/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(events),
    });

  before(async () => {
    hub = makeHub();
    url = await hub.app.listen({ host: "127.0.0.1", port: 0 });
    await post(flowEvents);
  });
  after(() => hub.close());

  it("streams a run's new and changed spans as they commit, resuming after a seq", async () => {
    const { lastSeq } = (await (await fetch(`${url}/api/v1/runs/flow`)).json()) as { lastSeq: number };
    const stream = new EventReader(await fetch(`${url}/api/v1/runs/flow/stream?after=${lastSeq}`));
    const first = await stream.next();
    assert.equal(first.event, "update");
    assert.equal(first.id, String(lastSeq));
    assert.equal(first.data.run.id, "flow");
    assert.equal(first.data.spans.count, 0);
    await post([
      { type: "span_start", run_id: "flow", span_id: "c", parent_id: "a", name: "new", start_ms: T0 + 10 },
      { type: "span_end", run_id: "flow", span_id: "root", end_ms: T0 + 20 },
    ]);
    const next = await stream.next();
    assert.equal(next.id, String(lastSeq + 2));
    assert.deepEqual(next.data.spans.id, ["root", "c"]);
    assert.deepEqual(next.data.spans.parentId, [null, "a"]);
    assert.deepEqual(next.data.spans.duration, [19, null]);
    assert.equal(next.data.run.lastSeq, lastSeq + 2);
    await stream.close();

    // Reconnecting with Last-Event-ID replays what came after it.
    const resumed = new EventReader(
      await fetch(`${url}/api/v1/runs/flow/stream`, {
        headers: { "last-event-id": String(lastSeq + 1) },
      }),
    );
    assert.deepEqual((await resumed.next()).data.spans.id, ["root"]);
    await resumed.close();
    assert.equal((await fetch(`${url}/api/v1/runs/nope/stream`)).status, 404);
  });

  it("streams the runs list with its filters whenever it changes", async () => {
    const stream = new EventReader(await fetch(`${url}/api/v1/stream/runs?name=live`));
    const first = await stream.next();
    assert.equal(first.event, "runs");
    assert.deepEqual(first.data, { runs: [], nextCursor: null });
    await post([{ type: "run_start", run_id: "other", name: "unrelated" }]);
    await post([{ type: "run_start", run_id: "live-1", name: "live one" }]);
    const next = await stream.next();
    assert.deepEqual(
      next.data.runs.map((run: { id: string }) => run.id),
      ["live-1"],
    );
    await stream.close();
    assert.equal((await fetch(`${url}/api/v1/stream/runs?status=nope`)).status, 400);
  });
});
