import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  formatMicros,
  millisToMicros,
  nowMicros,
  parseDurationMs,
  parseIsoMicros,
  parseUserTime,
} from "../src/model/time.js";
import { T0 } from "./helpers.js";

const SECOND = 1_000_000;

describe("parseIsoMicros", () => {
  it("reads milliseconds with Z (the Node agent's form)", () => {
    assert.equal(parseIsoMicros("2026-11-23T08:47:25.363Z"), T0);
    assert.equal(T0, Date.UTC(2026, 10, 23, 8, 47, 25, 363) * 1000);
  });

  it("reads microseconds with +00:00 (the Python agent's form)", () => {
    assert.equal(parseIsoMicros("2018-12-01T17:04:34.078797+00:00"), Date.UTC(2018, 11, 1, 17, 4, 34) * 1000 + 78_797);
  });

  it("reads microseconds with Z", () => {
    assert.equal(parseIsoMicros("2026-11-23T08:47:25.363120Z"), T0 + 120);
    assert.equal(parseIsoMicros("2026-11-23T08:47:25.000001Z"), T0 - 363_000 + 1);
  });

  it("applies a +02:00 offset (and -05:30, +0200, +02)", () => {
    assert.equal(parseIsoMicros("2026-11-23T10:47:25.363120+02:00"), T0 + 120);
    assert.equal(parseIsoMicros("2026-11-23T03:17:25.363-05:30"), T0);
    assert.equal(parseIsoMicros("2026-11-23T10:47:25.363+0200"), T0);
    assert.equal(parseIsoMicros("2026-11-23T10:47:25.363+02"), T0);
  });

  it("takes no zone as UTC, whole seconds, and cuts nanoseconds to microseconds", () => {
    assert.equal(parseIsoMicros("2026-11-23T08:47:25.363"), T0);
    assert.equal(parseIsoMicros("2026-11-23T08:47:25Z"), T0 - 363_000);
    assert.equal(parseIsoMicros("2026-11-23T08:47:25.363120999Z"), T0 + 120);
  });

  it("reads every common UTC form exactly, whichever path it takes (2,000 random times)", () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let index = 0; index < 2000; index++) {
      const micros = Math.floor(random() * 4_000_000_000_000_000);
      const base = new Date(Math.floor(micros / 1000)).toISOString().slice(0, 19);
      const fraction = String(micros % 1_000_000).padStart(6, "0");
      assert.equal(parseIsoMicros(`${base}.${fraction}Z`), micros);
      assert.equal(parseIsoMicros(`${base}.${fraction}+00:00`), micros);
      assert.equal(parseIsoMicros(`${base}.${fraction.slice(0, 3)}Z`), micros - (micros % 1000));
      assert.equal(parseIsoMicros(`${base}Z`), micros - (micros % 1_000_000));
      assert.equal(parseIsoMicros(`${base}.${fraction}123Z`), micros);
    }
    assert.equal(parseIsoMicros("2026/11/23T08:47:25.363Z"), undefined);
    assert.equal(parseIsoMicros("2026-11-23T08:47:25.Z"), undefined);
  });

  it("returns undefined for anything that is not such a time", () => {
    for (const text of [
      "",
      "garbage",
      "yesterday at noon",
      "2026-11-23",
      "2026-11-23T08:47:25.363Q",
      "2026-13-01T00:00:00Z",
      "2026-11-23T25:00:00Z",
      "2026-02-30T00:00:00Z",
      "2025-02-29T12:00:00+00:00",
      "1795423645363",
      " 2026-11-23T08:47:25.363Z",
    ])
      assert.equal(parseIsoMicros(text), undefined, JSON.stringify(text));
  });
});

describe("formatMicros", () => {
  it("writes RFC 3339 UTC with exactly six fraction digits", () => {
    assert.equal(formatMicros(T0), "2026-11-23T08:47:25.363000Z");
    assert.equal(formatMicros(T0 + 7), "2026-11-23T08:47:25.363007Z");
    assert.equal(formatMicros(T0 - 363_000 + 1), "2026-11-23T08:47:25.000001Z");
    assert.equal(formatMicros(0), "1970-01-01T00:00:00.000000Z");
  });

  it("round-trips through parseIsoMicros", () => {
    const samples = [T0, T0 + 1, T0 + 999, T0 + 123_456, 1_543_683_874_078_797, 86_400 * SECOND - 1];
    for (const us of samples) {
      const text = formatMicros(us);
      assert.match(text, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
      assert.equal(parseIsoMicros(text), us, text);
    }
    assert.equal(
      formatMicros(parseIsoMicros("2018-12-01T17:04:34.078797+00:00") as number),
      "2018-12-01T17:04:34.078797Z",
    );
  });
});

describe("millisToMicros, nowMicros and parseUserTime", () => {
  it("keeps the microseconds of fractional milliseconds", () => {
    assert.equal(millisToMicros(1_795_423_645_363.123), T0 + 123);
    assert.equal(millisToMicros(1), 1000);
  });

  it("nowMicros is close to Date.now()", () => {
    assert.ok(Math.abs(nowMicros() - Date.now() * 1000) < 5 * SECOND);
    assert.ok(Number.isInteger(nowMicros()));
  });

  it("parseUserTime accepts epoch milliseconds (number or digits) and ISO text", () => {
    assert.equal(parseUserTime(1_795_423_645_363), T0);
    assert.equal(parseUserTime("1795423645363"), T0);
    assert.equal(parseUserTime("1795423645363.5"), T0 + 500);
    assert.equal(parseUserTime("2026-11-23T08:47:25.363Z"), T0);
    assert.equal(parseUserTime("last tuesday"), undefined);
    assert.equal(parseUserTime(Number.NaN), undefined);
    assert.equal(parseUserTime(Number.POSITIVE_INFINITY), undefined);
  });
});

describe("parseDurationMs", () => {
  it("reads single units and combinations", () => {
    assert.equal(parseDurationMs("250ms"), 250);
    assert.equal(parseDurationMs("30s"), 30_000);
    assert.equal(parseDurationMs("5m"), 300_000);
    assert.equal(parseDurationMs("1h30m"), 5_400_000);
    assert.equal(parseDurationMs("2h"), 7_200_000);
    assert.equal(parseDurationMs("1m30s500ms"), 90_500);
    assert.equal(parseDurationMs("1.5s"), 1500);
    assert.equal(parseDurationMs("500us"), 0.5);
    assert.equal(parseDurationMs("0s"), 0);
  });

  it("rejects malformed text", () => {
    for (const text of ["5x", "", "5", "m", "1h30", " 5m", "5m ", "-5m", "5 m", "1h-30m", "ms"])
      assert.equal(parseDurationMs(text), undefined, JSON.stringify(text));
  });

  it("gives the same answer when called repeatedly (no regex state leaks between calls)", () => {
    assert.equal(parseDurationMs("5x"), undefined);
    assert.equal(parseDurationMs("5m"), 300_000);
    assert.equal(parseDurationMs("5m"), 300_000);
  });
});
