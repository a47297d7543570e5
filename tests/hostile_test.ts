// A corpus of hostile input. For each input the answer (or
// close) is the documented one, and the server answers a normal probe right
// after it.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { exchange, hasCommand, parseHttp, run, tempSocket } from "./_util.ts";
import { guarded } from "./_guard.ts";
import {
  assertHttpError,
  assertLineError,
  assertServes,
  assertServesHttp,
  concat,
  decoder,
  encoder,
  httpGet,
  isDocumentedRefusal,
  Random,
  readAnswer,
  waitUntil,
  writeQuietly,
} from "./fixtures/hardening.ts";

function health(): Health {
  return new Health({ ready: true }).add("db", () => "pass").add("cache", () => "pass", { kinds: ["live"] });
}

const bytes = (...parts: (string | number[])[]) =>
  concat(...parts.map((p) => typeof p === "string" ? encoder.encode(p) : new Uint8Array(p)));

interface Case {
  name: string;
  request: string | Uint8Array;
  /** Half-close our side after writing. */
  closeWrite?: boolean;
  expect: (answer: string) => void;
}

function lineError(code: number) {
  return (answer: string) => assertLineError(answer, code);
}

function httpError(code: number) {
  return (answer: string) => {
    assertHttpError(answer, code);
  };
}

function report(status: string, keys?: string[]) {
  return (answer: string) => {
    const body = answer.startsWith("HTTP/") ? parseHttp(answer).body : answer;
    const value = JSON.parse(body);
    assert.equal(value.status, status, answer);
    if (keys) assert.deepEqual(Object.keys(value.checks).sort(), keys.sort());
  };
}

function httpReport(code: number, keys?: string[]) {
  return (answer: string) => {
    const response = parseHttp(answer);
    assert.equal(response.code, code, answer);
    const value = JSON.parse(response.body);
    if (keys) assert.deepEqual(Object.keys(value.checks).sort(), keys.sort());
  };
}

/** Run each case against one server, checking after each that a normal probe is still answered. */
async function runCases(t: Deno.TestContext, cases: Case[]): Promise<void> {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { requestTimeout: 1000 });
  for (const c of cases) {
    await t.step(c.name, async () => {
      const answer = await exchange(sock.path, c.request, { closeWrite: c.closeWrite });
      c.expect(answer);
      await assertServes(sock.path);
    });
  }
  await waitUntil(() => server.connections === 0, "every connection is closed");
}

Deno.test(
  "random bytes get a documented refusal and leave the server answering",
  guarded(async (t) => {
    const random = new Random(0x5eed);
    const cases: Case[] = [];
    for (let i = 0; i < 12; i++) {
      const size = random.pick([1, 7, 64, 500, 4096, 20_000]);
      const noise = random.bytes(size);
      cases.push({
        name: `${size} random bytes (case ${i})`,
        request: i % 2 ? concat(noise, encoder.encode("\n")) : noise,
        closeWrite: true,
        expect: (answer) =>
          assert.ok(isDocumentedRefusal(answer), `not a documented refusal: ${JSON.stringify(answer)}`),
      });
    }
    await runCases(t, cases);
  }),
);

Deno.test(
  "NUL bytes and invalid UTF-8 are refused as malformed",
  guarded((t) =>
    runCases(t, [
      { name: "NUL bytes alone", request: bytes([0, 0, 0, 0], "\n"), expect: lineError(400) },
      { name: "NUL in the target", request: bytes("GET /healthz", [0], "\n"), expect: lineError(404) },
      { name: "NUL in the method", request: bytes("G", [0], "T /healthz\n"), expect: lineError(400) },
      {
        name: "invalid UTF-8 in a line-mode target",
        request: bytes("GET /", [0xff, 0xfe], "\n"),
        expect: lineError(400),
      },
      { name: "an overlong UTF-8 encoding", request: bytes("GET /", [0xc0, 0xaf], "\n"), expect: lineError(400) },
      {
        name: "invalid UTF-8 in an HTTP request line",
        request: bytes("GET /", [0xff], " HTTP/1.1\r\n\r\n"),
        // The line is malformed before its version can be read: either framing's 400 is fine.
        expect: (answer) => answer.startsWith("HTTP/") ? assertHttpError(answer, 400) : assertLineError(answer, 400),
      },
      {
        name: "invalid UTF-8 in an HTTP header",
        request: bytes("GET /healthz HTTP/1.1\r\nX-Bad: ", [0xfe, 0xff], "\r\n\r\n"),
        expect: httpError(400),
      },
      {
        name: "a lone carriage return line",
        request: "\r\n\r\n\r\n",
        closeWrite: true,
        expect: (a) => assert.equal(a, ""),
      },
    ])
  ),
);

