// notifySystemd speaking sd_notify(3) to a real Unix datagram socket bound
// where systemd's would be, in the same process; the CLI's side is in
// examples_test.ts, spawned with the unit's own flags, and below where
// systemd's queue is full (filled by a flooder in its own process).
import assert from "node:assert/strict";
import { configure, reset } from "@logtape/logtape";
import type { LogRecord } from "@logtape/logtape";
import { probe } from "../client.ts";
import { Health } from "../health.ts";
import { notifyPermissionFlags, notifySystemd } from "../notify.ts";
import { lockPath } from "../paths.ts";
import { asNobody, NOBODY } from "./fixtures/hardening.ts";
import {
  decoder,
  exists,
  figures,
  meanPeriod,
  readUntil,
  receiver,
  restOf,
  ROOT,
  run,
  spawnDeno,
  taskArgs,
  tempSocket,
  untilReady,
  watchdogPings,
} from "./_util.ts";
import type { DemoProcess, TempSocket } from "./_util.ts";

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("notifier says READY=1 with a summary once /readyz passes, and not before", async () => {
  await using sock = await tempSocket();
  using systemd = receiver(`${sock.dir}/notify`);
  let warmedUp = false;
  const health = new Health()
    .add("warm", () => warmedUp ? "pass" : { status: "fail", output: "cold" }, { cacheTtl: 0 })
    .add("worker", () => "pass", { kinds: ["live"] });
  await using notifier = await notifySystemd(health, sock.path, {
    environment: { NOTIFY_SOCKET: systemd.path },
    readyInterval: 20,
  });
  assert.equal(notifier.active, true);
  assert.equal(notifier.watchdogInterval, undefined, "no WATCHDOG_USEC, no pings");
  assert.equal(await exists(sock.path), false, "the sending end's name is removed once bound");
  assert.equal((await systemd.next()).text, "STATUS=starting");

  health.markReady();
  assert.equal((await systemd.next()).text, "STATUS=starting: /readyz fails (failed: warm)");
  // Marked ready, /readyz still failing: polled every readyInterval, reported once.
  await pause(200);
  assert.deepEqual(systemd.pending(), []);

  const opened = performance.now();
  warmedUp = true;
  const ready = await systemd.next();
  assert.equal(ready.text, "READY=1\nSTATUS=ready: 2 checks pass");
  assert.ok(ready.at >= opened);
});

Deno.test("notifier sends nothing and binds nothing when NOTIFY_SOCKET is unset", async () => {
  await using sock = await tempSocket();
  const health = new Health({ ready: true });
  await using notifier = await notifySystemd(health, sock.path, { environment: { WATCHDOG_USEC: "100000" } });
  assert.equal(notifier.active, false);
  assert.equal(await exists(sock.path), false);
  health.markDraining();
  await notifier.close();
});

Deno.test("notifier pings WATCHDOG=1 every half WATCHDOG_USEC while /livez passes", async () => {
  await using sock = await tempSocket();
  // Two notifiers of one health, one with a quarter of the other's WATCHDOG_USEC, each to its own systemd.
  using systemd = receiver(`${sock.dir}/notify`);
  using slowSystemd = receiver(`${sock.dir}/notify-slow`);
  const health = new Health().add("worker", () => "pass", { kinds: ["live"] });
  await using notifier = await notifySystemd(health, sock.path, {
    environment: { NOTIFY_SOCKET: systemd.path, WATCHDOG_USEC: "200000", WATCHDOG_PID: String(Deno.pid) },
  });
  await using slow = await notifySystemd(health, `${sock.path}.slow`, {
    environment: { NOTIFY_SOCKET: slowSystemd.path, WATCHDOG_USEC: "800000" },
  });
  assert.equal(notifier.watchdogInterval, 100);
  assert.equal(slow.watchdogInterval, 400);
  assert.equal((await systemd.next()).text, "STATUS=starting");
  assert.equal((await slowSystemd.next()).text, "STATUS=starting");
  // The first ping goes at once, then one a period: while the slow one pings twice more, the fast one pings more
  // often (about eight times). An order of the two, not a duration, so a busy machine slows both alike.
  const { pings: slowPings, period: slowPeriod } = await watchdogPings(slowSystemd, 3);
  const pings = systemd.pending();
  assert.ok(pings.every((m) => m.text === "WATCHDOG=1"), pings.map((m) => m.text).join(" | "));
  const between = pings.filter((ping) => ping.at > slowPings[0].at && ping.at <= slowPings[2].at);
  figures("notify", "watchdog pings", {
    "period ms": meanPeriod(pings).toFixed(0),
    "slow period ms": slowPeriod.toFixed(0),
  });
  assert.ok(between.length > 2, `${between.length} pings of WATCHDOG_USEC 200000 while 800000 pinged twice`);
});

