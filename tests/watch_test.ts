// Pushed status changes: GET /healthz?watch in line mode (JSON lines) and HTTP (server-sent events).
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { serve } from "../server.ts";
import { watch } from "../client.ts";
import { decoder, encoder, exchange, hasCommand, tempSocket, writeAll } from "./_util.ts";
import { waitUntil } from "./fixtures/hardening.ts";

/** Read from `conn` until `text` holds `pattern`; returns all text read. */
async function readUntilMatch(conn: Deno.Conn, pattern: RegExp, text = ""): Promise<string> {
  const buf = new Uint8Array(65536);
  while (!pattern.test(text)) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`Closed before ${pattern}: ${JSON.stringify(text)}`);
    text += decoder.decode(buf.subarray(0, n));
  }
  return text;
}

Deno.test("line-mode watch sends the report, then one JSON line per status change, and ends on shutdown", async () => {
  await using sock = await tempSocket();
  const health = new Health().add("db", () => "pass");
  const server = await serve(sock.path, health, { watchInterval: 20 });
  const conn = await Deno.connect({ transport: "unix", path: sock.path });
  try {
    await writeAll(conn, encoder.encode("GET /readyz?watch\n"));
    let text = await readUntilMatch(conn, /\n/);
    assert.equal(JSON.parse(text.split("\n")[0]).status, "fail"); // starting
    health.markReady();
    text = await readUntilMatch(conn, /\n.*\n/, text);
    const lines = text.trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(lines.map((r) => r.status), ["fail", "pass"]);
    assert.equal(lines[1].checks["lifecycle:state"][0].observedValue, "ready");
    // Shutdown: draining makes /readyz fail (pushed), then the stream ends.
    const closed = server.drain();
    text = await readUntilMatch(conn, /\n.*\n.*\n/, text);
    assert.equal(JSON.parse(text.trim().split("\n")[2]).checks["lifecycle:state"][0].output, "shutting down");
    assert.equal(await conn.read(new Uint8Array(16)), null);
    await closed;
  } finally {
    conn.close();
    await server.close();
  }
});

Deno.test("HTTP/1.1 watch is a chunked text/event-stream: one unnamed event per change, an end event on shutdown", async () => {
  await using sock = await tempSocket();
  let status: "pass" | "fail" = "pass";
  const health = new Health({ ready: true }).add("db", () => status, { cacheTtl: 0 });
  const server = await serve(sock.path, health, { watchInterval: 20 });
  const conn = await Deno.connect({ transport: "unix", path: sock.path });
  try {
    await writeAll(conn, encoder.encode("GET /healthz?watch HTTP/1.1\r\nHost: x\r\n\r\n"));
    let text = await readUntilMatch(conn, /\r\n\r\n[0-9a-f]+\r\ndata: .*\n\n\r\n/);
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(text, /\r\nContent-Type: text\/event-stream\r\n/);
    assert.match(text, /\r\nCache-Control: no-store\r\n/);
    assert.match(text, /\r\nTransfer-Encoding: chunked\r\n/);
    status = "fail";
    text = await readUntilMatch(conn, /data: (.*"fail".*)\n\n/, text);
    const data = /data: (.*"fail".*)\n\n/.exec(text)![1];
    assert.equal(JSON.parse(data).checks["db:responseTime"][0].status, "fail");
    const closed = server.drain();
    text = await readUntilMatch(conn, /event: end\ndata: shutting down\n\n\r\n0\r\n\r\n$/, text);
    assert.equal(await conn.read(new Uint8Array(16)), null);
    await closed;
    // Every chunk's size is its length in bytes, and no report carries an event name.
    const body = new TextEncoder().encode(text.slice(text.indexOf("\r\n\r\n") + 4));
    const events = dechunk(body).split("\n\n").filter(Boolean);
    assert.ok(events.slice(0, -1).every((e) => e.startsWith("data: ")), JSON.stringify(events));
    assert.equal(events.at(-1), "event: end\ndata: shutting down");
  } finally {
    conn.close();
    await server.close();
  }
});

/** Decode a chunked body, checking each chunk's size. */
function dechunk(bytes: Uint8Array): string {
  const out: Uint8Array[] = [];
  let pos = 0;
  for (;;) {
    const crlf = bytes.indexOf(0x0d, pos);
    const size = parseInt(new TextDecoder().decode(bytes.subarray(pos, crlf)), 16);
    assert.ok(Number.isInteger(size), "a chunk size");
    if (size === 0) break;
    out.push(bytes.subarray(crlf + 2, crlf + 2 + size));
    assert.equal(new TextDecoder().decode(bytes.subarray(crlf + 2 + size, crlf + 4 + size)), "\r\n");
    pos = crlf + 4 + size;
  }
  return out.map((b) => new TextDecoder().decode(b)).join("");
}

