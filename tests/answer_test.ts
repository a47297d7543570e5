// Unit tests of answer.ts: how a client reads an answer; bytes in, values out.
import assert from "node:assert/strict";
import { parseAnswer } from "../answer.ts";
import { encodeResponse, errorResponse } from "../protocol.ts";
import type { HealthReport } from "../report.ts";

const encoder = new TextEncoder();

const PASS: HealthReport = {
  status: "pass",
  checks: { "db:responseTime": [{ status: "pass", observedValue: 1.5, observedUnit: "ms" }] },
};

Deno.test("parseAnswer reads a line-mode report and derives the HTTP code", () => {
  const pass = parseAnswer(encoder.encode(JSON.stringify(PASS) + "\n"), "line");
  assert.ok(typeof pass !== "string", String(pass));
  assert.equal(pass.status, "pass");
  assert.equal(pass.code, 200);
  assert.deepEqual(pass.report, PASS);
  assert.equal(pass.body, JSON.stringify(PASS));
  const warn = parseAnswer(encoder.encode('{"status":"warn","checks":{}}\n'), "line");
  assert.ok(typeof warn !== "string");
  assert.equal(warn.code, 200);
  const fail = parseAnswer(encoder.encode('{"status":"fail","checks":{}}\n'), "line");
  assert.ok(typeof fail !== "string");
  assert.equal(fail.status, "fail");
  assert.equal(fail.code, 503);
});

Deno.test("parseAnswer reads an HTTP answer, honouring Content-Length", () => {
  const body = '{"status":"fail","checks":{"db:x":[{"status":"fail","output":"down"}]}}';
  const bytes = encodeResponse({ code: 503, contentType: "application/health+json", body }, "http");
  const answer = parseAnswer(bytes, "http");
  assert.ok(typeof answer !== "string", String(answer));
  assert.equal(answer.code, 503);
  assert.equal(answer.status, "fail");
  assert.equal(answer.body, body);
  assert.equal(answer.report?.checks["db:x"][0].output, "down");
});

Deno.test("parseAnswer reads error objects in both framings", () => {
  const error = errorResponse({ code: 404, message: "Unknown target", framing: "line" });
  const line = parseAnswer(encodeResponse(error, "line"), "line");
  assert.ok(typeof line !== "string", String(line));
  assert.equal(line.code, 404);
  assert.equal(line.error, "Unknown target");
  assert.equal(line.status, undefined);
  assert.equal(line.report, undefined);
  const viaHttp = parseAnswer(
    encodeResponse(errorResponse({ code: 405, message: "no", framing: "http" }), "http"),
    "http",
  );
  assert.ok(typeof viaHttp !== "string", String(viaHttp));
  assert.equal(viaHttp.code, 405);
  assert.equal(viaHttp.error, "no");
  assert.equal(viaHttp.status, undefined);
});

Deno.test("parseAnswer reads ?verbose text by its last line", () => {
  const passed = parseAnswer(encoder.encode("[+]db ok\n[+]lifecycle ok\nreadyz check passed\n"), "line");
  assert.ok(typeof passed !== "string", String(passed));
  assert.equal(passed.status, "pass");
  assert.equal(passed.code, 200);
  assert.equal(passed.report, undefined);
  const failed = parseAnswer(encoder.encode("[-]db failed: down\nhealthz check failed\n"), "line");
  assert.ok(typeof failed !== "string", String(failed));
  assert.equal(failed.status, "fail");
  assert.equal(failed.code, 503);
  const text = "[-]db failed: down\nlivez check failed";
  const viaHttp = parseAnswer(encodeResponse({ code: 503, contentType: "text/plain", body: text }, "http"), "http");
  assert.ok(typeof viaHttp !== "string", String(viaHttp));
  assert.equal(viaHttp.status, "fail");
  assert.equal(viaHttp.body, text);
});

Deno.test("parseAnswer returns a reason string for garbage", () => {
  const cases: [string, "line" | "http"][] = [
    ["hello world\n", "line"],
    ['{"ticks":49,"epoch_last_tick":1522162267}\n', "line"],
    ["{not json\n", "line"],
    ['{"status":"ok","checks":{}}\n', "line"],
    ['{"status":"pass","checks":{"db":{"status":"pass"}}}\n', "line"],
    ["[]\n", "line"],
    ["\n", "line"],
    ["metrics check passed\n", "line"],
    ["hello\r\n\r\n", "http"],
    ["SSH-2.0-OpenSSH_9.6\r\n", "http"],
    ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "http"],
  ];
  for (const [text, framing] of cases) {
    const answer = parseAnswer(encoder.encode(text), framing);
    assert.equal(typeof answer, "string", `${JSON.stringify(text)} gave ${JSON.stringify(answer)}`);
    assert.ok((answer as string).length > 0);
  }
  assert.equal(typeof parseAnswer(new Uint8Array([0x7b, 0xff, 0x0a]), "line"), "string");
});

Deno.test("parseAnswer refuses a line-mode answer cut before its final newline", () => {
  const answer = parseAnswer(encoder.encode(JSON.stringify(PASS)), "line");
  assert.equal(typeof answer, "string");
  assert.match(answer as string, /newline/);
  const cut = parseAnswer(encoder.encode(JSON.stringify(PASS).slice(0, 20)), "line");
  assert.equal(typeof cut, "string");
});

Deno.test("parseAnswer refuses an HTTP answer shorter than its Content-Length", () => {
  const body = JSON.stringify(PASS);
  const text = `HTTP/1.1 200 OK\r\nContent-Type: application/health+json\r\nContent-Length: ${
    body.length + 10
  }\r\n\r\n${body}`;
  assert.equal(typeof parseAnswer(encoder.encode(text), "http"), "string");
});

Deno.test("parseAnswer reads an HTTP answer received in line mode (a server over its connection limit)", () => {
  const bytes = encodeResponse(errorResponse({ code: 503, message: "Too many connections", framing: "http" }), "http");
  const answer = parseAnswer(bytes, "line");
  assert.ok(typeof answer !== "string", String(answer));
  assert.equal(answer.code, 503);
  assert.equal(answer.error, "Too many connections");
  const report = encodeResponse(
    { code: 200, contentType: "application/health+json", body: JSON.stringify(PASS) },
    "http",
  );
  const healthy = parseAnswer(report, "line");
  assert.ok(typeof healthy !== "string", String(healthy));
  assert.equal(healthy.status, "pass");
});

Deno.test("a ?verbose text body is the same in both framings: line mode's newline is the text's own", () => {
  const text = "[+]db ok\nreadyz check passed\n";
  const line = parseAnswer(encoder.encode(text), "line");
  const http = parseAnswer(
    encoder.encode(`HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\n\r\n${text}`),
    "http",
  );
  assert.ok(typeof line !== "string" && typeof http !== "string");
  assert.equal(line.body, text);
  assert.equal(http.body, text);
  assert.equal(line.status, "pass");
});
