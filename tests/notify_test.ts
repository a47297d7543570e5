// notifySystemd speaking sd_notify(3) to a real Unix datagram socket bound
// where systemd's would be, in the same process; the CLI's side is in
// examples_test.ts, spawned with the unit's own flags.
import assert from "node:assert/strict";
import { configure, reset } from "@logtape/logtape";
import type { LogRecord } from "@logtape/logtape";
import { Health } from "../health.ts";
import { notifyPermissionFlags, notifySystemd } from "../notify.ts";
import { exists, receiver, tempSocket } from "./_util.ts";
import type { Message } from "./_util.ts";

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
  using systemd = receiver(`${sock.dir}/notify`);
  const health = new Health().add("worker", () => "pass", { kinds: ["live"] });
  await using notifier = await notifySystemd(health, sock.path, {
    environment: { NOTIFY_SOCKET: systemd.path, WATCHDOG_USEC: "200000", WATCHDOG_PID: String(Deno.pid) },
  });
  assert.equal(notifier.watchdogInterval, 100);
  assert.equal((await systemd.next()).text, "STATUS=starting");
  const pings: Message[] = [];
  while (pings.length < 6) {
    const message = await systemd.next();
    assert.equal(message.text, "WATCHDOG=1");
    pings.push(message);
  }
  // The first ping goes at once, then one a period; bounds are generous for a noisy machine.
  const mean = (pings.at(-1)!.at - pings[1].at) / (pings.length - 2);
  assert.ok(mean >= 50 && mean <= 1000, `mean period ${mean.toFixed(0)} ms, expected about 100`);
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

Deno.test("notifier rejects a relative bind path", async () => {
  await assert.rejects(() => notifySystemd(new Health(), "app.sock.notify"), TypeError);
});
