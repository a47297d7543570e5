// The rules of the health model: against Health directly and, where
// a rule is about serving, through a real server on a temporary socket.
import assert from "node:assert/strict";
import { heapUsage, progress } from "../builtin_checks.ts";
import { Health } from "../health.ts";
import type { CheckFunction } from "../check.ts";
import { renderVerbose } from "../report.ts";
import type { CheckResult, HealthReport } from "../report.ts";
import { serve } from "../serve.ts";
import { probe, watch } from "../client.ts";
import { cli, exchange, exists, hasCommand, parseHttp, run, tempSocket } from "./_util.ts";

const encoder = new TextEncoder();

/** Let real time pass, for rules that are about time (timeouts, cacheTtl). */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The one result of a check in a report, by check name. */
function resultOf(report: HealthReport, name: string): CheckResult | undefined {
  const key = Object.keys(report.checks).find((k) => k.slice(0, k.lastIndexOf(":")) === name);
  return key === undefined ? undefined : report.checks[key][0];
}

function names(report: HealthReport): string[] {
  return Object.keys(report.checks).map((k) => k.slice(0, k.lastIndexOf(":")));
}

/** Parse a line-mode JSON answer (one line, then the server closes). */
function lineJson(text: string): Record<string, unknown> {
  assert.ok(text.endsWith("\n"), `answer without its newline: ${JSON.stringify(text)}`);
  return JSON.parse(text);
}

async function ask(path: string, target: string): Promise<HealthReport> {
  return lineJson(await exchange(path, `GET ${target}\n`)) as unknown as HealthReport;
}

/** A single on-demand check's result, fresh from a new registry. */
async function outcomeOf(check: CheckFunction, timeout = 1000): Promise<CheckResult> {
  const health = new Health({ ready: true }).add("c", check, { timeout, cacheTtl: 0 });
  const report = await health.report("readyz");
  const result = resultOf(report, "c");
  assert.ok(result, JSON.stringify(report));
  return result;
}

// ------------------------------------------------------------------- add()

Deno.test("add rejects invalid check names with TypeError", () => {
  const health = new Health();
  for (const name of ["", "has space", "a:b", "a/b", "a?b", "naïve", "lifecycle", "x\n"]) {
    assert.throws(() => health.add(name, () => {}), TypeError, JSON.stringify(name));
  }
  assert.deepEqual(health.names, []);
  health.add("db-1.primary_x", () => {});
  assert.deepEqual(health.names, ["db-1.primary_x"]);
});

Deno.test("add rejects a duplicate name with TypeError and keeps the first check", async () => {
  const health = new Health({ ready: true }).add("db", () => "pass");
  assert.throws(() => health.add("db", () => "fail"), TypeError);
  assert.deepEqual(health.names, ["db"]);
  assert.equal(resultOf(await health.report("readyz"), "db")?.status, "pass");
});

Deno.test("add rejects unknown kinds with TypeError", () => {
  const health = new Health();
  for (const kinds of [["readiness"], ["live", "Ready"], ["healthz"]]) {
    // deno-lint-ignore no-explicit-any
    assert.throws(() => health.add("x", () => {}, { kinds: kinds as any }), TypeError, kinds.join());
  }
  assert.deepEqual(health.names, []);
});

Deno.test("add rejects out-of-range timeouts, intervals and cache times with RangeError", () => {
  const health = new Health();
  for (const timeout of [0, -1, NaN, Infinity, 2 ** 31]) {
    assert.throws(() => health.add("x", () => {}, { timeout }), RangeError, `timeout ${timeout}`);
  }
  for (const interval of [0, -5, NaN, Infinity, 2 ** 31]) {
    assert.throws(() => health.add("x", () => {}, { interval }), RangeError, `interval ${interval}`);
  }
  for (const cacheTtl of [-1, NaN, Infinity]) {
    assert.throws(() => health.add("x", () => {}, { cacheTtl }), RangeError, `cacheTtl ${cacheTtl}`);
  }
  assert.throws(() => new Health({ cacheTtl: -1 }), RangeError);
  assert.deepEqual(health.names, []);
});

Deno.test("add rejects a check that is not a function with TypeError", () => {
  // deno-lint-ignore no-explicit-any
  assert.throws(() => new Health().add("x", "pass" as any), TypeError);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => new Health().add("x", { timeout: 10 } as any), TypeError);
});

Deno.test("add chains, remove unregisters, has answers per endpoint", () => {
  const health = new Health()
    .add("db", () => {})
    .add("worker", () => {}, { kinds: ["live"] })
    .add("migrations", () => {}, { kinds: ["startup"] });
  assert.deepEqual(health.names, ["db", "worker", "migrations"]);
  assert.equal(health.has("db"), true);
  assert.equal(health.has("db", "readyz"), true);
  assert.equal(health.has("db", "livez"), false);
  assert.equal(health.has("worker", "livez"), true);
  assert.equal(health.has("worker", "readyz"), false);
  assert.equal(health.has("migrations", "startupz"), true);
  assert.equal(health.has("lifecycle", "livez"), true);
  assert.equal(health.has("nope"), false);
  assert.equal(health.remove("db"), true);
  assert.equal(health.remove("db"), false);
  assert.equal(health.has("db"), false);
  assert.deepEqual(health.names, ["worker", "migrations"]);
});

// ---------------------------------------------------------------- outcomes

Deno.test("a check returning nothing passes, with its response time and a timestamp", async () => {
  for (const check of [() => {}, async () => {}, () => undefined]) {
    const result = await outcomeOf(check);
    assert.equal(result.status, "pass");
    assert.equal(result.output, undefined);
    assert.equal(result.observedUnit, "ms");
    assert.equal(typeof result.observedValue, "number");
    assert.ok(!Number.isNaN(Date.parse(result.time ?? "")), result.time);
  }
});

Deno.test("a check returning a status or an outcome is reported as such", async () => {
  assert.equal((await outcomeOf(() => "pass")).status, "pass");
  const failed = await outcomeOf(() => "fail");
  assert.equal(failed.status, "fail");
  assert.equal(typeof failed.output, "string");
  const warned = await outcomeOf(() => Promise.resolve({ status: "warn" as const, output: "cold cache" }));
  assert.deepEqual([warned.status, warned.output], ["warn", "cold cache"]);
  const measured = await outcomeOf(() => ({ status: "pass" as const, observedValue: 42, observedUnit: "ticks" }));
  assert.deepEqual([measured.observedValue, measured.observedUnit], [42, "ticks"]);
});

Deno.test("a check's report key is name:measurement and carries its componentType", async () => {
  const health = new Health({ ready: true })
    .add("ticker", () => ({ status: "pass", observedValue: 3, observedUnit: "ticks" }), {
      measurement: "ticks",
      componentType: "component",
    })
    .add("db", () => {});
  const report = await health.report("readyz");
  assert.deepEqual(Object.keys(report.checks), ["ticker:ticks", "db:responseTime", "lifecycle:state"]);
  assert.equal(report.checks["ticker:ticks"][0].componentType, "component");
  assert.equal(report.checks["ticker:ticks"][0].observedValue, 3);
});

