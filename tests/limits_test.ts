// Every limit is a server option with a safe default, and
// going over one gets the documented answer and a close, never a hang.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { exchange, parseHttp, tempSocket } from "./_util.ts";
import { guarded } from "./_guard.ts";
import {
  assertHttpError,
  assertLineError,
  assertServes,
  assertServesHttp,
  decoder,
  encoder,
  httpGet,
  readAnswer,
  splitHttp,
  waitUntil,
  writeQuietly,
} from "./fixtures/hardening.ts";

function health(): Health {
  return new Health({ ready: true }).add("db", () => "pass");
}

Deno.test("an HTTP request line longer than maxHeaderBytes gets 414 and a close", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { maxHeaderBytes: 256 });
  const answer = await exchange(sock.path, `GET /healthz?${"a".repeat(400)} HTTP/1.1\r\nHost: x\r\n\r\n`);
  assertHttpError(answer, 414);
  await assertServes(server.path);
});

Deno.test("HTTP headers larger than maxHeaderBytes get 431 and a close", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { maxHeaderBytes: 256 });
  const headers = Array.from({ length: 20 }, (_, i) => `X-Filler-${i}: ${"v".repeat(20)}\r\n`).join("");
  const answer = await exchange(sock.path, `GET /healthz HTTP/1.1\r\nHost: x\r\n${headers}\r\n`);
  assertHttpError(answer, 431);
  await assertServesHttp(server.path);
});

Deno.test("one header line larger than maxHeaderBytes, never terminated, gets 431 and a close", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { maxHeaderBytes: 256 });
  const answer = await exchange(sock.path, `GET /healthz HTTP/1.1\r\nX-Long: ${"v".repeat(2000)}`);
  assertHttpError(answer, 431);
  await assertServes(server.path);
});

Deno.test("a line-mode request longer than maxHeaderBytes gets the line-mode 414 error and a close", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { maxHeaderBytes: 256 });
  assertLineError(await exchange(sock.path, `GET /${"a".repeat(1000)}\n`), 414);
  // Without a newline: the server must not wait for one beyond the limit.
  assertLineError(await exchange(sock.path, `GET /${"a".repeat(1000)}`), 414);
  await assertServes(server.path);
});

Deno.test("maxHeaderBytes defaults to 8 KiB", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health());
  // Just under the limit: parsed, and answered as an unknown target.
  assertLineError(await exchange(sock.path, `GET /${"a".repeat(8000)}\n`), 404);
  // Just over it: refused for its size.
  assertLineError(await exchange(sock.path, `GET /${"a".repeat(8200)}\n`), 414);
  assertHttpError(await exchange(sock.path, `GET /healthz HTTP/1.1\r\nX-Long: ${"v".repeat(8200)}\r\n\r\n`), 431);
  await assertServes(server.path);
});

Deno.test("an HTTP request not complete within requestTimeout gets 408 and a close", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { requestTimeout: 200 });
  // Headers started, never ended; the client keeps its side open.
  const answer = await exchange(sock.path, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
  assertHttpError(answer, 408);
  await assertServesHttp(server.path);
});

Deno.test("a partial line-mode request gets the line-mode 408 error after requestTimeout", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { requestTimeout: 200 });
  // Not a whole "METHOD TARGET" yet, so the short line-mode quiet period does not apply.
  assertLineError(await exchange(sock.path, "GE"), 408);
  await assertServes(server.path);
});

Deno.test("a connection that sends nothing is closed after requestTimeout", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { requestTimeout: 200 });
  await using conn = await Deno.connect({ transport: "unix", path: sock.path });
  const answer = await readAnswer(conn);
  // Nothing was asked: the server may say 408 or just close, but it must close.
  if (answer !== "") assert.match(answer, /408/);
  await waitUntil(() => server.connections === 0, "the server dropped the silent connection");
  await assertServes(server.path);
});

Deno.test("a request trickled a byte at a time is cut off at requestTimeout, counted from its first byte", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { requestTimeout: 300 });
  await using conn = await Deno.connect({ transport: "unix", path: sock.path });
  // The request line at once (so the framing is known), then headers a byte at a time.
  await writeQuietly(conn, "GET /healthz HTTP/1.1\r\n");
  const headers = encoder.encode(`Host: localhost\r\nUser-Agent: ${"s".repeat(40)}\r\n\r\n`);
  let stop = false;
  const trickle = (async () => {
    // Each byte well within the timeout; the whole request far beyond it.
    for (const byte of headers) {
      if (stop) return;
      await writeQuietly(conn, new Uint8Array([byte]));
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
  })();
  const answer = await readAnswer(conn);
  stop = true;
  await trickle;
  assertHttpError(answer, 408);
  await assertServes(server.path);
});

