// Watch streams as the clients people use follow them: socat, nc and ncat in line mode; curl -N,
// Python requests' iter_lines() and an EventSource over HTTP; our own watch() and `watch --changes`.
// Each stream starts at pass, the test flips the check to fail, then drains the server: the client must
// show pass, then fail, then end by itself.
import assert from "node:assert/strict";
import { EventSource } from "eventsource";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import type { HealthServer } from "../server.ts";
import { watch } from "../client.ts";
import { cli, decoder, encoder, hasCommand, readUntil, restOf, ROOT, run, tempSocket } from "./_util.ts";

const PYTHON = "/usr/bin/python3"; // Debian's, where python3-requests-unixsocket installs; not a pyenv one on PATH
const HAS = {
  socat: hasCommand("socat"),
  nc: hasCommand("nc"),
  ncat: hasCommand("ncat"),
  curl: hasCommand("curl"),
  requests: hasPythonModule("requests_unixsocket"),
};

function hasPythonModule(name: string): boolean {
  try {
    return new Deno.Command(PYTHON, { args: ["-c", `import ${name}`], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

function missing(tool: keyof typeof HAS, what: string): string {
  return HAS[tool] ? "" : ` (ignored: ${what} is not installed)`;
}

/** A server whose /livez the test flips: `ticker` passes until `state.status` says otherwise. */
async function flippable(path: string): Promise<{ server: HealthServer; state: { status: "pass" | "fail" } }> {
  const state: { status: "pass" | "fail" } = { status: "pass" };
  const health = new Health({ ready: true }).add("ticker", () => state.status, { kinds: ["live"], cacheTtl: 0 });
  const server = await serve(path, health, { watchInterval: 20, drainDelay: 0 });
  return { server, state };
}

/** Statuses of the JSON report lines among `lines`. */
function statuses(lines: string[]): string[] {
  return lines.filter((line) => line.startsWith("{") || line.startsWith("data: {"))
    .map((line) => JSON.parse(line.replace(/^data: /, "")).status);
}

/** Spawn a command, give it `input` on stdin then end stdin, as `<<<` does. */
function spawnWithInput(command: string, args: string[], input: string): Deno.ChildProcess {
  const child = new Deno.Command(command, { args, stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  writer.write(encoder.encode(input)).then(() => writer.close()).catch(() => {});
  return child;
}

/**
 * Follow /livez?watch with a command that prints what it receives: pass, flip to fail, drain.
 * Returns every line it printed, its exit code and its stderr.
 */
async function follow(
  command: string,
  args: (path: string) => string[],
  input = "GET /livez?watch\n",
): Promise<{ lines: string[]; code: number; stderr: string }> {
  await using sock = await tempSocket();
  const { server, state } = await flippable(sock.path);
  const child = spawnWithInput(command, args(sock.path), input);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  try {
    // A report's status, also inside the JSON string the Python fixture prints it in.
    const first = await readUntil(reader, /\\?"status\\?":\\?"pass/);
    state.status = "fail";
    const second = await readUntil(reader, /\\?"status\\?":\\?"fail/);
    await server.drain(); // ends the stream: the client must then end by itself
    const lines = [...first.seen, ...second.seen, ...(await restOf(reader)).split("\n").filter(Boolean)];
    const { code } = await child.status;
    return { lines, code, stderr: (await restOf(stderr)).trim() };
  } finally {
    await reader.cancel().catch(() => {});
    await stderr.cancel().catch(() => {});
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await server.close();
  }
}

Deno.test({
  name: `socat with its defaults prints what a watch sends until 0.5 s after its input ends, then exits 0${
    missing("socat", "socat")
  }`,
  ignore: !HAS.socat,
  async fn() {
    await using sock = await tempSocket();
    // A check that flips on its first four evaluations: the watch sends a report on each while it is open.
    let runs = 0;
    const health = new Health({ ready: true }).add("ticker", () => runs++ < 4 && runs % 2 === 0 ? "fail" : "pass", {
      kinds: ["live"],
      cacheTtl: 0,
    });
    await using _server = await serve(sock.path, health, { watchInterval: 20 });
    // `socat - UNIX-CONNECT:… <<< "GET /livez?watch"`: at stdin's EOF socat half-closes the socket and
    // waits -t 0.5 s for the other direction, then exits, whatever the server still sends.
    const out = await run("socat", ["-", `UNIX-CONNECT:${sock.path}`], { stdin: "GET /livez?watch\n" });
    assert.equal(out.code, 0, out.stderr);
    const seen = statuses(out.stdout.trim().split("\n"));
    // The stream outlived the half-close: reports kept coming, and socat left by its own timeout once they stopped.
    assert.ok(seen.length >= 2, `socat printed ${seen.join(", ")}`);
    assert.deepEqual(seen, seen.map((_, i) => i % 2 === 0 ? seen[0] : seen[0] === "pass" ? "fail" : "pass"));
  },
});

for (const [label, args] of [["-t 86400", ["-t", "86400", "-"]], ["-,ignoreeof", ["-,ignoreeof"]]] as const) {
  Deno.test({
    name: `socat ${label} follows a line-mode watch: pass, then fail, then exits when the server drains${
      missing("socat", "socat")
    }`,
    ignore: !HAS.socat,
    async fn() {
      const out = await follow("socat", (path) => [...args, `UNIX-CONNECT:${path}`]);
      assert.equal(out.code, 0, out.stderr);
      assert.deepEqual(statuses(out.lines), ["pass", "fail"]);
    },
  });
}

Deno.test({
  name: `nc -N -U half-closes after its input and still follows the stream: pass, then fail${
    missing("nc", "netcat-openbsd")
  }`,
  ignore: !HAS.nc,
  async fn() {
    const out = await follow("nc", (path) => ["-N", "-U", path]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(statuses(out.lines), ["pass", "fail"]);
  },
});

Deno.test({
  name: `ncat -U half-closes after its input and still follows the stream: pass, then fail${missing("ncat", "ncat")}`,
  ignore: !HAS.ncat,
  async fn() {
    const out = await follow("ncat", (path) => ["-U", path]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(statuses(out.lines), ["pass", "fail"]);
  },
});

Deno.test({
  name: `curl -N follows the chunked event stream: pass, then fail, then the end event${missing("curl", "curl")}`,
  ignore: !HAS.curl,
  async fn() {
    const out = await follow("curl", (path) => ["-sSN", "--unix-socket", path, "http://localhost/livez?watch"], "");
    assert.equal(out.code, 0, out.stderr); // the chunked body ended properly (curl exits 18 on a cut one)
    assert.deepEqual(statuses(out.lines), ["pass", "fail"]);
    assert.deepEqual(out.lines.slice(-2), ["event: end", "data: shutting down"]);
    assert.ok(!out.lines.some((line) => line.startsWith("event: ") && line !== "event: end"), out.lines.join("\n"));
  },
});

Deno.test({
  name: `Python requests-unixsocket's default iter_lines() gets each event as it is sent${
    missing("requests", "python3-requests-unixsocket")
  }`,
  ignore: !HAS.requests,
  async fn() {
    const fixture = `${ROOT}tests/fixtures/iter_lines.py`;
    const out = await follow(PYTHON, (path) => [fixture, path, "/livez?watch"], "");
    assert.equal(out.code, 0, out.stderr);
    const received = out.lines.map((line) => JSON.parse(line) as { t: number; line: string });
    assert.equal(received[0].line, "200 chunked");
    const events = received.filter(({ line }) => line.startsWith("data: {"));
    assert.deepEqual(statuses(events.map(({ line }) => line)), ["pass", "fail"]);
    // Nothing else was sent before the test saw it: a stream that needed 512 bytes would deliver nothing.
    assert.ok(events[0].t < 2, `first event after ${events[0].t} s`);
    const last = received.map(({ line }) => line).filter(Boolean).slice(-2); // iter_lines() also yields the blank lines
    assert.deepEqual(last, ["event: end", "data: shutting down"]);
  },
});

Deno.test("an EventSource (npm eventsource over fetch on the socket) gets each report in onmessage", async () => {
  await using sock = await tempSocket();
  const { server, state } = await flippable(sock.path);
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: sock.path } });
  const messages: string[] = [];
  const named: string[] = [];
  let arrived = Promise.withResolvers<void>();
  const ended = Promise.withResolvers<string>();
  const source = new EventSource("http://localhost/livez?watch", {
    fetch: (input, init) => fetch(input, { ...init, client }),
  });
  source.onmessage = (event) => {
    messages.push(JSON.parse(event.data).status);
    arrived.resolve();
  };
  for (const name of ["pass", "warn", "fail"]) source.addEventListener(name, () => named.push(name));
  source.addEventListener("end", (event) => {
    source.close(); // or EventSource reconnects after the stream ends
    ended.resolve(event.data);
  });
  source.onerror = (event) => ended.reject(new Error(`EventSource error: ${event.message ?? event.type}`));
  try {
    while (messages.length < 1) await arrived.promise;
    arrived = Promise.withResolvers<void>();
    state.status = "fail";
    while (messages.length < 2) await arrived.promise;
    await server.drain();
    assert.equal(await ended.promise, "shutting down");
    assert.deepEqual(messages, ["pass", "fail"]);
    assert.deepEqual(named, []);
  } finally {
    source.close();
    client.close();
    await server.close();
  }
});

/**
 * A server from before watch streams were chunked and unnamed: its line-mode watch sends the same JSON lines (its HTTP stream named
 * each event `pass`/`warn`/`fail`, which our client never asks for), then ends. Records what it was sent.
 */
function olderServer(path: string, reports: string[]): { requests: string[] } & AsyncDisposable {
  const listener = Deno.listen({ transport: "unix", path });
  const requests: string[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      const buf = new Uint8Array(1024);
      const n = await conn.read(buf);
      requests.push(decoder.decode(buf.subarray(0, n ?? 0)));
      for (const report of reports) await conn.write(encoder.encode(report + "\n"));
      conn.close();
    }
  })();
  return {
    requests,
    async [Symbol.asyncDispose]() {
      listener.close();
      await serving.catch(() => {});
    },
  };
}

const OLD_REPORTS = [
  JSON.stringify({ status: "fail", checks: { "lifecycle:state": [{ status: "fail", observedValue: "starting" }] } }),
  JSON.stringify({ status: "pass", checks: { "lifecycle:state": [{ status: "pass", observedValue: "ready" }] } }),
];

Deno.test("watch() asks in line mode, so an older server's stream reads the same", async () => {
  await using sock = await tempSocket();
  await using old = olderServer(sock.path, OLD_REPORTS);
  const seen: string[] = [];
  for await (const report of watch(sock.path, { target: "/readyz" })) seen.push(report.status);
  assert.deepEqual(seen, ["fail", "pass"]);
  assert.deepEqual(old.requests, ["GET /readyz?watch\n"]);
});

Deno.test("watch --changes follows an older server's line-mode stream too", async () => {
  await using sock = await tempSocket();
  await using old = olderServer(sock.path, OLD_REPORTS);
  const out = await cli(sock.path, ["watch", "--changes", "--path", "/readyz", "--count", "2"]);
  assert.equal(out.code, 0, out.stderr);
  const lines = out.stdout.trim().split("\n");
  assert.match(lines[0], / fail readyz check failed/);
  assert.match(lines[1], / pass readyz check passed/);
  assert.deepEqual(old.requests, ["GET /readyz?watch\n"]);
});

Deno.test({
  name: `curl and socat see an excluded check listed as "[+]NAME excluded: ok", as kube-apiserver lists it${
    missing("curl", "curl")
  }${missing("socat", "socat")}`,
  ignore: !HAS.curl || !HAS.socat,
  async fn() {
    await using sock = await tempSocket();
    await using _server = await flippable(sock.path).then(({ server }) => server);
    const expected = "[+]lifecycle ok\n[+]mainloop ok\n[+]ticker excluded: ok\nlivez check passed\n";
    const http = await run("curl", [
      "-sS",
      "--unix-socket",
      sock.path,
      "http://localhost/livez?verbose&exclude=ticker",
    ]);
    assert.equal(http.stdout, expected, http.stderr); // the body, ending with its newline as line mode's does
    const line = await run("socat", ["-", `UNIX-CONNECT:${sock.path}`], {
      stdin: "GET /livez?verbose&exclude=ticker\n",
    });
    assert.equal(line.stdout, expected, line.stderr);
  },
});