Deno.test("a throwing check fails with the message as output: Error, string, object, undefined", async () => {
  const error = await outcomeOf(() => {
    throw new Error("connection refused");
  });
  assert.deepEqual([error.status, error.output], ["fail", "connection refused"]);
  const rejected = await outcomeOf(() => Promise.reject(new TypeError("bad config")));
  assert.deepEqual([rejected.status, rejected.output], ["fail", "bad config"]);
  const text = await outcomeOf(() => {
    throw "disk full";
  });
  assert.deepEqual([text.status, text.output], ["fail", "disk full"]);
  const object = await outcomeOf(() => {
    throw { code: "ECONNRESET", detail: "peer reset" };
  });
  assert.equal(object.status, "fail");
  assert.match(object.output ?? "", /ECONNRESET/);
  const nothing = await outcomeOf(() => {
    throw undefined;
  });
  assert.equal(nothing.status, "fail");
  assert.equal(typeof nothing.output, "string");
  assert.ok(nothing.output!.length > 0);
  const nul = await outcomeOf(() => Promise.reject(null));
  assert.equal(nul.status, "fail");
  assert.equal(typeof nul.output, "string");
});

Deno.test("a check's output is cut to 1 KiB, marked with its size, whether returned or thrown", async () => {
  const big = "x".repeat(2 * 2 ** 20);
  const returned = await outcomeOf(() => ({ status: "fail", output: big }));
  assert.equal(encoder.encode(returned.output).length <= 1024, true);
  assert.match(returned.output ?? "", /^x+… \(cut from 2097152 bytes\)$/);
  assert.equal(encoder.encode(returned.output).length, 1024);
  const thrown = await outcomeOf(() => {
    throw new Error(big);
  });
  assert.equal(thrown.output, returned.output);
  const warned = await outcomeOf(() => ({ status: "warn", output: big }));
  assert.equal(warned.output, returned.output);
  // Up to 1024 bytes is kept whole; 1025 is cut.
  const fits = "y".repeat(1024);
  assert.equal((await outcomeOf(() => ({ status: "fail", output: fits }))).output, fits);
  const over = (await outcomeOf(() => ({ status: "fail", output: fits + "y" }))).output ?? "";
  assert.match(over, /… \(cut from 1025 bytes\)$/);
  // A cut never splits a character: 3-byte characters and surrogate pairs stay whole.
  for (const unit of ["€", "😀", "é"]) {
    const output = (await outcomeOf(() => ({ status: "fail", output: unit.repeat(2000) }))).output ?? "";
    assert.ok(encoder.encode(output).length <= 1024, unit);
    assert.match(output, new RegExp(`^(?:${unit})+… \\(cut from ${encoder.encode(unit).length * 2000} bytes\\)$`, "u"));
    assert.equal(output.includes("\ufffd"), false);
  }
});

Deno.test("every field a check returns is bounded in reports, and a pass stays a pass", async () => {
  const long = "x".repeat(1_100_000);
  const text = await outcomeOf(() => ({ status: "pass", observedValue: long }));
  assert.equal(text.status, "pass");
  assert.match(String(text.observedValue), /^x+… \(cut from 1100000 bytes\)$/);
  assert.equal(encoder.encode(String(text.observedValue)).length, 1024);
  // An object or array too long for a report is shown as its JSON text, cut and marked.
  const items = Array.from({ length: 200_000 }, (_, i) => i);
  const array = await outcomeOf(() => ({ status: "warn", observedValue: items, output: "many" }));
  assert.equal(array.status, "warn");
  assert.equal(typeof array.observedValue, "string");
  assert.match(
    String(array.observedValue),
    new RegExp(`^\\[0,1,2,[\\d,]+… \\(cut from ${encoder.encode(JSON.stringify(items)).length} bytes\\)$`),
  );
  assert.ok(encoder.encode(String(array.observedValue)).length <= 1024);
  // One that fits is kept as it is, as a copy: changes after the check finished do not show.
  const measured = { rows: 3, shards: ["a", "b"] };
  const kept = await outcomeOf(() => ({ status: "pass", observedValue: measured }));
  measured.shards.push("x".repeat(2_000_000));
  assert.deepEqual(kept.observedValue, { rows: 3, shards: ["a", "b"] });
  const unit = await outcomeOf(() => ({ status: "pass", observedValue: 1, observedUnit: "u".repeat(100_000) }));
  assert.match(unit.observedUnit ?? "", /^u+… \(cut from 100000 bytes\)$/);
  assert.ok(encoder.encode(unit.observedUnit).length <= 64);
  // Fields the report does not define are left out, whatever their size.
  const extra = await outcomeOf(() =>
    ({
      status: "pass",
      affectedEndpoints: [long],
      links: { self: long },
      componentId: long,
    }) as never
  );
  assert.deepEqual(Object.keys(extra).sort(), ["observedUnit", "observedValue", "status", "time"]);
  // Escaping cannot make a cut text long again: the limit is what it takes in the report.
  const controls = await outcomeOf(() => ({
    status: "fail",
    output: "\x01".repeat(5000),
    observedValue: "\x02".repeat(5000),
  }));
  assert.ok(encoder.encode(JSON.stringify(controls.output)).length <= 1026, JSON.stringify(controls.output).slice(-40));
  assert.ok(encoder.encode(JSON.stringify(controls.observedValue)).length <= 1026);
  assert.ok(controls.output?.endsWith("\x01… (cut from 5000 bytes)"), controls.output);
});

Deno.test("add bounds a check's name, measurement and component type, and the number of checks", async () => {
  const health = new Health({ ready: true });
  assert.throws(() => health.add("n".repeat(129), () => {}), RangeError);
  health.add("n".repeat(128), () => {});
  assert.throws(() => health.add("m", () => {}, { measurement: "m".repeat(129) }), RangeError);
  // Measured as a report writes it: a control character takes six bytes.
  assert.throws(() => health.add("m", () => {}, { measurement: "\x01".repeat(22) }), RangeError);
  assert.throws(() => health.add("t", () => {}, { componentType: "t".repeat(129) }), RangeError);
  for (let i = health.names.length; i < 128; i++) health.add(`c${i}`, () => {});
  assert.throws(() => health.add("one-more", () => {}), /at most 128 checks/);
  assert.equal(health.names.length, 128);
  assert.equal((await health.report("readyz")).status, "pass");
});

Deno.test("a report of the most checks, every field at its limit, stays far below what a client accepts", async () => {
  const field = "\x01".repeat(21); // 126 bytes, escaped
  const health = new Health({
    ready: true,
    version: field,
    releaseId: field,
    serviceId: field,
    description: "\x01".repeat(170),
  });
  const hostile = '\x01\n"\\\u2028é😀'.repeat(2000);
  health.markNotReady(hostile);
  for (let i = 0; i < 128; i++) {
    health.add(`${i}`.padStart(128, "n"), () => ({
      status: "fail",
      output: hostile,
      observedValue: hostile,
      observedUnit: hostile,
    }), { measurement: "m".repeat(128), componentType: "t".repeat(128), critical: false });
  }
  const report = await health.report("readyz");
  assert.equal(report.status, "fail");
  assert.ok(encoder.encode(JSON.stringify(report.checks["lifecycle:state"][0].output)).length <= 1024 + 2);
  const size = encoder.encode(JSON.stringify(report)).length;
  assert.ok(size < 400 * 1024, `${size} bytes`);
});