Deno.test("a request written one byte per write is answered as a whole", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health());
  for (
    const [request, check] of [
      ["GET /healthz/db\n", report("pass", ["db:responseTime"])],
      [httpGet("/readyz/db"), httpReport(200, ["db:responseTime"])],
    ] as const
  ) {
    await using conn = await Deno.connect({ transport: "unix", path: sock.path });
    for (const byte of encoder.encode(request)) await writeQuietly(conn, new Uint8Array([byte]));
    check(await readAnswer(conn));
    await assertServes(server.path);
  }
});

Deno.test(
  "very long lines are refused for their size, with or without a newline",
  guarded((t) =>
    runCases(t, [
      {
        name: "a 1 MiB line-mode line with a newline",
        request: `GET /${"a".repeat(1 << 20)}\n`,
        expect: lineError(414),
      },
      {
        name: "a 1 MiB line-mode line without a newline",
        request: `GET /${"a".repeat(1 << 20)}`,
        expect: lineError(414),
      },
      { name: "1 MiB of one character and no space", request: "A".repeat(1 << 20), expect: lineError(414) },
      {
        name: "a 64 KiB HTTP target",
        request: `GET /healthz?${"q".repeat(65536)} HTTP/1.1\r\nHost: x\r\n\r\n`,
        expect: (answer) => {
          // The version comes after the limit, so the server cannot know it is HTTP.
          answer.startsWith("HTTP/") ? assertHttpError(answer, 414) : assertLineError(answer, 414);
        },
      },
      {
        name: "a 64 KiB HTTP header with a newline",
        request: `GET /healthz HTTP/1.1\r\nX-Big: ${"h".repeat(65536)}\r\n\r\n`,
        expect: httpError(431),
      },
      {
        name: "a 64 KiB HTTP header without a newline",
        request: `GET /healthz HTTP/1.1\r\nX-Big: ${"h".repeat(65536)}`,
        expect: httpError(431),
      },
      {
        name: "ten thousand tiny headers",
        request: `GET /healthz HTTP/1.1\r\n${"A: b\r\n".repeat(10_000)}\r\n`,
        expect: httpError(431),
      },
    ])
  ),
);

Deno.test("blank lines before a request are ignored", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health());
  report("pass")(await exchange(sock.path, "\r\n\r\n\nGET /healthz\n"));
  httpReport(200)(await exchange(sock.path, "\r\n\r\n" + httpGet("/healthz")));
  await assertServes(server.path);
});

Deno.test("a flood of blank lines is refused once past maxHeaderBytes, not buffered until the timeout", async () => {
  await using sock = await tempSocket();
  // A long requestTimeout, so only the size limit can stop the flood.
  await using server = await serve(sock.path, health(), { maxHeaderBytes: 1024, requestTimeout: 60_000 });
  await using conn = await Deno.connect({ transport: "unix", path: sock.path });
  const chunk = encoder.encode("\r\n".repeat(32 * 1024));
  const limit = 4 << 20;
  let written = 0;
  let answered = false;
  const reading = readAnswer(conn).then((answer) => {
    answered = true;
    return answer;
  });
  // If an assertion below fails, closing the connection ends this read: not an unhandled rejection.
  reading.catch(() => {});
  try {
    while (!answered && written < limit) written += await conn.write(chunk);
  } catch {
    // The server refused and closed: the write fails.
  }
  // Socket buffers hold a few hundred KiB; 4 MiB accepted means the server kept reading.
  assert.ok(written < limit, `the server read ${written} bytes of blank lines without refusing them`);
  const answer = await reading;
  assert.ok(isDocumentedRefusal(answer), JSON.stringify(answer.slice(0, 200)));
  await assertServes(server.path);
});

