// Unit tests of protocol.ts: requests parsed, targets routed, responses encoded; bytes in, values out, no sockets.
import assert from "node:assert/strict";
import {
  encodeResponse,
  errorResponse,
  isUnterminatedLine,
  lineOf,
  parseRequest,
  parseTarget,
  sniffFraming,
} from "../protocol.ts";
import type { ParseOptions, ParseResult, ProtocolError, Route, WireRequest, WireResponse } from "../protocol.ts";
import { isHealthReport, renderVerbose } from "../report.ts";
import type { HealthReport } from "../report.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function parse(text: string | Uint8Array, options?: ParseOptions): ParseResult {
  return parseRequest(typeof text === "string" ? encoder.encode(text) : text, options);
}

/** The request, asserting that one was parsed. */
function request(text: string | Uint8Array, options?: ParseOptions): WireRequest & { size: number } {
  const result = parse(text, options);
  assert.equal(result.kind, "request", `expected a request, got ${JSON.stringify(result)}`);
  if (result.kind !== "request") throw new Error("unreachable");
  return { ...result.request, size: result.size };
}

/** The protocol error, asserting that one was returned. */
function refused(text: string | Uint8Array, options?: ParseOptions): ProtocolError {
  const result = parse(text, options);
  assert.equal(result.kind, "error", `expected an error, got ${JSON.stringify(result)}`);
  if (result.kind !== "error") throw new Error("unreachable");
  return result.error;
}

/** The route, asserting that the target parsed. */
function route(target: string): Route {
  const result = parseTarget(target);
  assert.ok(!("code" in result), `expected a route, got ${JSON.stringify(result)}`);
  return result as Route;
}

/** The error code of a target that does not parse. */
function targetError(target: string): number {
  const result = parseTarget(target);
  assert.ok("code" in result, `expected an error, got ${JSON.stringify(result)}`);
  return (result as ProtocolError).code;
}

function http(head: string): string {
  return head.replaceAll("\n", "\r\n") + "\r\n";
}

const PASS: HealthReport = {
  status: "pass",
  checks: { "db:responseTime": [{ status: "pass", observedValue: 1.5, observedUnit: "ms" }] },
};

// ---------------------------------------------------------------- line mode

Deno.test("parseRequest reads a line-mode request ended by \\n", () => {
  const req = request("GET /healthz\n");
  assert.equal(req.method, "GET");
  assert.equal(req.target, "/healthz");
  assert.equal(req.framing, "line");
  assert.equal(req.keepAlive, false);
  assert.equal(req.line, "GET /healthz");
  assert.equal(req.size, 13);
});

Deno.test("parseRequest reads a line-mode request ended by \\r\\n without the \\r in the line", () => {
  const req = request("GET /readyz\r\n");
  assert.equal(req.framing, "line");
  assert.equal(req.target, "/readyz");
  assert.equal(req.line, "GET /readyz");
  assert.equal(req.size, 13);
});

Deno.test("parseRequest waits for more bytes on an unterminated line unless final", () => {
  assert.deepEqual(parse("GET /healthz"), { kind: "incomplete" });
  assert.deepEqual(parse("GET /hea"), { kind: "incomplete" });
  const req = request("GET /healthz", { final: true });
  assert.equal(req.framing, "line");
  assert.equal(req.target, "/healthz");
  assert.equal(req.line, "GET /healthz");
  assert.equal(req.size, 12);
});

Deno.test("parseRequest reports empty input as incomplete, then empty once final", () => {
  assert.deepEqual(parse(""), { kind: "incomplete" });
  assert.deepEqual(parse("", { final: true }), { kind: "empty" });
  assert.deepEqual(parse("\r\n\n", { final: true }), { kind: "empty" });
});

Deno.test("parseRequest skips empty lines before the request line", () => {
  const req = request("\r\n\nGET /livez\n");
  assert.equal(req.target, "/livez");
  assert.equal(req.size, 14);
});

Deno.test("parseRequest refuses a line with too many or too few words with 400 in line mode", () => {
  for (const text of ["GET\n", "GET /healthz extra\n", "GET  /healthz\n", "GET /healthz \n"]) {
    const error = refused(text);
    assert.equal(error.code, 400, text);
    assert.equal(error.framing, "line", text);
  }
});

