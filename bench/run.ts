/**
 * The benchmark harness: `deno task bench`.
 *
 * Measures healthsock's real `serve()` (bench/host.ts, in its own process)
 * side by side with peers in the same run, each server pinned to one core and
 * the load generator (bench/load.ts) to another:
 *
 * 1. server CPU time per request (from /proc/PID/stat), requests per second
 *    and p50/p99 latency, in line mode and HTTP;
 * 2. probe start-to-exit: `check` as users run it, against an empty script,
 *    socat and curl;
 * 3. resident memory: idle server versus the same host without it, and
 *    before versus after a sustained load;
 * 4. probe latency with a 200 ms background check versus a trivial one.
 *
 * Prints progress on stderr, a markdown report on stdout, and writes
 * RESULTS.md and chart.svg (into bench/, or `--out DIR`).
 *
 * Flags: `--quick` (a few seconds, for CI), `--duration S` and `--rounds N`
 * (each load run), `--growth S` (the memory growth run), `--probes N` (probe
 * runs per command), `--out DIR`, `--json FILE` (the figures, for tests),
 * `--no-pin`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { permissionFlags } from "../protocol.ts";
import { renderChart } from "./chart.ts";
import type { Captured, LoadResult } from "./load.ts";
import { catProc, median, percentile, readStatus } from "./proc.ts";

const BENCH = new URL(".", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const MiB = 2 ** 20;

type Framing = "line" | "http";
type ServerKind = "healthsock" | "floor" | "deno-serve" | "node";
type LoadMode = "line" | "http" | "http-close" | "mixed";
type HostVariant = "trivial" | "slow" | "imported" | "none";

interface Settings {
  quick: boolean;
  warmup: number;
  duration: number;
  rounds: number;
  growth: number;
  probes: number;
  memoryRuns: number;
  out: string;
  json?: string;
  pin: boolean;
}

interface Scenario {
  id: string;
  label: string;
  mode: LoadMode;
  clients: number;
  framing: Framing;
  servers: ServerKind[];
}

const SCENARIOS: Scenario[] = [
  {
    id: "line-1",
    label: "line, new conn, 1 client",
    mode: "line",
    clients: 1,
    framing: "line",
    servers: ["healthsock", "floor", "node"],
  },
  {
    id: "line-16",
    label: "line, new conn, 16 clients",
    mode: "line",
    clients: 16,
    framing: "line",
    servers: ["healthsock", "floor", "node"],
  },
  {
    id: "http-ka",
    label: "HTTP keep-alive, 16 conns",
    mode: "http",
    clients: 16,
    framing: "http",
    servers: ["healthsock", "floor", "deno-serve", "node"],
  },
  {
    id: "http-close",
    label: "HTTP, new conn, 16 clients",
    mode: "http-close",
    clients: 16,
    framing: "http",
    servers: ["healthsock", "floor", "deno-serve", "node"],
  },
];

const SERVER_ORDER: ServerKind[] = ["healthsock", "floor", "deno-serve", "node"];

function serverName(kind: ServerKind, framing?: Framing): string {
  switch (kind) {
    case "healthsock":
      return "healthsock serve()";
    case "floor":
      return "Deno.listen floor";
    case "deno-serve":
      return "Deno.serve";
    case "node":
      return framing === undefined ? "Node" : framing === "line" ? "Node net" : "Node http";
  }
}

// ---------------------------------------------------------------- settings

function settingsFrom(args: string[]): Settings {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      duration: { type: "string" },
      rounds: { type: "string" },
      growth: { type: "string" },
      probes: { type: "string" },
      out: { type: "string", default: BENCH },
      json: { type: "string" },
      "no-pin": { type: "boolean", default: false },
    },
  });
  const quick = values.quick;
  const number = (text: string | undefined, fallback: number, name: string): number => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!(value > 0)) throw new RangeError(`Invalid --${name} "${text}": expected a positive number`);
    return value;
  };
  return {
    quick,
    warmup: quick ? 200 : 1000,
    duration: number(values.duration, quick ? 0.5 : 3, "duration") * 1000,
    rounds: Math.round(number(values.rounds, quick ? 1 : 2, "rounds")),
    growth: number(values.growth, quick ? 1.5 : 60, "growth") * 1000,
    probes: Math.round(number(values.probes, quick ? 2 : 30, "probes")),
    memoryRuns: quick ? 1 : 3,
    out: values.out.endsWith("/") ? values.out : values.out + "/",
    json: values.json,
    pin: !values["no-pin"],
  };
}

// ---------------------------------------------------------------- processes

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Where servers and the generator run: one core each, when taskset and two cores are there. */
interface Placement {
  server?: number;
  load?: number;
  note: string;
}

