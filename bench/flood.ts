/**
 * Admission under floods, measured with a native flooder in its own process
 * (`tests/fixtures/flooder.c`, built with `cc`; its clients reconnect as fast
 * as the kernel allows) against a server in another, its descriptor limit
 * raised to 20,000. Prints markdown tables for RESULTS.md and the README:
 *
 * 1. probes answered of 20 (`curl -m 1` and `check --timeout 1s`) under each
 *    flood, for each server: the demo (Worker mode; its `ticker` and `started`
 *    are evaluated on request), and a host whose one check is cached
 *    (`tests/fixtures/host.ts`) in Worker mode and with `thread: "main"`;
 * 2. requests per second of well-behaved clients (connect, `GET /livez`,
 *    read, close, again), by the number of clients;
 * 3. what closed watch streams cost (the demo's CPU and memory with N of them);
 * 4. how long the demo takes to drain after its watcher cap was filled with them.
 *
 * Usage: `deno task flood [--root DIR] [--servers demo,host,host-main]
 * [--floods idle:2000,idle:10000,…] [--clients 16,64,1000] [--zombies 1000]
 * [--only probes,throughput,zombies,drain]`. `--root` serves from another
 * checkout (to measure a version before a change; it needs this checkout's
 * `tests/fixtures/host.ts`), probed and flooded by this checkout's clients.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { permissionFlags } from "../paths.ts";
import { flood } from "../tests/fixtures/flooder.ts";
import type { FloodMode } from "../tests/fixtures/flooder.ts";
import { catProc, cpuSeconds, median, parseStat, parseStatus } from "./proc.ts";

const HERE = new URL("..", import.meta.url).pathname;
const FLOODS = [
  "idle:2000",
  "idle:10000",
  "half:2000",
  "half:10000",
  "unread:2000",
  "unread:10000",
  "loop:64",
  "loop:1000",
  "idle:17500",
  "half:17500",
].join(",");
const { values } = parseArgs({
  args: Deno.args,
  options: {
    root: { type: "string", default: HERE },
    servers: { type: "string", default: "demo,host,host-main" },
    floods: { type: "string", default: FLOODS },
    clients: { type: "string", default: "16,64,1000" },
    zombies: { type: "string", default: "1000" },
    only: { type: "string", default: "probes,throughput,zombies,drain" },
    seconds: { type: "string", default: "3" },
  },
});
const root = values.root.endsWith("/") ? values.root : `${values.root}/`;
const only = new Set(values.only.split(","));
const numbers = (text: string) => text.split(",").map(Number);

interface Server {
  child: Deno.ChildProcess;
  path: string;
  stop(): Promise<void>;
}

/** Start a server: `demo` (the CLI's demo), `host` (Worker mode) or `host-main` (`thread: "main"`). */
async function startServer(kind: string): Promise<Server> {
  const dir = await Deno.makeTempDir({ prefix: "healthsock-flood-" });
  const path = `${dir}/app.sock`;
  const program = kind === "demo"
    ? [`${root}main.ts`, "demo", "--socket", path]
    : [`${root}tests/fixtures/host.ts`, path, JSON.stringify({ thread: kind === "host-main" ? "main" : "worker" })];
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      'ulimit -n 20000 2>/dev/null; exec "$@"',
      "sh",
      "deno",
      "run",
      "--no-prompt",
      ...permissionFlags(path, { server: true }).split(" "),
      ...program,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  // Ready when a probe passes.
  for (let i = 0; i < 200; i++) {
    if ((await check(path, "5s")).ok) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    child,
    path,
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

function check(path: string, timeout: string): Promise<{ ok: boolean; ms: number }> {
  return timed("deno", [
    "run",
    "--no-prompt",
    ...permissionFlags(path).split(" "),
    `${HERE}main.ts`,
    "check",
    "--path",
    "/livez",
    "--timeout",
    timeout,
    "--socket",
    path,
  ]);
}

function curl(path: string): Promise<{ ok: boolean; ms: number }> {
  return timed("curl", ["-sf", "-m", "1", "-o", "/dev/null", "--unix-socket", path, "http://localhost/livez"]);
}

async function timed(command: string, args: string[]): Promise<{ ok: boolean; ms: number }> {
  const started = performance.now();
  const { code } = await new Deno.Command(command, { args, stdin: "null", stdout: "null", stderr: "null" }).output();
  return { ok: code === 0, ms: performance.now() - started };
}

/** Resolves false after `ms`. */
function timeout(ms: number): Promise<false> {
  return new Promise((resolve) => setTimeout(resolve, ms, false));
}

async function stat(pid: number): Promise<{ cpu: number; rss: number }> {
  const text = await catProc([`/proc/${pid}/stat`, `/proc/${pid}/status`]);
  const [statLine, ...status] = text.split("\n");
  return { cpu: cpuSeconds(parseStat(statLine)), rss: parseStatus(status.join("\n")).rss };
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

if (only.has("probes")) {
  console.log(
    "\n| Server | Flood (reconnecting) | Clients | `curl -m 1` pass | `check --timeout 1s` pass | curl median ms |",
  );
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const kind of values.servers.split(",")) {
    for (const each of values.floods.split(",")) {
      const [mode, size] = each.split(":");
      const server = await startServer(kind);
      await using flooder = await flood(server.path, mode as FloodMode, Number(size), 120);
      const filled = await Promise.race([flooder.ready, timeout(15_000)]);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const curls = [];
      const checks = [];
      // Spread over more than requestTimeout (5 s), so that the flood is closed and reconnects meanwhile.
      for (let i = 0; i < 20; i++) {
        curls.push(await curl(server.path));
        checks.push(await check(server.path, "1s"));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const figures = await flooder.stop();
      await server.stop();
      const passed = curls.filter((r) => r.ok);
      console.log(
        `| ${kind} | ${mode} | ${size}${filled ? "" : " (not all connected)"} | ${passed.length}/20 | ${
          checks.filter((r) => r.ok).length
        }/20 | ${passed.length ? median(passed.map((r) => r.ms)).toFixed(0) : "-"} |`,
      );
      console.error(`  ${kind} ${mode} ${size}: flooder ${JSON.stringify(figures)}`);
    }
  }
}

if (only.has("throughput")) {
  console.log("\n| Well-behaved clients | Requests/s | Dropped unanswered |");
  console.log("| --- | --- | --- |");
  for (const clients of numbers(values.clients)) {
    const server = await startServer("demo");
    const flooder = await flood(server.path, "loop", clients, Number(values.seconds));
    const figures = await flooder.stop(false);
    await server.stop();
    console.log(`| ${clients} | ${Math.round(figures.answered / figures.seconds)} | ${figures.errors} |`);
  }
}

if (only.has("zombies")) {
  console.log("\n| Closed line-mode watch streams | Demo CPU over 5 s | Demo RSS | RSS before |");
  console.log("| --- | --- | --- | --- |");
  for (const zombies of numbers(values.zombies)) {
    const server = await startServer("demo");
    const before = await stat(server.child.pid);
    const flooder = await flood(server.path, "zombie", zombies, 30);
    await flooder.stop(false);
    const start = await stat(server.child.pid);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const end = await stat(server.child.pid);
    await server.stop();
    console.log(
      `| ${zombies} | ${((end.cpu - start.cpu) / 5 * 100).toFixed(0)} % | ${mib(end.rss)} MiB | ${
        mib(before.rss)
      } MiB |`,
    );
  }
}

if (only.has("drain")) {
  console.log("\n| Closed watch streams, then SIGTERM | Demo exits after |");
  console.log("| --- | --- |");
  for (const zombies of [0, ...numbers(values.zombies)]) {
    const server = await startServer("demo");
    if (zombies > 0) {
      const flooder = await flood(server.path, "zombie", zombies, 30);
      await flooder.stop(false);
    }
    const started = performance.now();
    server.child.kill("SIGTERM");
    await server.child.status;
    const ms = performance.now() - started;
    await server.stop();
    console.log(`| ${zombies} | ${(ms / 1000).toFixed(1)} s |`);
  }
}