Deno.test("parseRequest answers a malformed request line holding an HTTP version with 400 in HTTP", () => {
  for (
    const text of [
      "GET /healthz HTTP/1.1 \r\n\r\n",
      "GET  /healthz HTTP/1.1\r\n\r\n",
      "GET /healthz  HTTP/1.1\r\n\r\n",
      " GET /healthz HTTP/1.1\r\n\r\n",
      "GET /healthz HTTP/1.1\t\r\n\r\n",
      "GET /healthz HTTP/1.1 extra\r\n\r\n",
      "GET /healthz HTTP/1.1 \n",
    ]
  ) {
    const error = refused(text);
    assert.equal(error.code, 400, JSON.stringify(text));
    assert.equal(error.framing, "http", JSON.stringify(text));
    assert.match(error.message, /Malformed request line/);
  }
  // Without its newline yet, such a line is refused once it is final, in HTTP too.
  assert.equal(refused("GET /healthz HTTP/1.1 ", { final: true }).framing, "http");
  assert.equal(sniffFraming(encoder.encode("GET /healthz HTTP/1.1 \r\n")), "http");
  assert.equal(sniffFraming(encoder.encode("GET  /" + "a".repeat(9000) + " HTTP/1.1")), "http");
});

Deno.test("parseRequest refuses a target that is not a path with 400", () => {
  assert.equal(refused("GET healthz\n").code, 400);
  assert.equal(refused("GET healthz HTTP/1.1\r\n\r\n").code, 400);
});

Deno.test("parseRequest refuses other methods with 405 in line mode, lower-case get included", () => {
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS", "get", "head"]) {
    const error = refused(`${method} /healthz\n`);
    assert.equal(error.code, 405, method);
    assert.equal(error.framing, "line", method);
  }
  assert.equal(request("HEAD /healthz\n").method, "HEAD");
});

Deno.test("parseRequest refuses a request line that is not UTF-8 with 400", () => {
  const bytes = new Uint8Array([...encoder.encode("GET /healthz/"), 0xff, 0xfe, 0x0a]);
  assert.equal(refused(bytes).code, 400);
  const httpBytes = new Uint8Array([...encoder.encode("GET /h"), 0xc3, ...encoder.encode(" HTTP/1.1\r\n\r\n")]);
  assert.equal(refused(httpBytes).code, 400);
});

Deno.test("parseRequest refuses a request line over maxHeaderBytes with 414, terminated or not", () => {
  const long = "GET /healthz/" + "a".repeat(200);
  assert.equal(refused(long + "\n", { maxHeaderBytes: 100 }).code, 414);
  assert.equal(refused(long, { maxHeaderBytes: 100 }).code, 414);
  const error = refused(long + " HTTP/1.1\r\n\r\n", { maxHeaderBytes: 100 });
  assert.equal(error.code, 414);
  assert.equal(error.framing, "http");
  assert.equal(refused("GET /" + "a".repeat(9000) + "\n").code, 414, "default limit is 8192");
});

Deno.test("parseRequest answers 414 to a request line that leaves no room for the head's end, whatever follows", () => {
  // The head is at most 8192 bytes: a request line, CRLF, and the empty line's CRLF.
  const line = (n: number) => "GET /" + "a".repeat(n - "GET / HTTP/1.1".length) + " HTTP/1.1";
  assert.equal(line(8188).length, 8188);
  assert.equal(request(line(8188) + "\r\n\r\n").target.length, 8188 - "GET  HTTP/1.1".length);
  for (const n of [8189, 8190, 8191, 8192, 8193]) {
    for (const rest of ["\r\n\r\n", "\r\nHost: x\r\n\r\n", "\r\n"]) {
      const error = refused(line(n) + rest);
      assert.equal(error.code, 414, `${n} ${JSON.stringify(rest)}`);
      assert.equal(error.framing, "http");
    }
  }
  // Bare LF endings: the line, LF and the empty line's LF.
  assert.equal(request(line(8190) + "\n\n").framing, "http");
  assert.equal(refused(line(8191) + "\n\n").code, 414);
  // Headers that push a fitting line over the limit are the headers' fault: 431.
  assert.equal(refused(line(8180) + "\r\nHost: x\r\n\r\n").code, 431);
  // Line mode: the line with its newline at most 8192 bytes.
  const bare = (n: number) => "GET /" + "a".repeat(n - 5);
  assert.equal(request(bare(8191) + "\n").framing, "line");
  assert.equal(refused(bare(8192) + "\n").code, 414);
  assert.equal(refused(bare(8191) + "\r\n").code, 414);
});

