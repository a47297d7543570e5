// Pushed status changes: GET /healthz?watch in line mode (JSON lines) and HTTP (server-sent events).
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { watch } from "../client.ts";
import { decoder, encoder, exchange, hasCommand, readToEnd, readUntilMatch, tempSocket, writeAll } from "./_util.ts";
import { sendWithin, waitUntil } from "./fixtures/hardening.ts";
import { flood, hasCompiler } from "./fixtures/flooder.ts";

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
    let text = await readUntilMatch(conn, /\r\n\r\n[0-9a-f]+\r\nretry: \d+\ndata: .*\n\n\r\n/);
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
    // The first event carries the reconnection hint.
    assert.match(events[0], /^retry: \d+\ndata: /);
    assert.ok(events.slice(1, -1).every((e) => e.startsWith("data: ")), JSON.stringify(events));
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
  let runs = 0;
  const big = "x".repeat(64 * 1024);
  const health = new Health({ ready: true }).add("flappy", () => {
    runs++;
    flip = !flip;
    return flip ? { status: "pass", observedValue: big } : { status: "fail", output: big };
  }, { cacheTtl: 0 });
  await using server = await serve(sock.path, health, { watchInterval: 5, writeTimeout: 200 });
  const conn = await Deno.connect({ transport: "unix", path: sock.path });
  try {
    await writeAll(conn, encoder.encode("GET /healthz?watch\n"));
    // Never read. The server must give up on this client rather than queue reports for it. (Until the Worker has
    // accepted the connection it counts none: wait for the stream to start first.)
    await waitUntil(() => runs > 0, "the stream starts");
    await waitUntil(() => server.connections === 0, "the watcher is dropped");
    const evaluated = runs;
    // Read what reached the socket before the drop: the server evaluated a report only when the one before it was
    // written, so the stream went no further ahead than the socket holds, plus the one it was writing.
    const received = decoder.decode(await readToEnd(conn)).split("\n").filter((line) => line.startsWith("{")).length;
    assert.ok(evaluated <= received + 1, `${evaluated} reports evaluated for a watcher that received ${received}`);
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
    assert.match(text, /^retry: \d+\ndata: \{"status":"pass"/);
    assert.match(text, /\nevent: end\ndata: no change for 0\.2 s\n\n$/);
  },
});

const FOLLOWERS = hasCommand("nc") && hasCommand("socat");

/** A real follower that half-closes when its input ends, as the README shows: `nc -N -U` or `socat -t 86400`. */
interface Follower {
  child: Deno.ChildProcess;
  reader: ReadableStreamDefaultReader<Uint8Array>;
  first: Promise<string>;
}

function follower(path: string, tool: "nc" | "socat"): Follower {
  const args = tool === "nc" ? ["-N", "-U", path] : ["-t", "86400", "-", `UNIX-CONNECT:${path}`];
  const child = new Deno.Command(tool, { args, stdin: "piped", stdout: "piped", stderr: "null" }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.getReader();
  const first = (async () => {
    await writer.write(encoder.encode("GET /livez?watch\n"));
    await writer.close(); // its input ends: it shuts its sending side and keeps reading
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    return text;
  })();
  return { child, reader, first };
}

async function end({ child, reader, first }: Follower): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch { /* exited */ }
  await child.status;
  await first.catch(() => {});
  await reader.cancel().catch(() => {});
}

Deno.test({
  name: `at the watch cap, half-closed followers that still read keep their streams and the newcomer gets 503${
    FOLLOWERS ? "" : " (ignored: needs nc and socat)"
  }`,
  ignore: !FOLLOWERS,
  async fn() {
    await using sock = await tempSocket();
    // Whether a follower left is found out at most once per watchInterval.
    const watchInterval = 200;
    await using server = await serve(sock.path, new Health({ ready: true }), { maxWatchers: 2, watchInterval });
    const nc = follower(sock.path, "nc");
    const socat = follower(sock.path, "socat");
    try {
      for (const { first } of [nc, socat]) assert.equal(JSON.parse(await first).status, "pass");
      await waitUntil(() => server.connections === 2, "two followers held");
      // (Were a follower dropped for it, the newcomer would get a stream that does not end: give up after 5 s.)
      const refused = JSON.parse(await sendWithin(sock.path, "GET /livez?watch\n", 5000));
      assert.equal(refused.code, 503, "both followers still read: the newcomer is refused");
      assert.match(refused.error, /too many watch streams/);
      // The refused newcomer is counted until the server has ended it: wait for that, then two must remain.
      await waitUntil(() => server.connections <= 2, "the newcomer is let go");
      assert.equal(server.connections, 2, "and neither follower was dropped for it");
      // One leaves: its slot is found out (by writing to it) and given to the next newcomer.
      await end(nc);
      await new Promise((resolve) => setTimeout(resolve, watchInterval + 50));
      const conn = await Deno.connect({ transport: "unix", path: sock.path });
      try {
        await writeAll(conn, encoder.encode("GET /livez?watch\n"));
        assert.equal(JSON.parse(await readUntilMatch(conn, /\n/)).status, "pass");
      } finally {
        conn.close();
      }
      // socat is still following: it was written to and did not mind.
      assert.equal(socat.child.pid > 0 && server.connections >= 1, true);
    } finally {
      await end(nc);
      await end(socat);
    }
  },
});

