import assert from "node:assert/strict";
import { test } from "node:test";
import { Sender } from "../src/sender.js";
import { scriptedPeer } from "./helpers.js";

/**
 * The sender's queue layout: a flush writes the queue as a few long buffers it kept up to date
 * while entries were queued, and falls back to visiting each entry when the queue was reordered
 * (a resend, a refused batch, drops) or holds entries of another dialect. These tests drive a
 * Sender against a peer socket that records each frame body it gets and answers as scripted.
 */

interface Peer {
  path: string;
  /** Frame bodies received, per connection. */
  connections: string[][];
  close: () => void;
}

type Verdict = "success" | "failure" | "hang up";

/** A peer that records each frame body per connection and answers as `answer` says. */
async function peer(answer: (body: string, index: number) => Verdict): Promise<Peer> {
  const connections: string[][] = [];
  const scripted = await scriptedPeer((message, connection) => {
    connections[connection] ??= [];
    const received = connections[connection] as string[];
    const body = JSON.stringify(message);
    received.push(body);
    const verdict = answer(body, received.length - 1);
    if (verdict === "hang up") return verdict;
    return verdict === "success" ? { BatchCommand: { result: "Success" } } : { Failure: { message: "no" } };
  });
  return { path: scripted.path, connections, close: scripted.close };
}

function sender(path: string, currentDialect = "compact"): Sender {
  return new Sender({
    endpoint: { kind: "unix", path },
    launch: false,
    agentCommand: undefined,
    maxQueueBytes: 64 * 1024 * 1024,
    hello: () => [],
    onControlReply: () => {},
    // Another dialect's entry is re-encoded: here, its body gains the dialect it is written in.
    adapt: (data, dialect) => {
      if (dialect === currentDialect) return undefined;
      const body = JSON.parse(data.subarray(4).toString("utf8")) as { n: number };
      return { bodies: [JSON.stringify({ ...body, adaptedTo: currentDialect })], dialect: currentDialect };
    },
    currentDialect: () => currentDialect,
    onDrop: undefined,
  });
}

/** A body of about 1 KiB: 600 of them span several of the arena's 256 KiB chunks. */
const body = (n: number) => JSON.stringify({ n, pad: "x".repeat(1000) });
const numbers = (bodies: string[]) => bodies.map((text) => (JSON.parse(text) as { n: number }).n);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, index) => from + index);

test("one flush writes every queued entry in queue order, across the arena's chunks", async () => {
  const agent = await peer(() => "success");
  const out = sender(agent.path);
  try {
    for (const n of range(0, 600)) out.enqueue([body(n)], true, "compact");
    assert.equal(await out.whenDelivered(10_000), true);
    assert.deepEqual(numbers(agent.connections[0] ?? []), range(0, 600));
    assert.equal(out.stats().acknowledgedBatches, 600);
    assert.equal(out.stats().queuedBytes, 0);
    // The next flush starts a fresh layout.
    for (const n of range(600, 900)) out.enqueue([body(n)], true, "compact");
    assert.equal(await out.whenDelivered(10_000), true);
    assert.deepEqual(numbers(agent.connections[0] ?? []), range(0, 900));
  } finally {
    out.close();
    agent.close();
  }
});

test("a connection lost mid-flight sends the unacknowledged entries again first, then the newer ones", async () => {
  let hungUp = false;
  const agent = await peer((_, index) => {
    if (!hungUp && index === 250) {
      hungUp = true;
      return "hang up";
    }
    return "success";
  });
  const out = sender(agent.path);
  try {
    out.connectEarly();
    while (!out.stats().connected) await new Promise((resolve) => setTimeout(resolve, 5));
    for (const n of range(0, 400)) out.enqueue([body(n)], true, "compact");
    const delivered = out.whenDelivered(10_000);
    // Queued behind the write in flight: they must follow the entries sent again after the hang-up.
    for (const n of range(400, 500)) out.enqueue([body(n)], true, "compact");
    assert.equal(await delivered, true);
    assert.equal(await out.whenDelivered(10_000), true);
    assert.deepEqual(numbers(agent.connections[0] ?? []), range(0, 251));
    // Entries 0..249 were acknowledged; 250 reached the peer but was never answered.
    assert.deepEqual(numbers(agent.connections[1] ?? []), range(250, 500));
    assert.equal(out.stats().acknowledgedBatches, 500);
  } finally {
    out.close();
    agent.close();
  }
});

test("a refused entry goes to the back of the queue and is sent again with the next flush", async () => {
  let refused = false;
  const agent = await peer((text) => {
    if (!refused && (JSON.parse(text) as { n: number }).n === 3) {
      refused = true;
      return "failure";
    }
    return "success";
  });
  const out = sender(agent.path);
  try {
    for (const n of range(0, 10)) out.enqueue([body(n)], true, "compact");
    await out.whenDelivered(10_000);
    for (const n of range(10, 12)) out.enqueue([body(n)], true, "compact");
    assert.equal(await out.whenDelivered(10_000), true);
    assert.deepEqual(numbers(agent.connections[0] ?? []), [...range(0, 10), 3, 10, 11]);
    assert.equal(out.stats().acknowledgedBatches, 12);
  } finally {
    out.close();
    agent.close();
  }
});

test("entries encoded for another dialect are re-encoded; the others go as they are, in order", async () => {
  const agent = await peer(() => "success");
  const out = sender(agent.path, "extended");
  try {
    for (const n of range(0, 300)) out.enqueue([body(n)], true, n % 100 === 7 ? "compact" : "extended");
    assert.equal(await out.whenDelivered(10_000), true);
    const received = (agent.connections[0] ?? []).map((text) => JSON.parse(text) as { n: number; adaptedTo?: string });
    assert.deepEqual(
      received.map((message) => message.n),
      range(0, 300),
    );
    assert.deepEqual(
      received.filter((message) => message.adaptedTo === "extended").map((message) => message.n),
      [7, 107, 207],
    );
  } finally {
    out.close();
    agent.close();
  }
});