Deno.test(
  "lower-case and unknown methods get 405, with Allow: GET, HEAD in HTTP",
  guarded((t) => {
    const allow = (answer: string) => {
      const { headers } = assertHttpError(answer, 405);
      assert.equal(headers["allow"], "GET, HEAD");
    };
    return runCases(t, [
      { name: "get in line mode", request: "get /healthz\n", expect: lineError(405) },
      { name: "BREW in line mode", request: "BREW /healthz\n", expect: lineError(405) },
      { name: "get in HTTP", request: "get /healthz HTTP/1.1\r\nHost: x\r\n\r\n", expect: allow },
      { name: "DELETE in HTTP", request: "DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n", expect: allow },
      { name: "POST without a body", request: "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", expect: allow },
      { name: "OPTIONS *", request: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", expect: httpError(400) },
      { name: "a method with a slash", request: "GE/T /healthz HTTP/1.1\r\n\r\n", expect: httpError(400) },
      { name: "HTTP/2.0", request: "GET /healthz HTTP/2.0\r\n\r\n", expect: httpError(505) },
      { name: "HTTP/0.9 style", request: "GET /healthz HTTP/0.9\r\n\r\n", expect: httpError(505) },
      { name: "an HTTP/2 preface", request: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", expect: httpError(505) },
      {
        name: "a TLS client hello",
        request: bytes([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00]),
        closeWrite: true,
        expect: lineError(400),
      },
      { name: "three words, not HTTP", request: "GET /healthz please\n", expect: lineError(400) },
      { name: "a tab between the words", request: "GET\t/healthz\n", expect: lineError(400) },
      { name: "two spaces between the words", request: "GET  /healthz\n", expect: lineError(400) },
    ]);
  }),
);

Deno.test(
  "absolute-form targets are answered like origin-form ones",
  guarded((t) =>
    runCases(t, [
      {
        name: "http:// in HTTP",
        request: httpGet("http://localhost/readyz/db"),
        expect: httpReport(200, ["db:responseTime"]),
      },
      {
        name: "https:// in line mode",
        request: "GET https://localhost/livez\n",
        expect: report("pass", ["cache:responseTime", "lifecycle:state", "mainloop:blocked"]),
      },
      {
        name: "HTTP:// upper case",
        request: "GET HTTP://LOCALHOST/healthz/db\n",
        expect: report("pass", ["db:responseTime"]),
      },
      { name: "no path after the authority", request: "GET http://localhost\n", expect: lineError(404) },
      { name: "a query and no path", request: "GET http://localhost?verbose\n", expect: lineError(404) },
      { name: "another scheme", request: "GET ftp://localhost/healthz\n", expect: lineError(400) },
      { name: "a relative target", request: "GET healthz\n", expect: lineError(400) },
      { name: "an asterisk", request: "GET *\n", expect: lineError(400) },
    ])
  ),
);

Deno.test(
  "percent-encoded targets are decoded, and bad encodings refused",
  guarded((t) =>
    runCases(t, [
      { name: "an encoded check name", request: "GET /healthz/d%62\n", expect: report("pass", ["db:responseTime"]) },
      { name: "an encoded endpoint", request: "GET /%68ealthz\n", expect: report("pass") },
      { name: "an encoded slash stays in the name", request: "GET /healthz/db%2Fx\n", expect: lineError(404) },
      { name: "an invalid escape", request: "GET /healthz/%ZZ\n", expect: lineError(400) },
      { name: "a truncated escape", request: "GET /healthz/%4\n", expect: lineError(400) },
      { name: "an encoded invalid UTF-8 byte", request: "GET /healthz/%FF\n", expect: lineError(400) },
      { name: "an encoded NUL", request: "GET /healthz/%00\n", expect: lineError(404) },
      { name: "dot segments", request: "GET /healthz/../readyz\n", expect: lineError(404) },
      { name: "an encoded query separator", request: "GET /healthz%3Fverbose\n", expect: lineError(404) },
      { name: "a fragment", request: "GET /healthz/db#frag\n", expect: report("pass", ["db:responseTime"]) },
      {
        name: "a verbose query in HTTP",
        request: httpGet("/readyz?verbose"),
        expect: (a) => assert.match(parseHttp(a).body, /readyz check passed\n$/),
      },
      {
        name: "exclude with an encoded name",
        request: "GET /healthz?exclude=d%62\n",
        expect: (a) => assert.ok(!("db:responseTime" in JSON.parse(a).checks)),
      },
    ])
  ),
);

Deno.test(
  "requests with a body are refused with 413, malformed lengths with 400",
  guarded((t) =>
    runCases(t, [
      {
        name: "POST with Content-Length",
        request: "POST /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        expect: httpError(413),
      },
      {
        name: "GET with Content-Length",
        request: "GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        expect: httpError(413),
      },
      {
        name: "GET with chunked Transfer-Encoding",
        request: "GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        expect: httpError(413),
      },
      {
        name: "Content-Length and Transfer-Encoding together",
        request: "GET /healthz HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        expect: httpError(413),
      },
      {
        name: "a huge Content-Length",
        request: "GET /healthz HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        expect: httpError(413),
      },
      {
        name: "a negative Content-Length",
        request: "GET /healthz HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        expect: httpError(400),
      },
      {
        name: "a non-numeric Content-Length",
        request: "GET /healthz HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        expect: httpError(400),
      },
      {
        name: "two different Content-Lengths",
        request: "GET /healthz HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 4\r\n\r\nabcd",
        expect: httpError(400),
      },
      {
        name: "Content-Length: 0 is no body",
        request: "GET /healthz HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        expect: httpReport(200),
      },
      {
        name: "obsolete line folding",
        request: "GET /healthz HTTP/1.1\r\nX-A: b\r\n  c\r\n\r\n",
        expect: httpError(400),
      },
      { name: "a header without a colon", request: "GET /healthz HTTP/1.1\r\nNoColon\r\n\r\n", expect: httpError(400) },
      {
        name: "a space before the colon",
        request: "GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
        expect: httpError(400),
      },
    ])
  ),
);

Deno.test("pipelined HTTP requests are answered in order, then the connection closes", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health());
  const answer = await exchange(
    sock.path,
    httpGet("/livez", false) + "HEAD /readyz HTTP/1.1\r\n\r\n" + httpGet("/healthz/db", false) +
      httpGet("/nope", true) +
      httpGet("/healthz", false),
  );
  const responses = splitHttpHead(answer, [false, true, false, false]);
  assert.deepEqual(responses.map((r) => r.code), [200, 200, 200, 404]);
  assert.deepEqual(Object.keys(JSON.parse(responses[0].body).checks).sort(), [
    "cache:responseTime",
    "lifecycle:state",
    "mainloop:blocked",
  ]);
  assert.equal(responses[1].body, "", "HEAD has no body");
  assert.deepEqual(Object.keys(JSON.parse(responses[2].body).checks), ["db:responseTime"]);
  assert.equal(responses[3].headers["connection"], "close");
  await assertServes(server.path);
});