Deno.test("notifier sends WATCHDOG=trigger naming the failed live check, then no more pings", async () => {
  await using sock = await tempSocket();
  using systemd = receiver(`${sock.dir}/notify`);
  let stuck = false;
  const health = new Health({ ready: true })
    .add("worker", () => stuck ? { status: "fail", output: "no tick\nfor 3 s" } : "pass", {
      kinds: ["live"],
      cacheTtl: 0,
    });
  await using notifier = await notifySystemd(health, sock.path, {
    environment: { NOTIFY_SOCKET: systemd.path, WATCHDOG_USEC: "100000" },
  });
  await systemd.until(/^READY=1/);
  await systemd.until(/^WATCHDOG=1$/);
  stuck = true;
  const { message, skipped } = await systemd.until(/^WATCHDOG=trigger/);
  assert.equal(message.text, "WATCHDOG=trigger\nSTATUS=live check failed: worker (no tick for 3 s)");
  assert.ok(skipped.every((m) => m.text === "WATCHDOG=1"), skipped.map((m) => m.text).join(" | "));
  // Ten periods of silence: systemd acts on the trigger, no ping may cancel it.
  await pause(10 * notifier.watchdogInterval!);
  assert.deepEqual(systemd.pending(), []);
  assert.equal(notifier.active, true, "READY and STOPPING still go out");
});

Deno.test("notifier sends no pings when WATCHDOG_PID names another process", async () => {
  await using sock = await tempSocket();
  using systemd = receiver(`${sock.dir}/notify`);
  const health = new Health().add("worker", () => "pass", { kinds: ["live"] });
  await using notifier = await notifySystemd(health, sock.path, {
    environment: { NOTIFY_SOCKET: systemd.path, WATCHDOG_USEC: "100000", WATCHDOG_PID: String(Deno.pid + 1) },
  });
  assert.equal(notifier.watchdogInterval, undefined);
  assert.equal((await systemd.next()).text, "STATUS=starting");
  await pause(500);
  assert.deepEqual(systemd.pending(), []);
});

Deno.test("notifier sends STOPPING=1 when a drain starts and stops once the health is stopped", async () => {
  await using sock = await tempSocket();
  using systemd = receiver(`${sock.dir}/notify`);
  const health = new Health({ ready: true }).add("worker", () => "pass", { kinds: ["live"] });
  const notifier = await notifySystemd(health, sock.path, {
    environment: { NOTIFY_SOCKET: systemd.path, WATCHDOG_USEC: "60000000" },
  });
  await systemd.until(/^READY=1/);
  health.markDraining();
  const { message } = await systemd.until(/^STOPPING=1/);
  assert.equal(message.text, "STOPPING=1\nSTATUS=draining");
  health.markStopped();
  await notifier.finished;
  assert.equal(notifier.active, false);
});

Deno.test("notifier warns once and stays inactive when NOTIFY_SOCKET points nowhere", async () => {
  await using sock = await tempSocket();
  const records: LogRecord[] = [];
  await configure({
    sinks: { memory: (record: LogRecord) => records.push(record) },
    loggers: [
      { category: ["healthsock", "notify"], lowestLevel: "warning", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["memory"] },
    ],
    reset: true,
  });
  try {
    const health = new Health({ ready: true });
    const nowhere = `${sock.dir}/no-such-socket`;
    await using notifier = await notifySystemd(health, sock.path, {
      environment: { NOTIFY_SOCKET: nowhere, WATCHDOG_USEC: "100000" },
    });
    assert.equal(notifier.active, false);
    health.markDraining();
    await pause(300);
    assert.equal(records.length, 1, records.map((r) => r.message.join("")).join("\n"));
    const text = records[0].message.map(String).join("");
    assert.match(text, /^Cannot notify systemd at .*no-such-socket.*: NotFound/);
    assert.match(text, /check NOTIFY_SOCKET/);
    assert.equal(await exists(sock.path), false);
  } finally {
    await reset();
  }
});

