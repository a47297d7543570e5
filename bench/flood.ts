/**
 * Admission under floods, measured with a flooder in its own process
 * (`tests/fixtures/flooder.ts`) against a server in another (the demo, run
 * as users run it). Prints markdown tables for RESULTS.md and the README:
 *
 * 1. probes answered of 20 (`curl -m 1` and `check --timeout 1s`, spread over
 *    more than the 5 s in which the flood is closed) under reconnecting idle,
 *    half-sent and complete-never-read floods;
 * 2. requests per second of well-behaved clients (connect, `GET /livez`,
 *    read, close, again), by the number of clients;
 * 3. what closed watch streams cost (the demo's CPU and memory with N of them);
 * 4. how long the demo takes to drain after its watcher cap was filled with them.
 *
 * Usage: `deno task flood [--root DIR] [--sizes 1000,5000,10000] [--clients 16,64,65,200,1000] [--zombies 1000]
 * [--only probes,throughput,zombies,drain]`. `--root` serves the demo of another checkout (to
 * measure a version before a change) with this checkout's flooder.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { permissionFlags } from "../paths.ts";
import { catProc, cpuSeconds, median, parseStat, parseStatus } from "./proc.ts";

const HERE = new URL("..", import.meta.url).pathname;
const { values } = parseArgs({
  args: Deno.args,
  options: {
    root: { type: "string", default: HERE },
    sizes: { type: "string", default: "1000,5000,10000" },
    modes: { type: "string", default: "idle,half,unread" },
    clients: { type: "string", default: "16,64,65,200,1000" },
    zombies: { type: "string", default: "1000" },
    only: { type: "string", default: "probes,throughput,zombies,drain" },
    seconds: { type: "string", default: "3" },
  },
});
const root = values.root.endsWith("/") ? values.root : `${values.root}/`;
const only = new Set(values.only.split(","));
const numbers = (text: string) => text.split(",").map(Number);

interface Demo {
  child: Deno.ChildProcess;
  path: string;
  dir: string;
  stop(): Promise<void>;
}

async function startDemo(): Promise<Demo> {
  const dir = await Deno.makeTempDir({ prefix: "healthsock-flood-" });
  const path = `${dir}/app.sock`;
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--no-prompt",
      ...permissionFlags(path, { server: true }).split(" "),
      `${root}main.ts`,
      "demo",
      "--socket",
      path,
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
    dir,
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

interface Flooder {
  ready: Promise<boolean>;
  /** Stop it (or, with `early` false, let it run its time); resolves its figures. */
  stop(early?: boolean): Promise<Record<string, number>>;
}

function flood(path: string, mode: string, count: number, seconds: number): Flooder {
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--no-prompt",
      ...permissionFlags(path).split(" "),
      `${HERE}tests/fixtures/flooder.ts`,
      path,
      mode,
      String(count),
      String(seconds),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const ready = (async () => {
    const limit = setTimeout(() => lines.cancel(), 15_000);
    try {
      while (!text.includes("ready\n")) {
        const { value, done } = await lines.read();
        if (done) return false;
        text += value;
      }
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(limit);
    }
  })();
  return {
    ready,
    async stop(early = true) {
      await ready;
      if (early) await child.stdin.close().catch(() => {});
      try {
        for (;;) {
          const { value, done } = await lines.read();
          if (done) break;
          text += value;
        }
      } catch { /* cancelled */ }
      await child.status;
      await child.stdin.close().catch(() => {});
      const last = text.trim().split("\n").at(-1) ?? "{}";
      try {
        return JSON.parse(last);
      } catch {
        return {};
      }
    },
  };
}

async function stat(pid: number): Promise<{ cpu: number; rss: number }> {
  const text = await catProc([`/proc/${pid}/stat`, `/proc/${pid}/status`]);
  const [statLine, ...status] = text.split("\n");
  return { cpu: cpuSeconds(parseStat(statLine)), rss: parseStatus(status.join("\n")).rss };
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

if (only.has("probes")) {
  console.log(
    "\n| Flood (reconnecting) | Connections | `curl -m 1` pass | `check --timeout 1s` pass | curl median ms |",
  );
  console.log("| --- | --- | --- | --- | --- |");
  for (const mode of values.modes.split(",")) {
    for (const size of numbers(values.sizes)) {
      const demo = await startDemo();
      const flooder = flood(demo.path, mode, size, 120);
      const filled = await flooder.ready;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const curls = [];
      const checks = [];
      // Spread over more than requestTimeout (5 s), so that the flood is closed and reconnects meanwhile.
      for (let i = 0; i < 20; i++) {
        curls.push(await curl(demo.path));
        checks.push(await check(demo.path, "1s"));
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      const figures = await flooder.stop();
      await demo.stop();
      const passed = curls.filter((r) => r.ok);
      console.log(
        `| ${mode} | ${size}${filled ? "" : " (not all connected)"} | ${passed.length}/20 | ${
          checks.filter((r) => r.ok).length
        }/20 | ${passed.length ? median(passed.map((r) => r.ms)).toFixed(0) : "-"} |`,
      );
      console.error(`  ${mode} ${size}: flooder ${JSON.stringify(figures)}`);
    }
  }
}

if (only.has("throughput")) {
  console.log("\n| Well-behaved clients | Requests/s | Errors |");
  console.log("| --- | --- | --- |");
  for (const clients of numbers(values.clients)) {
    const demo = await startDemo();
    const flooder = flood(demo.path, "loop", clients, Number(values.seconds));
    const figures = await flooder.stop(false);
    await demo.stop();
    console.log(`| ${clients} | ${Math.round(figures.answered / figures.seconds)} | ${figures.errors} |`);
  }
}

if (only.has("zombies")) {
  console.log("\n| Closed line-mode watch streams | Demo CPU over 5 s | Demo RSS | RSS before |");
  console.log("| --- | --- | --- | --- |");
  for (const zombies of numbers(values.zombies)) {
    const demo = await startDemo();
    const before = await stat(demo.child.pid);
    const flooder = flood(demo.path, "zombie", zombies, 30);
    await flooder.ready;
    await flooder.stop();
    const start = await stat(demo.child.pid);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const end = await stat(demo.child.pid);
    await demo.stop();
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
    const demo = await startDemo();
    if (zombies > 0) {
      const flooder = flood(demo.path, "zombie", zombies, 30);
      await flooder.ready;
      await flooder.stop();
    }
    const started = performance.now();
    demo.child.kill("SIGTERM");
    await demo.child.status;
    const ms = performance.now() - started;
    await demo.stop();
    console.log(`| ${zombies} | ${(ms / 1000).toFixed(1)} s |`);
  }
}