// --------------------------------------------------------------------- HTTP

Deno.test("parseRequest reads an HTTP/1.1 head and keeps the connection alive by default", () => {
  const text = http("GET /healthz HTTP/1.1\nHost: localhost\nUser-Agent: curl/8\nAccept: */*\n");
  const req = request(text);
  assert.equal(req.framing, "http");
  assert.equal(req.method, "GET");
  assert.equal(req.target, "/healthz");
  assert.equal(req.line, "GET /healthz HTTP/1.1");
  assert.equal(req.keepAlive, true);
  assert.equal(req.size, encoder.encode(text).length);
});

Deno.test("parseRequest accepts bare \\n line endings in an HTTP head", () => {
  const req = request("GET /livez HTTP/1.1\nHost: x\n\n");
  assert.equal(req.framing, "http");
  assert.equal(req.target, "/livez");
});

Deno.test("parseRequest closes HTTP/1.1 on Connection: close, case-insensitively and among tokens", () => {
  assert.equal(request(http("GET /healthz HTTP/1.1\nConnection: close\n")).keepAlive, false);
  assert.equal(request(http("GET /healthz HTTP/1.1\nconnection: Close\n")).keepAlive, false);
  assert.equal(request(http("GET /healthz HTTP/1.1\nConnection: TE, close\n")).keepAlive, false);
  assert.equal(request(http("GET /healthz HTTP/1.1\nConnection: keep-alive\n")).keepAlive, true);
});

Deno.test("parseRequest closes HTTP/1.0 unless Connection: keep-alive", () => {
  assert.equal(request(http("GET /healthz HTTP/1.0\n")).keepAlive, false);
  assert.equal(request(http("GET /healthz HTTP/1.0\nConnection: Keep-Alive\n")).keepAlive, true);
  assert.equal(request(http("GET /healthz HTTP/1.0\nConnection: close\n")).keepAlive, false);
});

Deno.test("parseRequest waits for the end of the HTTP head, and refuses a head cut short with 400", () => {
  assert.deepEqual(parse("GET /healthz HTTP/1.1\r\n"), { kind: "incomplete" });
  assert.deepEqual(parse("GET /healthz HTTP/1.1\r\nHost: x\r\n"), { kind: "incomplete" });
  assert.deepEqual(parse("GET /healthz HTTP/1.1"), { kind: "incomplete" });
  const error = refused("GET /healthz HTTP/1.1\r\nHost: x\r\n", { final: true });
  assert.equal(error.code, 400);
  assert.equal(error.framing, "http");
});

Deno.test("parseRequest refuses other methods with 405 in HTTP, lower-case get included", () => {
  for (const method of ["POST", "PUT", "OPTIONS", "get"]) {
    const error = refused(http(`${method} /healthz HTTP/1.1\nHost: x\n`));
    assert.equal(error.code, 405, method);
    assert.equal(error.framing, "http", method);
  }
  assert.equal(request(http("HEAD /healthz HTTP/1.1\n")).method, "HEAD");
});

Deno.test("parseRequest answers 505 to HTTP/2.0 and other versions", () => {
  for (const version of ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2"]) {
    const error = refused(http(`GET /healthz ${version}\nHost: x\n`));
    assert.equal(error.code, 505, version);
    assert.equal(error.framing, "http", version);
  }
});