Deno.test("notifier names the flags when Deno may not use the notify socket", () => {
  assert.equal(
    notifyPermissionFlags("/run/app/app.sock.notify", "/run/systemd/notify"),
    "--unstable-net --allow-read=/run/app/app.sock.notify " +
      "--allow-write=/run/app/app.sock.notify,/run/systemd/notify " +
      "--allow-net=unix:/run/app/app.sock.notify,unix:/run/systemd/notify " +
      "--allow-env=NOTIFY_SOCKET,WATCHDOG_USEC,WATCHDOG_PID",
  );
});

Deno.test("notifier names flags Deno accepts for an abstract NOTIFY_SOCKET", async () => {
  const flags = notifyPermissionFlags("/run/app/app.sock.notify", "@sd-notify");
  assert.doesNotMatch(flags, /unix:@/);
  assert.match(flags, /(^| )--allow-net( |$)/);
  // Deno refuses to start with a flag it cannot parse: these must start a program.
  const { code, stderr } = await run("deno", ["eval", ...flags.split(" "), "Deno.exit(0)"]);
  assert.equal(code, 0, stderr);
});

Deno.test("notifier rejects a relative bind path", async () => {
  await assert.rejects(() => notifySystemd(new Health(), "app.sock.notify"), TypeError);
});

/** Log lines of the notifier at `level` and above, gathered while `body` runs. */
async function logged(body: () => Promise<void>, level: "info" | "warning" = "warning"): Promise<string[]> {
  const records: LogRecord[] = [];
  await configure({
    sinks: { memory: (record: LogRecord) => records.push(record) },
    loggers: [
      { category: ["healthsock", "notify"], lowestLevel: level, sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["memory"] },
    ],
    reset: true,
  });
  try {
    await body();
  } finally {
    await reset();
  }
  return records.map((record) => record.message.map(String).join(""));
}

Deno.test("notifier says NOTIFY_SOCKET is a directory or a regular file, not just that it refused", async () => {
  await using sock = await tempSocket();
  const directory = `${sock.dir}/notify-dir`;
  const file = `${sock.dir}/notify-file`;
  await Deno.mkdir(directory);
  await Deno.writeTextFile(file, "not a socket\n");
  for (const [target, what] of [[directory, "a directory"], [file, "a regular file"]]) {
    const lines = await logged(async () => {
      await using notifier = await notifySystemd(new Health({ ready: true }), sock.path, {
        environment: { NOTIFY_SOCKET: target },
      });
      assert.equal(notifier.active, false);
    });
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.ok(lines[0].startsWith(`Cannot notify systemd at "${target}": it is ${what}, not a socket`), lines[0]);
    assert.match(lines[0], /check NOTIFY_SOCKET/);
  }
  assert.equal(await Deno.readTextFile(file), "not a socket\n", "left as it was");
});

/** A datagram socket left at `path` by another process, of user nobody or this one (python3 binds it and exits). */
async function leaveSocket(path: string, nobody: boolean): Promise<void> {
  const python = [
    "/usr/bin/python3",
    "-c",
    "import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).bind(sys.argv[1])",
    path,
  ];
  const out = nobody ? await run("setpriv", asNobody(python)) : await run(python[0], python.slice(1));
  assert.equal(out.code, 0, out.stderr);
}

Deno.test({
  name: "notifier leaves another user's socket at its bind path alone, root included, and says whose it is",
  ignore: Deno.uid() !== 0,
  async fn() {
    await using sock = await tempSocket();
    await Deno.chmod(sock.dir, 0o777);
    const bindPath = `${sock.path}.notify`;
    await leaveSocket(bindPath, true);
    using systemd = receiver(`${sock.dir}/notify`);
    const lines = await logged(async () => {
      await using notifier = await notifySystemd(new Health({ ready: true }), bindPath, {
        environment: { NOTIFY_SOCKET: systemd.path },
      });
      assert.equal(notifier.active, false);
    });
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], new RegExp(`"${bindPath}" is in the way: it is a socket of uid ${NOBODY}, not this user's`));
    assert.match(lines[0], /remove it as its owner/);
    const left = await Deno.lstat(bindPath);
    assert.ok(left.isSocket && left.uid === NOBODY, "still there, still nobody's");
    assert.deepEqual(systemd.pending(), [], "nothing sent");
  },
});

