import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { encodeFrame } from "../src/protocols/framing.js";
import {
  FrameClient,
  getJson,
  type SpanhubProcess,
  scoutBatch,
  startUp,
  tempHome,
  waitFor,
  writeAndClose,
} from "./processHelpers.js";

type SpanView = { id: string; parentId: string | null; name: string; status: string; tags: Record<string, unknown> };

describe("agent over a real Unix socket", () => {
  const home = tempHome();
  let hub: SpanhubProcess;
  const spans = async (runId: string): Promise<SpanView[]> =>
    (await getJson(`${hub.url}/api/v1/runs/${runId}/spans`)).body.spans;
  const run = async (runId: string) => (await getJson(`${hub.url}/api/v1/runs/${runId}`)).body;
  const metric = async (pattern: RegExp): Promise<number> => {
    const text = await (await fetch(`${hub.url}/metrics`)).text();
    const line = text.split("\n").find((candidate) => pattern.test(candidate));
    return line ? Number(line.split(" ").at(-1)) : 0;
  };

  before(async () => {
    hub = await startUp(home);
  });
  after(async () => {
    await hub.stop();
    home.cleanup();
  });

  it("rebuilds the same tree from a children-first batch and a depth-first batch", async () => {
    const client = await FrameClient.open(home.socket);
    const childrenFirst = scoutBatch("req-order-a", 7);
    const depthFirst = scoutBatch("req-order-b", 7);
    // Reorder the second batch parent first: StartRequest, TagRequest, spans by index ascending, FinishRequest.
    const commands = depthFirst.BatchCommand.commands as Record<string, { span_id?: string }>[];
    const spanCommands = commands.slice(2, -1);
    const groups: Record<string, unknown>[][] = [];
    for (let index = 0; index < spanCommands.length; index += 3) groups.push(spanCommands.slice(index, index + 3));
    depthFirst.BatchCommand.commands = [...commands.slice(0, 2), ...groups.reverse().flat(), ...commands.slice(-1)];
    assert.deepEqual(await client.send(childrenFirst), { BatchCommand: { result: "Success" } });
    assert.deepEqual(await client.send(depthFirst), { BatchCommand: { result: "Success" } });
    client.close();
    const shape = (list: SpanView[], prefix: string) =>
      list
        .map((span) => `${span.id.replace(prefix, "")}<${span.parentId?.replace(prefix, "") ?? "root"}:${span.name}`)
        .sort();
    const a = shape(await spans("req-order-a"), "req-order-a");
    const b = shape(await spans("req-order-b"), "req-order-b");
    assert.equal(a.length, 7);
    assert.deepEqual(a, b);
    assert.ok(a.includes("-s0<root:Controller/users"));
    assert.ok(a.includes("-s6<-s2:SQL/Query6"));
    const view = await run("req-order-a");
    assert.equal(view.name, "Controller/users");
    assert.equal(view.status, "ok");
    assert.equal(view.spanCount, 7);
    assert.deepEqual(view.tags, { path: "/users" });
  });

  it("keeps two requests interleaved on one connection apart, one frame per command", async () => {
    const client = await FrameClient.open(home.socket);
    const replies = await Promise.all([
      client.send({ Register: { app: "shop", key: "secret", api_version: "1.0", language: "nodejs", host: "web-1" } }),
      client.send({
        ApplicationEvent: {
          event_type: "scout.metadata",
          event_value: { language: "nodejs", framework: "express" },
          source: "Pid: 7199",
          timestamp: "2026-11-23T08:47:25.363Z",
        },
      }),
      client.send({ StartRequest: { request_id: "req-x" } }),
      client.send({ StartRequest: { request_id: "req-y" } }),
      client.send({ StartSpan: { request_id: "req-x", span_id: "x1", operation: "Controller/x" } }),
      client.send({ StartSpan: { request_id: "req-y", span_id: "y1", parent_id: null, operation: "Job/y" } }),
      client.send({ StartSpan: { request_id: "req-y", span_id: "y2", parent_id: "y1", operation: "SQL/y" } }),
      client.send({ TagSpan: { request_id: "req-y", span_id: "y2", tag: "error", value: true } }),
      client.send({ StopSpan: { request_id: "req-y", span_id: "y2" } }),
      client.send({ StopSpan: { request_id: "req-x", span_id: "x1" } }),
      client.send({ StopSpan: { request_id: "req-y", span_id: "y1" } }),
      client.send({ FinishRequest: { request_id: "req-y" } }),
      client.send({ FinishRequest: { request_id: "req-x" } }),
    ]);
    client.close();
    assert.deepEqual(replies[0], { Register: { id: null, result: "Success" } });
    assert.deepEqual(replies[1], { ApplicationEvent: { result: "Success" } });
    assert.deepEqual(replies[2], { StartRequest: { result: "Success" } });
    assert.deepEqual(replies[8], { StopSpan: { result: "Success" } });
    assert.deepEqual(replies[12], { FinishRequest: { result: "Success" } });
    const x = await run("req-x");
    const y = await run("req-y");
    assert.equal(x.app, "shop");
    assert.equal(x.host, "web-1");
    assert.equal(x.pid, 7199);
    const { apps } = (await getJson(`${hub.url}/api/v1/apps`)).body;
    const shop = apps.find((app: { app: string }) => app.app === "shop");
    assert.deepEqual(shop.metadata, { language: "nodejs", framework: "express" });
    assert.equal(shop.latest.Register.value.key, undefined, "the API key is never stored");
    assert.equal(x.status, "ok");
    assert.equal(x.spanCount, 1);
    assert.equal(y.status, "failed", "an error tag on a span fails the request");
    assert.equal(y.name, "Job/y");
    assert.equal(y.errorCount, 1);
    const ySpans = await spans("req-y");
    assert.deepEqual(ySpans.map((span) => [span.id, span.parentId, span.status]).sort(), [
      ["y1", null, "ok"],
      ["y2", "y1", "failed"],
    ]);
  });

  it("joins one request spread over two batches on two connections", async () => {
    const first = await FrameClient.open(home.socket);
    const second = await FrameClient.open(home.socket);
    await first.send({
      BatchCommand: {
        commands: [
          { StartRequest: { request_id: "req-split" } },
          { StartSpan: { request_id: "req-split", span_id: "child", parent_id: "root", operation: "HTTP/get" } },
          { StopSpan: { request_id: "req-split", span_id: "child" } },
        ],
      },
    });
    await second.send({
      BatchCommand: {
        commands: [
          { StartSpan: { request_id: "req-split", span_id: "root", operation: "Controller/split" } },
          { StopSpan: { request_id: "req-split", span_id: "root" } },
          { FinishRequest: { request_id: "req-split" } },
        ],
      },
    });
    first.close();
    second.close();
    const list = await spans("req-split");
    assert.deepEqual(list.map((span) => [span.id, span.parentId]).sort(), [
      ["child", "root"],
      ["root", null],
    ]);
    assert.equal((await run("req-split")).status, "ok");
  });

  it("answers every frame, including Failure for bad JSON, and keeps the connection", async () => {
    const client = await FrameClient.open(home.socket);
    const body = Buffer.from("{not json");
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length);
    const bad = await client.sendRaw(Buffer.concat([header, body]));
    assert.match(String((bad.Failure as { message: string }).message), /not valid JSON/);
    const unknown = await client.send({ Teleport: {} });
    assert.ok(unknown.Failure);
    const twoKeys = await client.send({ StartRequest: { request_id: "r" }, StopSpan: {} });
    assert.ok(twoKeys.Failure);
    const shutdown = await client.send({ CoreAgentShutdown: {} });
    assert.match(String((shutdown.Failure as { message: string }).message), /never stopped by a client/);
    const version = await client.send({ CoreAgentVersion: {} });
    assert.equal((version.CoreAgentVersion as { result: string }).result, "Success");
    client.close();
    assert.ok((await metric(/^spanhub_agent_malformed_total\{protocol="scout"\}/)) >= 2);
    assert.ok((await metric(/^spanhub_agent_rejected_total\{protocol="scout",reason="unknown"\}/)) >= 1);
  });

  it("treats a connection that opens and closes without data as harmless", async () => {
    await writeAndClose(home.socket, "");
    await writeAndClose(home.socket, "");
    const client = await FrameClient.open(home.socket);
    assert.deepEqual(await client.send({ StartRequest: { request_id: "after-probe" } }), {
      StartRequest: { result: "Success" },
    });
    client.close();
  });

  it("refuses an oversized frame with a Failure, closes that connection, and loses nothing else", async () => {
    const client = await FrameClient.open(home.socket);
    const good = client.send(scoutBatch("req-before-oversized", 3));
    const header = Buffer.alloc(4);
    header.writeUInt32BE(65 * 1024 * 1024);
    const refused = client.sendRaw(Buffer.concat([header, Buffer.from("{}")]));
    assert.deepEqual(await good, { BatchCommand: { result: "Success" } });
    assert.match(String(((await refused).Failure as { message: string }).message), /over the limit/);
    await client.closed;
    assert.equal((await run("req-before-oversized")).spanCount, 3);
    const other = await FrameClient.open(home.socket);
    assert.ok((await other.send({ CoreAgentVersion: {} })).CoreAgentVersion);
    other.close();
  });

  it("applies every JSON-lines rule and skips bad lines without ending the connection", async () => {
    const t = 1_763_886_000_000;
    const lines = [
      { type: "run_start", run_id: "jl-1", name: "nightly-report", ts_ms: t, tags: { team: "data" } },
      {
        type: "span_start",
        run_id: "jl-1",
        span_id: "s1",
        parent_id: null,
        name: "load",
        kind: "step",
        ts_ms: t + 1,
        tags: { rows: 10 },
      },
      {
        type: "span_start",
        run_id: "jl-1",
        span_id: "s1",
        parent_id: null,
        name: "load-v2",
        kind: "step",
        ts_ms: t + 1,
      },
      { type: "span_tag", run_id: "jl-1", span_id: "s1", tags: { source: "s3" } },
      { type: "span_log", run_id: "jl-1", span_id: "s1", ts_ms: t + 2.5, text: "fetched page 1" },
      { type: "span_log", run_id: "jl-1", span_id: "s1", ts_ms: t + 3, text: "fetched page 2" },
      { type: "span_end", run_id: "jl-1", span_id: "s1", ts_ms: t + 50, status: "ok" },
      { type: "span_start", run_id: "jl-1", span_id: "s2", parent_id: "s1", name: "transform", ts_ms: t + 51 },
      { type: "span_end", run_id: "jl-1", span_id: "s2", ts_ms: t + 60, status: "exploded" },
    ].map((line) => JSON.stringify(line));
    const garbage = ["{this is not json", '{"type":"span_teleport","run_id":"jl-1"}', '{"type":"span_end"}'];
    const tail = [{ type: "run_end", run_id: "jl-1", ts_ms: t + 100, status: "ok" }].map((line) =>
      JSON.stringify(line),
    );
    const unknownStatusBefore = await metric(/^spanhub_unknown_status_total/);
    await writeAndClose(home.socket, `${[...lines.slice(0, 5), ...garbage, ...lines.slice(5), ...tail].join("\n")}\n`);
    const view = await waitFor(async () => {
      const candidate = await run("jl-1");
      return candidate.status === "ok" ? candidate : undefined;
    }, "the JSON-lines run to end");
    assert.equal(view.name, "nightly-report");
    assert.deepEqual(view.tags, { team: "data" });
    assert.equal(view.startTime, "2025-11-23T08:20:00.000000Z");
    const [load, transform] = await spans("jl-1");
    assert.equal(load?.name, "load-v2", "a repeated span_start updates the span");
    assert.deepEqual(load?.tags, { rows: 10, source: "s3" });
    assert.deepEqual((load as unknown as { logs: { time: string; text: string }[] }).logs, [
      { time: "2025-11-23T08:20:00.002500Z", text: "fetched page 1" },
      { time: "2025-11-23T08:20:00.003000Z", text: "fetched page 2" },
    ]);
    assert.equal(transform?.status, "failed", "an unknown status becomes failed");
    assert.equal((await metric(/^spanhub_unknown_status_total/)) - unknownStatusBefore, 1);
    assert.ok((await metric(/^spanhub_agent_malformed_total\{protocol="jsonl"\}/)) >= 2);
    assert.ok((await metric(/^spanhub_agent_rejected_total\{protocol="jsonl",reason="unknown"\}/)) >= 1);
  });

  it("counts every frame in spanhub_agent_messages_total by protocol and command", async () => {
    const before = await metric(/^spanhub_agent_messages_total\{protocol="scout",command="BatchCommand"\}/);
    const client = await FrameClient.open(home.socket);
    await client.send(scoutBatch("req-count-1", 2));
    await client.send(scoutBatch("req-count-2", 2));
    client.close();
    assert.equal(
      (await metric(/^spanhub_agent_messages_total\{protocol="scout",command="BatchCommand"\}/)) - before,
      2,
    );
  });

  it("acknowledges a repeated batch_id again without applying it twice", async () => {
    const client = await FrameClient.open(home.socket);
    const batch = scoutBatch("req-dedup", 4, { batchId: "dedup-1" });
    assert.deepEqual(await client.send(batch), { BatchCommand: { result: "Success" } });
    assert.deepEqual(await client.send(batch), { BatchCommand: { result: "Success" } });
    const events = {
      Events: {
        batch_id: "dedup-2",
        events: [{ type: "span_log", run_id: "req-dedup", span_id: "req-dedup-s0", text: "once" }],
      },
    };
    assert.deepEqual(await client.send(events), { Events: { result: "Success", batch_id: "dedup-2" } });
    assert.deepEqual(await client.send(events), { Events: { result: "Success", batch_id: "dedup-2" } });
    client.close();
    const view = await run("req-dedup");
    assert.equal(view.spanCount, 4);
    const root = (await spans("req-dedup")).find((span) => span.id === "req-dedup-s0") as unknown as {
      logs: unknown[];
    };
    assert.equal(root.logs.length, 1);
  });

  it("writes the socket 0600 in a 0700 directory", async () => {
    const { statSync } = await import("node:fs");
    const { dirname } = await import("node:path");
    assert.equal(statSync(home.socket).mode & 0o777, 0o600);
    assert.equal(statSync(dirname(home.socket)).mode & 0o777, 0o700);
  });

  it("encodes frames as a 4-byte big-endian length and UTF-8 JSON", () => {
    const frame = encodeFrame({ CoreAgentVersion: {} });
    assert.equal(frame.readUInt32BE(0), frame.length - 4);
    assert.equal(frame.subarray(4).toString("utf8"), '{"CoreAgentVersion":{}}');
  });

  it("reads JSON lines that begin with a blank line or a byte order mark, and fails a span that reports an error", async () => {
    const lines = [
      { type: "span_start", run_id: "jl-bom", span_id: "a", name: "fetch" },
      { type: "span_end", run_id: "jl-bom", span_id: "a", error: { type: "IOError", message: "reset" } },
      { type: "run_end", run_id: "jl-bom" },
    ].map((line) => JSON.stringify(line));
    await writeAndClose(home.socket, `\n\ufeff${lines.join("\n")}\n`);
    const view = await waitFor(async () => {
      const candidate = await run("jl-bom");
      return candidate.status === "running" || candidate.error ? undefined : candidate;
    }, "the run to end");
    assert.equal(view.status, "failed", "a failed span fails a run that ends without a status");
    const [span] = await spans("jl-bom");
    assert.equal(span?.status, "failed", "an error without a status fails the span");
  });

  it("labels unknown commands as (unknown) so clients cannot add metric series", async () => {
    const client = await FrameClient.open(home.socket);
    await client.send({ MadeUpCommand42: {} });
    client.close();
    const text = await (await fetch(`${hub.url}/metrics`)).text();
    assert.doesNotMatch(text, /MadeUpCommand42/);
    assert.match(text, /spanhub_agent_messages_total\{protocol="scout",command="\(unknown\)"\} [1-9]/);
  });

  it("stores a BatchCommand that uses every spanhub extension: logs with times, status, error, rpc fields, run name and parent links", async () => {
    const R = "req-ext-e2e";
    const before = await metric(/^spanhub_agent_messages_total\{protocol="scout",command="BatchCommand"\}/);
    const unknownStatusBefore = await metric(/^spanhub_unknown_status_total/);
    const client = await FrameClient.open(home.socket);
    const status = await client.send({ Status: {} });
    assert.equal((status.Status as { version: string }).version, "0.2.0");
    const reply = await client.send({
      BatchCommand: {
        batch_id: "ext-e2e-1",
        commands: [
          {
            StartRequest: {
              request_id: R,
              timestamp: "2026-11-23T08:47:25.000000Z",
              name: "GET /ext",
              tags: { user: 42 },
              parent_run_id: "req-ext-parent",
              parent_span_id: "span-ext-parent",
            },
          },
          {
            StartSpan: {
              request_id: R,
              span_id: "root",
              parent_id: null,
              operation: "GET /ext",
              kind: "request",
              tags: { path: "/ext", attempt: 1 },
              timestamp: "2026-11-23T08:47:25.001000Z",
            },
          },
          { LogSpan: { request_id: R, span_id: "root", text: "start", timestamp: "2026-11-23T08:47:25.001500Z" } },
          { TagSpan: { request_id: R, span_id: "root", tags: { attempt: 2, cache: "miss" } } },
          {
            StartSpan: {
              request_id: R,
              span_id: "db",
              parent_id: "root",
              operation: "postgres.query",
              kind: "rpc",
              rpc_service: "postgres",
              rpc_method: "query",
              timestamp: "2026-11-23T08:47:25.002000Z",
            },
          },
          { LogSpan: { request_id: R, span_id: "db", text: "retrying", timestamp: "2026-11-23T08:47:25.002250Z" } },
          {
            StopSpan: {
              request_id: R,
              span_id: "db",
              timestamp: "2026-11-23T08:47:25.003000Z",
              status: "timed_out",
              error: { type: "TimeoutError", message: "query timed out", stack: "TimeoutError: query timed out" },
            },
          },
          {
            StartSpan: {
              request_id: R,
              span_id: "odd",
              parent_id: "root",
              operation: "odd",
              timestamp: "2026-11-23T08:47:25.003100Z",
            },
          },
          { StopSpan: { request_id: R, span_id: "odd", timestamp: "2026-11-23T08:47:25.003200Z", status: "paused" } },
          { StopSpan: { request_id: R, span_id: "root", timestamp: "2026-11-23T08:47:25.004000Z", error: "gave up" } },
          {
            FinishRequest: {
              request_id: R,
              timestamp: "2026-11-23T08:47:25.005000Z",
              status: "cancelled",
              error: { type: "AbortError", message: "client went away" },
            },
          },
        ],
      },
    });
    client.close();
    assert.deepEqual(reply, { BatchCommand: { result: "Success" } });
    assert.equal(
      (await metric(/^spanhub_agent_messages_total\{protocol="scout",command="BatchCommand"\}/)) - before,
      1,
    );
    assert.equal((await metric(/^spanhub_unknown_status_total/)) - unknownStatusBefore, 1);
    const view = await run(R);
    assert.equal(view.name, "GET /ext");
    assert.equal(view.status, "cancelled");
    assert.deepEqual(view.error, { type: "AbortError", message: "client went away" });
    assert.deepEqual(view.tags, { user: 42 });
    assert.equal(view.parentRunId, "req-ext-parent");
    assert.equal(view.parentSpanId, "span-ext-parent");
    assert.equal(view.spanCount, 3);
    type Full = SpanView & {
      kind: string | null;
      logs: { time: string; text: string }[];
      error: unknown;
      rpcService?: string;
      rpcMethod?: string;
    };
    const list = (await spans(R)) as Full[];
    const root = list.find((span) => span.id === "root");
    const db = list.find((span) => span.id === "db");
    const odd = list.find((span) => span.id === "odd");
    assert.equal(root?.kind, "request");
    assert.deepEqual(root?.tags, { path: "/ext", attempt: 2, cache: "miss" });
    assert.deepEqual(root?.logs, [{ time: "2026-11-23T08:47:25.001500Z", text: "start" }]);
    assert.equal(root?.status, "failed", "an error without a status fails the span");
    assert.deepEqual(root?.error, { message: "gave up" });
    assert.equal(db?.parentId, "root");
    assert.equal(db?.kind, "rpc");
    assert.equal(db?.rpcService, "postgres");
    assert.equal(db?.rpcMethod, "query");
    assert.equal(db?.status, "timed_out");
    assert.deepEqual(db?.error, {
      type: "TimeoutError",
      message: "query timed out",
      stack: "TimeoutError: query timed out",
    });
    assert.deepEqual(db?.logs, [{ time: "2026-11-23T08:47:25.002250Z", text: "retrying" }]);
    assert.equal(odd?.status, "failed", "an unknown status is stored as failed");
  });
});