Deno.test("a passing check that returns 1.1 MB is a pass for check and curl, its value cut", async () => {
  await using sock = await tempSocket();
  const health = new Health({ ready: true })
    .add("big", () => ({ status: "pass", observedValue: "v".repeat(1_100_000) }))
    .add("list", () => ({ status: "pass", observedValue: Array.from({ length: 150_000 }, (_, i) => i) }));
  await using _server = await serve(sock.path, health);
  const check = await cli(sock.path, ["check", "--format", "json"]);
  assert.equal(check.code, 0, check.stderr);
  const report = JSON.parse(check.stdout) as HealthReport;
  assert.equal(report.status, "pass");
  assert.match(String(resultOf(report, "big")?.observedValue), /… \(cut from 1100000 bytes\)$/);
  assert.match(String(resultOf(report, "list")?.observedValue), /^\[0,1,2,.*… \(cut from \d+ bytes\)$/);
  assert.ok(check.stdout.length < 8192, `${check.stdout.length} bytes`);
  if (hasCommand("curl")) {
    const out = await run("curl", ["-sS", "-w", "\n%{http_code}", "--unix-socket", sock.path, "http://x/healthz"]);
    assert.equal(out.code, 0, out.stderr);
    const [body, code] = out.stdout.split("\n");
    assert.equal(code, "200");
    assert.equal((JSON.parse(body) as HealthReport).status, "pass");
  }
});

Deno.test("a check returning garbage fails and says what it returned", async () => {
  for (const value of [42, "ok", "PASS", null, 1, [], { status: "up" }, { ok: true }]) {
    const result = await outcomeOf(() => value as never);
    assert.equal(result.status, "fail", JSON.stringify(value));
    assert.equal(typeof result.output, "string", JSON.stringify(value));
  }
});

Deno.test("a check returning an invalid time still gets a result with a valid timestamp", async () => {
  const result = await outcomeOf(() => ({ status: "pass", time: new Date(NaN) }));
  assert.ok(!Number.isNaN(Date.parse(result.time ?? "")), result.time);
});

Deno.test("a background check returning an invalid time keeps running and reporting", async () => {
  let runs = 0;
  const health = new Health({ ready: true }).add("bg", () => {
    runs++;
    return { status: "warn", output: "odd clock", time: new Date(NaN) };
  }, { interval: 10 });
  const changed = Promise.withResolvers<void>();
  health.addEventListener("change", () => changed.resolve(), { once: true });
  // Catch a rejection escaping the check loop here, so it fails this test and not the whole module.
  const escaped: unknown[] = [];
  const onUnhandled = (event: PromiseRejectionEvent) => {
    escaped.push(event.reason);
    event.preventDefault();
    changed.reject(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  health.startChecks();
  try {
    // Guard: a loop that died would never report, and the test would hang.
    await Promise.race([
      changed.promise,
      new Promise((_, reject) => {
        const guard = AbortSignal.timeout(2000);
        guard.addEventListener("abort", () => reject(new Error("no result within 2 s")));
      }),
    ]);
    const result = resultOf(await health.report("readyz"), "bg");
    assert.equal(result?.status, "warn");
    assert.ok(!Number.isNaN(Date.parse(result?.time ?? "")), result?.time);
  } finally {
    health.stopChecks();
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
  assert.deepEqual(escaped.map(String), []);
  assert.ok(runs >= 1);
});

Deno.test("a check whose observedValue cannot be serialised still gets an answer from the server", async () => {
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  const health = new Health({ ready: true })
    .add("big", () => ({ status: "pass", observedValue: 10n }))
    .add("loop", () => ({ status: "pass", observedValue: circular }));
  const report = await health.report("readyz");
  assert.doesNotThrow(() => JSON.stringify(report));
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, health);
  const served = await ask(sock.path, "/readyz");
  assert.deepEqual(names(served), ["big", "loop", "lifecycle", "mainloop"]);
});

Deno.test("a hanging check times out as fail and its signal is aborted", async () => {
  let seen: AbortSignal | undefined;
  const result = await outcomeOf((signal) => {
    seen = signal;
    return new Promise(() => {});
  }, 30);
  assert.equal(result.status, "fail");
  assert.match(result.output ?? "", /^timed out after 30 ms/);
  assert.ok(seen, "the check ran");
  assert.equal(seen.aborted, true);
  assert.equal((seen.reason as DOMException).name, "TimeoutError");
});

Deno.test("a hanging check does not delay the other checks of a report", async () => {
  let hangSignal: AbortSignal | undefined;
  let fastSettledBeforeTimeout: boolean | undefined;
  const health = new Health({ ready: true })
    .add("hang", (signal) => {
      hangSignal = signal;
      return new Promise(() => {});
    }, { timeout: 40 })
    .add("fast", async () => {
      await Promise.resolve();
      // Run concurrently: the fast check finishes while the hanging one is still running.
      fastSettledBeforeTimeout = hangSignal !== undefined && !hangSignal.aborted;
    });
  const report = await health.report("readyz");
  assert.equal(fastSettledBeforeTimeout, true);
  assert.equal(resultOf(report, "fast")?.status, "pass");
  assert.equal(resultOf(report, "hang")?.status, "fail");
  assert.match(resultOf(report, "hang")?.output ?? "", /timed out after 40 ms/);
  assert.equal(report.status, "fail");
});

Deno.test("a critical failing check fails the total, naming it in output", async () => {
  const health = new Health({ ready: true }).add("db", () => "fail").add("cache", () => {});
  const report = await health.report("readyz");
  assert.equal(report.status, "fail");
  assert.match(report.output ?? "", /db/);
});

Deno.test("a non-critical failing check makes the total warn, served as 200", async () => {
  const health = new Health({ ready: true })
    .add("cache", () => {
      throw new Error("cold");
    }, { critical: false })
    .add("db", () => {});
  const report = await health.report("readyz");
  assert.equal(report.status, "warn");
  assert.equal(resultOf(report, "cache")?.status, "fail");
  assert.match(report.output ?? "", /cache/);

  await using sock = await tempSocket();
  await using _server = await serve(sock.path, health);
  const served = await ask(sock.path, "/readyz");
  assert.equal(served.status, "warn");
  const viaHttp = parseHttp(
    await exchange(sock.path, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
  );
  assert.equal(viaHttp.code, 200);
  assert.equal(JSON.parse(viaHttp.body).status, "warn");
  // Asked about alone, the check's own status is the answer.
  assert.equal((await ask(sock.path, "/readyz/cache")).status, "fail");
});

Deno.test("checks answer the ready probe by default, not live or startup", async () => {
  const health = new Health({ ready: true }).add("db", () => {});
  assert.deepEqual(names(await health.report("readyz")), ["db", "lifecycle"]);
  assert.deepEqual(names(await health.report("healthz")), ["db", "lifecycle"]);
  assert.deepEqual(names(await health.report("livez")), ["lifecycle"]);
  assert.deepEqual(names(await health.report("startupz")), ["lifecycle"]);
});

Deno.test("kinds place a check on the probes named", async () => {
  const health = new Health({ ready: true })
    .add("worker", () => {}, { kinds: ["live"] })
    .add("migrations", () => {}, { kinds: ["startup"] })
    .add("both", () => {}, { kinds: ["live", "ready"] });
  assert.deepEqual(names(await health.report("livez")), ["worker", "both", "lifecycle"]);
  assert.deepEqual(names(await health.report("readyz")), ["both", "lifecycle"]);
  assert.deepEqual(names(await health.report("startupz")), ["migrations", "lifecycle"]);
  assert.deepEqual(names(await health.report("healthz")), ["worker", "migrations", "both", "lifecycle"]);
});

// ----------------------------------------------------------------- caching

Deno.test("concurrent reports share one run of an on-demand check", async () => {
  let runs = 0;
  const release = Promise.withResolvers<void>();
  const health = new Health({ ready: true }).add("db", async () => {
    runs++;
    await release.promise;
  }, { cacheTtl: 0 });
  const reports = Array.from({ length: 100 }, () => health.report("readyz"));
  release.resolve();
  const done = await Promise.all(reports);
  assert.equal(runs, 1);
  assert.ok(done.every((r) => r.status === "pass"));
  // With cacheTtl 0, a later request runs the check again.
  await health.report("readyz");
  assert.equal(runs, 2);
});

Deno.test("100 concurrent requests to the server cause one run of an on-demand check", async () => {
  let runs = 0;
  const called = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const health = new Health({ ready: true }).add("db", async () => {
    runs++;
    called.resolve();
    await release.promise;
  }, { cacheTtl: 60_000 });
  await using sock = await tempSocket();
  // Above the 100 connections held open at once, so none is refused.
  await using _server = await serve(sock.path, health, { maxConnections: 128 });
  const answers = Array.from({ length: 100 }, () => probe(sock.path, { target: "/readyz" }));
  await called.promise;
  release.resolve();
  const results = await Promise.all(answers);
  assert.equal(runs, 1);
  assert.equal(results.length, 100);
  assert.ok(results.every((r) => r.status === "pass"), JSON.stringify(results.find((r) => r.status !== "pass")));
});

Deno.test("cacheTtl reuses a result, then runs the check again once it has passed", async () => {
  let runs = 0;
  const health = new Health({ ready: true }).add("db", () => {
    runs++;
    return { status: "pass", observedValue: runs, observedUnit: "runs" };
  }, { cacheTtl: 80 });
  const first = await health.report("readyz");
  const second = await health.report("readyz");
  assert.equal(runs, 1);
  assert.deepEqual(resultOf(second, "db"), resultOf(first, "db"));
  await delay(100);
  const third = await health.report("readyz");
  assert.equal(runs, 2);
  assert.equal(resultOf(third, "db")?.observedValue, 2);
});

Deno.test("the Health's cacheTtl is the default for its checks", async () => {
  let runs = 0;
  const health = new Health({ ready: true, cacheTtl: 0 }).add("db", () => {
    runs++;
  });
  await health.report("readyz");
  await health.report("readyz");
  assert.equal(runs, 2);
});

// -------------------------------------------------------------- background

Deno.test("a background check's last result is served while it runs again", async () => {
  let runs = 0;
  const secondRun = Promise.withResolvers<AbortSignal>();
  const release = Promise.withResolvers<void>();
  const health = new Health({ ready: true }).add("queue", (signal) => {
    runs++;
    if (runs === 1) return { status: "pass", observedValue: 1, observedUnit: "run" };
    secondRun.resolve(signal);
    return release.promise.then(() => ({ status: "fail" as const, output: "second run" }));
  }, { interval: 10, measurement: "run", timeout: 60_000 });
  await using sock = await tempSocket();
  const server = await serve(sock.path, health);
  let signal: AbortSignal;
  try {
    signal = await secondRun.promise;
    const report = await ask(sock.path, "/readyz");
    assert.equal(runs, 2);
    assert.equal(report.status, "pass");
    assert.equal(resultOf(report, "queue")?.status, "pass");
    assert.equal(resultOf(report, "queue")?.observedValue, 1);
    assert.equal(signal.aborted, false);
  } finally {
    await server.close();
    release.resolve();
  }
  // Stopping the server aborts the run in progress.
  assert.equal(signal.aborted, true);
});

Deno.test("a background check fails readyz and startupz before its first result, and is absent from livez", async () => {
  let seen: AbortSignal | undefined;
  const called = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const health = new Health({ ready: true }).add("warmup", async (signal) => {
    seen = signal;
    called.resolve();
    await release.promise;
  }, { interval: 1000, kinds: ["live", "ready", "startup"], timeout: 60_000 });
  health.startChecks();
  try {
    await called.promise;
    for (const endpoint of ["readyz", "startupz"] as const) {
      const report = await health.report(endpoint);
      assert.equal(report.status, "fail", endpoint);
      const result = resultOf(report, "warmup");
      assert.equal(result?.status, "fail", endpoint);
      assert.equal(typeof result?.output, "string");
    }
    const live = await health.report("livez");
    assert.equal(live.status, "pass");
    assert.deepEqual(names(live), ["lifecycle"]);
  } finally {
    health.stopChecks();
    release.resolve();
  }
  assert.equal(seen?.aborted, true);
});

Deno.test("a background check's status change dispatches a change event", async () => {
  const changed = Promise.withResolvers<void>();
  const health = new Health({ ready: true }).add("bg", () => "fail", { interval: 1000 });
  health.addEventListener("change", () => changed.resolve(), { once: true });
  health.startChecks();
  try {
    await changed.promise;
    assert.equal(resultOf(await health.report("readyz"), "bg")?.status, "fail");
  } finally {
    health.stopChecks();
  }
});

Deno.test("a background check added while serving starts, and stops when removed", async () => {
  const health = new Health({ ready: true });
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, health);
  const changed = Promise.withResolvers<void>();
  health.addEventListener("change", () => changed.resolve(), { once: true });
  health.add("late", () => ({ status: "warn", output: "degraded" }), { interval: 1000 });
  await changed.promise;
  const report = await ask(sock.path, "/readyz");
  assert.equal(resultOf(report, "late")?.status, "warn");
  assert.equal(report.status, "warn");
  assert.equal(health.remove("late"), true);
  assert.deepEqual(names(await ask(sock.path, "/readyz")), ["lifecycle", "mainloop"]);
});

// --------------------------------------------------------------- lifecycle

Deno.test("a new Health is starting: readyz and startupz fail, livez passes", async () => {
  const health = new Health();
  assert.equal(health.state, "starting");
  const ready = await health.report("readyz");
  assert.equal(ready.status, "fail");
  assert.equal(resultOf(ready, "lifecycle")?.output, "starting");
  assert.equal((await health.report("startupz")).status, "fail");
  assert.equal((await health.report("livez")).status, "pass");
  assert.equal(new Health({ ready: true }).state, "ready");
  assert.equal((await new Health({ ready: true }).report("readyz")).status, "pass");
});

Deno.test("markReady opens readyz and startupz on the server", async () => {
  const health = new Health().add("db", () => {});
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, health);
  assert.equal((await ask(sock.path, "/readyz")).status, "fail");
  assert.equal((await ask(sock.path, "/startupz")).status, "fail");
  assert.equal((await ask(sock.path, "/livez")).status, "pass");
  const changed = Promise.withResolvers<void>();
  health.addEventListener("change", () => changed.resolve(), { once: true });
  health.markReady();
  await changed.promise;
  assert.equal(health.state, "ready");
  assert.equal((await ask(sock.path, "/readyz")).status, "pass");
  assert.equal((await ask(sock.path, "/startupz")).status, "pass");
  assert.equal((await ask(sock.path, "/livez")).status, "pass");
});

Deno.test("drain fails readyz with shutting down while livez passes, then removes the socket", async () => {
  const health = new Health({ ready: true })
    .add("db", () => {})
    .add("worker", () => {}, { kinds: ["live"] });
  await using sock = await tempSocket();
  await using server = await serve(sock.path, health, { drainDelay: 600 });
  assert.equal((await ask(sock.path, "/readyz")).status, "pass");
  const drained = server.drain();
  assert.equal(health.state, "draining");
  // During drainDelay the server still answers.
  const ready = await ask(sock.path, "/readyz");
  assert.equal(ready.status, "fail");
  assert.equal(resultOf(ready, "lifecycle")?.output, "shutting down");
  const verbose = await exchange(sock.path, "GET /readyz?verbose\n");
  assert.ok(verbose.split("\n").includes("[-]lifecycle failed: shutting down"), verbose);
  const live = await ask(sock.path, "/livez");
  assert.equal(live.status, "pass");
  assert.equal(resultOf(live, "worker")?.status, "pass");
  assert.equal(await exists(sock.path), true);
  await drained;
  await server.finished;
  assert.equal(await exists(sock.path), false);
  assert.equal(health.state, "stopped");
});

Deno.test("the lifecycle only moves forward: markReady refuses to reopen a draining Health", async () => {
  const health = new Health();
  const events: string[] = [];
  health.addEventListener("change", () => events.push(health.state));
  health.markReady();
  health.markReady();
  health.markDraining();
  assert.throws(() => health.markReady(), Error);
  assert.equal(health.state, "draining");
  assert.equal((await health.report("readyz")).status, "fail");
  health.markStopped();
  health.markDraining();
  assert.equal(health.state, "stopped");
  assert.deepEqual(events, ["ready", "draining", "stopped"]);
});

Deno.test("markStopped fails every probe", async () => {
  const health = new Health({ ready: true }).add("worker", () => {}, { kinds: ["live"] });
  health.markStopped();
  for (const endpoint of ["healthz", "livez", "readyz", "startupz"] as const) {
    const report = await health.report(endpoint);
    assert.equal(report.status, "fail", endpoint);
    assert.equal(resultOf(report, "lifecycle")?.output, "stopped");
  }
});

// ------------------------------------------------------------ served routes

Deno.test("/readyz/NAME answers one check, and unknown or wrong-kind checks answer 404", async () => {
  const health = new Health({ ready: true })
    .add("db", () => {})
    .add("readyonlycheck", () => "fail")
    .add("worker", () => {}, { kinds: ["live"] });
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, health);
  const db = await ask(sock.path, "/readyz/db");
  assert.equal(db.status, "pass");
  assert.deepEqual(Object.keys(db.checks), ["db:responseTime"]);
  assert.deepEqual(names(await ask(sock.path, "/healthz/worker")), ["worker"]);
  for (const target of ["/healthz/unknown", "/livez/readyonlycheck", "/readyz/worker"]) {
    const body = lineJson(await exchange(sock.path, `GET ${target}\n`));
    assert.equal(body.code, 404, target);
    assert.equal(typeof body.error, "string", target);
    assert.equal("status" in body, false, target);
  }
  const viaHttp = parseHttp(
    await exchange(sock.path, "GET /livez/readyonlycheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
  );
  assert.equal(viaHttp.code, 404);
});

Deno.test("report rejects a check that is not on the endpoint with RangeError", async () => {
  const health = new Health({ ready: true }).add("db", () => {}).add("worker", () => {}, { kinds: ["live"] });
  await assert.rejects(health.report("livez", { check: "db" }), RangeError);
  await assert.rejects(health.report("healthz", { check: "nope" }), RangeError);
  assert.deepEqual(names(await health.report("livez", { check: "worker" })), ["worker"]);
  assert.deepEqual(names(await health.report("readyz", { check: "lifecycle" })), ["lifecycle"]);
});

Deno.test("?exclude leaves checks out of the report and its status", async () => {
  const health = new Health({ ready: true })
    .add("db", () => "fail")
    .add("cache", () => "fail")
    .add("queue", () => {});
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, health);
  assert.equal((await ask(sock.path, "/readyz")).status, "fail");
  const report = await ask(sock.path, "/readyz?exclude=db&exclude=cache");
  assert.equal(report.status, "pass");
  assert.deepEqual(names(report), ["queue", "lifecycle", "mainloop"]);
  assert.equal(report.notes, undefined);
  assert.deepEqual(names(await health.report("readyz", { exclude: ["queue"] })), ["db", "cache", "lifecycle"]);
});

Deno.test("an exclude naming no check is reported in notes and as a warn: line of ?verbose", async () => {
  const health = new Health({ ready: true }).add("db", () => {});
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, health);
  const report = await ask(sock.path, "/readyz?exclude=nope");
  assert.equal(report.status, "pass");
  assert.equal(report.notes?.length, 1);
  assert.match(report.notes![0], /"nope"/);
  const lines = (await exchange(sock.path, "GET /readyz?verbose&exclude=nope\n")).split("\n");
  assert.deepEqual(lines.slice(0, 3), ["[+]db ok", "[+]lifecycle ok", "[+]mainloop ok"]);
  assert.match(lines[3], /^warn: .*"nope"/);
  assert.deepEqual(lines.slice(4), ["readyz check passed", ""]);
});

