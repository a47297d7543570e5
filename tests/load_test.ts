// Load and starvation. Figures are printed for the record (console.log); the
// assertions are about behaviour, never timings.
import assert from "node:assert/strict";
import { probe } from "../client.ts";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { exchange, figures, tempSocket } from "./_util.ts";
import { guarded, watchRejections } from "./_guard.ts";
import { assertServes, assertServesHttp, readAnswer, waitUntil } from "./fixtures/hardening.ts";

const IDLE = 500;
const SHORT = 10_000;
const BURST = 200;

function connectMany(path: string, count: number): Promise<Deno.UnixConn[]> {
  // Connect in waves so the listen backlog is never the limit being tested.
  return (async () => {
    const conns: Deno.UnixConn[] = [];
    try {
      for (let i = 0; i < count; i += 50) {
        const wave = Math.min(50, count - i);
        conns.push(...await Promise.all(Array.from({ length: wave }, () => Deno.connect({ transport: "unix", path }))));
      }
      return conns;
    } catch (error) {
      for (const conn of conns) conn.close();
      throw error;
    }
  })();
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

Deno.test(
  "a probe gets its answer while hundreds of idle connections are held open",
  guarded(async () => {
    await using sock = await tempSocket();
    const health = new Health({ ready: true }).add("db", () => "pass");
    await using server = await serve(sock.path, health, { maxConnections: IDLE + 16, requestTimeout: 120_000 });
    const idle = await connectMany(sock.path, IDLE);
    try {
      await waitUntil(() => server.connections === IDLE, `the server holds ${IDLE} idle connections`, 30_000);
      const latencies: number[] = [];
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        const result = await probe(sock.path, { framing: i % 2 ? "http" : "line", timeout: 10_000 });
        latencies.push(performance.now() - started);
        assert.equal(result.status, "pass");
      }
      latencies.sort((a, b) => a - b);
      figures("load", "idle connections held", {
        idle: server.connections,
        probes: latencies.length,
        "median ms": percentile(latencies, 0.5).toFixed(1),
        "max ms": latencies.at(-1)!.toFixed(1),
      });
      assert.ok(server.connections >= IDLE, "the idle connections are still held");
    } finally {
      for (const conn of idle) conn.close();
    }
    await waitUntil(() => server.connections === 0, "the idle connections are released", 30_000);
  }),
);

Deno.test(
  "a flood of idle connections over maxConnections cannot keep a probe from its answer",
  guarded(async () => {
    await using sock = await tempSocket();
    const health = new Health({ ready: true }).add("db", () => "pass");
    // maxConnections 64; a short requestTimeout so the flood expires.
    await using server = await serve(sock.path, health, { maxConnections: 64, requestTimeout: 1500 });
    const idle = await connectMany(sock.path, IDLE);
    try {
      // Each newcomer took the place of the longest-waiting (once it had had a moment to send a request):
      // the oldest were closed without a word.
      const evicted = await Promise.all(idle.slice(0, IDLE - 64).map((conn) => readAnswer(conn)));
      // Closed without a report: to make room, or (on a slow machine) at requestTimeout with a 408.
      const closed = evicted.filter((text) => text === "" || text.includes('"code":408')).length;
      assert.equal(closed, IDLE - 64, "every connection over the cap was closed without a report");
      // The cap and the 32nd kept over it for newcomers (the count settles as the closed ones end).
      await waitUntil(() => server.connections <= 64 + (64 >> 5), "the flood is held to the cap and its margin");
      const started = performance.now();
      const result = await probe(sock.path, { timeout: 10_000 });
      const answeredMs = performance.now() - started;
      assert.equal(result.status, "pass", "a probe is answered while the flood holds every slot");
      // The held connections expire at requestTimeout with a 408.
      await Promise.all(idle.slice(IDLE - 64).map((conn) => readAnswer(conn)));
      await waitUntil(() => server.connections === 0, "the flood timed out");
      await assertServes(sock.path);
      figures("load", "idle flood over maxConnections 64", {
        connections: IDLE,
        "closed to make room": evicted.length,
        "probe answered in ms": answeredMs.toFixed(1),
      });
    } finally {
      for (const conn of idle) conn.close();
    }
  }),
);