Deno.test("parseRequest refuses request bodies with 413: Content-Length > 0 or Transfer-Encoding", () => {
  assert.equal(refused(http("GET /healthz HTTP/1.1\nContent-Length: 5\n") + "hello").code, 413);
  assert.equal(refused(http("POST /healthz HTTP/1.1\nContent-Length: 3\n") + "abc").code, 413);
  const chunked = refused(http("GET /healthz HTTP/1.1\nTransfer-Encoding: chunked\n") + "0\r\n\r\n");
  assert.equal(chunked.code, 413);
  assert.equal(chunked.framing, "http");
  assert.equal(refused(http("GET /healthz HTTP/1.1\ntransfer-encoding: identity\n")).code, 413);
});

Deno.test("parseRequest accepts Content-Length: 0, repeated with the same value", () => {
  assert.equal(request(http("GET /healthz HTTP/1.1\nContent-Length: 0\n")).target, "/healthz");
  assert.equal(request(http("GET /healthz HTTP/1.1\nContent-Length: 0\nContent-Length: 0\n")).target, "/healthz");
});

Deno.test("parseRequest refuses conflicting or malformed Content-Length with 400", () => {
  assert.equal(refused(http("GET /healthz HTTP/1.1\nContent-Length: 0\nContent-Length: 5\n")).code, 400);
  assert.equal(refused(http("GET /healthz HTTP/1.1\nContent-Length: 0, 5\n")).code, 400);
  assert.equal(refused(http("GET /healthz HTTP/1.1\nContent-Length: -1\n")).code, 400);
  assert.equal(refused(http("GET /healthz HTTP/1.1\nContent-Length: abc\n")).code, 400);
});

Deno.test("parseRequest refuses obsolete line folding with 400", () => {
  const error = refused(http("GET /healthz HTTP/1.1\nX-Long: one\n two\n"));
  assert.equal(error.code, 400);
  assert.equal(error.framing, "http");
  assert.equal(refused(http("GET /healthz HTTP/1.1\nX-Long: one\n\ttwo\n")).code, 400);
});

Deno.test("parseRequest refuses malformed header fields with 400", () => {
  for (const field of ["NoColon", ": empty name", "Bad Name: x", "Bad\x01: x", "Host : x"]) {
    const error = refused(http(`GET /healthz HTTP/1.1\n${field}\n`));
    assert.equal(error.code, 400, JSON.stringify(field));
    assert.equal(error.framing, "http", JSON.stringify(field));
  }
});

Deno.test("parseRequest refuses a header field that is not UTF-8 with 400", () => {
  const bytes = new Uint8Array([
    ...encoder.encode("GET /healthz HTTP/1.1\r\nX-Name: "),
    0xff,
    ...encoder.encode("\r\n\r\n"),
  ]);
  const error = refused(bytes);
  assert.equal(error.code, 400);
  assert.equal(error.framing, "http");
});

Deno.test("parseRequest refuses a head over maxHeaderBytes with 431, complete or not", () => {
  const big = `X-Big: ${"b".repeat(200)}\n`;
  assert.equal(refused(http("GET /healthz HTTP/1.1\n" + big), { maxHeaderBytes: 100 }).code, 431);
  const partial = "GET /healthz HTTP/1.1\r\nX-Big: " + "b".repeat(200);
  const error = refused(partial, { maxHeaderBytes: 100 });
  assert.equal(error.code, 431);
  assert.equal(error.framing, "http");
  const many = "GET /healthz HTTP/1.1\r\n" + "X-A: 1234567890\r\n".repeat(600) + "\r\n";
  assert.equal(refused(many).code, 431, "default limit is 8192");
  assert.equal(request(http("GET /healthz HTTP/1.1\nHost: x\n"), { maxHeaderBytes: 100 }).target, "/healthz");
});