Deno.test("details: false withholds check outputs in JSON and text", async () => {
  const health = new Health({ ready: true }).add("db", () => {
    throw new Error("password rejected for admin");
  });
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, health, { details: false });
  const json = await exchange(sock.path, "GET /readyz\n");
  assert.doesNotMatch(json, /password/);
  const report = lineJson(json) as unknown as HealthReport;
  assert.equal(report.status, "fail");
  assert.equal(resultOf(report, "db")?.status, "fail");
  assert.equal(resultOf(report, "db")?.output, undefined);
  const text = await exchange(sock.path, "GET /readyz?verbose\n");
  assert.equal(text.split("\n")[0], "[-]db failed: reason withheld");
  assert.doesNotMatch(text, /password/);
});

Deno.test("?verbose answers the text format line by line in both framings", async () => {
  const health = new Health({ ready: true })
    .add("db", () => {
      throw new Error("connection refused");
    })
    .add("cache", () => {})
    .add("worker", () => {}, { kinds: ["live"] });
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, health);
  const text = await exchange(sock.path, "GET /readyz?verbose\n");
  assert.deepEqual(text.split("\n"), [
    "[-]db failed: connection refused",
    "[+]cache ok",
    "[+]lifecycle ok",
    "[+]mainloop ok",
    "readyz check failed",
    "",
  ]);
  const live = await exchange(sock.path, "GET /livez?verbose\n");
  assert.deepEqual(live.split("\n"), ["[+]worker ok", "[+]lifecycle ok", "[+]mainloop ok", "livez check passed", ""]);
  const viaHttp = parseHttp(
    await exchange(sock.path, "GET /readyz?verbose HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
  );
  assert.equal(viaHttp.code, 503);
  assert.match(viaHttp.headers["content-type"], /^text\/plain/);
  assert.equal(viaHttp.body, text); // the text ends with its newline, all line mode would add
});