Deno.test("an unterminated line-mode request is answered after lineQuiet of silence", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { lineQuiet: 100 });
  await using conn = await Deno.connect({ transport: "unix", path: sock.path });
  await writeQuietly(conn, "GET /healthz");
  const answer = await readAnswer(conn);
  assert.equal(JSON.parse(answer).status, "pass");
  await assertServes(server.path);
});

Deno.test("lineQuiet counts from the last byte: a line typed slowly is not cut short", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { lineQuiet: 250 });
  await using conn = await Deno.connect({ transport: "unix", path: sock.path });
  // A byte every 25 ms (a tenth of lineQuiet): the whole line takes ~300 ms,
  // longer than lineQuiet, but the client is never quiet for lineQuiet.
  for (const byte of encoder.encode("GET /healthz/db")) {
    await writeQuietly(conn, new Uint8Array([byte]));
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const answer = await readAnswer(conn);
  assert.ok(!answer.includes('"error"'), `the partial line was answered: ${answer}`);
  assert.deepEqual(Object.keys(JSON.parse(answer).checks), ["db:responseTime"]);
  await assertServes(server.path);
});

Deno.test("an idle keep-alive connection is closed after idleTimeout", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { idleTimeout: 200, requestTimeout: 10_000 });
  await using conn = await Deno.connect({ transport: "unix", path: sock.path });
  await writeQuietly(conn, httpGet("/healthz", false));
  // The server answers, keeps the connection, then closes it without a word.
  const text = await readAnswer(conn);
  const [response, ...rest] = splitHttp(text);
  assert.equal(response.code, 200);
  assert.equal(response.headers["connection"], "keep-alive");
  assert.equal(rest.length, 0, "nothing follows the answer on an idle connection");
  await waitUntil(() => server.connections === 0, "the idle connection is gone");
});

Deno.test("a keep-alive connection is closed after maxRequestsPerConnection answers", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { maxRequestsPerConnection: 3 });
  await using conn = await Deno.connect({ transport: "unix", path: sock.path });
  const responses: ReturnType<typeof splitHttp> = [];
  const buf = new Uint8Array(65536);
  let text = "";
  for (let i = 0; i < 3; i++) {
    await writeQuietly(conn, httpGet("/healthz", false));
    // Read one whole response before sending the next.
    for (;;) {
      const n = await conn.read(buf);
      assert.notEqual(n, null, `the server closed after ${i} answers`);
      text += decoder.decode(buf.subarray(0, n!));
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) continue;
      const length = Number(parseHttp(text).headers["content-length"]);
      if (encoder.encode(text).length >= encoder.encode(text.slice(0, end + 4)).length + length) break;
    }
    responses.push(...splitHttp(text));
    text = "";
  }
  assert.deepEqual(responses.map((r) => r.code), [200, 200, 200]);
  assert.deepEqual(responses.map((r) => r.headers["connection"]), ["keep-alive", "keep-alive", "close"]);
  assert.equal(await conn.read(buf), null, "the server closes after the last allowed answer");
  await waitUntil(() => server.connections === 0, "the connection is gone");
});

Deno.test("pipelined requests beyond maxRequestsPerConnection are not answered", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { maxRequestsPerConnection: 2 });
  const answer = await exchange(sock.path, httpGet("/healthz", false).repeat(5));
  const responses = splitHttp(answer);
  assert.deepEqual(responses.map((r) => r.code), [200, 200]);
  assert.equal(responses[1].headers["connection"], "close");
  await assertServes(server.path);
});

Deno.test("maxRequestsPerConnection defaults to 100", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health());
  const responses = splitHttp(await exchange(sock.path, httpGet("/livez", false).repeat(150)));
  assert.equal(responses.length, 100);
  assert.ok(responses.every((r) => r.code === 200));
  assert.equal(responses[99].headers["connection"], "close");
  await assertServes(server.path);
});