type HttpResponse = { code: number; headers: Record<string, string>; body: string };

/** Split pipelined responses where some answer HEAD (a Content-Length but no body). */
function splitHttpHead(text: string, heads: boolean[]): HttpResponse[] {
  const out: HttpResponse[] = [];
  let rest = encoder.encode(text);
  for (const head of heads) {
    const str = decoder.decode(rest);
    const end = str.indexOf("\r\n\r\n") + 4;
    assert.ok(end > 3, `missing a response in ${JSON.stringify(text)}`);
    const parsed = parseHttp(str.slice(0, end));
    const headBytes = encoder.encode(str.slice(0, end)).length;
    const length = head ? 0 : Number(parsed.headers["content-length"]);
    out.push({ ...parsed, body: decoder.decode(rest.subarray(headBytes, headBytes + length)) });
    rest = rest.subarray(headBytes + length);
  }
  assert.equal(rest.length, 0, `unexpected bytes after the responses: ${decoder.decode(rest)}`);
  return out;
}

Deno.test("after an HTTP request, a request without a version on the same connection gets an HTTP 400", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health());
  for (const second of ["GET /livez\n", "GET /nope\n", "bogus\n"]) {
    const answer = await exchange(sock.path, httpGet("/livez", false) + second);
    const end = answer.indexOf("\r\n\r\n") + 4;
    const length = Number(parseHttp(answer).headers["content-length"]);
    const first = encoder.encode(answer).subarray(0, end + length);
    const rest = decoder.decode(encoder.encode(answer).subarray(first.length));
    assert.equal(parseHttp(decoder.decode(first)).code, 200);
    // Once a connection speaks HTTP, every answer on it is HTTP.
    assertHttpError(rest, 400);
  }
  await assertServes(server.path);
});