// ------------------------------------------------------------------ built-ins

Deno.test("heapUsage fails above a tiny limit and passes under a huge one", async () => {
  const tiny = await new Health({ ready: true }).add("heap", heapUsage({ limit: 1 })).report("livez");
  const failed = tiny.checks["heap:heapUsed"]?.[0];
  assert.equal(failed?.status, "fail", JSON.stringify(tiny));
  assert.equal(failed?.observedUnit, "bytes");
  assert.ok((failed?.observedValue as number) > 1);
  assert.equal(typeof failed?.output, "string");
  const huge = await new Health({ ready: true }).add("heap", heapUsage({ limit: 2 ** 50 })).report("livez");
  assert.equal(huge.checks["heap:heapUsed"]?.[0].status, "pass", JSON.stringify(huge));
  assert.equal(huge.status, "pass");
  const warned = await new Health({ ready: true }).add("heap", heapUsage({ limit: 2 ** 50, warn: 1 }))
    .report("livez");
  assert.equal(warned.checks["heap:heapUsed"]?.[0].status, "warn");
  assert.equal(warned.status, "warn");
  assert.throws(() => heapUsage({ limit: 0 }), RangeError);
  assert.throws(() => heapUsage({ limit: -1 }), RangeError);
});

// -------------------------------------------- results, thresholds, events, tags