Deno.test("at maxConnections a newcomer that stays takes the place of the connection that waited longest", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), { maxConnections: 4, requestTimeout: 30_000 });
  const idle: Deno.UnixConn[] = [];
  try {
    for (let i = 0; i < 4; i++) {
      idle.push(await Deno.connect({ transport: "unix", path: sock.path }));
      await waitUntil(() => server.connections === i + 1, `the server holds ${i + 1} connections`);
    }
    // Half-sent is no better than idle: the oldest is closed, whatever it sent. (An HTTP head cut short:
    // a bare "GET /hea" would be answered after lineQuiet as the seed's unterminated request.)
    await idle[0].write(encoder.encode("GET /healthz HTTP/1.1\r\nHo"));
    // A probe at the cap is let in over it and answered; once it has gone, nobody had to make room for it.
    const answer = JSON.parse(await exchange(sock.path, "GET /healthz\n"));
    assert.equal(answer.status, "pass", "the probe is answered, not refused");
    await waitUntil(() => server.connections === 4, "the probe's connection is gone");
    // A newcomer that stays (idle too) is read, and then the longest-waiting connection gives up its place.
    idle.push(await Deno.connect({ transport: "unix", path: sock.path }));
    assert.equal(await readAnswer(idle[0]), "", "the longest-waiting connection was closed without an answer");
    await waitUntil(() => server.connections === 4, "the cap is held again");
    idle.push(await Deno.connect({ transport: "unix", path: sock.path }));
    assert.equal(await readAnswer(idle[1]), "", "then the next longest-waiting");
    await waitUntil(() => server.connections === 4, "the newest idle connections are still held");
  } finally {
    for (const conn of idle) conn.close();
  }
});

Deno.test("when every connection is answering, a newcomer gets 503 busy in its own framing", async () => {
  await using sock = await tempSocket();
  const release = Promise.withResolvers<void>();
  // One slow check per held request: each run started says its request was read and is being answered
  // (a connection that is merely open may still be waiting for its request to be read).
  const started = new Set<string>();
  const slowly = (name: string) => async () => {
    started.add(name);
    await release.promise;
  };
  const slow = new Health({ ready: true })
    .add("a", slowly("a"), { timeout: 30_000 })
    .add("b", slowly("b"), { timeout: 30_000 });
  await using server = await serve(sock.path, slow, { maxConnections: 2 });
  const held = [
    exchange(sock.path, "GET /readyz/a\n"),
    exchange(sock.path, "GET /readyz/b HTTP/1.1\r\nHost: x\r\n\r\n"),
  ];
  try {
    await waitUntil(() => started.size === 2, "both slots are answering");
    assertLineError(await exchange(sock.path, "GET /healthz\n"), 503);
    const { body } = assertHttpError(await exchange(sock.path, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 503);
    assert.match(JSON.parse(body).error, /busy/i);
  } finally {
    release.resolve();
  }
  const answers = await Promise.all(held);
  assert.equal(JSON.parse(answers[0]).status, "pass", "the requests in hand were answered");
  assert.match(answers[1], /^HTTP\/1\.1 200 /);
  await assertServes(server.path);
});

Deno.test("a client that never reads its answers is dropped after writeTimeout, not buffered for", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health(), {
    writeTimeout: 300,
    maxRequestsPerConnection: 1_000_000,
    requestTimeout: 30_000,
    idleTimeout: 30_000,
  });
  await using conn = await Deno.connect({ transport: "unix", path: sock.path });
  // Far more answers than the socket buffers hold (each answer is ~300 bytes).
  const requests = encoder.encode(httpGet("/healthz", false).repeat(40_000));
  // The server stops reading while it cannot write; this write stalls and then
  // fails when the server drops the connection.
  const writing = writeQuietly(conn, requests);
  await waitUntil(() => server.connections === 0, "the server dropped the client that does not read", 20_000);
  conn.close();
  await writing.catch(() => {});
  await assertServes(server.path);
});

Deno.test("serve refuses a negative or non-finite limit with RangeError", async () => {
  await using sock = await tempSocket();
  for (
    const options of [
      { maxHeaderBytes: -1 },
      { requestTimeout: Number.NaN },
      { idleTimeout: Infinity },
      { maxConnections: -5 },
      { writeTimeout: -1 },
      { maxRequestsPerConnection: -1 },
    ]
  ) {
    await assert.rejects(() => serve(sock.path, health(), options), RangeError, JSON.stringify(options));
  }
});

Deno.test(
  "limits hold with no unhandled rejection across timeouts and refusals",
  guarded(async () => {
    await using sock = await tempSocket();
    await using server = await serve(sock.path, health(), {
      requestTimeout: 150,
      maxConnections: 3,
      maxHeaderBytes: 128,
    });
    const idle = await Promise.all([0, 1, 2].map(() => Deno.connect({ transport: "unix", path: sock.path })));
    try {
      await waitUntil(() => server.connections === 3, "3 idle connections held");
      // A probe takes the place of the longest-waiting idle connection.
      assert.equal(JSON.parse(await exchange(sock.path, "GET /healthz\n")).status, "pass");
      // The idle connections time out, and the server is usable again.
      await Promise.all(idle.map((conn) => readAnswer(conn)));
    } finally {
      for (const conn of idle) conn.close();
    }
    await waitUntil(() => server.connections === 0, "the idle connections timed out");
    assertLineError(await exchange(sock.path, `GET /${"x".repeat(500)}\n`), 414);
    await assertServes(server.path);
  }),
);