Deno.test(
  "thousands of short connections are all answered and none is left open",
  guarded(async () => {
    await using sock = await tempSocket();
    const health = new Health({ ready: true }).add("db", () => "pass");
    await using server = await serve(sock.path, health);
    const concurrency = 16;
    let next = 0;
    const counts = { pass: 0, http: 0, other: 0 };
    const started = performance.now();
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < SHORT) {
        const i = next++;
        if (i % 3 === 0) {
          const result = await probe(sock.path, { framing: "http", timeout: 10_000 });
          if (result.status === "pass" && result.code === 200) counts.http++;
          else counts.other++;
        } else if (i % 3 === 1) {
          const result = await probe(sock.path, { timeout: 10_000 });
          if (result.status === "pass") counts.pass++;
          else counts.other++;
        } else {
          // A client that connects and hangs up at once.
          const conn = await Deno.connect({ transport: "unix", path: sock.path });
          conn.close();
          counts.pass++;
        }
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    figures("load", "short connections", {
      connections: SHORT,
      concurrency,
      seconds: seconds.toFixed(2),
      "per second": Math.round(SHORT / seconds),
    });
    assert.equal(counts.other, 0);
    assert.equal(counts.pass + counts.http, SHORT);
    await waitUntil(() => server.connections === 0, "every short connection is closed");
    await assertServes(sock.path);
    await assertServesHttp(sock.path);
  }),
);

Deno.test(
  "a burst of requests while a check is slow is answered by shared check runs",
  guarded(async () => {
    await using sock = await tempSocket();
    let runs = 0;
    const health = new Health({ ready: true, cacheTtl: 0 }).add("slow", async (signal): Promise<"pass"> => {
      runs++;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 300);
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
      return "pass";
    }, { timeout: 5000 });
    await using server = await serve(sock.path, health, { maxConnections: BURST + 16 });
    const started = performance.now();
    const answers = await Promise.all(
      Array.from(
        { length: BURST },
        (_, i) =>
          i % 2
            ? exchange(sock.path, "GET /readyz\n")
            : exchange(sock.path, "GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n"),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    const passed = answers.filter((text) => /"status":"pass","checks"/.test(text)).length;
    figures("load", "burst with a 300 ms check", {
      requests: BURST,
      passed,
      "check runs": runs,
      seconds: seconds.toFixed(2),
    });
    assert.equal(passed, BURST, "every request of the burst got a passing report");
    // Concurrent requests share an in-flight run instead of starting one each.
    assert.ok(runs < BURST / 4, `${runs} check runs for ${BURST} requests`);
    await waitUntil(() => server.connections === 0, "the burst's connections are closed");
  }),
);

Deno.test(
  "a burst over maxConnections while a check hangs: every client gets an answer, none hangs",
  guarded(async () => {
    await using sock = await tempSocket();
    const health = new Health({ ready: true }).add(
      "hangs",
      (signal) =>
        new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true })),
      {
        timeout: 300,
      },
    );
    await using server = await serve(sock.path, health, { maxConnections: 32 });
    const answers = await Promise.all(Array.from({ length: BURST }, () => exchange(sock.path, "GET /readyz\n")));
    const failed = answers.filter((text) => {
      if (!text.startsWith("{")) return false;
      const report = JSON.parse(text);
      return report.status === "fail" && /timed out/.test(report.checks["hangs:responseTime"][0].output);
    }).length;
    const refused = answers.filter((text) => text.startsWith("{") && JSON.parse(text).code === 503).length;
    figures("load", "burst over maxConnections 32 with a hanging check", {
      requests: BURST,
      "fail (timed out)": failed,
      "503 busy": refused,
    });
    assert.equal(failed + refused, BURST, "each answer is the timed-out report or a line-mode 503 busy");
    assert.ok(failed >= 32, "at least maxConnections requests were served");
    await waitUntil(() => server.connections === 0, "the burst's connections are closed");
    const after = await exchange(sock.path, "GET /livez\n");
    assert.equal(JSON.parse(after).status, "pass", "a probe not touching the hanging check passes");
  }),
);

Deno.test("the rejection guard fails a test on an unhandled rejection", async () => {
  using rejections = watchRejections();
  Promise.reject(new Error("deliberately unhandled"));
  await assert.rejects(() => rejections.check(), /1 unhandled rejection\(s\):\nError: deliberately unhandled/);
});
