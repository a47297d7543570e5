import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { SocketError } from "../server.ts";
import { probe, ProbeError } from "../client.ts";
import { exchange, exists, parseHttp, readToEnd, tempSocket, writeAll } from "./_util.ts";
import { waitUntil } from "./fixtures/hardening.ts";

function healthy(): Health {
  return new Health({ ready: true }).add("db", () => "pass");
}

type Thread = "worker" | "main";

/** A server behaviour, tested in both thread modes: serving from a Worker (the default) and on the main thread. */
function test(name: string, options: { ignore?: boolean }, fn: (thread: Thread) => Promise<void>): void {
  for (const thread of ["worker", "main"] as const) {
    Deno.test({ name: `${name} (thread: ${thread})`, ignore: options.ignore, fn: () => fn(thread) });
  }
}

/** The main loop's entry, which only a Worker's reports carry. */
function mainloop(thread: Thread, entry: string): string[] {
  return thread === "worker" ? [entry] : [];
}

test("server answers GET /healthz in line mode with the report and a newline, then closes", {}, async (thread) => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy(), { thread });
  const answer = await exchange(sock.path, "GET /healthz\n");
  assert.ok(answer.endsWith("}\n"));
  const report = JSON.parse(answer);
  assert.equal(report.status, "pass");
  assert.deepEqual(Object.keys(report.checks), [
    "db:responseTime",
    "lifecycle:state",
    ...mainloop(thread, "mainloop:blocked"),
  ]);
});

test("server answers the seed client's unterminated GET /healthz without a close", {}, async (thread) => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy(), { thread });
  const conn = await Deno.connect({ transport: "unix", path: sock.path });
  try {
    // Like the Go seed: write without a newline, keep our side open, wait.
    await writeAll(conn, new TextEncoder().encode("GET /healthz"));
    const answer = new TextDecoder().decode(await readToEnd(conn));
    assert.equal(JSON.parse(answer).status, "pass");
  } finally {
    conn.close();
  }
});

test("server answers an unterminated request at EOF when the client half-closes", {}, async (thread) => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy(), { thread, lineQuiet: 60_000 });
  const answer = await exchange(sock.path, "GET /livez", { closeWrite: true });
  assert.equal(JSON.parse(answer).status, "pass");
});

test("HTTP and line mode bodies are byte-for-byte the same", {}, async (thread) => {
  await using sock = await tempSocket();
  const health = new Health({ ready: true }).add("db", () => ({ status: "pass", observedValue: 1 }), {
    measurement: "connections",
    cacheTtl: 60_000,
  });
  await using _server = await serve(sock.path, health, { thread });
  const line = await exchange(sock.path, "GET /healthz/db\n");
  const http = parseHttp(await exchange(sock.path, "GET /healthz/db HTTP/1.1\r\nConnection: close\r\n\r\n"));
  assert.equal(http.code, 200);
  assert.equal(http.headers["content-type"], "application/health+json");
  assert.equal(http.headers["cache-control"], "no-store");
  assert.equal(Number(http.headers["content-length"]), new TextEncoder().encode(http.body).length);
  assert.equal(line, http.body + "\n");
});

test("server answers fail with 503 in HTTP and a fail report in line mode", {}, async (thread) => {
  await using sock = await tempSocket();
  const health = new Health({ ready: true }).add("db", () => {
    throw new Error("connection refused");
  });
  await using _server = await serve(sock.path, health, { thread });
  const http = parseHttp(await exchange(sock.path, "GET /readyz HTTP/1.0\r\n\r\n"));
  assert.equal(http.code, 503);
  const report = JSON.parse(http.body);
  assert.equal(report.status, "fail");
  assert.equal(report.checks["db:responseTime"][0].output, "connection refused");
  const line = JSON.parse(await exchange(sock.path, "GET /readyz\n"));
  assert.equal(line.status, "fail");
});

test("line-mode errors are a JSON object with error and code, never status", {}, async (thread) => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy(), { thread });
  for (
    const [request, code] of [
      ["GET /nope\n", 404],
      ["POST /healthz\n", 405],
      ["GET /healthz/missing\n", 404],
      ["what is this\n", 400],
    ] as const
  ) {
    const answer = await exchange(sock.path, request);
    assert.ok(answer.endsWith("\n"), request);
    const body = JSON.parse(answer);
    assert.equal(body.code, code, request);
    assert.equal(typeof body.error, "string");
    assert.equal("status" in body, false);
  }
});

