// Admission: no client that may connect can make a healthy server fail a
// probe. Floods come from a flooder in its own process
// (tests/fixtures/flooder.ts), bounded in count and time; probes are real
// clients (`curl -m 1`, and `healthsock check --timeout 1s` with the scoped
// flags users get). Figures are printed for the record; nothing is asserted
// about timings.
import assert from "node:assert/strict";
import { configure, reset } from "@logtape/logtape";
import type { LogRecord } from "@logtape/logtape";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { permissionFlags } from "../paths.ts";
import { cli, cliArgs, figures, hasCommand, ROOT, run, tempSocket } from "./_util.ts";
import { guarded } from "./_guard.ts";
import { httpGet, send, waitUntil, writeQuietly } from "./fixtures/hardening.ts";

const CURL = hasCommand("curl");
const needsCurl = CURL ? "" : " (ignored: curl is not installed)";

interface Figures {
  opened: number;
  answered: number;
  errors: number;
  seconds: number;
}

/** A flooder process: `count` clients doing `mode` (see tests/fixtures/flooder.ts) for at most `seconds`. */
interface Flooder extends AsyncDisposable {
  /** Resolves once `count` connections were opened. */
  ready: Promise<void>;
  /** Stop it and read its figures. */
  stop(): Promise<Figures>;
  /** Let it run its time and read its figures. */
  finished(): Promise<Figures>;
}

function flooder(path: string, mode: string, count: number, seconds: number): Flooder {
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--no-prompt",
      ...permissionFlags(path, false).split(" "),
      `${ROOT}tests/fixtures/flooder.ts`,
      path,
      mode,
      String(count),
      String(seconds),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const readLine = async (): Promise<string> => {
    for (;;) {
      const lf = text.indexOf("\n");
      if (lf >= 0) {
        const line = text.slice(0, lf);
        text = text.slice(lf + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error(`The ${mode} flooder ended early: ${JSON.stringify(text)}`);
      text += value;
    }
  };
  const ready = readLine().then((line) => assert.equal(line, "ready"));
  let stopped: Promise<Figures> | undefined;
  const finish = (early: boolean) =>
    stopped ??= (async () => {
      await ready.catch(() => {});
      if (early) await child.stdin.close().catch(() => {});
      const result = JSON.parse(await readLine());
      await child.stdin.close().catch(() => {});
      await reader.cancel().catch(() => {});
      await child.status;
      return result;
    })();
  const stop = () => finish(true);
  return {
    ready,
    stop,
    finished: () => finish(false),
    async [Symbol.asyncDispose]() {
      await stop().catch(() => {});
    },
  };
}

/** `count` rounds of `curl -m 1` and `healthsock check --timeout 1s`; the failures, described. */
async function probe(path: string, count: number): Promise<{ failures: string[]; passed: number }> {
  const failures: string[] = [];
  let passed = 0;
  for (let i = 0; i < count; i++) {
    if (CURL) {
      const out = await run("curl", ["-sS", "-m", "1", "--unix-socket", path, "http://localhost/livez"]);
      if (out.code === 0 && JSON.parse(out.stdout).status === "pass") passed++;
      else failures.push(`curl ${i}: exit ${out.code}: ${out.stderr.trim()}${out.stdout.slice(0, 120)}`);
    }
    const out = await cli(path, ["check", "--path", "/livez", "--timeout", "1s"]);
    if (out.code === 0) passed++;
    else failures.push(`check ${i}: exit ${out.code}: ${out.stderr.trim()}`);
  }
  return { failures, passed };
}

function health(): Health {
  return new Health({ ready: true }).add("db", () => "pass");
}

Deno.test({
  name: `probes pass while 1,500 reconnecting idle, half-sent and never-read connections flood the socket${needsCurl}`,
  ignore: !CURL,
  fn: guarded(async () => {
    await using sock = await tempSocket();
    // Short timeouts, so that the flood is closed and reconnects while the probes run.
    await using server = await serve(sock.path, health(), { requestTimeout: 1000, idleTimeout: 1000 });
    await using idle = flooder(sock.path, "idle", 500, 30);
    await using half = flooder(sock.path, "half", 500, 30);
    await using unread = flooder(sock.path, "unread", 500, 30);
    await Promise.all([idle.ready, half.ready, unread.ready]);
    const held = server.connections;
    const { failures, passed } = await probe(sock.path, 8);
    const floods = await Promise.all([idle.stop(), half.stop(), unread.stop()]);
    figures("admission", "1,500 reconnecting flooders", {
      "held when filled": held,
      "flood connections opened": floods.reduce((sum, f) => sum + f.opened, 0),
      "probes passed": `${passed}/16`,
    });
    assert.deepEqual(failures, [], "every probe passes during the flood");
  }),
});

Deno.test({
  name: `probes pass while 64 clients pipeline requests whose answers they never read${needsCurl}`,
  ignore: !CURL,
  fn: guarded(async () => {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, health());
    await using pipeline = flooder(sock.path, "pipeline", 64, 30);
    await pipeline.ready;
    // Let their answers fill the socket buffers.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const { failures, passed } = await probe(sock.path, 6);
    const flood = await pipeline.stop();
    figures("admission", "64 pipelining clients that never read", {
      "connections opened": flood.opened,
      "probes passed": passed,
    });
    assert.deepEqual(failures, [], "every probe passes while the pipeliners' answers are stuck");
  }),
});

Deno.test(
  "well-behaved clients over maxConnections are not slowed to a crawl: accepting never waits",
  guarded(async () => {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, health(), { maxConnections: 8 });
    const rate = async (clients: number) => {
      await using loop = flooder(sock.path, "loop", clients, 1.5);
      const result = await loop.finished();
      assert.equal(result.errors, 0, `${clients} clients: none dropped or refused`);
      return result.answered / result.seconds;
    };
    const atCap = await rate(8);
    const overCap = await rate(16);
    figures("admission", "requests per second at maxConnections 8", {
      "8 clients": atCap.toFixed(0),
      "16 clients": overCap.toFixed(0),
    });
    // Before, accepting slept at the cap until a slot-holder was past a grace period: 20 to 36 times fewer.
    assert.ok(overCap > atCap / 4, `16 clients got ${overCap.toFixed(0)}/s, 8 got ${atCap.toFixed(0)}/s`);
  }),
);

