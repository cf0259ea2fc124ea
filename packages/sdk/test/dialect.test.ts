import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { encodeRequest } from "../src/encode.js";
import { createTracer } from "../src/index.js";
import { RequestRecord } from "../src/records.js";
import { scriptedPeer } from "./helpers.js";

type Frame = Record<string, Record<string, unknown>>;

/** An agent of another version: answers `Status` as told and records every frame it gets. */
async function fakeAgent(status: "refuse" | string): Promise<{ socket: string; frames: Frame[]; close: () => void }> {
  const frames: Frame[] = [];
  const peer = await scriptedPeer((received) => {
    const message = received as Frame;
    frames.push(message);
    const command = Object.keys(message)[0] as string;
    if (command !== "Status") return { [command]: { result: "Success" } };
    return status === "refuse"
      ? { Failure: { message: 'unknown command "Status"' } }
      : { Status: { version: status, result: "Success" } };
  });
  return { socket: peer.path, frames, close: peer.close };
}

const warnings: string[] = [];
const onWarning = (warning: Error) => {
  if (warning.name === "SpanhubWarning") warnings.push(warning.message);
};
process.on("warning", onWarning);
after(() => process.removeListener("warning", onWarning));

/** One linked request with a tagged, logged, failed span, through a tracer talking to `socket`. */
async function sendOne(socket: string): Promise<void> {
  const tracer = createTracer({ app: "dialect", socket, launch: false, flushIntervalMs: 60_000 });
  const upstream = `00-${"a".repeat(32)}-${"b".repeat(16)}-01`;
  await tracer.request(
    "GET /x",
    async () => {
      await tracer
        .span("work", async (span) => {
          span.tag("k", "v").log("hello");
          throw new Error("boom");
        })
        .catch(() => {});
    },
    { headers: { traceparent: upstream }, tags: { user: 1 } },
  );
  assert.equal(await tracer.flush(), true);
  await tracer.shutdown();
}

const commandsOf = (frames: Frame[]): Frame[] =>
  frames.filter((message) => "BatchCommand" in message).flatMap((message) => message.BatchCommand?.commands as Frame[]);

describe("what the SDK sends depends on the agent's Status answer", () => {
  test("spanhub 0.2.0: one BatchCommand with spanhub's extensions, no Events frame, no warning", async () => {
    const agent = await fakeAgent("0.2.0");
    try {
      await sendOne(agent.socket);
      assert.equal(agent.frames.filter((message) => "Events" in message).length, 0);
      assert.equal(agent.frames.filter((message) => "BatchCommand" in message).length, 1);
      const commands = commandsOf(agent.frames);
      const start = commands.find((command) => "StartRequest" in command)?.StartRequest;
      assert.equal(start?.name, "GET /x");
      assert.deepEqual(start?.tags, { user: 1 });
      assert.equal(start?.parent_run_id, "a".repeat(32));
      assert.equal(start?.parent_span_id, "b".repeat(16));
      const work = commands.find((command) => command.StartSpan?.operation === "work")?.StartSpan;
      assert.deepEqual(work?.tags, { k: "v" });
      assert.equal(commands.filter((command) => "TagSpan" in command).length, 0);
      assert.equal(commands.find((command) => "LogSpan" in command)?.LogSpan?.text, "hello");
      const stop = commands.find((command) => command.StopSpan?.span_id === work?.span_id)?.StopSpan;
      assert.equal(stop?.status, undefined, "an error without a status: the agent derives failed");
      assert.equal((stop?.error as { message?: string } | undefined)?.message, "boom");
      assert.equal(warnings.length, 0);
    } finally {
      agent.close();
    }
  });

  for (const [status, key, link] of [
    ["0.1.0", /needs 0\.2\.0 or newer/, "Events"],
    ["refuse", /not spanhub's agent/, "tags"],
  ] as const) {
    test(`${status === "refuse" ? "Status refused" : `spanhub ${status}`}: plain Scout commands, warned once`, async () => {
      const agent = await fakeAgent(status);
      try {
        await sendOne(agent.socket);
        await sendOne(agent.socket);
        assert.equal(warnings.filter((text) => key.test(text)).length, 1, warnings.join("\n"));
        const commands = commandsOf(agent.frames);
        assert.ok(commands.length > 0);
        for (const command of commands) {
          const [name, body] = Object.entries(command)[0] as [string, Record<string, unknown>];
          assert.ok(["StartRequest", "TagRequest", "StartSpan", "TagSpan", "StopSpan", "FinishRequest"].includes(name));
          for (const field of ["tags", "name", "status", "error", "parent_run_id", "kind", "rpc_service"])
            assert.equal(body[field], undefined, `${name}.${field}`);
        }
        const tagged = (tag: string) => commands.find((command) => command.TagSpan?.tag === tag)?.TagSpan?.value;
        assert.equal(tagged("k"), "v");
        assert.equal((tagged("logs") as { text: string }[])[0]?.text, "hello");
        assert.equal(tagged("error.message"), "boom");
        assert.equal(tagged("error"), true);
        const events = agent.frames.filter((message) => "Events" in message).length;
        const linkTag = commands.find((command) => command.TagRequest?.tag === "spanhub.parent_run_id");
        if (link === "Events") {
          assert.equal(events, 2, "the parent link as an Events frame, as spanhub 0.1 agents need");
          assert.equal(linkTag, undefined);
        } else {
          assert.equal(events, 0, "no spanhub frame for an agent that is not spanhub's");
          assert.equal(linkTag?.TagRequest?.value, "a".repeat(32));
        }
      } finally {
        agent.close();
      }
    });
  }
});

test("encoding 10 spans of 10 tags: spanhub's extensions take about a third of the bytes of plain Scout", () => {
  const build = () => {
    const request = new RequestRecord("0af7651916cd43dd8448eb211c80319c", "GET /invoices", 10_000, undefined, () => {});
    const spans = [request.root];
    for (let index = 1; index < 10; index++) spans.push(request.startSpan(`SQL/Query${index}`, request.root) as never);
    for (const span of spans) for (let tag = 0; tag < 10; tag++) span.tag(`tag.${tag}`, tag % 2 ? `value-${tag}` : tag);
    request.end();
    return request;
  };
  const size = (dialect: "extended" | "spanhub") =>
    (encodeRequest(build(), "app", 0, dialect)?.bodies ?? []).reduce(
      (sum, body) => sum + 4 + Buffer.byteLength(body),
      0,
    );
  const extended = size("extended");
  const plain = size("spanhub");
  assert.ok(extended * 2.5 < plain, `${extended} bytes with extensions, ${plain} plain`);
});