Deno.test("parseRequest reports the size consumed so two pipelined HTTP requests parse from one buffer", () => {
  const first = http("GET /livez HTTP/1.1\nHost: x\n");
  const second = http("HEAD /readyz?verbose HTTP/1.1\nHost: x\nConnection: close\n");
  const bytes = encoder.encode(first + second);
  const one = parseRequest(bytes);
  assert.equal(one.kind, "request");
  if (one.kind !== "request") return;
  assert.equal(one.request.target, "/livez");
  assert.equal(one.request.keepAlive, true);
  assert.equal(one.size, encoder.encode(first).length);
  const two = parseRequest(bytes.subarray(one.size));
  assert.equal(two.kind, "request");
  if (two.kind !== "request") return;
  assert.equal(two.request.method, "HEAD");
  assert.equal(two.request.target, "/readyz?verbose");
  assert.equal(two.request.keepAlive, false);
  assert.equal(two.size, bytes.length - one.size);
  assert.deepEqual(parseRequest(bytes.subarray(one.size + two.size)), { kind: "incomplete" });
});

Deno.test("parseRequest consumes only the first line of line-mode input followed by more bytes", () => {
  const req = request("GET /livez\nGET /readyz\n");
  assert.equal(req.target, "/livez");
  assert.equal(req.size, 11);
});

Deno.test("sniffFraming answers HTTP for a first line ending in a version, line mode otherwise", () => {
  assert.equal(sniffFraming(encoder.encode("GET / HTTP/1.1\r\nHost: x")), "http");
  assert.equal(sniffFraming(encoder.encode("GET / HTTP/1.0")), "http");
  assert.equal(sniffFraming(encoder.encode("GET /healthz\n")), "line");
  assert.equal(sniffFraming(encoder.encode("")), "line");
});

Deno.test("isUnterminatedLine recognises a bare request line without a newline", () => {
  assert.equal(isUnterminatedLine(encoder.encode("GET /healthz")), true);
  assert.equal(isUnterminatedLine(encoder.encode("GET /healthz\n")), false);
  assert.equal(isUnterminatedLine(encoder.encode("GET /healthz HTTP/1.1")), false);
  assert.equal(isUnterminatedLine(encoder.encode("GET ")), false);
  assert.equal(isUnterminatedLine(new Uint8Array(0)), false);
});

// ------------------------------------------------------------------ targets

Deno.test("parseTarget routes every endpoint with defaults", () => {
  for (const endpoint of ["healthz", "livez", "readyz", "startupz"] as const) {
    assert.deepEqual(route(`/${endpoint}`), {
      endpoint,
      check: undefined,
      verbose: false,
      exclude: [],
      tags: [],
      watch: false,
    });
  }
});

Deno.test("parseTarget routes /ENDPOINT/NAME to one check", () => {
  assert.equal(route("/healthz/db").check, "db");
  assert.equal(route("/readyz/db").endpoint, "readyz");
  assert.equal(route("/readyz/db").check, "db");
  assert.equal(route("/livez/eventloop").check, "eventloop");
  assert.equal(route("/startupz/migrations").check, "migrations");
});

Deno.test("parseTarget ignores a trailing slash", () => {
  assert.equal(route("/readyz/").endpoint, "readyz");
  assert.equal(route("/readyz/").check, undefined);
  assert.equal(route("/readyz/db/").check, "db");
});

Deno.test("parseTarget accepts the absolute form", () => {
  const r = route("http://localhost/readyz/db?verbose");
  assert.equal(r.endpoint, "readyz");
  assert.equal(r.check, "db");
  assert.equal(r.verbose, true);
  assert.equal(route("HTTP://localhost:8080/livez").endpoint, "livez");
});

Deno.test("parseTarget percent-decodes check names", () => {
  assert.equal(route("/healthz/my%2Ddb").check, "my-db");
  assert.equal(route("/healthz/cache%2Eredis").check, "cache.redis");
  assert.equal(route("/%72eadyz").endpoint, "readyz");
});

Deno.test("parseTarget refuses bad percent-encoding with 400", () => {
  assert.equal(targetError("/healthz/%zz"), 400);
  assert.equal(targetError("/healthz/%"), 400);
  assert.equal(targetError("/healthz/%E2%82"), 400);
});

Deno.test("parseTarget answers 404 to unknown targets and too many segments", () => {
  for (const target of ["/", "/metrics", "/health", "/healthzz", "/db/healthz", "/healthz/a/b", "/readyz/db/x/y"]) {
    assert.equal(targetError(target), 404, target);
  }
});

