import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { SDK_NAME, SDK_VERSION } from "../src/index.js";

const manifest = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as Record<
  string,
  unknown
>;

test("the package has no runtime dependencies", () => {
  assert.equal(manifest.name, "@spanhub/sdk");
  for (const field of ["dependencies", "optionalDependencies", "bundleDependencies", "bundledDependencies"])
    assert.ok(
      manifest[field] === undefined || Object.keys(manifest[field] as object).length === 0,
      `${field} must be empty`,
    );
  // The agent (`spanhub`) is an optional peer: found when installed, never pulled in.
  assert.deepEqual(manifest.peerDependenciesMeta, { spanhub: { optional: true } });
});

test("Register carries the package's own name and version", () => {
  assert.equal(SDK_NAME, manifest.name);
  assert.equal(SDK_VERSION, manifest.version);
});