test("HTTP 405 carries Allow: GET, HEAD and closes", {}, async (thread) => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy(), { thread });
  const http = parseHttp(await exchange(sock.path, "DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  assert.equal(http.code, 405);
  assert.equal(http.headers["allow"], "GET, HEAD");
  assert.equal(http.headers["connection"], "close");
});

test("HTTP keep-alive serves several requests on one connection, and pipelined ones in order", {}, async (thread) => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy(), { thread });
  const answer = await exchange(
    sock.path,
    "GET /livez HTTP/1.1\r\nHost: x\r\n\r\nHEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n" +
      "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  );
  // Bodies have no final newline, so a status line can follow a body directly.
  const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
  assert.deepEqual(statuses, [200, 200, 404]);
  // The HEAD answer has headers only: the next status line follows its blank line directly.
  assert.match(
    answer,
    /Content-Length: \d+\r\nCache-Control: no-store\r\nConnection: keep-alive\r\n[^]*?\r\n\r\nHTTP\/1\.1 404/,
  );
});

test("probe returns a typed result in both framings", {}, async (thread) => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy(), { thread });
  for (const framing of ["line", "http"] as const) {
    const result = await probe(sock.path, { framing, target: "/readyz" });
    assert.equal(result.status, "pass");
    assert.equal(result.code, 200);
    assert.equal(result.framing, framing);
    assert.equal(result.report?.status, "pass");
  }
  const verbose = await probe(sock.path, { target: "/readyz?verbose" });
  assert.equal(verbose.report, undefined);
  assert.equal(
    verbose.body,
    ["[+]db ok", "[+]lifecycle ok", ...mainloop(thread, "[+]mainloop ok"), "readyz check passed", ""].join("\n"),
  );
});

Deno.test("probe reports unreachable, timeout and protocol errors by kind", async () => {
  await using sock = await tempSocket();
  await assert.rejects(
    probe(sock.path),
    (e) => e instanceof ProbeError && e.kind === "unreachable" && e.message.includes(sock.path),
  );

  // A socket nobody accepts on: refused.
  const listener = Deno.listen({ transport: "unix", path: `${sock.dir}/silent.sock` });
  try {
    // Accepts (the backlog does) but never answers: timeout.
    await assert.rejects(
      probe(`${sock.dir}/silent.sock`, { timeout: 100 }),
      (e) => e instanceof ProbeError && e.kind === "timeout",
    );
  } finally {
    listener.close();
  }

  // Something that answers, but not health: protocol.
  const other = Deno.listen({ transport: "unix", path: `${sock.dir}/other.sock` });
  const serving = (async () => {
    const conn = await other.accept();
    await conn.read(new Uint8Array(64));
    await conn.write(new TextEncoder().encode("hello\n"));
    conn.close();
  })();
  try {
    await assert.rejects(
      probe(`${sock.dir}/other.sock`),
      (e) => e instanceof ProbeError && e.kind === "protocol" && /not a health report/.test(e.message),
    );
  } finally {
    await serving;
    other.close();
  }
});

test("probe of an unknown endpoint is a protocol error naming the status", {}, async (thread) => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy(), { thread });
  await assert.rejects(
    probe(sock.path, { target: "/metrics" }),
    (e) => e instanceof ProbeError && e.kind === "protocol" && e.message.includes("404"),
  );
});

test("socket file is created with mode 0600 by default and 0660 on request", {}, async (thread) => {
  await using sock = await tempSocket();
  {
    await using _server = await serve(sock.path, healthy(), { thread });
    const info = await Deno.lstat(sock.path);
    assert.ok(info.isSocket);
    assert.equal(info.mode! & 0o777, 0o600);
    // The directory the socket was bound in stays, empty and private, while it is served.
    assert.deepEqual([...Deno.readDirSync(`${sock.path}.tmp`)], []);
  }
  await using _server = await serve(sock.path, healthy(), { thread, mode: 0o660 });
  assert.equal((await Deno.lstat(sock.path)).mode! & 0o777, 0o660);
});

test("a stale socket is replaced", {}, async (thread) => {
  await using sock = await tempSocket();
  // Make a stale socket: bind it and drop the listener without Deno's unlink by renaming it away first.
  const stale = Deno.listen({ transport: "unix", path: `${sock.path}.old` });
  await Deno.rename(`${sock.path}.old`, sock.path);
  stale.close();
  const before = await Deno.lstat(sock.path);
  await using _server = await serve(sock.path, healthy(), { thread });
  const after = await Deno.lstat(sock.path);
  assert.notEqual(after.ino, before.ino);
  assert.equal((await probe(sock.path)).status, "pass");
});

