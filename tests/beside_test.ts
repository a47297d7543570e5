// Serving beside the app: an app host whose main thread really spins (no mock
// clock), in a separate process, probed by curl.
import assert from "node:assert/strict";
import { configure, reset } from "@logtape/logtape";
import { Health } from "../health.ts";
import { permissionFlags } from "../paths.ts";
import { serve } from "../serve.ts";
import { probe, ProbeError } from "../client.ts";
import type { ProbeResult } from "../client.ts";
import { decoder, exchange, exists, readUntil, receiver, ROOT, run, tempSocket } from "./_util.ts";
import { notifyPermissionFlags } from "../notify.ts";
import { waitUntil } from "./fixtures/hardening.ts";

/** The busy app host, started with the scoped permissions users give a server; killed on dispose. */
interface App extends AsyncDisposable {
  child: Deno.ChildProcess;
  /** Its stdout, line by line. */
  lines: ReadableStreamDefaultReader<string>;
  /** Its stderr (the log of `--log`), when asked for. */
  log?: ReadableStreamDefaultReader<string>;
}

async function startApp(
  path: string,
  args: string[],
  options: { flags?: string[]; env?: Record<string, string>; log?: boolean } = {},
): Promise<App> {
  const flags = [...permissionFlags(path, { server: true }).split(" "), ...options.flags ?? []];
  const child = new Deno.Command("deno", {
    args: ["run", "--no-prompt", ...flags, `${ROOT}tests/fixtures/busy_app.ts`, path, ...args],
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: options.log ? "piped" : "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const log = options.log ? child.stderr.pipeThrough(new TextDecoderStream()).getReader() : undefined;
  const app: App = {
    child,
    lines,
    log,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await lines.cancel().catch(() => {});
      await log?.cancel().catch(() => {});
      await child.status;
    },
  };
  const { value } = await lines.read();
  assert.match(value ?? "", /^serving \d+/, "the app serves");
  return app;
}

/** Probe /readyz until it fails on the event loop: the main thread has been blocked for over a second. */
async function untilBlocked(path: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const answer = await curl(path, "/readyz");
    if (answer.code === 503 && answer.body.includes("event loop")) return;
    if (performance.now() > deadline) throw new Error("/readyz never failed on the event loop");
  }
}

interface Answer {
  /** curl's exit code: 0 when the server answered within --max-time. */
  exit: number;
  code: number;
  body: string;
}

/** One HTTP probe with curl, as a kubelet-style probe with a 1 s time-out. */
async function curl(path: string, target: string): Promise<Answer> {
  const out = await run("curl", [
    "-s",
    "--max-time",
    "1",
    "-w",
    "\n%{http_code}",
    "--unix-socket",
    path,
    `http://localhost${target}`,
  ]);
  const cut = out.stdout.lastIndexOf("\n");
  return { exit: out.code, code: Number(out.stdout.slice(cut + 1)), body: out.stdout.slice(0, cut) };
}

