// Unit tests of report.ts: reports recognised, rendered as ?verbose text, and stripped of details.
import assert from "node:assert/strict";
import { parseAnswer } from "../answer.ts";
import { encodeResponse } from "../protocol.ts";
import { httpStatus, isHealthReport, renderVerbose, withholdDetails } from "../report.ts";
import type { HealthReport } from "../report.ts";

const encoder = new TextEncoder();

/** The lines of a ?verbose text, which ends with a newline. */
function lines(text: string): string[] {
  assert.ok(text.endsWith("\n"), JSON.stringify(text));
  return text.slice(0, -1).split("\n");
}

const PASS: HealthReport = {
  status: "pass",
  checks: { "db:responseTime": [{ status: "pass", observedValue: 1.5, observedUnit: "ms" }] },
};

Deno.test("renderVerbose writes one line per check, then the endpoint's verdict", () => {
  const report: HealthReport = {
    status: "fail",
    checks: {
      "db:responseTime": [{ status: "fail", output: "connection refused" }],
      "cache:hitRate": [{ status: "pass", observedValue: 0.9 }],
      "lifecycle:state": [{ status: "pass", observedValue: "ready" }],
    },
    output: "failed: db",
  };
  assert.deepEqual(lines(renderVerbose(report, "readyz")), [
    "[-]db failed: connection refused",
    "[+]cache ok",
    "[+]lifecycle ok",
    "readyz check failed",
  ]);
});

Deno.test("renderVerbose's last line is the total: passed, passed with warnings, or failed", () => {
  assert.equal(renderVerbose(PASS, "livez"), "[+]db ok\nlivez check passed\n");
  const warned: HealthReport = { status: "warn", checks: { "cache:x": [{ status: "warn", output: "cold" }] } };
  assert.equal(renderVerbose(warned, "healthz"), "[+]cache warn: cold\nhealthz check passed with warnings\n");
  assert.equal(renderVerbose({ status: "fail", checks: {} }, "startupz"), "startupz check failed\n");
});

Deno.test("renderVerbose shows a failing non-critical check as failed, as its JSON entry is, under a warn total", () => {
  // The report a Health builds when a check with critical: false fails: its entry fail, the total warn.
  const report: HealthReport = {
    status: "warn",
    checks: {
      "eventloop:lag": [{ status: "fail", output: "blocked for 1500 ms" }],
      "lifecycle:state": [{ status: "pass" }],
    },
    output: "warn: eventloop",
  };
  assert.deepEqual(lines(renderVerbose(report, "readyz")), [
    "[-]eventloop failed: blocked for 1500 ms",
    "[+]lifecycle ok",
    "readyz check passed with warnings",
  ]);
  const answer = parseAnswer(encoder.encode(renderVerbose(report, "readyz")), "line");
  assert.ok(typeof answer !== "string", String(answer));
  assert.equal(answer.status, "warn");
  assert.equal(answer.code, 200);
});

Deno.test("renderVerbose shows reason withheld for a failing check without output", () => {
  const report: HealthReport = { status: "fail", checks: { "db:responseTime": [{ status: "fail" }] } };
  assert.deepEqual(lines(renderVerbose(report, "readyz")), [
    "[-]db failed: reason withheld",
    "readyz check failed",
  ]);
});

Deno.test("renderVerbose writes notes as warn: lines before the verdict", () => {
  const report: HealthReport = { ...PASS, notes: ['cannot exclude "nope": no check of that name'] };
  assert.deepEqual(lines(renderVerbose(report, "readyz")), [
    "[+]db ok",
    'warn: cannot exclude "nope": no check of that name',
    "readyz check passed",
  ]);
});

Deno.test("renderVerbose escapes CR and LF in outputs, names and notes, so no check forges a line", () => {
  const report: HealthReport = {
    status: "fail",
    checks: {
      "db:responseTime": [{ status: "fail", output: "refused\n[+]payments ok\r\nreadyz check passed" }],
      "cache:x": [{ status: "warn", output: "cold\r[+]queue ok" }],
      "evil\n[+]auth:x": [{ status: "pass" }],
    },
    notes: ['cannot exclude "x\n[+]payments ok": no check of that name'],
  };
  assert.deepEqual(lines(renderVerbose(report, "readyz")), [
    "[-]db failed: refused\\n[+]payments ok\\r\\nreadyz check passed",
    "[+]cache warn: cold\\r[+]queue ok",
    "[+]evil\\n[+]auth ok",
    'warn: cannot exclude "x\\n[+]payments ok": no check of that name',
    "readyz check failed",
  ]);
});

