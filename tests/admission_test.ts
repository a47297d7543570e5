// Issue 9, item 1: admission. With the default maxConnections (64), a client
// that floods the socket with idle connections (re-opened as they are closed),
// half-sent requests, or ?watch streams it never reads cannot make a healthy
// server fail its probes: probe() and `healthsock check` (the check task's
// command line) are all answered pass. Figures are printed for the record;
// nothing is asserted about timings.
import assert from "node:assert/strict";
import { probe } from "../client.ts";
import { Health } from "../health.ts";
import { serve } from "../server.ts";
import { run, taskArgs, tempSocket } from "./_util.ts";
import { guarded } from "./_guard.ts";
import { httpGet, readAnswer, waitUntil, writeQuietly } from "./fixtures/hardening.ts";

const PROBES = 20;
const CHECKS = 2;
const MAX_CONNECTIONS = 64;
/** The default maxWatchers. */
const WATCH_CAP = 16;

function figures(label: string, values: Record<string, string | number>): void {
  console.log(`admission: ${label}: ${Object.entries(values).map(([k, v]) => `${k} ${v}`).join(", ")}`);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

interface Flood {
  /** Connections opened so far. */
  opened: number;
  /** Stop and wait for every connection of the flood to be closed. */
  stop(): Promise<void>;
}

/**
 * `count` clients, each connecting, sending `payload` (if any) and then either
 * holding the connection until stopped (`hold`) or waiting for the server to
 * close it and connecting again at once.
 */
function flood(path: string, count: number, payload: string | undefined, mode: "reconnect" | "hold"): Flood {
  const stopping = new AbortController();
  const stopped = new Promise<void>((resolve) => stopping.signal.addEventListener("abort", () => resolve()));
  const state = { opened: 0 };
  const clients = Array.from({ length: count }, async () => {
    while (!stopping.signal.aborted) {
      let conn: Deno.UnixConn;
      try {
        conn = await Deno.connect({ transport: "unix", path });
      } catch {
        // A full listen backlog and the like: try again shortly.
        await new Promise((resolve) => setTimeout(resolve, 5));
        continue;
      }
      state.opened++;
      try {
        if (payload !== undefined) await writeQuietly(conn, payload);
        if (mode === "hold") return await stopped;
        const closedByServer = readAnswer(conn).catch(() => "");
        await Promise.race([closedByServer, stopped]);
        conn.close();
        await closedByServer;
      } finally {
        try {
          conn.close();
        } catch { /* closed above */ }
      }
    }
  });
  return {
    get opened() {
      return state.opened;
    },
    async stop() {
      stopping.abort();
      await Promise.all(clients);
    },
  };
}

/** Probe while the flood runs: PROBES probe() calls (line and HTTP) and CHECKS runs of `healthsock check`. */
async function probeDuring(
  label: string,
  path: string,
  make: () => Flood,
  filled: (flood: Flood) => boolean,
): Promise<void> {
  const running = make();
  const latencies: number[] = [];
  const failures: string[] = [];
  const checks: number[] = [];
  try {
    await waitUntil(() => filled(running), "the flood fills the server", 20_000);
    for (let i = 0; i < PROBES; i++) {
      const started = performance.now();
      try {
        const result = await probe(path, { framing: i % 2 ? "http" : "line", timeout: 5000 });
        if (result.status === "pass") latencies.push(performance.now() - started);
        else failures.push(`probe ${i}: ${result.status}`);
      } catch (error) {
        failures.push(`probe ${i}: ${error}`);
      }
    }
    for (let i = 0; i < CHECKS; i++) {
      const { code, stderr } = await run("deno", [...taskArgs("check", path), "--socket", path]);
      checks.push(code);
      if (code !== 0) failures.push(`check ${i}: exit ${code}: ${stderr.trim()}`);
    }
  } finally {
    await running.stop();
  }
  latencies.sort((a, b) => a - b);
  figures(label, {
    "flood connections opened": running.opened,
    "probes answered pass": `${latencies.length}/${PROBES}`,
    "median ms": latencies.length ? percentile(latencies, 0.5).toFixed(1) : "-",
    "max ms": latencies.length ? latencies.at(-1)!.toFixed(1) : "-",
    "check exit 0": `${checks.filter((code) => code === 0).length}/${CHECKS}`,
  });
  assert.deepEqual(failures, [], `every probe passes during the flood`);
}

function health(): Health {
  return new Health({ ready: true }).add("db", () => "pass");
}

Deno.test(
  "probes pass while 200 idle connections are held and re-opened as they are closed",
  guarded(async () => {
    await using sock = await tempSocket();
    await using server = await serve(sock.path, health());
    await probeDuring(
      "200 idle connections, re-opened as closed",
      sock.path,
      () => flood(sock.path, 200, undefined, "reconnect"),
      () => server.connections >= MAX_CONNECTIONS,
    );
  }),
);

Deno.test(
  "probes pass while 200 half-sent requests are held and re-sent as they are closed",
  guarded(async () => {
    await using sock = await tempSocket();
    await using server = await serve(sock.path, health());
    await probeDuring(
      "200 half-sent requests (GET /hea), re-sent as closed",
      sock.path,
      () => flood(sock.path, 200, "GET /hea", "reconnect"),
      () => server.connections >= MAX_CONNECTIONS,
    );
  }),
);

Deno.test(
  "probes pass while 100 ?watch streams that are never read are held",
  guarded(async () => {
    await using sock = await tempSocket();
    await using server = await serve(sock.path, health());
    await probeDuring(
      "100 ?watch streams never read (50 line, 50 HTTP)",
      sock.path,
      () => {
        const floods = [
          flood(sock.path, 50, "GET /healthz?watch\n", "hold"),
          flood(sock.path, 50, httpGet("/healthz?watch", false), "hold"),
        ];
        return {
          get opened() {
            return floods.reduce((sum, f) => sum + f.opened, 0);
          },
          stop: () => Promise.all(floods.map((f) => f.stop())).then(() => {}),
        };
      },
      // Every stream is open (those over the watch cap have been told the server is busy).
      (flood) => flood.opened === 100 && server.connections >= WATCH_CAP,
    );
    await waitUntil(() => server.connections === 0, "the flood's connections are closed", 10_000).catch(() => {});
  }),
);