Deno.test("watch with ?timeout ends the stream after that long without a change", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, new Health({ ready: true }), { watchInterval: 20 });
  const answer = await exchange(sock.path, "GET /livez?watch&timeout=0.1\n");
  assert.equal(answer.trim().split("\n").length, 1);
  assert.equal(JSON.parse(answer).status, "pass");
});

Deno.test("watch of an unknown check answers 404 and closes", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, new Health());
  const answer = JSON.parse(await exchange(sock.path, "GET /readyz/db?watch\n"));
  assert.equal(answer.code, 404);
});

Deno.test("the client's watch() yields each change until aborted", async () => {
  await using sock = await tempSocket();
  const health = new Health().add("db", () => "pass");
  await using _server = await serve(sock.path, health, { watchInterval: 20 });
  const controller = new AbortController();
  const statuses: string[] = [];
  for await (const report of watch(sock.path, { target: "/startupz", signal: controller.signal })) {
    statuses.push(report.status);
    if (report.status === "fail") health.markReady();
    else controller.abort();
  }
  assert.deepEqual(statuses, ["fail", "pass"]);
});

Deno.test("watch streams have a cap of their own and never take a probe's place", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, new Health({ ready: true }), { maxConnections: 2, maxWatchers: 3 });
  const streams: Deno.UnixConn[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const conn = await Deno.connect({ transport: "unix", path: sock.path });
      streams.push(conn);
      await writeAll(conn, encoder.encode("GET /livez?watch\n"));
      await readUntilMatch(conn, /\n/);
    }
    assert.equal(server.connections, 3);
    // More watchers than slots for requests, and probes are still answered.
    assert.equal(JSON.parse(await exchange(sock.path, "GET /livez\n")).status, "pass");
    const refused = JSON.parse(await exchange(sock.path, "GET /livez?watch\n"));
    assert.equal(refused.code, 503);
    assert.match(refused.error, /busy: too many watch streams/);
  } finally {
    for (const conn of streams) conn.close();
  }
});

Deno.test("a watcher that never reads is dropped after writeTimeout, and the server keeps answering", async () => {
  await using sock = await tempSocket();
  // A report of ~64 KiB that flips on every evaluation fills the socket buffer fast.
  let flip = false;
  const big = "x".repeat(64 * 1024);
  const health = new Health({ ready: true }).add("flappy", () => {
    flip = !flip;
    return flip ? { status: "pass", observedValue: big } : { status: "fail", output: big };
  }, { cacheTtl: 0 });
  await using server = await serve(sock.path, health, { watchInterval: 5, writeTimeout: 200 });
  const conn = await Deno.connect({ transport: "unix", path: sock.path });
  try {
    await writeAll(conn, encoder.encode("GET /healthz?watch\n"));
    // Never read. The server must give up on this client rather than queue reports for it.
    const before = Deno.memoryUsage().rss;
    while (server.connections > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    const grown = Deno.memoryUsage().rss - before;
    assert.ok(grown < 64 * 1024 * 1024, `rss grew by ${grown} bytes`);
    const answer = JSON.parse(await exchange(sock.path, "GET /livez\n"));
    assert.equal(answer.status, "pass");
  } finally {
    conn.close();
  }
});

Deno.test({
  name: `curl -N shows the event stream${hasCommand("curl") ? "" : " (ignored: curl is not installed)"}`,
  ignore: !hasCommand("curl"),
  async fn() {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, new Health({ ready: true }));
    const child = new Deno.Command("curl", {
      args: ["-sN", "--unix-socket", sock.path, "http://localhost/livez?watch&timeout=0.2"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const { code, stdout } = await child.output();
    assert.equal(code, 0);
    const text = decoder.decode(stdout);
    assert.match(text, /^data: \{"status":"pass"/);
  },
});

Deno.test("at the watch cap, the oldest stream whose client half-closed makes room for a new watcher", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, new Health({ ready: true }), { maxWatchers: 2 });
  const open = async (halfClose: boolean) => {
    const conn = await Deno.connect({ transport: "unix", path: sock.path });
    await writeAll(conn, encoder.encode("GET /livez?watch\n"));
    if (halfClose) await conn.closeWrite();
    const first = JSON.parse(await readUntilMatch(conn, /\n/));
    assert.equal(first.status, "pass", `a watch stream, not ${JSON.stringify(first)}`);
    return conn;
  };
  const following = await open(false); // still listening, never half-closed
  const halfClosed = await open(true); // what socat and nc -N leave behind
  try {
    await waitUntil(() => server.connections === 2, "two watchers held");
    const newcomer = await open(false);
    try {
      assert.equal(await halfClosed.read(new Uint8Array(16)), null, "the half-closed watcher was closed for it");
      assert.equal(server.connections, 2);
      // With no half-closed stream left, the next watcher is refused, and the one still following keeps its stream.
      const refused = JSON.parse(await exchange(sock.path, "GET /livez?watch\n"));
      assert.equal(refused.code, 503);
    } finally {
      newcomer.close();
    }
  } finally {
    following.close();
    halfClosed.close();
  }
});
