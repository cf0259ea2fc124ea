import assert from "node:assert/strict";
import { test } from "node:test";
import { findAgentCommand } from "../src/launcher.js";
import { parseEndpoint } from "../src/socketPath.js";
import { formatTraceparent, parseTraceparent, readHeader } from "../src/traceparent.js";
import { SPANHUB_BIN } from "./helpers.js";

test("traceparent round-trips and rejects invalid values", () => {
  const runId = "0af7651916cd43dd8448eb211c80319c";
  const spanId = "b7ad6b7169203331";
  assert.deepEqual(parseTraceparent(formatTraceparent(runId, spanId)), { runId, spanId });
  assert.deepEqual(parseTraceparent(`00-${runId.toUpperCase()}-${spanId}-00`), { runId, spanId });
  for (const bad of [
    undefined,
    "",
    "garbage",
    `ff-${runId}-${spanId}-01`,
    `00-${"0".repeat(32)}-${spanId}-01`,
    `00-${runId}-${"0".repeat(16)}-01`,
    `00-${runId}-${spanId}-01-extra`,
  ])
    assert.equal(parseTraceparent(bad), undefined, String(bad));
  assert.equal(readHeader({ TraceParent: ["a", "b"] }, "traceparent"), "a");
  assert.equal(readHeader(new Headers({ traceparent: "x" }), "traceparent"), "x");
});

test("the agent executable: option, then SPANHUB_AGENT_BIN, then the installed spanhub package, then PATH", () => {
  assert.deepEqual(findAgentCommand(["/opt/spanhub"], {}), ["/opt/spanhub"]);
  assert.deepEqual(findAgentCommand(undefined, { SPANHUB_AGENT_BIN: "/usr/bin/spanhub" }), ["/usr/bin/spanhub"]);
  assert.deepEqual(findAgentCommand(undefined, { SPANHUB_AGENT_BIN: "/x/spanhub.js" }), [
    process.execPath,
    "/x/spanhub.js",
  ]);
  // In this repository the workspace's `spanhub` package is installed next to the SDK.
  assert.deepEqual(findAgentCommand(undefined, {}), [process.execPath, SPANHUB_BIN]);
});

test("socket option: a path is a Unix socket, tcp://host:port is TCP", () => {
  assert.deepEqual(parseEndpoint("/run/spanhub/agent.sock"), { kind: "unix", path: "/run/spanhub/agent.sock" });
  assert.deepEqual(parseEndpoint("tcp://127.0.0.1:6590"), { kind: "tcp", host: "127.0.0.1", port: 6590 });
  assert.deepEqual(parseEndpoint("tcp://[::1]:6590"), { kind: "tcp", host: "::1", port: 6590 });
});
