// eventLoopLag(): it watches the event loop continuously while served, so the
// stalls between two probes count, with real blocking on this thread (no mock clock).
import assert from "node:assert/strict";
import { probe } from "../client.ts";
import { eventLoopLag } from "../builtin_checks.ts";
import { Health } from "../health.ts";
import { MAX_DELAY } from "../delay.ts";
import { serve } from "../serve.ts";
import { figures, ROOT, tempSocket } from "./_util.ts";

/** Hold this thread's event loop, as an app's synchronous work does. */
function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // Busy: no timer, no I/O, no probe gets a turn.
  }
}

/** Let `ms` pass: here time passing is what is tested, there is no event to await. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("eventLoopLag reports 150 ms stalls to every probe made between them, when the loop is free", async () => {
  const health = new Health({ ready: true }).add("eventloop", eventLoopLag({ threshold: 100 }), { cacheTtl: 0 });
  health.startChecks();
  try {
    const lags: number[] = [];
    for (let stall = 0; stall < 3; stall++) {
      spin(150);
      for (let i = 0; i < 3; i++) {
        // A probe comes when the loop is free: at a random moment after the stall, before the next one.
        await pause(Math.random() * 100);
        const result = (await health.report("healthz")).checks["eventloop:lag"][0];
        lags.push(result.observedValue as number);
        assert.equal(result.status, "warn", `probe ${i + 1} after stall ${stall + 1}: ${JSON.stringify(result)}`);
        assert.match(result.output ?? "", /^event loop lag \d+(\.\d)? ms in the last 5000 ms exceeds 100 ms$/);
      }
    }
    figures("eventloop", "lags seen after 150 ms stalls", { "ms": lags.join(" ") });
  } finally {
    health.stopChecks();
  }
});

Deno.test("eventLoopLag forgets a stall once it is older than its window", async () => {
  const health = new Health({ ready: true })
    .add("eventloop", eventLoopLag({ threshold: 150, sample: 10, window: 300 }), { cacheTtl: 0 });
  health.startChecks();
  try {
    assert.equal((await health.report("readyz")).status, "pass");
    spin(250);
    // The probe that was waiting on the stall sees it, as does the next one.
    const during = (await health.report("readyz")).checks["eventloop:lag"][0];
    assert.equal(during.status, "warn", JSON.stringify(during));
    assert.ok((during.observedValue as number) >= 240, String(during.observedValue));
    await pause(50);
    assert.equal((await health.report("readyz")).status, "warn");
    await pause(400);
    const after = (await health.report("readyz")).checks["eventloop:lag"][0];
    assert.equal(after.status, "pass", JSON.stringify(after));
    assert.ok((after.observedValue as number) < 240, String(after.observedValue));
  } finally {
    health.stopChecks();
  }
});

Deno.test("eventLoopLag is a readiness check by default: a lagging loop is busy, not dead", async () => {
  const health = new Health({ ready: true }).add("eventloop", eventLoopLag());
  assert.equal(health.has("eventloop", "readyz"), true);
  assert.equal(health.has("eventloop", "livez"), false);
  const live = new Health({ ready: true }).add("eventloop", eventLoopLag(), { kinds: ["live"] });
  assert.equal(live.has("eventloop", "livez"), true);
  const report = await health.report("readyz");
  assert.equal(report.checks["eventloop:lag"][0].status, "pass", JSON.stringify(report));
  assert.equal(report.checks["eventloop:lag"][0].observedUnit, "ms");
});

Deno.test("eventLoopLag watches from serve() until close, and a probe over the socket sees a stall before it", async () => {
  await using sock = await tempSocket();
  const health = new Health({ ready: true }).add("eventloop", eventLoopLag({ threshold: 100 }), { cacheTtl: 0 });
  {
    await using _server = await serve(sock.path, health);
    assert.equal((await probe(sock.path, { target: "/readyz" })).status, "pass");
    spin(200);
    const after = await probe(sock.path, { target: "/readyz" });
    assert.equal(after.status, "warn", after.body);
    assert.match(after.report?.checks["eventloop:lag"][0].output ?? "", /in the last 5000 ms exceeds 100 ms/);
  }
  // Closed: nothing watches (the op sanitizer fails a timer left behind); asked directly it times one timer.
  const direct = (await health.report("readyz")).checks["eventloop:lag"][0];
  assert.equal(direct.status, "pass", JSON.stringify(direct));
  assert.doesNotMatch(direct.output ?? "", /in the last/);
});

Deno.test("eventLoopLag keeps watching when its definition is spread into one of the app's own", async () => {
  const health = new Health({ ready: true }).add("eventloop", { ...eventLoopLag({ threshold: 100 }), critical: false });
  health.startChecks();
  try {
    spin(200);
    // Asked after the stall, when the loop is free again: only a watcher saw it.
    const report = await health.report("readyz");
    const result = report.checks["eventloop:lag"][0];
    assert.equal(result.status, "warn", JSON.stringify(report));
    assert.match(result.output ?? "", /in the last 5000 ms exceeds 100 ms$/);
    assert.equal(report.status, "warn");
  } finally {
    health.stopChecks();
  }
});

Deno.test("eventLoopLag without a started Health times one timer, and fails when it fires late if critical", async () => {
  const health = new Health({ ready: true }).add(
    "eventloop",
    eventLoopLag({ threshold: 50, sample: 5, critical: true }),
  );
  const pending = health.report("readyz");
  spin(200);
  const report = await pending;
  const result = report.checks["eventloop:lag"]?.[0];
  assert.equal(result?.status, "fail", JSON.stringify(report));
  assert.ok((result?.observedValue as number) > 50, String(result?.observedValue));
  assert.match(result?.output ?? "", /^event loop lag \d+(\.\d)? ms exceeds 50 ms$/);
  assert.equal(report.status, "fail");
});

Deno.test("eventLoopLag warns of a stall that has passed, not critical; marked critical, it fails readiness", async () => {
  const reports = async (health: Health) => {
    health.startChecks();
    try {
      assert.equal((await health.report("readyz")).status, "pass");
      spin(200);
      const report = await health.report("readyz");
      return { total: report.status, entry: report.checks["eventloop:lag"][0] };
    } finally {
      health.stopChecks();
    }
  };
  const lagging = () => new Health({ ready: true });
  const plain = await reports(lagging().add("eventloop", eventLoopLag({ threshold: 100 }), { cacheTtl: 0 }));
  assert.equal(plain.entry.status, "warn", JSON.stringify(plain.entry));
  assert.ok((plain.entry.observedValue as number) > 100, "with its worst value");
  assert.match(plain.entry.output ?? "", /^event loop lag \d+(\.\d)? ms in the last 5000 ms exceeds 100 ms$/);
  assert.equal(plain.total, "warn", "readiness passes, with a warning");
  for (
    const health of [
      lagging().add("eventloop", eventLoopLag({ threshold: 100, critical: true }), { cacheTtl: 0 }),
      lagging().add("eventloop", eventLoopLag({ threshold: 100 }), { cacheTtl: 0, critical: true }),
    ]
  ) {
    const critical = await reports(health);
    assert.equal(critical.entry.status, "fail", JSON.stringify(critical.entry));
    assert.equal(critical.total, "fail");
  }
});

Deno.test("eventLoopLag's timer does not keep a process alive", async () => {
  // A started Health with nothing else to do: the program ends on its own.
  const script = `import { eventLoopLag, Health } from "${ROOT}mod.ts";
    new Health().add("eventloop", eventLoopLag()).startChecks();
    console.log("started");`;
  const child = new Deno.Command("deno", { args: ["eval", script], cwd: ROOT, stdout: "piped", stderr: "piped" })
    .spawn();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), 20_000));
  const status = await Promise.race([child.output(), late]);
  clearTimeout(timer);
  if (status === "late") {
    child.kill("SIGKILL");
    await child.output();
    assert.fail("a process with only eventLoopLag's timer did not exit within 20 s");
  }
  assert.equal(status.code, 0, new TextDecoder().decode(status.stderr));
  assert.equal(new TextDecoder().decode(status.stdout), "started\n");
});

Deno.test("eventLoopLag refuses options that are not milliseconds timers hold", () => {
  for (
    const [options, message] of [
      [{ threshold: 0 }, /^Cannot use threshold 0: expected milliseconds above 0/],
      [{ sample: -1 }, /^Cannot use sample -1: expected milliseconds above 0/],
      [{ window: 0 }, /^Cannot use window 0: expected milliseconds above 0/],
      [{ window: NaN }, /^Cannot use window NaN: expected milliseconds above 0/],
      [
        { window: MAX_DELAY + 1 },
        /^Cannot use window 2147483648: expected milliseconds above 0 and at most 2147483647$/,
      ],
      [{ sample: 50, window: 40 }, /^Cannot use window 40: expected milliseconds at least sample \(50\)$/],
    ] as const
  ) {
    assert.throws(() => eventLoopLag(options), { name: "RangeError", message }, JSON.stringify(options));
  }
  assert.equal(eventLoopLag({ sample: 50, window: 50 }).measurement, "lag");
});