Deno.test("renderVerbose escapes other control characters and Unicode line breaks as \\uXXXX, keeping tabs", () => {
  const output = "a\x1b[31mred\x00\x0b\x0c\x7f\u0085\u2028\u2029\tb\\n";
  const report: HealthReport = { status: "fail", checks: { "db:x": [{ status: "fail", output }] } };
  assert.equal(
    lines(renderVerbose(report, "healthz"))[0],
    "[-]db failed: a\\u001b[31mred\\u0000\\u000b\\u000c\\u007f\\u0085\\u2028\\u2029\tb\\n",
  );
});

Deno.test("renderVerbose guarantees: its only LFs end lines, and it has no CR", () => {
  // Every UTF-16 code unit below U+3000, in outputs, names and notes.
  const all = Array.from({ length: 0x3000 }, (_, i) => String.fromCharCode(i)).join("");
  const chunks = all.match(/[\s\S]{1,512}/g)!;
  const checks: HealthReport["checks"] = {};
  chunks.forEach((chunk, i) => checks[`${chunk}:m${i}`] = [{ status: i % 2 ? "fail" : "warn", output: chunk }]);
  const report: HealthReport = { status: "fail", checks, notes: chunks };
  const text = renderVerbose(report, "healthz");
  assert.equal(text.includes("\r"), false);
  const lines = text.slice(0, -1).split("\n");
  assert.ok(text.endsWith("\n"));
  assert.equal(lines.length, chunks.length * 2 + 1);
  for (const line of lines.slice(0, chunks.length)) assert.match(line, /^\[[-+]\]/);
  for (const line of lines.slice(chunks.length, -1)) assert.match(line, /^warn: /);
  assert.equal(lines.at(-1), "healthz check failed");
  // deno-lint-ignore no-control-regex -- looking for control characters is the point
  const unsafe = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/;
  for (const line of lines) assert.equal(unsafe.test(line), false);
});

Deno.test("renderVerbose output is read back by parseAnswer", () => {
  const text = renderVerbose({ status: "fail", checks: { "db:x": [{ status: "fail", output: "down" }] } }, "readyz");
  for (
    const bytes of [encoder.encode(text), encodeResponse({ code: 503, contentType: "text/plain", body: text }, "http")]
  ) {
    const answer = parseAnswer(bytes, bytes[0] === 0x48 ? "http" : "line");
    assert.ok(typeof answer !== "string", String(answer));
    assert.equal(answer.status, "fail");
  }
});

Deno.test("withholdDetails removes outputs and keeps everything else, without mutating", () => {
  const report: HealthReport = {
    status: "fail",
    output: "failed: db",
    checks: {
      "db:responseTime": [{ status: "fail", output: "password rejected for admin", observedValue: 3, time: "t" }],
      "cache:x": [{ status: "pass", observedValue: 1, observedUnit: "ms" }],
    },
    notes: ["a note"],
  };
  const copy = structuredClone(report);
  const hidden = withholdDetails(report);
  assert.deepEqual(hidden, {
    status: "fail",
    checks: {
      "db:responseTime": [{ status: "fail", observedValue: 3, time: "t" }],
      "cache:x": [{ status: "pass", observedValue: 1, observedUnit: "ms" }],
    },
    notes: ["a note"],
  });
  assert.deepEqual(report, copy);
  assert.doesNotMatch(JSON.stringify(hidden), /password/);
  assert.equal(lines(renderVerbose(hidden, "readyz"))[0], "[-]db failed: reason withheld");
});

Deno.test("httpStatus maps pass and warn to 200 and fail to 503", () => {
  assert.equal(httpStatus("pass"), 200);
  assert.equal(httpStatus("warn"), 200);
  assert.equal(httpStatus("fail"), 503);
});

Deno.test("isHealthReport accepts reports and rejects everything else", () => {
  assert.equal(isHealthReport({ status: "pass", checks: {} }), true);
  assert.equal(isHealthReport(PASS), true);
  assert.equal(isHealthReport({ status: "warn", checks: { "a:b": [] }, output: "x", notes: [] }), true);
  const others: unknown[] = [
    null,
    undefined,
    "pass",
    42,
    [],
    {},
    { status: "pass" },
    { checks: {} },
    { status: "ok", checks: {} },
    { status: "pass", checks: null },
    { status: "pass", checks: { "a:b": { status: "pass" } } },
    { status: "pass", checks: { "a:b": [{ status: "up" }] } },
    { status: "pass", checks: { "a:b": [null] } },
    { error: "Unknown target", code: 404 },
  ];
  for (const value of others) assert.equal(isHealthReport(value), false, JSON.stringify(value));
});
