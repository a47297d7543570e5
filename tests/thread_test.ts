import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { MAIN_LOOP_CHECK, reportFromSnapshot } from "../model.ts";
import {
  dueChecks,
  errorShape,
  Heartbeat,
  HEARTBEAT_PERIOD,
  isFromWorker,
  LogClaims,
  loopResult,
  lowestLevel,
} from "../thread.ts";
import { SocketError } from "../socket_file.ts";
import type { Endpoint } from "../report.ts";

const LIMITS = { ready: 1000, live: 10_000 };

Deno.test("heartbeat: a stamp is read back by another view of the same memory", () => {
  const main = new Heartbeat();
  const worker = new Heartbeat(main.buffer);
  main.stamp(1_000_000);
  assert.equal(worker.last, 1_000_000);
  assert.equal(worker.blockedFor(1_000_000 + HEARTBEAT_PERIOD), 0, "on time is not blocked");
  assert.equal(worker.blockedFor(1_000_000 + HEARTBEAT_PERIOD + 1500), 1500);
  worker.connections = 3;
  assert.equal(main.connections, 3, "the Worker's count, read at once");
});

Deno.test("main loop entry: /readyz fails past the ready limit, /livez only past the live limit", () => {
  const at = Date.UTC(2026, 0, 1);
  assert.equal(loopResult(900, at, "readyz", LIMITS).status, "pass");
  const ready = loopResult(1500, at, "readyz", LIMITS);
  assert.equal(ready.status, "fail");
  assert.equal(ready.output, "main thread's event loop blocked for 1.5 s (readiness fails after 1 s)");
  assert.equal(ready.observedValue, 1500);
  assert.equal(ready.time, "2026-01-01T00:00:00.000Z", "when the loop last turned");
  assert.equal(loopResult(1500, at, "healthz", LIMITS).status, "fail");
  assert.equal(loopResult(1500, at, "livez", LIMITS).status, "pass", "busy is not dead");
  assert.equal(loopResult(1500, at, "startupz", LIMITS).status, "pass");
  const live = loopResult(12_000, at, "livez", LIMITS);
  assert.equal(live.status, "fail");
  assert.equal(live.output, "main thread's event loop blocked for 12 s (liveness fails after 10 s)");
});

Deno.test("a report from a snapshot carries the main loop entry, which can be asked for alone or excluded", () => {
  const snapshot = new Health({ ready: true }).snapshot();
  const loop = loopResult(1500, Date.now(), "readyz", LIMITS);
  const report = reportFromSnapshot(snapshot, "readyz", {}, loop);
  assert.equal(report.status, "fail");
  assert.equal(report.output, `failed: ${MAIN_LOOP_CHECK}`);
  assert.deepEqual(report.checks["mainloop:blocked"], [loop]);
  const alone = reportFromSnapshot(snapshot, "readyz", { check: MAIN_LOOP_CHECK }, loop);
  assert.deepEqual(Object.keys(alone.checks), ["mainloop:blocked"]);
  const without = reportFromSnapshot(snapshot, "readyz", { exclude: [MAIN_LOOP_CHECK] }, loop);
  assert.equal(without.status, "pass");
  assert.equal(without.notes, undefined);
});

Deno.test("a check may not take the main loop's name", () => {
  assert.throws(() => new Health().add(MAIN_LOOP_CHECK, () => "pass"), TypeError);
});

Deno.test("dueChecks: only on-request checks without a fresh result need the main thread", async () => {
  const health = new Health({ cacheTtl: 60_000 })
    .add("slow", () => "pass", { timeout: 3000 })
    .add("bg", () => "pass", { interval: 60_000 })
    .add("live", () => "pass", { kinds: ["live"], timeout: 500 });
  const now = () => performance.timeOrigin + performance.now();
  const due = (endpoint: Endpoint, check?: string, exclude: string[] = [], at = now()) =>
    dueChecks(health.snapshot(), endpoint, check, exclude, at);
  assert.deepEqual(due("readyz"), { names: ["slow"], timeout: 3000, first: true }, "no result yet");
  assert.deepEqual(due("healthz"), { names: ["slow", "live"], timeout: 3000, first: true }, "the longest time-out");
  assert.deepEqual(due("livez"), { names: ["live"], timeout: 500, first: true });
  assert.equal(due("readyz", undefined, ["slow"]), undefined, "excluded");
  assert.equal(due("readyz", "bg"), undefined, "a background check");
  await health.evaluate("readyz");
  assert.equal(due("readyz"), undefined, "fresh");
  assert.deepEqual(
    due("readyz", undefined, [], now() + 61_000),
    { names: ["slow"], timeout: 3000, first: false },
    "stale",
  );
});

Deno.test("errors cross threads as their name, message and reason", () => {
  const shape = errorShape(new SocketError("/tmp/x.sock", "in-use", "Cannot listen"));
  assert.deepEqual(shape, { name: "SocketError", message: "Cannot listen", reason: "in-use" });
  assert.deepEqual(errorShape(new Deno.errors.NotCapable("no")), { name: "NotCapable", message: "no" });
  assert.deepEqual(errorShape("text"), { name: "Error", message: "text" });
});

Deno.test("isFromWorker takes the Worker's messages and nothing else", () => {
  assert.equal(isFromWorker({ type: "listening" }), true);
  assert.equal(isFromWorker({ type: "evaluate", id: 1, asked: 0, bound: 50, checks: ["db"] }), true);
  assert.equal(isFromWorker({ type: "init" }), false);
  assert.equal(isFromWorker(null), false);
  assert.equal(isFromWorker("listening"), false);
});

Deno.test("lowestLevel finds the lowest enabled LogTape level", () => {
  assert.equal(lowestLevel((level) => level !== "trace" && level !== "debug"), "info");
  assert.equal(lowestLevel(() => false), undefined);
});

Deno.test("log claims: each record is claimed once, in order, by whichever thread asks first, across the wrap", () => {
  const worker = new LogClaims();
  const main = new LogClaims(worker.buffer);
  assert.equal(main.claim(2), false, "not before the one before it");
  assert.equal(main.claim(1), true);
  assert.equal(worker.claim(1), false, "taken by the other thread");
  assert.equal(worker.claimed(1), true);
  assert.equal(worker.claimed(2), false);
  assert.equal(worker.claim(2), true);
  assert.equal(main.claim(2), false);
  // Numbers are 32-bit: past the largest they wrap, and still follow each other.
  const wrapping = new LogClaims();
  new Int32Array(wrapping.buffer)[0] = 2 ** 31 - 2;
  const largest = 2 ** 31 - 1;
  assert.equal(wrapping.claim(largest), true);
  const next = LogClaims.next(largest);
  assert.equal(wrapping.claimed(next), false, `${next} follows ${largest}`);
  assert.equal(wrapping.claim(next), true);
  assert.equal(wrapping.claimed(largest), true);
  assert.equal(wrapping.claim(largest), false);
});