const THREADS = ["worker", "main"] as const;

/** `curl --unix-socket` a target: the HTTP status and the body. */
async function curl(path: string, target: string): Promise<{ code: number; body: string }> {
  const out = await run("curl", ["-sS", "-w", "\n%{http_code}", "--unix-socket", path, `http://localhost${target}`]);
  assert.equal(out.code, 0, out.stderr);
  const cut = out.stdout.lastIndexOf("\n");
  return { code: Number(out.stdout.slice(cut + 1)), body: out.stdout.slice(0, cut) };
}

/** `socat` a line-mode request: the answer. */
async function socat(path: string, request: string): Promise<string> {
  const out = await run("socat", ["-t5", "-", `UNIX-CONNECT:${path}`], { stdin: `${request}\n` });
  assert.equal(out.code, 0, out.stderr);
  return out.stdout;
}

/** Resolves at the next `change` event of a Health. */
function nextChange(health: Health): Promise<void> {
  return new Promise((resolve) => health.addEventListener("change", () => resolve(), { once: true }));
}

Deno.test('a check returning true passes and false fails with "check returned false"', async () => {
  assert.equal((await outcomeOf(() => true)).status, "pass");
  assert.equal((await outcomeOf(() => Promise.resolve(true))).status, "pass");
  const no = await outcomeOf(() => false);
  assert.deepEqual([no.status, no.output], ["fail", "check returned false"]);
});

for (const thread of THREADS) {
  Deno.test(`boolean results are served as pass and fail to curl and socat (thread: ${thread})`, async () => {
    const connected = { db: true };
    const health = new Health({ ready: true })
      .add("db", () => connected.db, { cacheTtl: 0 })
      .add("off", () => false, { critical: false });
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, health, { thread });
    const answer = await curl(sock.path, "/readyz?verbose");
    assert.equal(answer.code, 200, answer.body);
    assert.ok(answer.body.split("\n").includes("[+]db ok"), answer.body);
    assert.ok(answer.body.split("\n").includes("[-]off failed: check returned false"), answer.body);
    connected.db = false;
    const report = lineJson(await socat(sock.path, "GET /readyz")) as unknown as HealthReport;
    assert.equal(report.status, "fail");
    assert.deepEqual(resultOf(report, "db"), {
      ...resultOf(report, "db"),
      status: "fail",
      output: "check returned false",
    });
  });
}

Deno.test("failureThreshold: a failing check warns, counting its runs, until that many runs in a row failed", async () => {
  let status: "pass" | "fail" = "fail";
  const health = new Health({ ready: true })
    .add("db", () => status === "fail" ? { status, output: "refused" } : status, { cacheTtl: 0, failureThreshold: 3 });
  const outputs: (string | undefined)[] = [];
  for (let run = 0; run < 4; run++) {
    const result = resultOf(await health.report("readyz"), "db")!;
    outputs.push(`${result.status}: ${result.output}`);
  }
  assert.deepEqual(outputs, [
    "warn: failed 1 of 3 runs in a row: refused",
    "warn: failed 2 of 3 runs in a row: refused",
    "fail: refused",
    "fail: refused",
  ]);
  status = "pass";
  assert.equal(resultOf(await health.report("readyz"), "db")?.status, "pass");
  // A pass starts the count again.
  status = "fail";
  assert.equal(resultOf(await health.report("readyz"), "db")?.output, "failed 1 of 3 runs in a row: refused");
});

Deno.test("successThreshold: after failing, a check fails until that many runs in a row passed", async () => {
  let status: "pass" | "warn" | "fail" = "fail";
  const health = new Health({ ready: true }).add("db", () => status, { cacheTtl: 0, successThreshold: 2 });
  assert.equal(resultOf(await health.report("readyz"), "db")?.status, "fail");
  status = "pass";
  const recovering = resultOf(await health.report("readyz"), "db")!;
  assert.deepEqual(
    [recovering.status, recovering.output],
    ["fail", "recovering: passed 1 of 2 runs in a row; last failure: check failed"],
  );
  status = "fail";
  assert.equal(resultOf(await health.report("readyz"), "db")?.output, "check failed");
  status = "pass";
  assert.equal(resultOf(await health.report("readyz"), "db")?.status, "fail");
  status = "warn"; // not a failure: it counts towards recovery, and is then reported as it is
  assert.equal(resultOf(await health.report("readyz"), "db")?.status, "warn");
  status = "pass";
  assert.equal(resultOf(await health.report("readyz"), "db")?.status, "pass");
});

Deno.test("thresholds count runs, not probes: a cached result is no new run", async () => {
  let runs = 0;
  const health = new Health({ ready: true }).add("db", () => {
    runs++;
    return "fail";
  }, { cacheTtl: 60_000, failureThreshold: 2 });
  for (let probe = 0; probe < 5; probe++) {
    assert.equal(resultOf(await health.report("readyz"), "db")?.output, "failed 1 of 2 runs in a row: check failed");
  }
  assert.equal(runs, 1);
});

Deno.test("maxTimeInError: a check fails only once it has failed continuously that long; with failureThreshold, both", async () => {
  const health = new Health({ ready: true })
    .add("timed", () => "fail", { cacheTtl: 0, maxTimeInError: 150 })
    .add("both", () => "fail", { cacheTtl: 0, maxTimeInError: 150, failureThreshold: 5 });
  let report = await health.report("readyz");
  assert.equal(resultOf(report, "timed")?.status, "warn");
  assert.match(resultOf(report, "timed")!.output!, /^failed for \d+ of 150 ms: check failed$/);
  assert.match(resultOf(report, "both")!.output!, /^failed 1 of 5 runs in a row, for \d+ of 150 ms: check failed$/);
  await delay(200);
  report = await health.report("readyz");
  assert.deepEqual([resultOf(report, "timed")?.status, resultOf(report, "timed")?.output], ["fail", "check failed"]);
  assert.equal(resultOf(report, "both")?.status, "warn", "5 runs are needed too");
  for (let run = 3; run <= 5; run++) report = await health.report("readyz");
  assert.equal(resultOf(report, "both")?.status, "fail");
  await delay(200);
  const passing = new Health({ ready: true }).add("x", () => "fail", { cacheTtl: 0, failureThreshold: 3 });
  await passing.report("readyz");
  await delay(200); // time alone makes no run
  assert.equal(resultOf(await passing.report("readyz"), "x")?.output, "failed 2 of 3 runs in a row: check failed");
});