test("a live socket is refused untouched and keeps serving", {}, async (thread) => {
  await using sock = await tempSocket();
  await using _first = await serve(sock.path, healthy(), { thread });
  const before = await Deno.lstat(sock.path);
  await assert.rejects(
    serve(sock.path, healthy(), { thread }),
    (e) => e instanceof SocketError && e.reason === "in-use" && e.message.includes("another process is serving it"),
  );
  assert.equal((await Deno.lstat(sock.path)).ino, before.ino);
  assert.equal((await probe(sock.path)).status, "pass");
});

test("a regular file or a directory at the path is refused untouched", {}, async (thread) => {
  await using sock = await tempSocket();
  await Deno.writeTextFile(sock.path, "precious");
  await assert.rejects(
    serve(sock.path, healthy(), { thread }),
    (e) => e instanceof SocketError && e.reason === "not-a-socket" && e.message.includes(sock.path),
  );
  assert.equal(await Deno.readTextFile(sock.path), "precious");
  await Deno.remove(sock.path);
  await Deno.mkdir(sock.path);
  await assert.rejects(
    serve(sock.path, healthy(), { thread }),
    (e) => e instanceof SocketError && e.reason === "not-a-socket",
  );
  assert.ok((await Deno.lstat(sock.path)).isDirectory);
});

test("another user's stale socket is refused untouched", { ignore: Deno.uid() !== 0 }, async (thread) => {
  await using sock = await tempSocket();
  const stale = Deno.listen({ transport: "unix", path: `${sock.path}.old` });
  await Deno.rename(`${sock.path}.old`, sock.path);
  stale.close();
  await Deno.chown(sock.path, 65534, 65534);
  await assert.rejects(
    serve(sock.path, healthy(), { thread }),
    (e) => e instanceof SocketError && e.reason === "foreign" && e.message.includes("uid 65534"),
  );
  const info = await Deno.lstat(sock.path);
  assert.equal(info.uid, 65534);
  assert.equal(await exists(`${sock.path}.tmp`), false);
});

test("close removes the socket it created", {}, async (thread) => {
  await using sock = await tempSocket();
  const server = await serve(sock.path, healthy(), { thread });
  await server.close();
  await server.close(); // idempotent
  await server.finished;
  assert.equal(await exists(sock.path), false);
  assert.equal(await exists(`${sock.path}.tmp`), false);
});

test("close leaves a socket that replaced ours alone (inode check)", {}, async (thread) => {
  await using sock = await tempSocket();
  const server = await serve(sock.path, healthy(), { thread });
  // Someone replaces the file under the running server.
  await Deno.remove(sock.path);
  const newcomer = Deno.listen({ transport: "unix", path: `${sock.path}.new` });
  await Deno.rename(`${sock.path}.new`, sock.path);
  try {
    const ino = (await Deno.lstat(sock.path)).ino;
    await server.close();
    assert.equal((await Deno.lstat(sock.path)).ino, ino);
  } finally {
    newcomer.close();
  }
});

test("an aborted signal drains the server", {}, async (thread) => {
  await using sock = await tempSocket();
  const controller = new AbortController();
  const health = healthy();
  const server = await serve(sock.path, health, { thread, signal: controller.signal });
  controller.abort();
  await server.finished;
  assert.equal(health.state, "stopped");
  assert.equal(await exists(sock.path), false);
});

test("drain waits for a request in progress before closing", {}, async (thread) => {
  await using sock = await tempSocket();
  const gate = Promise.withResolvers<void>();
  const entered = Promise.withResolvers<void>();
  const health = new Health({ ready: true }).add("slow", async () => {
    entered.resolve();
    await gate.promise;
  }, { kinds: ["live"], timeout: 5000 });
  const server = await serve(sock.path, health, { thread, shutdownTimeout: 5000 });
  const answer = exchange(sock.path, "GET /livez\n");
  await entered.promise;
  const drained = server.drain();
  await waitUntil(() => server.connections === 1, "the request in progress is held");
  gate.resolve();
  assert.equal(JSON.parse(await answer).status, "pass");
  await drained;
  assert.equal(await exists(sock.path), false);
});

test("a relative socket path is a TypeError", {}, async (thread) => {
  await assert.rejects(serve("app.sock", healthy(), { thread }), TypeError);
});