Deno.test("parseTarget reads ?verbose, with a value or without", () => {
  assert.equal(route("/readyz?verbose").verbose, true);
  assert.equal(route("/readyz?verbose=1").verbose, true);
  assert.equal(route("/readyz?verbose=true").verbose, true);
  assert.equal(route("/readyz?verbose=0").verbose, false);
  assert.equal(route("/readyz?verbose=false").verbose, false);
  assert.equal(route("/readyz?other").verbose, false);
});

Deno.test("parseTarget collects repeated ?exclude, decoded, skipping empty ones", () => {
  assert.deepEqual(route("/readyz?exclude=db").exclude, ["db"]);
  assert.deepEqual(route("/readyz?exclude=db&verbose&exclude=cache").exclude, ["db", "cache"]);
  assert.deepEqual(route("/readyz?exclude=my%2Ddb").exclude, ["my-db"]);
  assert.deepEqual(route("/readyz?exclude=").exclude, []);
  const r = route("/healthz?exclude=db&verbose");
  assert.equal(r.verbose, true);
});

Deno.test("parseTarget collects repeated ?tag, decoded, skipping empty ones, beside ?exclude and ?watch", () => {
  assert.deepEqual(route("/readyz?tag=db").tags, ["db"]);
  assert.deepEqual(route("/healthz?tag=db&verbose&tag=cache%2Dhot&tag=").tags, ["db", "cache-hot"]);
  const r = route("/livez?watch&tag=core&exclude=db");
  assert.deepEqual([r.tags, r.exclude, r.watch], [["core"], ["db"], true]);
  assert.deepEqual(route("/readyz").tags, []);
});

Deno.test("parseTarget reads ?watch and ?watch&timeout=N as milliseconds", () => {
  const plain = route("/readyz?watch");
  assert.equal(plain.watch, true);
  assert.equal(plain.watchTimeout, undefined);
  const timed = route("/readyz?watch&timeout=30");
  assert.equal(timed.watch, true);
  assert.equal(timed.watchTimeout, 30_000);
  assert.equal(route("/readyz?watch&timeout=0.5").watchTimeout, 500);
  assert.equal(route("/readyz").watch, false);
});

Deno.test("parseTarget refuses a bad watch timeout with 400", () => {
  for (const timeout of ["", "abc", "0", "-1", "Infinity", "NaN", "1e400"]) {
    assert.equal(targetError(`/readyz?watch&timeout=${timeout}`), 400, timeout);
  }
});

// ------------------------------------------------------------------ encoding

Deno.test("encodeResponse writes the body and a newline in line mode", () => {
  const response: WireResponse = { code: 503, contentType: "application/health+json", body: '{"status":"fail"}' };
  assert.equal(decoder.decode(encodeResponse(response, "line")), '{"status":"fail"}\n');
  assert.equal(decoder.decode(encodeResponse(response, "line", { head: true })), '{"status":"fail"}\n');
});

Deno.test("encodeResponse writes an HTTP head with type, length, no-store and Connection", () => {
  const body = JSON.stringify(PASS);
  const text = decoder.decode(
    encodeResponse({ code: 200, contentType: "application/health+json", body }, "http", {
      date: "Mon, 24 Nov 2025 21:00:00 GMT",
    }),
  );
  const [head, rest] = text.split("\r\n\r\n");
  const lines = head.split("\r\n");
  assert.equal(lines[0], "HTTP/1.1 200 OK");
  assert.ok(lines.includes("Content-Type: application/health+json"), head);
  assert.ok(lines.includes(`Content-Length: ${body.length}`), head);
  assert.ok(lines.includes("Cache-Control: no-store"), head);
  assert.ok(lines.includes("Connection: close"), head);
  assert.ok(lines.includes("Date: Mon, 24 Nov 2025 21:00:00 GMT"), head);
  assert.equal(rest, body);
});