Deno.test("add rejects thresholds that are not whole runs or milliseconds with RangeError, and bad tags", () => {
  const health = new Health();
  for (const failureThreshold of [0, -1, 1.5, NaN, Infinity, 2 ** 31]) {
    assert.throws(
      () => health.add("x", () => {}, { failureThreshold }),
      RangeError,
      `failureThreshold ${failureThreshold}`,
    );
  }
  for (const successThreshold of [0, 2.5]) {
    assert.throws(() => health.add("x", () => {}, { successThreshold }), RangeError);
  }
  for (const maxTimeInError of [-1, NaN, 2 ** 31]) {
    assert.throws(() => health.add("x", () => {}, { maxTimeInError }), RangeError, `maxTimeInError ${maxTimeInError}`);
  }
  for (const tags of [["has space"], [""], ["a?b"], [7], "db"]) {
    // deno-lint-ignore no-explicit-any
    assert.throws(() => health.add("x", () => {}, { tags: tags as any }), TypeError, JSON.stringify(tags));
  }
  assert.throws(() => health.add("x", () => {}, { tags: ["t".repeat(129)] }), RangeError);
  assert.throws(() => health.add("x", () => {}, { tags: Array.from({ length: 33 }, (_, i) => `t${i}`) }), RangeError);
  assert.deepEqual(health.names, []);
});

for (const thread of THREADS) {
  Deno.test(`failureThreshold over the socket: warn, then fail, run by run (thread: ${thread})`, async () => {
    const health = new Health({ ready: true })
      .add("db", () => ({ status: "fail", output: "refused" }), { cacheTtl: 0, failureThreshold: 2 });
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, health, { thread });
    const first = await curl(sock.path, "/readyz");
    assert.equal(first.code, 200, first.body);
    assert.equal(resultOf(JSON.parse(first.body), "db")?.output, "failed 1 of 2 runs in a row: refused");
    const second = await socat(sock.path, "GET /readyz?verbose");
    assert.ok(second.split("\n").includes("[-]db failed: refused"), second);
  });
}

Deno.test("change events: one per check whose reported status changes, and one per lifecycle change, with detail", async () => {
  let status: "pass" | "fail" = "pass";
  const health = new Health()
    .add("db", () => status === "fail" ? { status, output: "refused\n[+]db ok" } : status, { cacheTtl: 0 })
    .add("cache", () => "pass", { cacheTtl: 0 });
  const seen: unknown[] = [];
  health.addEventListener("change", ({ detail }) => seen.push(detail));
  health.markReady();
  await health.report("readyz");
  await health.report("readyz"); // nothing changes
  status = "fail";
  await health.report("readyz");
  health.markNotReady("queue full");
  health.markNotReady("queue still full"); // the same state: no change event
  health.markReady();
  health.markDraining();
  assert.deepEqual(seen, [
    { name: "lifecycle", previous: "starting", current: "ready" },
    { name: "db", previous: undefined, current: "pass" },
    { name: "cache", previous: undefined, current: "pass" },
    { name: "db", previous: "pass", current: "fail", output: "refused\\n[+]db ok" },
    { name: "lifecycle", previous: "ready", current: "not-ready", output: "queue full" },
    { name: "lifecycle", previous: "not-ready", current: "ready" },
    { name: "lifecycle", previous: "ready", current: "draining" },
  ]);
});

Deno.test("a change event's output is bounded", async () => {
  const health = new Health({ ready: true }).add("db", () => ({ status: "fail", output: "x".repeat(5000) }));
  const details: { output?: string }[] = [];
  health.addEventListener("change", ({ detail }) => details.push(detail));
  await health.report("readyz");
  assert.equal(details.length, 1);
  assert.ok(details[0].output!.length <= 1024, `${details[0].output!.length}`);
  assert.match(details[0].output!, /… \(cut from 5000 bytes\)$/);
});

for (const thread of THREADS) {
  Deno.test(`a watch stream does not run a check that flips at each run again at each change (thread: ${thread})`, async () => {
    let runs = 0;
    const health = new Health({ ready: true }).add("flaky", () => ++runs % 2 === 0 ? "pass" : "fail", { cacheTtl: 0 });
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, health, { thread, watchInterval: 60_000 });
    // curl follows the stream for 600 ms: without the guard, each run's change would wake it to run the check again.
    const out = await run("curl", ["-sS", "-N", "-m", "0.6", "--unix-socket", sock.path, "http://x/readyz?watch"]);
    assert.match(out.stdout, /^retry: \d+\ndata: \{"status":"fail"/, out.stderr);
    assert.ok(runs <= 3, `the check ran ${runs} times`);
  });
}

for (const thread of THREADS) {
  Deno.test(`markNotReady fails /readyz naming the reason until markReady; /livez and /startupz pass (thread: ${thread})`, async () => {
    const health = new Health({ ready: true }).add("worker", () => {}, { kinds: ["live"] });
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, health, { thread });
    assert.equal((await curl(sock.path, "/readyz")).code, 200);
    const changed = nextChange(health);
    health.markNotReady("database connection lost");
    await changed;
    assert.equal(health.state, "not-ready");
    const ready = await curl(sock.path, "/readyz");
    assert.equal(ready.code, 503, ready.body);
    assert.deepEqual(resultOf(JSON.parse(ready.body), "lifecycle"), {
      status: "fail",
      observedValue: "not-ready",
      time: resultOf(JSON.parse(ready.body), "lifecycle")?.time,
      output: "not ready: database connection lost",
    });
    const verbose = await socat(sock.path, "GET /readyz?verbose");
    assert.ok(verbose.split("\n").includes("[-]lifecycle failed: not ready: database connection lost"), verbose);
    assert.equal((await curl(sock.path, "/livez")).code, 200);
    assert.equal((await curl(sock.path, "/startupz")).code, 200);
    const back = nextChange(health);
    health.markReady();
    await back;
    assert.equal((await curl(sock.path, "/readyz")).code, 200);
  });
}

Deno.test("markNotReady: nothing changes while starting; after draining, it and markReady throw; a reason is bounded", async () => {
  const starting = new Health();
  starting.markNotReady("not yet");
  assert.equal(starting.state, "starting");
  assert.equal(resultOf(await starting.report("readyz"), "lifecycle")?.output, "starting");
  // deno-lint-ignore no-explicit-any
  assert.throws(() => starting.markNotReady(42 as any), TypeError);
  const long = new Health({ ready: true });
  long.markNotReady("r".repeat(4000));
  assert.ok(resultOf(await long.report("readyz"), "lifecycle")!.output!.length <= 1024);
  long.markNotReady("again");
  assert.equal(resultOf(await long.report("readyz"), "lifecycle")?.output, "not ready: again");
  long.markDraining();
  assert.throws(() => long.markNotReady("x"), new Error("Cannot mark the health not ready: it is draining"));
  assert.throws(() => long.markReady(), new Error("Cannot mark the health ready: it is draining"));
  long.markStopped();
  assert.throws(() => long.markReady(), new Error("Cannot mark the health ready: it is stopped"));
  assert.equal(long.state, "stopped");
});