async function hasCommand(name: string, args: string[]): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(name, { args, stdout: "null", stderr: "null", stdin: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

async function placement(settings: Settings): Promise<Placement> {
  if (!settings.pin) return { note: "not pinned (--no-pin)" };
  if (!await hasCommand("taskset", ["-V"])) return { note: "not pinned: taskset is not installed" };
  const { cpus } = await readStatus("self");
  if (cpus.length < 2) return { note: `not pinned: only CPU ${cpus.join(",")} is available` };
  return {
    server: cpus[0],
    load: cpus[1],
    note: `server on CPU ${cpus[0]}, load generator on CPU ${cpus[1]} (taskset)`,
  };
}

function pinned(cpu: number | undefined, command: string, args: string[]): [string, string[]] {
  return cpu === undefined ? [command, args] : ["taskset", ["-c", String(cpu), command, ...args]];
}

/** A line reader over a child's stdout that keeps draining it. */
class Lines {
  #buffered = "";
  #lines: string[] = [];
  #waiters: (() => void)[] = [];
  #done = false;
  readonly finished: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.finished = (async () => {
      for await (const chunk of stream) {
        this.#buffered += decoder.decode(chunk, { stream: true });
        let lf: number;
        while ((lf = this.#buffered.indexOf("\n")) >= 0) {
          this.#lines.push(this.#buffered.slice(0, lf));
          this.#buffered = this.#buffered.slice(lf + 1);
        }
        this.#wake();
      }
      if (this.#buffered) this.#lines.push(this.#buffered);
      this.#done = true;
      this.#wake();
    })();
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  get text(): string {
    return this.#lines.join("\n");
  }

  /** The first line not yet taken that starts with `prefix`, taking it; undefined after `ms` or at the end. */
  async take(prefix: string, ms: number): Promise<string | undefined> {
    const deadline = performance.now() + ms;
    for (;;) {
      const i = this.#lines.findIndex((line) => line.startsWith(prefix));
      if (i >= 0) return this.#lines.splice(i, 1)[0];
      if (this.#done || performance.now() >= deadline) return undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, Math.max(1, deadline - performance.now()));
      });
      clearTimeout(timer);
    }
  }

  async waitFor(line: string, ms: number): Promise<boolean> {
    const deadline = performance.now() + ms;
    while (!this.#lines.includes(line)) {
      if (this.#done) return false;
      const left = deadline - performance.now();
      if (left <= 0) return false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
    return true;
  }
}

/** A server process, up and answering. */
interface Running {
  pid: number;
  stop(): Promise<void>;
  /** Send a line to the process's stdin and take the first answer line starting with `prefix`. */
  ask(line: string, prefix: string): Promise<string | undefined>;
}

async function startProcess(command: string, args: string[], what: string): Promise<Running> {
  const child = new Deno.Command(command, { args, stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
  const stdout = new Lines(child.stdout);
  const stderr = new Lines(child.stderr);
  const stdin = child.stdin.getWriter();
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      await stdin.close().catch(() => {});
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await child.status;
      clearTimeout(timer);
      await Promise.all([stdout.finished, stderr.finished]);
    })();
  if (!await stdout.waitFor("ready", 30_000)) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await stop();
    throw new Error(`${what} did not start: ${stderr.text || stdout.text || "no output"}`);
  }
  const ask = async (line: string, prefix: string) => {
    await stdin.write(encoder.encode(line + "\n"));
    return await stdout.take(prefix, 30_000);
  };
  return { pid: child.pid, stop, ask };
}

function socketFlags(path: string): string[] {
  return [`--allow-read=${path}`, `--allow-write=${path}`, `--allow-net=unix:${path}`];
}

class Harness {
  readonly settings: Settings;
  readonly place: Placement;
  readonly dir: string;
  #sockets = 0;
  captured?: Captured;

  constructor(settings: Settings, place: Placement, dir: string) {
    this.settings = settings;
    this.place = place;
    this.dir = dir;
  }

  socket(name: string): string {
    return `${this.dir}/${++this.#sockets}-${name}.sock`;
  }

  host(path: string, variant: HostVariant, exposeGc = false): Promise<Running> {
    const gc = exposeGc ? ["--v8-flags=--expose-gc"] : [];
    const args = [
      "run",
      "--no-prompt",
      ...gc,
      ...permissionFlags(path, true).split(" "),
      `${BENCH}host.ts`,
      path,
      variant,
    ];
    return startProcess(...pinned(this.place.server, "deno", args), `host.ts (${variant})`);
  }

  server(kind: ServerKind, framing: Framing, path: string): Promise<Running> {
    if (kind === "healthsock") return this.host(path, "trivial");
    const captured = this.captured!;
    const body = btoa(atob(captured.line).replace(/\n$/, ""));
    let command = "deno";
    let args: string[];
    if (kind === "floor") {
      args = ["run", "--no-prompt", ...socketFlags(path), `${BENCH}floor.ts`, path, captured.line, captured.http];
      args.push(captured.httpClose);
    } else if (kind === "deno-serve") {
      args = ["run", "--no-prompt", ...socketFlags(path), `${BENCH}deno_serve.ts`, path, body];
    } else {
      command = "node";
      args = [`${BENCH}node_peer.mjs`, framing === "line" ? "net" : "http", path, captured.line, body];
    }
    return startProcess(...pinned(this.place.server, command, args), serverName(kind, framing));
  }

  loadArgs(path: string, extra: string[]): string[] {
    return [
      "run",
      "--no-prompt",
      "--allow-run=cat",
      ...socketFlags(path),
      `${BENCH}load.ts`,
      "--socket",
      path,
      ...extra,
    ];
  }

  async load(path: string, pid: number, mode: LoadMode, clients: number, duration: number): Promise<LoadResult> {
    const args = this.loadArgs(path, [
      "--mode",
      mode,
      "--clients",
      String(clients),
      "--warmup",
      String(this.settings.warmup),
      "--duration",
      String(duration),
      "--server-pid",
      String(pid),
    ]);
    const [command, full] = pinned(this.place.load, "deno", args);
    const { code, stdout, stderr } = await new Deno.Command(command, { args: full, stdin: "null" }).output();
    if (code !== 0) throw new Error(`The load generator failed: ${decoder.decode(stderr)}`);
    return JSON.parse(decoder.decode(stdout));
  }

  async capture(path: string): Promise<Captured> {
    const { code, stdout, stderr } = await new Deno.Command("deno", {
      args: this.loadArgs(path, ["--capture"]),
      stdin: "null",
    }).output();
    if (code !== 0) throw new Error(`Cannot capture the answers: ${decoder.decode(stderr)}`);
    return JSON.parse(decoder.decode(stdout));
  }
}

// ---------------------------------------------------------------- progress

interface Step {
  label: string;
  seconds: number;
  run(): Promise<void>;
}

function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

async function runSteps(steps: Step[]): Promise<void> {
  const started = performance.now();
  let plannedDone = 0;
  const planned = steps.reduce((sum, step) => sum + step.seconds, 0);
  for (const [i, step] of steps.entries()) {
    const elapsed = (performance.now() - started) / 1000;
    // Scale the plan by how the steps so far went against it.
    const pace = plannedDone > 0 ? elapsed / plannedDone : 1;
    const left = (planned - plannedDone) * pace;
    const n = String(steps.length).length;
    console.error(`[${String(i + 1).padStart(n)}/${steps.length}] ${step.label} · about ${formatDuration(left)} left`);
    await step.run();
    plannedDone += step.seconds;
  }
  console.error(`Done in ${formatDuration((performance.now() - started) / 1000)}.`);
}

// ---------------------------------------------------------------- figures

interface LoadRow {
  scenario: Scenario;
  kind: ServerKind;
  runs: LoadResult[];
}

interface LoadSummary {
  scenario: string;
  label: string;
  server: string;
  kind: ServerKind;
  cpuPerRequestUs: number;
  vsFloor: number;
  rps: number;
  p50: number;
  p99: number;
  serverUtil: number;
  loadUtil: number;
  errors: number;
  requests: number;
  limitedBy: string;
}

function summarize(rows: LoadRow[]): LoadSummary[] {
  const base = rows.map((row) => {
    const per = (f: (r: LoadResult) => number) => median(row.runs.map(f));
    return {
      row,
      cpu: per((r) => r.requests > 0 ? (r.serverCpu / r.requests) * 1e6 : NaN),
      rps: per((r) => r.rps),
      p50: per((r) => r.p50),
      p99: per((r) => r.p99),
      serverUtil: per((r) => r.serverCpu / r.seconds),
      loadUtil: per((r) => r.loadCpu / r.seconds),
      errors: row.runs.reduce((sum, r) => sum + r.errors, 0),
      requests: row.runs.reduce((sum, r) => sum + r.requests, 0),
    };
  });
  return base.map((b) => {
    const floor = base.find((f) => f.row.scenario === b.row.scenario && f.row.kind === "floor");
    let limitedBy: string;
    if (b.row.scenario.clients === 1) limitedBy = "round trips (1 client)";
    else if (b.loadUtil >= 0.9 && b.serverUtil < 0.9) limitedBy = "GENERATOR: figures are a floor, not a limit";
    else if (b.serverUtil >= 0.9) limitedBy = "server (saturated)";
    else limitedBy = "neither saturated (scheduling, other load)";
    return {
      scenario: b.row.scenario.id,
      label: b.row.scenario.label,
      server: serverName(b.row.kind, b.row.scenario.framing),
      kind: b.row.kind,
      cpuPerRequestUs: b.cpu,
      vsFloor: floor ? b.cpu / floor.cpu : NaN,
      rps: b.rps,
      p50: b.p50,
      p99: b.p99,
      serverUtil: b.serverUtil,
      loadUtil: b.loadUtil,
      errors: b.errors,
      requests: b.requests,
      limitedBy,
    };
  });
}

interface ProbeSummary {
  name: string;
  command: string;
  medianMs: number;
  p90Ms: number;
  runs: number;
  failures: number;
}

interface Results {
  machine: Record<string, string>;
  settings: Settings;
  load: LoadSummary[];
  isolation: { variant: string; p50: number; p99: number; max: number; rps: number }[];
  idle: { variant: string; rssMiB: number; runs: number[] }[];
  growth: {
    seconds: number;
    requests: number;
    /** V8 heap in use after a full GC, before and after the load. */
    heapBeforeMiB: number;
    heapAfterMiB: number;
    beforeMiB: number;
    afterMiB: number;
    firstQuarterMiB: number;
    lastQuarterMiB: number;
    peakMiB: number;
    samplesMiB: number[];
  };
  probes: ProbeSummary[];
  targets: { target: string; measured: string; limit: string; met: boolean }[];
}

// ---------------------------------------------------------------- measurements

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function rssOf(pid: number): Promise<number> {
  return (await readStatus(pid)).rss;
}

async function timed(command: string, args: string[], stdin?: string): Promise<{ ms: number; ok: boolean }> {
  const started = performance.now();
  const child = new Deno.Command(command, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(encoder.encode(stdin));
    await writer.close();
  }
  const { code, stdout } = await child.output();
  const ms = performance.now() - started;
  const text = decoder.decode(stdout);
  return { ms, ok: code === 0 && (args.includes("check") ? /passed/.test(text) : text === "" || /"pass"/.test(text)) };
}

async function machineInfo(place: Placement): Promise<Record<string, string>> {
  const read = (path: string) => catProc([path]).catch(() => "");
  const cpuinfo = await read("/proc/cpuinfo");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? "unknown CPU";
  const memTotal = Number(/^MemTotal:\s*(\d+)/m.exec(await read("/proc/meminfo"))?.[1] ?? 0);
  let node = "absent";
  try {
    const out = await new Deno.Command("node", { args: ["--version"], stdout: "piped", stderr: "null" }).output();
    node = decoder.decode(out.stdout).trim();
  } catch { /* absent */ }
  return {
    cpu: `${model} × ${navigator.hardwareConcurrency}`,
    memory: `${(memTotal / 1024 / 1024).toFixed(1)} GiB`,
    kernel: (await read("/proc/sys/kernel/osrelease")).trim(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    node,
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    pinning: place.note,
    loadBefore: (await read("/proc/loadavg")).split(" ").slice(0, 3).join(" "),
  };
}

/** Format generated text as `deno fmt` would (the project's config), so `deno fmt --check` passes on the outputs. */
async function formatted(text: string, ext: "md" | "svg"): Promise<string> {
  try {
    const child = new Deno.Command("deno", {
      args: ["fmt", `--ext=${ext}`, "-"],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(encoder.encode(text));
    await writer.close();
    const { success, stdout } = await child.output();
    return success ? decoder.decode(stdout) : text;
  } catch {
    return text;
  }
}

async function main(): Promise<void> {
  const settings = settingsFrom(Deno.args);
  const place = await placement(settings);
  const machine = await machineInfo(place);
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "healthsock-bench-" });
  const h = new Harness(settings, place, dir);
  try {
    console.error(
      `healthsock bench${settings.quick ? " (quick)" : ""}: Deno ${machine.deno}, ${machine.cpu}; ${place.note}`,
    );
    console.error(`Load average before: ${machine.loadBefore} (figures are noisy when it is not near 0)`);
    {
      const path = h.socket("capture");
      const host = await h.host(path, "trivial");
      try {
        h.captured = await h.capture(path);
      } finally {
        await host.stop();
      }
    }
    const results = await measure(h, machine);
    machine.loadAfter = (await catProc(["/proc/loadavg"]).catch(() => "")).split(" ").slice(0, 3).join(" ");
    const report = await formatted(markdown(results), "md");
    console.log(report);
    await Deno.writeTextFile(`${settings.out}RESULTS.md`, report);
    await Deno.writeTextFile(`${settings.out}chart.svg`, await formatted(chart(results), "svg"));
    if (settings.json) await Deno.writeTextFile(settings.json, JSON.stringify(results, null, 2));
    console.error(`Wrote ${settings.out}RESULTS.md and ${settings.out}chart.svg`);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function measure(h: Harness, machine: Record<string, string>): Promise<Results> {
  const { settings } = h;
  const steps: Step[] = [];
  const perRun = (settings.warmup + settings.duration) / 1000 + 0.6;

  // 1. Load, interleaved: each round runs every server once, so drifting
  // background load touches all of them alike.
  const rows: LoadRow[] = SCENARIOS.flatMap((scenario) =>
    scenario.servers.map((kind) => ({ scenario, kind, runs: [] as LoadResult[] }))
  );
  for (let round = 1; round <= settings.rounds; round++) {
    for (const row of rows) {
      const { scenario, kind } = row;
      steps.push({
        label: `${scenario.label} · ${serverName(kind, scenario.framing)} · round ${round}/${settings.rounds} · ${
          formatDuration(perRun)
        }`,
        seconds: perRun,
        run: async () => {
          const path = h.socket(kind);
          const server = await h.server(kind, scenario.framing, path);
          try {
            row.runs.push(await h.load(path, server.pid, scenario.mode, scenario.clients, settings.duration));
          } finally {
            await server.stop();
          }
        },
      });
    }
  }

  // 4. Isolation: a 200 ms background check must not slow probes.
  const isolationRuns: Record<"trivial" | "slow", LoadResult[]> = { trivial: [], slow: [] };
  for (let round = 1; round <= settings.rounds; round++) {
    for (const variant of ["trivial", "slow"] as const) {
      steps.push({
        label: `check isolation · ${variant === "slow" ? "with a 200 ms background check" : "trivial check only"} · ` +
          `line, 1 client · round ${round}/${settings.rounds}`,
        seconds: perRun,
        run: async () => {
          const path = h.socket(variant);
          const host = await h.host(path, variant);
          try {
            isolationRuns[variant].push(await h.load(path, host.pid, "line", 1, settings.duration));
          } finally {
            await host.stop();
          }
        },
      });
    }
  }

  // 3a. Idle memory: the same host, without the library, with it loaded, serving.
  const idleRuns: Record<HostVariant, number[]> = { none: [], imported: [], trivial: [], slow: [] };
  const settle = settings.quick ? 200 : 1500;
  for (let i = 1; i <= settings.memoryRuns; i++) {
    for (const variant of ["none", "imported", "trivial"] as const) {
      steps.push({
        label: `idle memory · host ${
          { none: "without healthsock", imported: "with healthsock imported", trivial: "serving, idle" }[variant]
        } · ${i}/${settings.memoryRuns}`,
        seconds: settle / 1000 + 0.4,
        run: async () => {
          const path = h.socket(`idle-${variant}`);
          const host = await h.host(path, variant);
          try {
            await sleep(settle);
            idleRuns[variant].push(await rssOf(host.pid));
          } finally {
            await host.stop();
          }
        },
      });
    }
  }

  // 3b. Growth: resident memory across a sustained mixed load.
  const growth: Results["growth"] = {
    seconds: settings.growth / 1000,
    requests: 0,
    heapBeforeMiB: NaN,
    heapAfterMiB: NaN,
    beforeMiB: NaN,
    afterMiB: NaN,
    firstQuarterMiB: NaN,
    lastQuarterMiB: NaN,
    peakMiB: NaN,
    samplesMiB: [],
  };
  const warm = settings.quick ? 300 : 3000;
  steps.push({
    label: `memory growth · ${
      formatDuration(settings.growth / 1000)
    } of mixed load (line and HTTP keep-alive, 16 clients)`,
    seconds: (warm + settings.growth) / 1000 + 2 * settle / 1000 + 1.5,
    run: async () => {
      const path = h.socket("growth");
      const host = await h.host(path, "trivial", true);
      const heapMiB = async () => Number((await host.ask("heap", "heap "))?.slice(5)) / MiB;
      try {
        // A short load first, so JIT and heap sizing are not counted as growth.
        await h.load(path, host.pid, "mixed", 16, warm);
        await sleep(settle);
        growth.beforeMiB = await rssOf(host.pid) / MiB;
        growth.heapBeforeMiB = await heapMiB();
        const sampling = { on: true };
        const sampler = (async () => {
          await sleep(settings.warmup);
          while (sampling.on) {
            growth.samplesMiB.push(await rssOf(host.pid) / MiB);
            await sleep(settings.quick ? 100 : 1000);
          }
        })();
        const result = await h.load(path, host.pid, "mixed", 16, settings.growth);
        sampling.on = false;
        await sampler;
        growth.requests = result.requests;
        await sleep(settle);
        const status = await readStatus(host.pid);
        growth.afterMiB = status.rss / MiB;
        growth.heapAfterMiB = await heapMiB();
        growth.peakMiB = status.peakRss / MiB;
        const quarter = Math.max(1, Math.floor(growth.samplesMiB.length / 4));
        growth.firstQuarterMiB = median(growth.samplesMiB.slice(0, quarter));
        growth.lastQuarterMiB = median(growth.samplesMiB.slice(-quarter));
      } finally {
        await host.stop();
      }
    },
  });

  // 2. Probe start-to-exit, against a running server; commands interleaved.
  const probeTimes = new Map<string, { command: string; ms: number[]; failures: number }>();
  steps.push({
    label: `probe start-to-exit · check, empty scripts, socat, curl · ${settings.probes} runs each`,
    seconds: settings.probes * 0.45 + 2,
    run: async () => {
      const path = h.socket("probe");
      const host = await h.host(path, "trivial");
      const flags = permissionFlags(path, false).split(" ");
      const commands: [string, string, string[], string?][] = [
        ["healthsock check", "deno", ["run", "--no-prompt", ...flags, `${ROOT}main.ts`, "check", "--socket", path]],
        ["empty script", "deno", ["run", "--no-prompt", ...flags, `${BENCH}empty.ts`]],
        ["empty script + node:util", "deno", ["run", "--no-prompt", ...flags, `${BENCH}empty_node_util.ts`]],
        ["socat", "socat", ["-", `UNIX-CONNECT:${path}`], "GET /healthz\n"],
        ["curl", "curl", ["-sS", "--unix-socket", path, "http://localhost/healthz"]],
      ];
      try {
        for (const [name, command, args] of commands) {
          const shown = [command, ...args].join(" ").replaceAll(path, "$SOCK").replaceAll(ROOT, "");
          probeTimes.set(name, { command: shown, ms: [], failures: 0 });
        }
        for (let i = 0; i < 2; i++) { // warm the module and code caches
          for (const [, command, args, stdin] of commands) await timed(command, args, stdin).catch(() => {});
        }
        for (let i = 0; i < settings.probes; i++) {
          for (let j = 0; j < commands.length; j++) {
            const [name, command, args, stdin] = commands[(i + j) % commands.length];
            const entry = probeTimes.get(name)!;
            try {
              const { ms, ok } = await timed(command, args, stdin);
              if (ok) entry.ms.push(ms);
              else entry.failures++;
            } catch {
              entry.failures++;
            }
          }
        }
      } finally {
        await host.stop();
      }
    },
  });

  await runSteps(steps);

  const load = summarize(rows);
  const isolation = (["trivial", "slow"] as const).map((variant) => {
    const runs = isolationRuns[variant];
    return {
      variant: variant === "slow" ? "trivial + 200 ms background check" : "trivial check only",
      p50: median(runs.map((r) => r.p50)),
      p99: median(runs.map((r) => r.p99)),
      max: Math.max(...runs.map((r) => r.max)),
      rps: median(runs.map((r) => r.rps)),
    };
  });
  const idle = (["none", "imported", "trivial"] as const).map((variant) => ({
    variant:
      { none: "host without healthsock", imported: "host with healthsock imported", trivial: "host serving, idle" }[
        variant
      ],
    rssMiB: median(idleRuns[variant]) / MiB,
    runs: idleRuns[variant].map((b) => b / MiB),
  }));
  const probes: ProbeSummary[] = [...probeTimes].map(([name, entry]) => {
    const sorted = [...entry.ms].sort((a, b) => a - b);
    return {
      name,
      command: entry.command,
      medianMs: percentile(sorted, 50),
      p90Ms: percentile(sorted, 90),
      runs: entry.ms.length,
      failures: entry.failures,
    };
  });
  const results: Results = { machine, settings, load, isolation, idle, growth, probes, targets: [] };
  results.targets = targets(results);
  return results;
}

function targets(r: Results): Results["targets"] {
  const find = (scenario: string, kind: ServerKind) => r.load.find((l) => l.scenario === scenario && l.kind === kind);
  const out: Results["targets"] = [];
  const ratio = (target: string, a: LoadSummary | undefined, b: LoadSummary | undefined, limit: number) => {
    const value = a && b ? a.cpuPerRequestUs / b.cpuPerRequestUs : NaN;
    out.push({
      target,
      measured: `${value.toFixed(2)}× (${a?.cpuPerRequestUs.toFixed(1)} vs ${b?.cpuPerRequestUs.toFixed(1)} µs)`,
      limit: `≤ ${limit}×`,
      met: value <= limit,
    });
  };
  ratio(
    "Line mode, new conn, 1 client: server CPU/request vs Deno.listen floor",
    find("line-1", "healthsock"),
    find("line-1", "floor"),
    1.15,
  );
  ratio(
    "Line mode, new conn, 16 clients: server CPU/request vs Deno.listen floor",
    find("line-16", "healthsock"),
    find("line-16", "floor"),
    1.15,
  );
  ratio(
    "HTTP keep-alive, 16 conns: server CPU/request vs Deno.serve",
    find("http-ka", "healthsock"),
    find("http-ka", "deno-serve"),
    1.5,
  );
  const check = r.probes.find((p) => p.name === "healthsock check");
  const empty = r.probes.find((p) => p.name === "empty script");
  const probeRatio = check && empty ? check.medianMs / empty.medianMs : NaN;
  const withUtil = r.probes.find((p) => p.name === "empty script + node:util");
  out.push({
    target: "Probe start-to-exit: check vs empty script (medians)",
    measured: `${probeRatio.toFixed(2)}× (${check?.medianMs.toFixed(1)} vs ${empty?.medianMs.toFixed(1)} ms; ${
      withUtil && check ? (check.medianMs / withUtil.medianMs).toFixed(2) : "?"
    }× an empty script loading node:util)`,
    limit: "≤ 1.3×",
    met: probeRatio <= 1.3,
  });
  const added = r.idle[2].rssMiB - r.idle[0].rssMiB;
  const serving = r.idle[2].rssMiB - r.idle[1].rssMiB;
  out.push({
    target: "Idle server's added resident memory (serving vs host without healthsock)",
    measured: `${added.toFixed(2)} MiB (serving vs imported: ${serving.toFixed(2)} MiB)`,
    limit: "≤ 2 MiB",
    met: added <= 2,
  });
  // A leak is memory the program keeps: the V8 heap after a full GC, before
  // vs after the load. Resident memory is shown beside it, not judged: V8
  // grows its heap under load and returns it to the system at its own pace
  // (idle after − idle before ranged from +0.4 to +27 MiB between runs).
  const kept = r.growth.heapAfterMiB - r.growth.heapBeforeMiB;
  const during = r.growth.lastQuarterMiB - r.growth.firstQuarterMiB;
  const retained = r.growth.afterMiB - r.growth.beforeMiB;
  const signed = (n: number) => `${n >= 0 ? "+" : ""}${n.toFixed(2)}`;
  out.push({
    target: `Memory growth over ${r.growth.seconds} s of load (V8 heap after a full GC, after vs before)`,
    measured: `${signed(kept)} MiB (resident: ${signed(during)} MiB last vs first quarter of the load, ${
      signed(retained)
    } MiB idle after vs before)`,
    limit: "≤ 2 MiB (noise)",
    met: kept <= 2,
  });
  const [trivial, slow] = r.isolation;
  const limit = trivial.p99 * 1.5 + 1;
  out.push({
    target: "Probe p99 with a 200 ms background check vs trivial check",
    measured: `${slow.p99.toFixed(2)} vs ${trivial.p99.toFixed(2)} ms`,
    limit: `≤ 1.5× + 1 ms (${limit.toFixed(2)} ms)`,
    met: slow.p99 <= limit,
  });
  return out;
}

// ---------------------------------------------------------------- output

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "–";
}

function markdown(r: Results): string {
  const m = r.machine;
  const s = r.settings;
  const lines: string[] = [];
  lines.push("# healthsock benchmark results", "");
  lines.push(
    `${m.date} · Deno ${m.deno} (V8 ${m.v8}) · Node ${m.node} · ${m.cpu} · ${m.memory} · Linux ${m.kernel}`,
    "",
    `Placement: ${m.pinning}. Load average before / after: ${m.loadBefore} / ${m.loadAfter}.` +
      (s.quick ? " **Quick run: figures are for checking the harness, not for reading.**" : ""),
    "",
    `Each load run: ${s.warmup / 1000} s warm-up, ${s.duration / 1000} s measured, ${s.rounds} round(s), ` +
      "median of rounds. Server CPU is user + system time of every thread of the server process, from " +
      "/proc/PID/stat, over the measured window, divided by the requests answered in it.",
    "",
  );
  lines.push("## Targets", "", "| target | measured | limit | met |", "| --- | --- | --- | --- |");
  for (const t of r.targets) lines.push(`| ${t.target} | ${t.measured} | ${t.limit} | ${t.met ? "yes" : "**no**"} |`);
  lines.push("", "## Server cost per request", "");
  lines.push(
    "| scenario | server | CPU µs/req | × floor | req/s | p50 ms | p99 ms | server CPU | generator CPU | limited by |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  );
  for (const l of r.load) {
    const errors = l.errors > 0 ? ` (${l.errors} errors)` : "";
    lines.push(
      `| ${l.label} | ${l.server} | ${fixed(l.cpuPerRequestUs, 1)} | ${fixed(l.vsFloor, 2)} | ${
        fixed(l.rps, 0)
      }${errors} | ${fixed(l.p50, 3)} | ${fixed(l.p99, 3)} | ${fixed(l.serverUtil * 100, 0)}% | ${
        fixed(l.loadUtil * 100, 0)
      }% | ${l.limitedBy} |`,
    );
  }
  lines.push(
    "",
    "CPU columns are percent of one core over the window. A generator near 100% with a server below 90% means " +
      "the generator limited req/s and latency (CPU per request stays valid).",
    "",
  );
  lines.push("## Probe start-to-exit", "", "| probe | median ms | p90 ms | runs | failures | command |");
  lines.push("| --- | ---: | ---: | ---: | ---: | --- |");
  const empty = r.probes.find((p) => p.name === "empty script");
  for (const p of r.probes) {
    const ratio = empty ? ` (${fixed(p.medianMs / empty.medianMs, 2)}× empty)` : "";
    lines.push(
      `| ${p.name} | ${fixed(p.medianMs, 1)}${ratio} | ${
        fixed(p.p90Ms, 1)
      } | ${p.runs} | ${p.failures} | \`${p.command}\` |`,
    );
  }
  lines.push("", "## Resident memory", "", "| host process | VmRSS MiB (median) | runs |", "| --- | ---: | --- |");
  for (const i of r.idle) {
    lines.push(`| ${i.variant} | ${fixed(i.rssMiB, 2)} | ${i.runs.map((v) => v.toFixed(1)).join(", ")} |`);
  }
  const g = r.growth;
  lines.push(
    "",
    `Sustained load: ${g.seconds} s of mixed load (line mode and HTTP keep-alive, 16 clients), ${g.requests} requests. ` +
      `Before (after a warm-up load, idle): ${fixed(g.beforeMiB, 2)} MiB; after (idle): ${fixed(g.afterMiB, 2)} MiB; ` +
      `during: first quarter ${fixed(g.firstQuarterMiB, 2)} MiB, last quarter ${fixed(g.lastQuarterMiB, 2)} MiB; ` +
      `peak ${fixed(g.peakMiB, 2)} MiB. V8 heap in use after a full GC: ${fixed(g.heapBeforeMiB, 2)} MiB before, ` +
      `${fixed(g.heapAfterMiB, 2)} MiB after.`,
    "",
  );
  lines.push(
    "## Check cost isolation",
    "",
    "| host | p50 ms | p99 ms | max ms | req/s |",
    "| --- | ---: | ---: | ---: | ---: |",
  );
  for (const i of r.isolation) {
    lines.push(`| ${i.variant} | ${fixed(i.p50, 3)} | ${fixed(i.p99, 3)} | ${fixed(i.max, 1)} | ${fixed(i.rps, 0)} |`);
  }
  lines.push("", "Line mode, a new connection per request, 1 client; the background check runs every 250 ms.", "");
  lines.push("![benchmark chart](chart.svg)", "");
  return lines.join("\n");
}

function chart(r: Results): string {
  const scenarios = SCENARIOS.map((s) => s.label);
  const servers = SERVER_ORDER.map((kind) => ({
    name: serverName(kind),
    values: SCENARIOS.map((s) => {
      const row = r.load.find((l) => l.scenario === s.id && l.kind === kind);
      return row && Number.isFinite(row.cpuPerRequestUs) ? Math.round(row.cpuPerRequestUs * 10) / 10 : null;
    }),
  }));
  return renderChart({
    scenarios,
    servers,
    probes: r.probes.map((p) => ({ name: p.name, ms: Math.round(p.medianMs * 10) / 10 })),
    subtitle: `${r.machine.date.slice(0, 10)} · Deno ${r.machine.deno} · ${r.machine.cpu}${
      r.settings.quick ? " · QUICK RUN" : ""
    }`,
  });
}

if (import.meta.main) await main();
