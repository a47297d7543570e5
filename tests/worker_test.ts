// Unit tests of worker.ts's WorkerHealth: what the Worker answers from, without starting a Worker.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { epochNow, Heartbeat } from "../thread.ts";
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