Deno.test(
  "refused connections are logged as a count per interval, not a line each",
  guarded(async () => {
    await using sock = await tempSocket();
    const records: LogRecord[] = [];
    await configure({
      sinks: { memory: (record: LogRecord) => records.push(record) },
      loggers: [{ category: ["healthsock", "server"], lowestLevel: "warning", sinks: ["memory"] }],
      reset: true,
    });
    const release = Promise.withResolvers<void>();
    try {
      const slow = new Health({ ready: true }).add("slow", async () => await release.promise, { timeout: 30_000 });
      await using server = await serve(sock.path, slow, { maxConnections: 2 });
      const held = [0, 1].map(() => send(sock.path, "GET /readyz\n"));
      await waitUntil(() => server.connections === 2, "both slots are answering");
      await using loop = flooder(sock.path, "loop", 16, 1);
      const refused = await loop.finished();
      release.resolve();
      await Promise.all(held);
      figures("admission", "refusals and log lines", {
        "503 answers": refused.answered,
        "warning lines": records.length,
      });
      assert.ok(refused.answered > 20, `${refused.answered} refusals`);
      assert.ok(records.length <= 2, records.map((r) => r.message.join("")).join("\n"));
      assert.match(records[0].message.map(String).join(""), /503 busy/);
    } finally {
      release.resolve();
      await reset();
    }
  }),
);

Deno.test({
  name:
    `a server out of file descriptors closes its longest-waiting connections and keeps answering probes${needsCurl}`,
  ignore: !CURL,
  fn: guarded(async () => {
    await using sock = await tempSocket();
    // The demo, as users run it, with 256 descriptors: the flood holds more connections than that.
    const demo = new Deno.Command("sh", {
      args: [
        "-c",
        'ulimit -n 256 && exec "$@"',
        "sh",
        "deno",
        ...cliArgs(sock.path, true, ["demo", "--socket", sock.path]),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      for (let i = 0; (await cli(sock.path, ["check", "--path", "/livez"])).code !== 0; i++) {
        assert.ok(i < 100, "the demo starts");
      }
      await using idle = flooder(sock.path, "idle", 400, 30);
      await idle.ready;
      const { failures, passed } = await probe(sock.path, 5);
      const flood = await idle.stop();
      figures("admission", "400 idle flooders against 256 descriptors", {
        opened: flood.opened,
        "probes passed": `${passed}/10`,
      });
      assert.ok(flood.opened > 400, "descriptors ran out, and the server closed connections to make room");
      assert.deepEqual(failures, [], "every probe passes");
    } finally {
      demo.kill("SIGKILL");
      await demo.stderr.cancel();
      await demo.status;
    }
  }),
});

Deno.test(
  "probes pass while 100 ?watch streams that are never read are held",
  guarded(async () => {
    await using sock = await tempSocket();
    await using server = await serve(sock.path, health(), { maxWatchers: 16 });
    const streams: Deno.UnixConn[] = [];
    try {
      for (let i = 0; i < 100; i++) {
        const conn = await Deno.connect({ transport: "unix", path: sock.path });
        streams.push(conn);
        await writeQuietly(conn, i % 2 ? "GET /healthz?watch\n" : httpGet("/healthz?watch", false));
      }
      await waitUntil(() => server.connections >= 16, "the watch slots are taken");
      const out = await cli(sock.path, ["check", "--timeout", "1s"]);
      assert.equal(out.code, 0, out.stderr);
    } finally {
      for (const conn of streams) conn.close();
    }
  }),
);