Deno.test("notifier replaces a socket its own user left at its bind path", async () => {
  await using sock = await tempSocket();
  const bindPath = `${sock.path}.notify`;
  await leaveSocket(bindPath, false);
  using systemd = receiver(`${sock.dir}/notify`);
  await using notifier = await notifySystemd(new Health(), bindPath, { environment: { NOTIFY_SOCKET: systemd.path } });
  assert.equal(notifier.active, true);
  assert.equal((await systemd.next()).text, "STATUS=starting");
  assert.equal(await exists(bindPath), false);
});

// systemd's queue full: a service manager that never reads, filled by a neighbour in its own process.

/** Reject once `ms` pass first: a bound on a wait that must end, never a speed. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => reject(new Error(`Timed out after ${ms / 1000} s waiting until ${what}`)), ms)
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Fill the queue of the datagram socket at `target` from another process (tests/fixtures/notify_flooder.ts). */
async function flood(target: string, dir: string): Promise<number> {
  const senders = Array.from({ length: 16 }, (_, i) => `${dir}/flood-${i}`);
  const out = await run("deno", [
    "run",
    "--no-prompt",
    "--unstable-net",
    `--allow-read=${senders.join(",")}`,
    `--allow-write=${[...senders, target].join(",")}`,
    `--allow-net=${[...senders, target].map((path) => `unix:${path}`).join(",")}`,
    `${ROOT}tests/fixtures/notify_flooder.ts`,
    target,
    dir,
  ]);
  const full = /^full (\d+)$/m.exec(out.stdout);
  assert.ok(full, `the flooder filled the queue: ${out.stdout}${out.stderr}`);
  return Number(full[1]);
}

/** `healthsock demo --notify` as users run it: the demo task's flags plus notifyPermissionFlags. */
function spawnNotifying(sock: TempSocket, env: Record<string, string>, args: string[] = []): DemoProcess {
  const words = taskArgs("demo", sock.path);
  const systemd = env.NOTIFY_SOCKET.startsWith("/") ? env.NOTIFY_SOCKET : `${sock.dir}/notify`;
  words.splice(words.indexOf(`${ROOT}main.ts`), 0, ...notifyPermissionFlags(`${sock.path}.notify`, systemd).split(" "));
  return spawnDeno([
    ...words,
    "--socket",
    sock.path,
    "--poll-interval",
    "0",
    "--log-level",
    "info",
    "--notify",
    ...args,
  ], env);
}

/** SIGTERM, then the exit and the whole log; a demo still running after 10 s fails the test. */
async function terminate(demo: DemoProcess, seen: string[]): Promise<{ code: number; log: string }> {
  demo.child.kill("SIGTERM");
  const rest = restOf(demo.log);
  const { code } = await within(demo.child.status, 10_000, "the demo exits after SIGTERM");
  return { code, log: [...seen, await rest].join("\n") };
}

async function assertStoppedClean(sock: TempSocket, log: string): Promise<void> {
  const full = log.split("\n").filter((line) => /Cannot notify systemd .*queue is full/.test(line));
  assert.equal(full.length, 1, `said once that systemd's queue is full:\n${log}`);
  assert.match(log, /Stopped notifying systemd at .* with \d+ messages? it had no room for/);
  assert.doesNotMatch(log, /Cannot notify systemd at [^:]*: (?!its queue)/, "the notifier stays on");
  for (const left of [sock.path, lockPath(sock.path), `${sock.path}.notify`]) {
    assert.equal(await exists(left), false, `"${left}" removed`);
  }
}

Deno.test("demo --notify becomes ready, serves and stops on SIGTERM while systemd's queue is full from the start", async () => {
  await using sock = await tempSocket();
  const notifyPath = `${sock.dir}/notify`;
  const systemd = Deno.listenDatagram({ transport: "unixpacket", path: notifyPath }); // never read
  try {
    await flood(notifyPath, sock.dir);
    await using demo = spawnNotifying(sock, { NOTIFY_SOCKET: notifyPath, WATCHDOG_USEC: "200000" }, [
      "--ready-after",
      "0",
    ]);
    const { seen } = await within(readUntil(demo.log, /Serving health on/), 30_000, "the demo serves");
    await within(untilReady(sock.path), 15_000, "/readyz passes");
    assert.equal((await probe(sock.path, { target: "/livez" })).status, "pass");
    const { code, log } = await terminate(demo, seen);
    assert.equal(code, 0, log);
    await assertStoppedClean(sock, log);
  } finally {
    systemd.close();
  }
});