Deno.test("probes of an app blocking its main thread are answered: /livez passes, /readyz follows the blocks", async () => {
  await using sock = await tempSocket();
  await using _app = await startApp(sock.path, ["--block", "1500", "--every", "2000"]);
  const live: Answer[] = [];
  const ready: Answer[] = [];
  const until = performance.now() + 4500;
  while (performance.now() < until) {
    live.push(await curl(sock.path, "/livez"));
    ready.push(await curl(sock.path, "/readyz"));
  }
  for (const answer of [...live, ...ready]) assert.equal(answer.exit, 0, "every probe is answered within 1 s");
  assert.ok(live.every((answer) => answer.code === 200), "/livez passes while the app is busy");
  const failed = ready.findIndex((answer) => answer.code === 503);
  assert.ok(failed >= 0, "/readyz fails during a block");
  assert.match(ready[failed].body, /main thread's event loop blocked for \d/);
  assert.ok(ready.slice(failed).some((answer) => answer.code === 200), "/readyz passes again between blocks");
});

Deno.test("an app with the README's set-up blocking 1.2 s at a time stays ready between blocks, its lag a warning", async () => {
  await using sock = await tempSocket();
  // The README's eventLoopLag({ threshold: 100 }); blocks past readyBlockLimit (1 s), closer together than the
  // check's 5 s window, so a lag that has passed is always in it.
  await using _app = await startApp(sock.path, ["--block", "1200", "--every", "2500", "--lag"]);
  const live: Answer[] = [];
  const ready: Answer[] = [];
  const until = performance.now() + 7500;
  while (performance.now() < until) {
    live.push(await curl(sock.path, "/livez"));
    ready.push(await curl(sock.path, "/readyz"));
  }
  for (const answer of [...live, ...ready]) assert.equal(answer.exit, 0, "every probe is answered within 1 s");
  assert.ok(live.every((answer) => answer.code === 200), "/livez passes every time");
  const blocked = ready.findIndex((answer) => answer.code === 503);
  assert.ok(blocked >= 0, "/readyz fails while the loop is blocked past readyBlockLimit");
  assert.match(ready[blocked].body, /main thread's event loop blocked for \d/);
  const between = ready.slice(blocked).filter((answer) => answer.code === 200).map((answer) => JSON.parse(answer.body));
  assert.ok(between.length > 0, "/readyz passes again between blocks");
  const lagged = between.filter((report) => report.checks["eventloop:lag"][0].status !== "pass");
  assert.ok(lagged.length > 0, "the lag of a block that has passed is reported between blocks");
  for (const report of lagged) {
    const lag = report.checks["eventloop:lag"][0];
    assert.equal(lag.status, "warn", JSON.stringify(lag));
    assert.ok(lag.observedValue > 1000, `with its worst value: ${lag.observedValue} ms`);
    assert.equal(report.status, "warn");
  }
});

Deno.test("a wedged main thread: /livez answers, passes at first, then fails naming the event loop", async () => {
  await using sock = await tempSocket();
  await using _app = await startApp(sock.path, ["--wedge", "--live-limit", "2000"]);
  const first = await curl(sock.path, "/livez");
  assert.equal(first.exit, 0);
  assert.equal(first.code, 200, "busy is not dead");
  let last = first;
  const deadline = performance.now() + 10_000;
  while (last.code === 200 && performance.now() < deadline) {
    last = await curl(sock.path, "/livez");
    assert.equal(last.exit, 0, "every probe is answered");
  }
  assert.equal(last.code, 503, "wedged is dead");
  const report = JSON.parse(last.body);
  assert.equal(report.checks["mainloop:blocked"][0].status, "fail");
  assert.match(
    report.checks["mainloop:blocked"][0].output,
    /event loop blocked for [\d.]+ s \(liveness fails after 2 s\)/,
  );
  assert.ok(report.checks["mainloop:blocked"][0].observedValue > 2000);
});

const TEXT_LINE = /^\d\d:\d\d:\d\d\.\d{3} \[(TRC|DBG|INF|WRN|ERR|FTL)\] healthsock·\w+: /;

Deno.test("a wedged main thread: the Worker itself logs that the event loop is blocked, for readiness then liveness", async () => {
  await using sock = await tempSocket();
  await using app = await startApp(sock.path, ["--wedge", "--live-limit", "2000", "--log", "text"], { log: true });
  // The main thread never turns again: these lines can only come from the Worker.
  const { line, seen } = await readUntil(app.log!, /\/livez fails/, 20_000);
  const loop = seen.filter((each) => each.includes("event loop"));
  assert.equal(loop.length, 2, seen.join("\n"));
  assert.match(
    loop[0],
    /^\d\d:\d\d:\d\d\.\d{3} \[WRN\] healthsock·server: The main thread's event loop is blocked \(\d+ ms so far\): \/readyz fails on /,
  );
  assert.equal(line, loop[1], "the last line says the main loop is blocked");
  assert.match(
    line,
    /^\d\d:\d\d:\d\d\.\d{3} \[ERR\] healthsock·server: The main thread's event loop is blocked .*\/livez fails/,
  );
  assert.ok(line.includes(sock.path), line);
  for (const each of seen) assert.match(each, TEXT_LINE);
});

Deno.test("an app blocking its main thread now and then: each block is logged once as it starts and once as it ends", async () => {
  await using sock = await tempSocket();
  await using app = await startApp(sock.path, ["--block", "1500", "--every", "3000", "--log", "text"], { log: true });
  const seen: string[] = [];
  for (let ends = 0; ends < 2; ends++) seen.push(...(await readUntil(app.log!, /event loop turns again/, 20_000)).seen);
  const loop = seen.filter((each) => each.includes("event loop"));
  assert.deepEqual(
    loop.map((each) =>
      /is blocked .*\/readyz fails/.test(each) ? "blocked" : /turns again/.test(each) ? "turns" : each
    ),
    ["blocked", "turns", "blocked", "turns"],
  );
  for (const end of loop.filter((each) => each.includes("turns again"))) {
    const ms = Number(/after (\d+) ms blocked/.exec(end)?.[1]);
    assert.ok(ms > 1000, `a block that failed readiness lasted past readyBlockLimit: ${end}`);
  }
  assert.ok(!seen.some((each) => each.includes("/livez fails")), "liveness never failed");
});

Deno.test("a wedged main thread stops the systemd watchdog pings while /livez still answers", async () => {
  await using sock = await tempSocket();
  using systemd = receiver(`${sock.dir}/notify`);
  await using _app = await startApp(sock.path, ["--wedge", "--notify"], {
    flags: notifyPermissionFlags(`${sock.path}.notify`, systemd.path).split(" "),
    env: { NOTIFY_SOCKET: systemd.path, WATCHDOG_USEC: "200000" },
  });
  await systemd.until(/^WATCHDOG=1$/);
  // /readyz failing on the event loop means the loop has been wedged for over a second.
  await untilBlocked(sock.path);
  systemd.pending();
  await assert.rejects(systemd.next(1000), /No message/, "no ping while the main thread is wedged");
  assert.equal((await curl(sock.path, "/livez")).code, 200, "/livez answers from the Worker");
});

Deno.test("SIGTERM while the main thread is blocked drains once it turns", async () => {
  await using sock = await tempSocket();
  await using app = await startApp(sock.path, ["--block", "1500", "--every", "2000"]);
  // /readyz failing on the event loop means a block is under way.
  await untilBlocked(sock.path);
  app.child.kill("SIGTERM");
  const { value } = await app.lines.read();
  assert.equal(value?.trim(), "stopped");
  assert.equal((await app.child.status).code, 0);
  assert.equal(await exists(sock.path), false, "the socket is removed");
});

Deno.test("same-thread mode serves without the main loop entry", async () => {
  await using sock = await tempSocket();
  await using _app = await startApp(sock.path, ["--thread", "main"]);
  const answer = await curl(sock.path, "/readyz");
  assert.equal(answer.code, 200);
  assert.deepEqual(Object.keys(JSON.parse(answer.body).checks), ["app:responseTime", "lifecycle:state"]);
});

Deno.test("an on-request check is answered from its latest result, with its time, while the main thread is blocked", async () => {
  await using sock = await tempSocket();
  let runs = 0;
  const health = new Health({ ready: true }).add("db", () => {
    runs++;
    return "pass";
  }, { cacheTtl: 0 });
  await using _server = await serve(sock.path, health);
  const fresh = await probe(sock.path, { target: "/readyz/db" });
  assert.equal(runs, 1, "a turning main thread runs the check on request");
  const time = fresh.report?.checks["db:responseTime"][0].time;
  const child = new Deno.Command("curl", {
    args: ["-s", "--max-time", "1", "--unix-socket", sock.path, "http://localhost/readyz/db"],
    stdout: "piped",
  }).spawn();
  // Long enough for curl to start and ask while the loop is held, on a loaded machine too.
  const end = performance.now() + 1000;
  while (performance.now() < end) { /* blocked */ }
  const { stdout } = await child.output();
  const report = JSON.parse(decoder.decode(stdout));
  assert.equal(report.status, "pass");
  assert.equal(report.checks["db:responseTime"][0].time, time, "the latest result, with its time");
  assert.equal(runs, 1);
});

Deno.test("requests waiting for the same on-request check share one run on the main thread and one snapshot back", async () => {
  await using sock = await tempSocket();
  let runs = 0;
  // A run that ends only at its time-out: every request of the test arrives while it is in flight.
  const health = new Health({ ready: true }).add("db", async (signal) => {
    runs++;
    await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
  }, { cacheTtl: 0, timeout: 1500 });
  await using server = await serve(sock.path, health);
  const worker = workerOf(server)!;
  let asked = 0;
  let answers = 0;
  const take = worker.onmessage!;
  worker.onmessage = (event: MessageEvent) => {
    if (event.data?.type === "evaluate") asked++;
    take.call(worker, event);
  };
  const post = worker.postMessage.bind(worker);
  worker.postMessage = (message: { type?: string; ids?: number[] }) => {
    if (message.type === "snapshot" && message.ids) answers += message.ids.length;
    post(message);
  };
  const replies = await Promise.all(Array.from({ length: 16 }, () => exchange(sock.path, "GET /readyz/db\n")));
  for (const reply of replies) {
    assert.match(JSON.parse(reply).checks["db:responseTime"][0].output, /timed out/, "each has the run's result");
  }
  assert.equal(runs, 1, "the check ran once for 16 requests");
  assert.equal(asked, 1, "the Worker asked once");
  assert.equal(answers, 1, "one snapshot answered them all");
});

/** Probe `target` once the path is served again (its socket is refused until a new Worker claims it). */
async function probeWhenServed(path: string, target: string): Promise<ProbeResult> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await probe(path, { target });
    } catch (error) {
      if (!(error instanceof ProbeError && error.kind === "unreachable") || Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The Worker serving `server`, to make it fail as a bug in it would. */
function workerOf(server: unknown): Worker | undefined {
  return (server as { worker?: Worker }).worker;
}

Deno.test("a Worker that dies is noticed: the main thread logs it and serves again", async () => {
  await using sock = await tempSocket();
  const records: string[] = [];
  await configure({
    sinks: { memory: (record) => records.push(`${record.level} ${record.rawMessage}`) },
    loggers: [
      { category: ["healthsock"], lowestLevel: "info", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  try {
    await using server = await serve(sock.path, new Health({ ready: true }));
    assert.ok(records.some((line) => line.startsWith("info Serving health on")), "the Worker's logs reach LogTape");
    const first = workerOf(server);
    first?.postMessage({ type: "crash" });
    await waitUntil(() => workerOf(server) !== first, "a new Worker is started");
    assert.equal((await probeWhenServed(sock.path, "/readyz")).status, "pass", "a new Worker serves");
    assert.ok(
      records.some((line) => /^error The health Worker .* died: .*serving again/.test(line)),
      records.join("\n"),
    );
  } finally {
    await reset();
  }
});

Deno.test("a Worker that keeps dying makes finished reject", async () => {
  await using sock = await tempSocket();
  const server = await serve(sock.path, new Health({ ready: true }));
  const rejected = assert.rejects(server.finished, /health Worker .* died: .*no longer served/);
  try {
    for (let i = 0; i < 4; i++) {
      const worker = workerOf(server);
      if (!worker) break;
      worker.postMessage({ type: "crash" });
      await waitUntil(() => workerOf(server) !== worker, `Worker ${i + 1} is gone`);
    }
    await rejected;
  } finally {
    await server.close();
  }
});
