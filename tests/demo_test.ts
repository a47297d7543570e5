// The demo, started as users start it (the demo task's flags), probed, and stopped with signals.
import assert from "node:assert/strict";
import { probe, ProbeError, watch } from "../client.ts";
import { startDemo } from "../demo.ts";
import { waitUntil } from "./fixtures/hardening.ts";
import { cli, exists, hasCommand, readUntil, restOf, run, spawnDemo, tempSocket, untilReady } from "./_util.ts";

Deno.test("the demo answers our client, socat and curl, shows both sides, and SIGTERM removes its socket", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, [
    "--poll-interval",
    "100ms",
    "--ready-after",
    "50ms",
    "--drain-delay",
    "0",
    "--log-level",
    "debug",
  ]);
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
  const rest = await restOf(log);
  assert.equal((await child.status).code, 0);
  assert.match(rest, /Stopped serving/);
  assert.equal(await exists(sock.path), false);
  assert.equal(await exists(`${sock.path}.tmp`), false);
});

Deno.test("the demo logs no line per request served unless asked for debug", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, ["--poll-interval", "100ms", "--ready-after", "0", "--drain-delay", "0"]);
  const { child, log } = demo;
  await readUntil(log, /Serving health on/);
  for (let i = 0; i < 5; i++) assert.equal((await cli(sock.path, ["check", "--path", "/livez"])).code, 0);
  // Its own client's answers are logged (one line a poll), then SIGTERM.
  const { seen } = await readUntil(log, /Client got: \{"status":"pass"/);
  child.kill("SIGTERM");
  const all = seen.join("\n") + (await restOf(log));
  assert.equal((await child.status).code, 0);
  assert.doesNotMatch(all, /Server got|Server responded/, "no line per request at the default level");
  assert.match(all, /Stopped serving/);
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
  await restOf(log);
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
  await restOf(log);
  assert.equal((await child.status).code, 0);
  assert.equal(await exists(sock.path), false);
});

Deno.test("the demo with --block-every and --block-for blocks its main thread, seen by its eventloop check", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, [
    "--block-every",
    "700ms",
    "--block-for",
    "350ms",
    "--poll-interval",
    "0",
    "--ready-after",
    "0",
    "--drain-delay",
    "0",
  ]);
  const { child, log } = demo;
  await readUntil(log, /Serving health on/);
  await readUntil(log, /Worker busy for 350 ms: the main thread is blocked/);
  // The eventloop check's own timer (not the demo's word) saw a stall as long as a block. The demo
  // never asks it: poll, as a prober would, until a probe lands after a block.
  let lag = 0;
  for (let tries = 0; lag < 300; tries++) {
    assert.ok(tries < 100, `no probe saw a block; the last lag was ${lag} ms`);
    const ready = await probe(sock.path, { target: "/readyz", timeout: 5000 });
    const result = ready.report?.checks["eventloop:lag"]?.[0];
    lag = result?.observedValue as number;
    if (lag >= 300) {
      // Not critical: a busy loop makes /readyz warn, with the worst stall of the last 5 s.
      assert.equal(ready.status, "warn", ready.body);
      assert.match(result?.output ?? "", /^event loop lag \d+(\.\d)? ms in the last 5000 ms exceeds 250 ms$/);
    } else {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  // Busy is not dead: the worker's blocks are its work, so /livez passes.
  const live = await probe(sock.path, { target: "/livez", timeout: 5000 });
  assert.equal(live.status, "pass", live.body);
  child.kill("SIGTERM");
  await restOf(log);
  assert.equal((await child.status).code, 0);
  assert.equal(await exists(sock.path), false);
});

Deno.test("the demo with --wedge-after blocks its main thread for good: a signal cannot drain it", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, ["--wedge-after", "200ms", "--poll-interval", "0", "--drain-delay", "0"]);
  const { child, log } = demo;
  await readUntil(log, /Serving health on/);
  await readUntil(log, /Worker wedged on purpose after 200 ms: the main thread never turns again/);
  child.kill("SIGTERM");
  // A server on the main thread cannot answer (a time-out); one beside the app answers /livez, which
  // passes for its first seconds. Either way, the probe takes long enough for a drain to have begun.
  const live = await probe(sock.path, { target: "/livez", timeout: 1000 }).then(
    (result) => result.status,
    (error) => error instanceof ProbeError ? error.kind : String(error),
  );
  assert.ok(live === "timeout" || live === "pass", live);
  const exited = await Promise.race([child.status.then(() => true), Promise.resolve(false)]);
  assert.equal(exited, false, "the wedged demo stopped on SIGTERM");
  child.kill("SIGKILL");
  const rest = await restOf(log);
  assert.doesNotMatch(rest, /draining/);
  assert.equal((await child.status).signal, "SIGKILL");
});

Deno.test("the demo refuses bad --block-every, --block-for and --wedge-after values with exit 64", async () => {
  await using sock = await tempSocket();
  for (
    const [args, message] of [
      [["--block-every", "2s"], /Invalid --block-every "2s": give --block-for too, e\.g\. --block-every 2s/],
      [["--block-for", "1s"], /Invalid --block-for "1s": give --block-every too/],
      [
        ["--block-every", "1s", "--block-for", "1s"],
        /Invalid --block-for "1s": must be shorter than --block-every "1s"/,
      ],
      [["--block-every", "2s", "--block-for", "0"], /Invalid --block-for "0": must be more than zero/],
      [["--block-every", "600h", "--block-for", "1s"], /Invalid --block-every "600h": at most 2147483647 ms/],
      [["--wedge-after", "600h"], /Invalid --wedge-after "600h": at most 2147483647 ms/],
      [["--wedge-after", "soon"], /Invalid --wedge-after "soon": expected a duration such as 500ms/],
    ] as const
  ) {
    const out = await cli(sock.path, ["demo", ...args], { server: true });
    assert.equal(out.code, 64, `${args.join(" ")}: ${out.stderr}`);
    assert.match(out.stderr, message, args.join(" "));
    assert.match(out.stderr, /Run 'healthsock demo --help' for usage/, args.join(" "));
    assert.equal(await exists(sock.path), false);
  }
});

Deno.test("the demo stops its own timers and finished rejects when its health Worker dies for good", async () => {
  await using sock = await tempSocket();
  const demo = await startDemo(sock.path, { pollInterval: 0, readyAfter: 0 });
  const rejected = assert.rejects(demo.finished, /health Worker .* died: .*no longer served/);
  try {
    const workerOf = () => (demo.server as { worker?: Worker }).worker;
    for (let i = 0; i < 4; i++) {
      const worker = workerOf();
      if (!worker) break;
      worker.postMessage({ type: "crash" });
      await waitUntil(() => workerOf() !== worker, `Worker ${i + 1} is gone`);
    }
    // The op sanitizer fails this test if the ticker's timers outlive the server.
    await rejected;
  } finally {
    await demo.server.close();
  }
});