test("a server restarted on the same path right after close serves every time", {}, async (thread) => {
  await using sock = await tempSocket();
  for (let i = 0; i < 25; i++) {
    const server = await serve(sock.path, healthy(), { thread });
    assert.equal((await probe(sock.path)).status, "pass", `round ${i}`);
    await server.close();
    assert.equal(await exists(sock.path), false, `round ${i}`);
  }
});

for (const thread of ["worker", "main"] as const) {
  Deno.test(`a failing non-critical check: its entry fails, the total warns, the same in JSON and ?verbose (${thread})`, async () => {
    await using sock = await tempSocket();
    const health = healthy().add("cache", () => ({ status: "fail", output: "cold" }), { critical: false });
    await using _server = await serve(sock.path, health, { thread });
    const report = JSON.parse(await exchange(sock.path, "GET /readyz\n"));
    assert.equal(report.status, "warn");
    assert.equal(report.checks["cache:responseTime"][0].status, "fail");
    const lines = ["[+]db ok", "[-]cache failed: cold", "[+]lifecycle ok"];
    const verdict = "readyz check passed with warnings\n";
    const line = await exchange(sock.path, "GET /readyz?verbose\n");
    for (const expected of lines) assert.ok(line.includes(`${expected}\n`), line);
    assert.ok(line.endsWith(`\n${verdict}`), line);
    const http = parseHttp(await exchange(sock.path, "GET /readyz?verbose HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert.equal(http.code, 200);
    // The text ends with a newline over HTTP too, and line mode adds none of its own.
    assert.equal(http.body, line);
    const probed = await probe(sock.path, { target: "/readyz?verbose", framing: "http" });
    assert.equal(probed.status, "warn");
  });
}

for (const thread of ["worker", "main"] as const) {
  Deno.test(`?tag keeps the tagged checks in JSON, ?verbose and ?watch over the socket (${thread})`, async () => {
    await using sock = await tempSocket();
    const health = new Health({ ready: true })
      .add("db", () => "pass", { tags: ["storage"] })
      .add("cache", () => "warn", { tags: ["storage", "hot"] })
      .add("mail", () => "fail", { tags: ["external"] });
    await using _server = await serve(sock.path, health, { thread, watchInterval: 20 });
    const json = JSON.parse(await exchange(sock.path, "GET /readyz?tag=storage\n"));
    assert.deepEqual(Object.keys(json.checks).filter((key) => !key.startsWith("mainloop")), [
      "db:responseTime",
      "cache:responseTime",
      "lifecycle:state",
    ]);
    assert.equal(json.status, "warn");
    const verbose = parseHttp(await exchange(sock.path, "GET /readyz?verbose&tag=external&tag=nope HTTP/1.0\r\n\r\n"));
    assert.equal(verbose.code, 503);
    assert.match(verbose.body, /^\[-\]mail failed: /m);
    assert.doesNotMatch(verbose.body, /\]db |\]cache /);
    assert.match(verbose.body, /^warn: cannot select tag "nope"/m);
    // Two streams on one endpoint with different tags are not sent each other's report.
    const [hot, external] = await Promise.all([
      exchange(sock.path, "GET /readyz?watch&timeout=0.2&tag=hot\n"),
      exchange(sock.path, "GET /readyz?watch&timeout=0.2&tag=external\n"),
    ]);
    assert.deepEqual(hot.trim().split("\n").map((line) => JSON.parse(line).status), ["warn"]);
    assert.deepEqual(external.trim().split("\n").map((line) => JSON.parse(line).status), ["fail"]);
  });
}

test("connections counts open connections, and reading it sends the Worker nothing", {}, async (thread) => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, healthy(), { thread });
  // Whatever the server posts to a Worker after this is counted: reading the count must not be one of them.
  const worker = (server as { worker?: Worker }).worker;
  assert.equal(worker !== undefined, thread === "worker");
  const posted: unknown[] = [];
  if (worker) {
    const post = worker.postMessage.bind(worker);
    worker.postMessage = (message: unknown) => {
      posted.push(message);
      post(message);
    };
  }
  const conns = await Promise.all([1, 2, 3].map(() => Deno.connect({ transport: "unix", path: sock.path })));
  try {
    await waitUntil(() => server.connections === 3, "three connections are counted");
  } finally {
    for (const conn of conns) conn.close();
  }
  await waitUntil(() => server.connections === 0, "closed connections are no longer counted");
  assert.deepEqual(posted, [], "the count is read without asking the Worker");
});