Deno.test("demo --notify keeps serving and stops on SIGTERM once systemd's queue fills while it runs", async () => {
  await using sock = await tempSocket();
  const notifyPath = `${sock.dir}/notify`;
  const systemd = Deno.listenDatagram({ transport: "unixpacket", path: notifyPath });
  try {
    await using demo = spawnNotifying(sock, { NOTIFY_SOCKET: notifyPath, WATCHDOG_USEC: "200000" }, [
      "--ready-after",
      "0",
    ]);
    // Read as systemd does until READY=1, then never again.
    for (;;) {
      const [data] = await within(systemd.receive(), 30_000, "READY=1 arrives");
      if (decoder.decode(data).startsWith("READY=1")) break;
    }
    await flood(notifyPath, sock.dir);
    // Pings go every 100 ms: the next one finds no room.
    const { seen } = await within(
      readUntil(demo.log, /queue is full/),
      15_000,
      "the demo says systemd's queue is full",
    );
    assert.equal((await probe(sock.path, { target: "/readyz" })).status, "pass");
    assert.equal((await probe(sock.path, { target: "/livez" })).status, "pass");
    const { code, log } = await terminate(demo, seen);
    assert.equal(code, 0, log);
    await assertStoppedClean(sock, log);
  } finally {
    systemd.close();
  }
});

Deno.test("demo --notify names an abstract NOTIFY_SOCKET as @name in its warning, never with a NUL byte", async () => {
  await using sock = await tempSocket();
  const name = `@healthsock-test-${crypto.randomUUID()}`;
  await using demo = spawnNotifying(sock, { NOTIFY_SOCKET: name }, ["--ready-after", "0"]);
  const { line, seen } = await within(readUntil(demo.log, /Cannot notify systemd/), 30_000, "the demo warns");
  assert.ok(!line.includes("\0"), JSON.stringify(line));
  assert.ok(line.includes(`Cannot notify systemd at "${name}"`), line);
  assert.ok(line.includes(`"unix:${name}"`), line);
  await untilReady(sock.path);
  const { code, log } = await terminate(demo, seen);
  assert.equal(code, 0, log);
  assert.ok(!log.includes("\0"), "no NUL anywhere in the log");
});

Deno.test("notifier keeps only the newest ping while systemd's queue is full, and sends what waits once it has room", async () => {
  await using sock = await tempSocket();
  const notifyPath = `${sock.dir}/notify`;
  const systemd = Deno.listenDatagram({ transport: "unixpacket", path: notifyPath });
  try {
    const flooded = await flood(notifyPath, sock.dir);
    const health = new Health().add("worker", () => "pass", { kinds: ["live"] });
    const texts: string[] = [];
    const lines = await logged(async () => {
      await using notifier = await within(
        notifySystemd(health, sock.path, {
          environment: { NOTIFY_SOCKET: notifyPath, WATCHDOG_USEC: "100000" },
        }),
        10_000,
        "notifySystemd returns",
      );
      assert.equal(notifier.active, true, "a full queue is not an unusable socket");
      health.markReady();
      // Five ping periods with no room: each newer ping replaces the waiting one.
      await pause(500);
      for (let i = 0; i < flooded; i++) await within(systemd.receive(), 10_000, "the flood is read");
      for (;;) {
        const [data] = await within(systemd.receive(), 10_000, "READY=1 arrives");
        texts.push(decoder.decode(data));
        if (texts.at(-1)!.startsWith("READY=1")) break;
      }
    }, "info");
    assert.equal(texts[0], "STATUS=starting", "the datagram that waited goes first");
    assert.ok(texts.filter((text) => text === "WATCHDOG=1").length <= 1, texts.join(" | "));
    assert.equal(texts.at(-1), "READY=1\nSTATUS=ready: 1 check passes");
    const full = lines.filter((line) => /queue is full/.test(line));
    assert.equal(full.length, 1, lines.join("\n"));
    const room = lines.find((line) => /has room again/.test(line));
    assert.match(room ?? lines.join("\n"), /has room again; [1-9]\d* stale messages? dropped meanwhile/);
  } finally {
    systemd.close();
  }
});
