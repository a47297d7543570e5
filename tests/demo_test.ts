// The demo, started as users start it (the demo task's flags), probed, and stopped with signals.
import assert from "node:assert/strict";
import { probe, watch } from "../client.ts";
import { exists, hasCommand, readUntil, run, spawnDemo, tempSocket, untilReady } from "./_util.ts";

async function drainLog(log: ReadableStreamDefaultReader<string>): Promise<string> {
  let rest = "";
  for (;;) {
    const { value, done } = await log.read();
    if (done) return rest;
    rest += value;
  }
}

Deno.test("the demo answers our client, socat and curl, shows both sides, and SIGTERM removes its socket", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, ["--poll-interval", "100ms", "--ready-after", "50ms", "--drain-delay", "0"]);
  const { child, log } = demo;
  await readUntil(log, /Serving health on/);
  // Not ready until start-up is over and the worker has ticked: follow /readyz until it passes.
  assert.equal((await untilReady(sock.path)).at(-1), "pass");
  const ready = await probe(sock.path, { target: "/readyz" });
  assert.equal(ready.report?.checks["started:responseTime"]?.[0].status, "pass");
  const live = await probe(sock.path, { target: "/livez", framing: "http" });
  const ticks = live.report?.checks["ticker:ticks"]?.[0];
  assert.equal(ticks?.observedUnit, "ticks");
  assert.equal(typeof ticks?.observedValue, "number");
  assert.ok(Date.parse(ticks!.time!) > 0);
  if (hasCommand("socat")) {
    const out = await run("socat", ["-", `UNIX-CONNECT:${sock.path}`], { stdin: "GET /healthz\n" });
    assert.equal(JSON.parse(out.stdout).status, "pass");
  }
  if (hasCommand("curl")) {
    const out = await run("curl", ["-sS", "--unix-socket", sock.path, "http://localhost/healthz"]);
    assert.equal(JSON.parse(out.stdout).status, "pass");
  }
  const exchange = await readUntil(log, /Client got: \{"status":"pass"/);
  const seen = exchange.seen.join("\n");
  assert.match(seen, /Server got: GET \/healthz/);
  assert.match(seen, /Server responded with \d+ bytes/);
  child.kill("SIGTERM");
  const rest = await drainLog(log);
  assert.equal((await child.status).code, 0);
  assert.match(rest, /Stopped serving/);
  assert.equal(await exists(sock.path), false);
  assert.equal(await exists(`${sock.path}.tmp`), false);
});

Deno.test("the demo with --stall-after turns /livez from pass to fail", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, [
    "--stall-after",
    "300ms",
    "--unhealthy-after",
    "300ms",
    "--poll-interval",
    "0",
    "--drain-delay",
    "0",
  ]);
  const { child, log } = demo;
  await readUntil(log, /Serving health on/);
  const statuses: string[] = [];
  const stop = new AbortController();
  for await (const report of watch(sock.path, { target: "/livez", signal: stop.signal })) {
    statuses.push(report.status);
    if (report.status === "fail") {
      assert.match(report.checks["ticker:ticks"][0].output ?? "", /^no tick for \d+\.\d s$/);
      stop.abort();
    }
  }
  assert.deepEqual(statuses, ["pass", "fail"]);
  await readUntil(log, /Worker stalled on purpose/);
  child.kill("SIGTERM");
  await drainLog(log);
  assert.equal((await child.status).code, 0);
});

Deno.test("a second signal during the demo's drain stops it at once", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, ["--drain-delay", "60s", "--poll-interval", "0", "--ready-after", "0"]);
  const { child, log } = demo;
  await readUntil(log, /Serving health on/);
  child.kill("SIGTERM");
  await readUntil(log, /Draining/);
  // While draining: /readyz fails with "shutting down", /livez passes.
  const ready = await probe(sock.path, { target: "/readyz" });
  assert.equal(ready.status, "fail");
  assert.equal(ready.report?.checks["lifecycle:state"][0].output, "shutting down");
  assert.equal((await probe(sock.path, { target: "/livez" })).status, "pass");
  // Signals within 500 ms of the first are the same keypress seen again (tests/signals_test.ts).
  await new Promise((resolve) => setTimeout(resolve, 600));
  child.kill("SIGINT");
  await drainLog(log);
  assert.equal((await child.status).code, 0);
  assert.equal(await exists(sock.path), false);
});