Deno.test("service fields: at the top of every JSON report when set, absent when not, checked when given", async () => {
  const service = { version: "1", releaseId: "1.4.2", serviceId: "orders-7f9c", description: 'Orders "API"\n\u0007' };
  const health = new Health({ ready: true, ...service }).add("db", () => {});
  for (const endpoint of ["healthz", "livez", "readyz", "startupz"] as const) {
    const report = await health.report(endpoint);
    assert.deepEqual(Object.keys(report).slice(0, 6), ["status", ...Object.keys(service), "checks"]);
    assert.deepEqual({ ...report, status: undefined, checks: undefined }, {
      ...service,
      status: undefined,
      checks: undefined,
    });
  }
  assert.deepEqual(Object.keys(await new Health({ version: "2" }).report("livez")), ["status", "version", "checks"]);
  assert.deepEqual(Object.keys(await new Health().report("livez")), ["status", "checks"]);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => new Health({ version: 2 as any }), TypeError);
  assert.throws(() => new Health({ releaseId: "x".repeat(129) }), RangeError);
  assert.throws(() => new Health({ description: "x".repeat(1025) }), RangeError);
  new Health({ description: "x".repeat(1024) });
});

for (const thread of THREADS) {
  Deno.test(`service fields reach curl escaped and whole (thread: ${thread})`, async () => {
    const description = 'Orders "API"\nline two \u2028 \u0000';
    const health = new Health({ ready: true, version: "1", releaseId: "1.4.2", description });
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, health, { thread });
    const answer = await curl(sock.path, "/readyz");
    assert.equal(answer.body.split("\n").length, 1, answer.body);
    const report = JSON.parse(answer.body);
    assert.deepEqual([report.version, report.releaseId, report.serviceId, report.description], [
      "1",
      "1.4.2",
      undefined,
      description,
    ]);
    assert.equal(lineJson(await socat(sock.path, "GET /livez")).description, description);
  });
}

Deno.test("progress passes while beats come within its time, fails after, and reports ms since the last beat", async () => {
  const ticker = progress({ within: 1000 });
  const health = new Health({ ready: true }).add("ticker", ticker);
  let result = resultOf(await health.report("livez"), "ticker")!;
  assert.equal(result.status, "pass");
  assert.equal(result.observedUnit, "ms");
  assert.ok(typeof result.observedValue === "number" && result.observedValue < 1000);
  assert.deepEqual(Object.keys((await health.report("livez")).checks), ["ticker:sinceLastBeat", "lifecycle:state"]);
  await delay(1100);
  result = resultOf(await health.report("livez"), "ticker")!;
  assert.equal(result.status, "fail");
  assert.ok((result.observedValue as number) >= 1000, `${result.observedValue}`);
  assert.equal(result.output, `no progress for ${result.observedValue} ms (expected within 1000 ms)`);
  ticker.beat();
  assert.equal(resultOf(await health.report("livez"), "ticker")?.status, "pass");
  for (const within of [0, -1, NaN, 2 ** 31]) assert.throws(() => progress({ within }), RangeError);
});

for (const thread of THREADS) {
  Deno.test(`progress over the socket: /livez fails once the beats stop (thread: ${thread})`, async () => {
    const ticker = progress({ within: 1000 });
    const health = new Health({ ready: true }).add("ticker", ticker);
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, health, { thread });
    ticker.beat();
    const live = await curl(sock.path, "/livez");
    assert.equal(live.code, 200, live.body);
    assert.equal(JSON.parse(live.body).checks["ticker:sinceLastBeat"][0].observedUnit, "ms");
    await delay(1100);
    const stalled = await socat(sock.path, "GET /livez?verbose");
    assert.match(stalled.split("\n")[0], /^\[-\]ticker failed: no progress for \d+ ms \(expected within 1000 ms\)$/);
  });
}

Deno.test("tags: ?tag keeps the checks carrying any of them on every endpoint; the lifecycle stays", async () => {
  const health = new Health({ ready: true })
    .add("db", () => "fail", { tags: ["storage", "critical-path"] })
    .add("cache", () => {}, { tags: ["storage"] })
    .add("mail", () => {}, { tags: ["external"], kinds: ["ready", "live"] })
    .add("plain", () => {});
  assert.deepEqual(names(await health.report("readyz", { tags: ["storage"] })), ["db", "cache", "lifecycle"]);
  assert.deepEqual(names(await health.report("readyz", { tags: ["external", "critical-path"] })), [
    "db",
    "mail",
    "lifecycle",
  ]);
  const storage = await health.report("healthz", { tags: ["storage"], exclude: ["db"] });
  assert.deepEqual([names(storage), storage.status], [["cache", "lifecycle"], "pass"]);
  assert.deepEqual(names(await health.report("livez", { tags: ["external"] })), ["mail", "lifecycle"]);
  // A check asked for alone is answered whatever the tags.
  assert.deepEqual(names(await health.report("readyz", { check: "plain", tags: ["storage"] })), ["plain"]);
  assert.equal((await health.report("readyz", { tags: ["storage"] })).notes, undefined);
});

Deno.test("tags: a tag no check of the endpoint carries is reported in notes and as a warn: line of ?verbose", async () => {
  const health = new Health({ ready: true })
    .add("db", () => {}, { tags: ["storage"] })
    .add("worker", () => {}, { kinds: ["live"], tags: ["jobs"] });
  const report = await health.report("livez", { tags: ["storage", "jobs", "nope", "nope"] });
  assert.deepEqual(names(report), ["worker", "lifecycle"]);
  assert.equal(report.status, "pass");
  assert.deepEqual(report.notes, [
    'cannot select tag "storage": no check on /livez carries it',
    'cannot select tag "nope": no check on /livez carries it',
  ]);
  assert.deepEqual(renderVerbose(report, "livez").split("\n"), [
    "[+]worker ok",
    "[+]lifecycle ok",
    'warn: cannot select tag "storage": no check on /livez carries it',
    'warn: cannot select tag "nope": no check on /livez carries it',
    "livez check passed",
    "",
  ]);
});

for (const thread of THREADS) {
  Deno.test(`a ?watch stream follows a background check's thresholds: warn, then fail (thread: ${thread})`, async () => {
    const health = new Health({ ready: true })
      .add("db", () => ({ status: "fail", output: "refused" }), { interval: 300, failureThreshold: 3 });
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, health, { thread, watchInterval: 60_000 });
    const statuses: string[] = [];
    const stop = AbortSignal.timeout(20_000);
    for await (const report of watch(sock.path, { target: "/readyz", signal: stop, timeout: 20_000 })) {
      statuses.push(`${report.status}: ${resultOf(report, "db")?.output}`);
      if (report.status === "fail" && resultOf(report, "db")?.output === "refused") break;
    }
    // Before its first run the check counts as failing ("no result yet"); then 2 runs warn, the third fails.
    // (The stream sends a report when its status changes: it may join after the first warning run.)
    assert.match(statuses.at(-2) ?? "", /^warn: failed [12] of 3 runs in a row: refused$/, statuses.join(" | "));
    assert.equal(statuses.at(-1), "fail: refused");
  });
}