Deno.test({
  name: `a watch stream whose client left ends: its evaluations stop and drain() does not wait for it${
    hasCompiler() ? "" : " (ignored: cc is not installed)"
  }`,
  ignore: !hasCompiler(),
  fn: async () => {
    await using sock = await tempSocket();
    let runs = 0;
    const health = new Health({ ready: true }).add("counted", () => {
      runs++;
      return "pass";
    }, { cacheTtl: 0, kinds: ["live"] });
    const server = await serve(sock.path, health, { maxWatchers: 4, watchInterval: 10, shutdownTimeout: 60_000 });
    try {
      // Clients that ask to follow, read the first report and close both sides at once, from another process.
      const zombies = await (await flood(sock.path, "zombie", 40, 20)).stop(false);
      assert.equal(zombies.opened, 40);
      // Every stream beyond the cap was refused, or made room by finding that an earlier one had left.
      assert.ok(server.connections <= 4, `${server.connections} streams held`);
      const drained = server.drain();
      const limit = Promise.withResolvers<string>();
      const timer = setTimeout(() => limit.resolve("still draining after 10 s"), 10_000);
      try {
        assert.equal(await Promise.race([drained.then(() => "drained"), limit.promise]), "drained");
      } finally {
        clearTimeout(timer);
      }
      // Nothing evaluates for a stream that has ended.
      const after = runs;
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(runs, after, "no evaluations after the server stopped");
    } finally {
      await server.close();
    }
  },
});

for (const thread of ["main", "worker"] as const) {
  Deno.test(`thread ${thread}: at the watch cap, a half-closed follower is asked whether it left at most once per interval`, async () => {
    await using sock = await tempSocket();
    // No wake within the test: every line a follower gets past its first is a presence check.
    const server = await serve(sock.path, new Health({ ready: true }), {
      thread,
      maxWatchers: 2,
      watchInterval: 60_000,
    });
    const followers: Deno.UnixConn[] = [];
    try {
      // Two followers as socat runs them: the request, then their input ends; they keep reading.
      for (let i = 0; i < 2; i++) {
        const conn = await Deno.connect({ transport: "unix", path: sock.path });
        followers.push(conn);
        await writeAll(conn, encoder.encode("GET /livez?watch\n"));
        await conn.closeWrite();
        assert.equal(JSON.parse(await readUntilMatch(conn, /\n/)).status, "pass");
      }
      // Newcomers at the cap: each is refused, as both followers still read.
      for (let i = 0; i < 12; i++) {
        const refused = JSON.parse(await sendWithin(sock.path, "GET /livez?watch\n", 5000));
        assert.equal(refused.code, 503);
      }
      await server.close();
      // What each follower received after its first report: at most one presence check, not one per newcomer.
      for (const conn of followers) {
        const text = decoder.decode(await readToEnd(conn, { untilError: true }));
        const lines = text.split("\n").filter(Boolean);
        assert.ok(lines.length <= 1, `${lines.length} more lines to one follower for 12 newcomers`);
      }
    } finally {
      for (const conn of followers) conn.close();
      await server.close();
    }
  });
}

for (const thread of ["worker", "main"] as const) {
  Deno.test({
    name:
      `${thread}: line-mode watch streams whose clients closed both sides end within an interval, below the cap; a ` +
      `half-closed follower stays${FOLLOWERS && hasCompiler() ? "" : " (ignored: needs nc, socat and cc)"}`,
    ignore: !FOLLOWERS || !hasCompiler(),
    async fn() {
      await using sock = await tempSocket();
      // Far below the watch cap, and nothing changes: before, a stream whose client left was held (with its buffers,
      // closures and loop) until a change or the cap wanted room, so churning followers piled up.
      await using server = await serve(sock.path, new Health({ ready: true }), { thread, maxWatchers: 256 });
      const socat = follower(sock.path, "socat");
      try {
        assert.equal(JSON.parse(await socat.first).status, "pass");
        // Clients that ask to follow, read the first report and close both sides at once, from another process.
        const zombies = await (await flood(sock.path, "zombie", 40, 20)).stop(false);
        assert.equal(zombies.opened, 40);
        await waitUntil(() => server.connections === 1, "only the follower that still reads is held", 5000);
      } finally {
        await end(socat);
      }
    },
  });
}

Deno.test("watch streams of one route share each evaluation", async () => {
  await using sock = await tempSocket();
  // Each evaluation flips the status (so every stream is sent it) and names itself in observedValue.
  let runs = 0;
  const health = new Health({ ready: true }).add("counted", () => {
    runs++;
    return { status: runs % 2 === 0 ? "pass" : "fail", observedValue: runs };
  }, { cacheTtl: 0 });
  await using server = await serve(sock.path, health, { watchInterval: 50, maxWatchers: 32 });
  const conns: Deno.UnixConn[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      const conn = await Deno.connect({ transport: "unix", path: sock.path });
      conns.push(conn);
      await writeAll(conn, encoder.encode("GET /readyz?watch\n"));
      await readUntilMatch(conn, /\n/);
      // Followers arrive at different moments (a timer each would fire at different moments too).
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await waitUntil(() => server.connections === 20, "20 followers");
    const before = runs;
    // What each stream was sent after they had all joined, up to an evaluation six on.
    const seen: number[] = [];
    for (const conn of conns) {
      let text = "";
      for (let last = 0; last < before + 6;) {
        text = await readUntilMatch(conn, /\n/, text);
        const lines = text.split("\n");
        text = lines.pop()!;
        for (const line of lines) {
          last = JSON.parse(line).checks["counted:responseTime"][0].observedValue;
          if (last > before) seen.push(last);
        }
      }
    }
    // One evaluation per wake for all 20, not one each: each evaluation reached many streams.
    const evaluations = new Set(seen).size;
    assert.ok(evaluations * 2 <= seen.length, `${seen.length} reports to 20 streams from ${evaluations} evaluations`);
  } finally {
    for (const conn of conns) conn.close();
  }
});
