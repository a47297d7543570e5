// Unit tests of worker.ts's WorkerHealth: what the Worker answers from, without starting a Worker.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { within } from "../delay.ts";
import { epochNow, Heartbeat } from "../thread.ts";
import type { FromWorker } from "../thread.ts";
import { WorkerHealth } from "../worker.ts";

const LIMITS = { ready: 1000, live: 10_000 };

Deno.test("the Worker answers with one report object until a heartbeat or the results change, so its encoding is kept", () => {
  const health = new Health({ ready: true });
  const heartbeat = new Heartbeat();
  const worker = new WorkerHealth(health.snapshot(), heartbeat, LIMITS, () => {});
  const first = worker.evaluate("readyz");
  assert.ok(!(first instanceof Promise));
  assert.equal(first.status, "pass");
  assert.strictEqual(worker.evaluate("readyz"), first, "nothing changed: the same report");
  assert.notStrictEqual(worker.evaluate("livez"), first, "each endpoint has its own");
  heartbeat.stamp(heartbeat.last + 1);
  const stamped = worker.evaluate("readyz");
  assert.notStrictEqual(stamped, first, "a new stamp is a new main-loop entry");
  worker.update(health.snapshot(), undefined, false);
  assert.notStrictEqual(worker.evaluate("readyz"), stamped, "new results are a new report");
  const excluding = worker.evaluate("readyz", { exclude: ["x"] });
  assert.notStrictEqual(
    worker.evaluate("readyz", { exclude: ["x"] }),
    excluding,
    "exclusions are the client's to vary: not kept",
  );
});

Deno.test("the Worker's report fails readiness, naming the event loop, once the main thread stops stamping", () => {
  const heartbeat = new Heartbeat();
  heartbeat.stamp(epochNow() - 5000);
  const worker = new WorkerHealth(new Health({ ready: true }).snapshot(), heartbeat, LIMITS, () => {});
  const ready = worker.evaluate("readyz");
  assert.ok(!(ready instanceof Promise));
  assert.equal(ready.status, "fail");
  assert.match(JSON.stringify(ready.checks["mainloop:blocked"]), /event loop blocked for 5(\.\d)? s/);
  const live = worker.evaluate("livez");
  assert.ok(!(live instanceof Promise));
  assert.equal(live.status, "pass", "busy is not dead");
});

Deno.test("importing worker.ts starts nothing: it runs only as the Worker's entry", () => {
  // Its entry sets the Worker's message handler; here, on the main thread, none may be set.
  assert.equal((globalThis as { onmessage?: unknown }).onmessage ?? null, null);
});

/** Stamp the heartbeat as a turning main thread does, until disposed. */
function turning(heartbeat: Heartbeat): Disposable {
  const timer = setInterval(() => heartbeat.stamp(), 10);
  return { [Symbol.dispose]: () => clearInterval(timer) };
}

Deno.test("requests needing the same on-request check join one round: one message to the main thread, one snapshot back", async () => {
  const health = new Health({ ready: true })
    .add("db", () => "pass", { cacheTtl: 0 })
    .add("cache", () => "pass", { cacheTtl: 0, kinds: ["live"] });
  const heartbeat = new Heartbeat();
  using _turning = turning(heartbeat);
  const posted: FromWorker[] = [];
  const worker = new WorkerHealth(health.snapshot(), heartbeat, LIMITS, (message) => posted.push(message));
  const asks = () => posted.filter((message) => message.type === "evaluate");
  const waiting = Array.from({ length: 32 }, () => worker.evaluate("readyz"));
  assert.ok(waiting.every((answer) => answer instanceof Promise), "each needs the check run");
  assert.equal(asks().length, 1, "32 requests, one round");
  assert.deepEqual(asks()[0].checks, ["db"]);
  // A request needing a check the round does not run asks for that one alone, and joins the round for the other.
  const wider = worker.evaluate("healthz");
  assert.equal(asks().length, 2);
  assert.deepEqual(asks()[1].checks, ["cache"]);

  // The main thread's side: take both rounds, run each check once, answer both with one snapshot.
  const ids = asks().map((ask) => ask.id);
  heartbeat.taken = Math.max(...ids);
  await Promise.all(["db", "cache"].map((check) => health.evaluate("healthz", { check })));
  worker.update(health.snapshot(), ids, false);
  heartbeat.answered = Math.max(...ids);
  for (const report of await Promise.all(waiting)) assert.equal(report.checks["db:responseTime"][0].status, "pass");
  const all = await wider;
  assert.equal(all.checks["cache:responseTime"][0].status, "pass");
  assert.equal(asks().length, 2, "answered without another round");
});

Deno.test("an answer stuck in the Worker's own queue does not hold the request until the check's time-out", async () => {
  const health = new Health({ ready: true }).add("db", () => "pass", { cacheTtl: 0, timeout: 30_000 });
  await health.evaluate("readyz");
  const heartbeat = new Heartbeat();
  using _turning = turning(heartbeat);
  const posted: FromWorker[] = [];
  const worker = new WorkerHealth(health.snapshot(), heartbeat, LIMITS, (message) => posted.push(message));
  const answer = worker.evaluate("readyz");
  assert.ok(answer instanceof Promise);
  const [ask] = posted.filter((message) => message.type === "evaluate");
  // The main thread took the round, ran it and posted its snapshot, which waits behind a flood in the Worker's
  // queue: the heartbeat's memory says so, the message never comes.
  heartbeat.taken = ask.id;
  heartbeat.answered = ask.id;
  const report = await within(answer, 10_000);
  assert.ok(report, "answered long before the check's 30 s time-out");
  assert.equal(report.checks["db:responseTime"][0].status, "pass", "from the latest result");
});