Deno.test("a second line-mode request on one connection is not answered: one request per connection", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health());
  const answer = await exchange(sock.path, "GET /livez\nGET /readyz\n");
  assert.equal(answer.split("\n").length, 2, `one answer line expected: ${answer}`);
  report("pass", ["cache:responseTime", "lifecycle:state", "mainloop:blocked"])(answer);
  await assertServes(server.path);
});

Deno.test(
  "a half-closed socket gets its answer, or the documented error for what it sent",
  guarded((t) =>
    runCases(t, [
      {
        name: "an unterminated line, then EOF",
        request: "GET /healthz/db",
        closeWrite: true,
        expect: report("pass", ["db:responseTime"]),
      },
      {
        name: "a keep-alive HTTP request, then EOF",
        request: httpGet("/healthz", false),
        closeWrite: true,
        expect: httpReport(200),
      },
      {
        name: "HTTP headers cut off by EOF",
        request: "GET /healthz HTTP/1.1\r\nHost: x\r\n",
        closeWrite: true,
        expect: httpError(400),
      },
      { name: "nothing, then EOF", request: "", closeWrite: true, expect: (a) => assert.equal(a, "") },
      { name: "half a method, then EOF", request: "GE", closeWrite: true, expect: lineError(400) },
    ])
  ),
);

Deno.test(
  "a client that resets mid-response leaves the server answering",
  guarded(async () => {
    await using sock = await tempSocket();
    // As many checks as a Health holds, every field full: the JSON answer is larger than the socket buffers.
    const big = health();
    for (let i = 2; i < 128; i++) {
      big.add(`check-${i}`, () => ({ status: "warn", output: "x".repeat(2000), observedValue: "y".repeat(2000) }));
    }
    await using server = await serve(sock.path, big);
    for (const request of ["GET /healthz\n", httpGet("/healthz"), "GET /healthz?verbose\n"]) {
      const conn = await Deno.connect({ transport: "unix", path: sock.path });
      await writeQuietly(conn, request);
      // Read the start of the answer, then go away with the rest unread.
      const n = await conn.read(new Uint8Array(64));
      assert.ok(n !== null && n > 0);
      conn.close();
      await waitUntil(() => server.connections === 0, "the server noticed the reset");
    }
    // A client that goes away before the answer is computed.
    const conn = await Deno.connect({ transport: "unix", path: sock.path });
    await writeQuietly(conn, "GET /healthz\n");
    conn.close();
    await waitUntil(() => server.connections === 0, "the server noticed the early close");
    const answer = await exchange(sock.path, "GET /healthz/db\n");
    report("pass", ["db:responseTime"])(answer);
  }),
);

Deno.test({
  name: "curl's absolute-form target, unknown method and body get the documented answers",
  ignore: !hasCommand("curl"),
  fn: async () => {
    await using sock = await tempSocket();
    await using server = await serve(sock.path, health());
    const curl = (...args: string[]) =>
      run("curl", ["-s", "-i", "--max-time", "10", "--unix-socket", sock.path, ...args]);
    const absolute = await curl("--request-target", "http://localhost/readyz/db", "http://localhost/");
    assert.equal(parseHttp(absolute.stdout).code, 200, absolute.stdout);
    const brew = await curl("-X", "BREW", "http://localhost/healthz");
    const { headers } = assertHttpError(brew.stdout, 405);
    assert.equal(headers["allow"], "GET, HEAD");
    const body = await curl("-X", "GET", "--data", "hello", "http://localhost/healthz");
    assertHttpError(body.stdout, 413);
    await assertServesHttp(server.path);
  },
});

Deno.test({
  name: "nc sending a lower-case method gets the line-mode 405",
  ignore: !hasCommand("nc"),
  fn: async () => {
    await using sock = await tempSocket();
    await using server = await serve(sock.path, health());
    const { stdout } = await run("nc", ["-U", "-N", sock.path], { stdin: "get /healthz\n" });
    assertLineError(stdout, 405);
    await assertServes(server.path);
  },
});
