// The one model: Health (thread: "main") and the Worker (from a snapshot) select and report alike, for every endpoint.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { ENDPOINT_KINDS, LIFECYCLE_CHECK, reportFromSnapshot, snapshotHas } from "../model.ts";
import { ENDPOINTS } from "../report.ts";
import type { CheckResult, Endpoint, HealthReport } from "../report.ts";
import { dueChecks } from "../thread.ts";

/** A Health with a check of every kind and mix: on request and in the background, critical or not, passing or not. */
function mixedHealth(): Health {
  // Distinct time-outs let dueChecks' longest time-out say which on-request checks it selected.
  return new Health({ ready: true, cacheTtl: 60_000, version: "1", releaseId: "1.4.2", description: "mixed\n" })
    .add("ready1", () => "pass", { timeout: 1001, tags: ["db"] })
    .add("live1", () => ({ status: "fail", output: "down" }), { kinds: ["live"], timeout: 1002, tags: ["db", "net"] })
    .add("start1", () => "warn", { kinds: ["startup"], timeout: 1003 })
    .add("all3", () => "pass", { kinds: ["live", "ready", "startup"], timeout: 1004 })
    .add("soft", () => ({ status: "fail", output: "cold" }), {
      critical: false,
      kinds: ["ready", "live"],
      timeout: 1005,
    })
    .add("bgLive", () => "warn", { interval: 60_000, kinds: ["live"] })
    .add("bgReady", () => ({ status: "fail", output: "late" }), { interval: 60_000, tags: ["net"] });
}

const NAMES = ["ready1", "live1", "start1", "all3", "soft", "bgLive", "bgReady"];

/** Every request a client can make of an endpoint: all, each check alone, exclusions (known and not), and tags. */
function requests(endpoint: Endpoint, health: Health): { check?: string; exclude?: string[]; tags?: string[] }[] {
  const alone = [...NAMES, LIFECYCLE_CHECK].filter((name) => health.has(name, endpoint)).map((check) => ({ check }));
  return [
    {},
    ...alone,
    { exclude: ["ready1", "all3"] },
    { exclude: [LIFECYCLE_CHECK, "nope", "nope"] },
    { tags: ["db"] },
    { tags: ["net", "nope"] },
    { tags: ["db"], exclude: ["ready1"] },
    { tags: ["db"], check: "all3" },
  ].filter((options) => options.check === undefined || health.has(options.check, endpoint));
}

/** A "no result yet" entry is stamped when the report is built: two builds may differ by a millisecond there. */
function comparable(report: HealthReport): HealthReport {
  const checks: Record<string, CheckResult[]> = {};
  for (const [key, [result]] of Object.entries(report.checks)) {
    checks[key] = [result.output === "no result yet" ? { ...result, time: "at build" } : result];
  }
  return { ...report, checks };
}

async function assertSameReports(health: Health, when: string): Promise<void> {
  for (const endpoint of ENDPOINTS) {
    for (const options of requests(endpoint, health)) {
      const expected = await health.evaluate(endpoint, options);
      const built = reportFromSnapshot(health.snapshot(), endpoint, options);
      assert.deepEqual(comparable(built), comparable(expected), `${when}: /${endpoint} ${JSON.stringify(options)}`);
    }
  }
}

Deno.test("model: Health's report and the snapshot's are deep-equal on every endpoint, alone and with exclusions", async () => {
  const health = mixedHealth();
  await assertSameReports(health, "background checks not run yet");
  let updates = 0;
  const ran = new Promise<void>((resolve) => health.addEventListener("update", () => ++updates === 2 && resolve()));
  health.startChecks();
  try {
    await ran; // both background checks' first results
    await assertSameReports(health, "every check has run");
    health.markNotReady("queue\nfull");
    await assertSameReports(health, "not ready");
    health.markDraining();
    await assertSameReports(health, "draining");
  } finally {
    health.stopChecks();
  }
});

Deno.test("model: tags select the same checks in Health's report, the snapshot's and dueChecks", async () => {
  const health = mixedHealth();
  const report = await health.evaluate("healthz", { tags: ["net"] });
  assert.deepEqual(Object.keys(report.checks), ["live1:responseTime", "bgReady:responseTime", "lifecycle:state"]);
  assert.deepEqual(report.notes, undefined);
  assert.deepEqual([report.version, report.releaseId, report.description], ["1", "1.4.2", "mixed\n"]);
  const fresh = mixedHealth().snapshot(); // nothing has run: live1, the on-request check tagged net on /livez, is due
  const due = dueChecks(fresh, "livez", undefined, [], performance.timeOrigin + performance.now(), ["net"]);
  assert.deepEqual(due, { names: ["live1"], timeout: 1002, first: true });
});

Deno.test("model: Health and the snapshot agree on which checks each endpoint has", () => {
  const health = mixedHealth();
  const snapshot = health.snapshot();
  for (const endpoint of ENDPOINTS) {
    for (const name of [...NAMES, LIFECYCLE_CHECK, "nope"]) {
      assert.equal(snapshotHas(snapshot, name, endpoint, false), health.has(name, endpoint), `/${endpoint}/${name}`);
      if (health.has(name, endpoint)) continue;
      const message = `No check named "${name}" on /${endpoint}`;
      assert.throws(() => health.evaluate(endpoint, { check: name }), new RangeError(message));
      assert.throws(() => reportFromSnapshot(snapshot, endpoint, { check: name }), new RangeError(message));
    }
    const kind = ENDPOINT_KINDS[endpoint];
    const on = NAMES.filter((name) => health.has(name, endpoint));
    assert.ok(on.length > 0, `/${endpoint} has checks`);
    if (kind === undefined) assert.deepEqual(on, NAMES, `/${endpoint} has every check`);
  }
});

Deno.test("model: the Worker asks the main thread for exactly the on-request checks Health would run", async () => {
  const now = () => performance.timeOrigin + performance.now();
  for (const endpoint of ENDPOINTS) {
    const health = mixedHealth();
    const snapshot = health.snapshot(); // nothing has run: every selected on-request check is due
    for (const options of requests(endpoint, health)) {
      const report = await health.evaluate(endpoint, options);
      const onRequest = snapshot.checks.filter((check) => !check.background && check.key in report.checks);
      const due = dueChecks(snapshot, endpoint, options.check, options.exclude ?? [], now(), options.tags);
      const request = `/${endpoint} ${JSON.stringify(options)}`;
      if (onRequest.length === 0) assert.equal(due, undefined, request);
      else {
        const names = onRequest.map((c) => c.name);
        assert.deepEqual(due, { names, timeout: Math.max(...onRequest.map((c) => c.timeout)), first: true }, request);
      }
      for (const check of onRequest) {
        assert.notEqual(dueChecks(snapshot, endpoint, check.name, [], now()), undefined, `${request}: ${check.name}`);
      }
    }
  }
});