Deno.test("encodeResponse says keep-alive when asked and names the status", () => {
  const text = decoder.decode(
    encodeResponse({ code: 503, contentType: "text/plain", body: "x" }, "http", { keepAlive: true }),
  );
  assert.match(text, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.match(text, /\r\nConnection: keep-alive\r\n/);
  assert.doesNotMatch(text, /\r\nDate:/);
});

Deno.test("encodeResponse counts Content-Length in bytes for a non-ASCII body", () => {
  const body = "[-]café failed: ✗ naïve — 💥";
  const bytes = encoder.encode(body).length;
  assert.notEqual(bytes, body.length);
  const text = decoder.decode(encodeResponse({ code: 503, contentType: "text/plain; charset=utf-8", body }, "http"));
  assert.match(text, new RegExp(`\\r\\nContent-Length: ${bytes}\\r\\n`));
  assert.ok(text.endsWith("\r\n\r\n" + body));
});

Deno.test("encodeResponse answers HEAD with the head only, announcing the body's length", () => {
  const body = JSON.stringify(PASS);
  const text = decoder.decode(encodeResponse({ code: 200, contentType: "application/health+json", body }, "http", {
    head: true,
  }));
  assert.ok(text.endsWith("\r\n\r\n"), text);
  assert.equal(text.indexOf("\r\n\r\n"), text.length - 4);
  assert.match(text, new RegExp(`\\r\\nContent-Length: ${body.length}\\r\\n`));
});

Deno.test("encodeResponse writes the same body bytes in both framings", () => {
  const body = renderVerbose(
    { status: "fail", checks: { "dé:x": [{ status: "fail", output: "ünïcode ✗" }] } },
    "readyz",
  );
  const response: WireResponse = { code: 503, contentType: "text/plain; charset=utf-8", body };
  // The text ends with its newline, which is all line mode adds: the same bytes in both.
  assert.ok(body.endsWith("\n"));
  const line = encodeResponse(response, "line");
  const httpBytes = encodeResponse(response, "http");
  assert.deepEqual(line, encoder.encode(body));
  assert.deepEqual(httpBytes.subarray(httpBytes.length - line.length), line);
});

Deno.test("line mode ends a body with one newline: added to JSON, not doubled after ?verbose text", () => {
  const json = JSON.stringify(PASS);
  assert.equal(
    decoder.decode(encodeResponse({ code: 200, contentType: "application/health+json", body: json }, "line")),
    `${json}\n`,
  );
  const text = "[+]db ok\nreadyz check passed\n";
  assert.equal(decoder.decode(encodeResponse({ code: 200, contentType: "text/plain", body: text }, "line")), text);
  assert.equal(lineOf(json), `${json}\n`);
  assert.equal(lineOf(text), text);
});

Deno.test("encodeResponse adds extra headers such as Allow", () => {
  const response = errorResponse({ code: 405, message: "Method not allowed", framing: "http" });
  const text = decoder.decode(encodeResponse(response, "http"));
  assert.match(text, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
  assert.match(text, /\r\nAllow: GET, HEAD\r\n/);
});

Deno.test("errorResponse is a JSON object with error and code, never a status field", () => {
  for (const code of [400, 404, 405, 408, 413, 414, 431, 503, 505]) {
    const response = errorResponse({ code, message: `problem ${code}`, framing: "line" });
    assert.equal(response.code, code);
    assert.equal(response.contentType, "application/json");
    const body = JSON.parse(response.body);
    assert.deepEqual(body, { error: `problem ${code}`, code });
    assert.equal("status" in body, false);
    assert.equal(isHealthReport(body), false);
  }
});

Deno.test("errorResponse adds Allow: GET, HEAD to 405 only", () => {
  assert.deepEqual(errorResponse({ code: 405, message: "no", framing: "line" }).headers, { Allow: "GET, HEAD" });
  assert.equal(errorResponse({ code: 404, message: "no", framing: "http" }).headers?.Allow, undefined);
});

Deno.test("errorResponse of a parsed 405 carries the Allow header in HTTP", () => {
  const error = refused(http("DELETE /healthz HTTP/1.1\nHost: x\n"));
  const text = decoder.decode(encodeResponse(errorResponse(error), error.framing));
  assert.match(text, /^HTTP\/1\.1 405 /);
  assert.match(text, /\r\nAllow: GET, HEAD\r\n/);
  const body = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
  assert.equal(body.code, 405);
  assert.equal(typeof body.error, "string");
});
