/**
 * The measurements: the steps of a run in their interleaved order, with
 * progress on stderr, and the figures they produce.
 *
 * @module
 */
import { permissionFlags } from "../paths.ts";
import type { LoadResult } from "./load.ts";
import type { ProbeRun } from "./probes.ts";
import { catProc, cpuSeconds, median, parseStat, percentile, readStatus } from "./proc.ts";
import { BENCH, MiB, ROOT, SCENARIOS, serverName, THREADS } from "./scenarios.ts";
import type { Scenario, ServerKind, Settings, Thread } from "./scenarios.ts";
import { decoder, encoder } from "./servers.ts";
import { churnSteps } from "./memory.ts";
import type { ChurnRow } from "./memory.ts";
import type { Harness, Placement } from "./servers.ts";

interface Step {
  label: string;
  seconds: number;
  run(): Promise<void>;
}

export function formatDuration(seconds: number): string {
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

export interface LoadSummary {
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

export interface ProbeSummary {
  name: string;
  command: string;
  medianMs: number;
  p90Ms: number;
  runs: number;
  failures: number;
}

/** Probes of an app whose main thread blocks, in one mode. */
export interface BlockedSummary extends Pick<ProbeRun, "sent" | "errors" | "p50" | "p99" | "max" | "over100"> {
  thread: Thread;
  livez: Record<string, number>;
  readyz: Record<string, number>;
}

/** The main thread's event-loop delay over a window, with or without probes. */
export interface LagSummary {
  thread: Thread;
  probes: boolean;
  /** Event-loop delay of a 10 ms timer, ms (median of the rounds). */
  p50: number;
  p99: number;
  max: number;
  /** The main thread's CPU over the window, in percent of one core. */
  mainCpu: number;
  /** The probes' own latency p99, ms (NaN without probes). */
  probeP99: number;
  /** Probes answered a second. */
  rate: number;
  errors: number;
}

/** Start-up, spawn to serving, of one host variant. */
export interface StartupSummary {
  id: "imported" | Thread | "floor" | "floor-worker";
  label: string;
  /** Spawning the process to its `ready` line, ms (median). */
  spawnMs: number;
  /** The program's first line to `serve()` resolved (import included), ms (median). */
  serveMs: number;
  runs: number;
}

/** The bridge between the threads: what a host's threads spend per request, cached check or on-request. */
export interface BridgeSummary {
  thread: Thread;
  variant: "trivial" | "onrequest";
  label: string;
  rps: number;
  /** The main thread's CPU per request answered, µs (median of the rounds). */
  mainUs: number;
  /** Every other thread's (the Worker's, Deno's own), µs per request. */
  restUs: number;
}

export interface Results {
  machine: Record<string, string>;
  settings: Settings;
  load: LoadSummary[];
  isolation: { thread: Thread; variant: string; p50: number; p99: number; max: number; rps: number }[];
  blocked: BlockedSummary[];
  lag: LagSummary[];
  bridge: BridgeSummary[];
  startup: StartupSummary[];
  idle: { id: IdleVariant; variant: string; rssMiB: number; runs: number[] }[];
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
  /** Memory under churn (memory.ts), one row per server. */
  churn: ChurnRow[];
  /** Filled in by report.ts's targets(), which judges the figures. */
  targets: { target: string; measured: string; goal: string; met: boolean }[];
}

// ---------------------------------------------------------------- measurements

/** What the idle memory figures compare: four hosts, and the floor of each mode. */
export type IdleVariant = "none" | "imported" | "trivial" | "trivial-main" | "floor" | "floor-worker";
const IDLE_VARIANTS: readonly IdleVariant[] = ["none", "imported", "trivial", "trivial-main", "floor", "floor-worker"];
const IDLE_NAMES: Record<IdleVariant, string> = {
  none: "host without healthsock",
  imported: "host with healthsock imported",
  trivial: "host serving from a Worker, idle",
  "trivial-main": "host serving on the main thread, idle",
  floor: "floor: bare listener + @logtape/logtape + one timer",
  "floor-worker": "Worker floor: the same, the listener in an empty blob: Worker",
};

/** `items` in order on odd rounds, reversed on even ones, so no item always runs after the same other. */
function alternate<T>(items: readonly T[], round: number): readonly T[] {
  return round % 2 === 1 ? items : [...items].reverse();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** CPU seconds of a process's main thread (its thread id is the process id). */
async function mainThreadCpu(pid: number): Promise<number> {
  return cpuSeconds(parseStat(await catProc([`/proc/${pid}/task/${pid}/stat`])));
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

export async function machineInfo(place: Placement): Promise<Record<string, string>> {
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

export async function measure(h: Harness, machine: Record<string, string>): Promise<Results> {
  const { settings } = h;
  const steps: Step[] = [];
  const perRun = (settings.warmup + settings.duration) / 1000 + 0.6;

  // 1. Load, interleaved: each round runs every server once, so drifting
  // background load touches all of them alike, and every other round runs
  // them in reverse, so no server always follows the same one.
  const rows: LoadRow[] = SCENARIOS.flatMap((scenario) =>
    scenario.servers.map((kind) => ({ scenario, kind, runs: [] as LoadResult[] }))
  );
  for (let round = 1; round <= settings.rounds; round++) {
    for (const row of alternate(rows, round)) {
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
  const isolationRuns: Record<string, LoadResult[]> = {};
  const ISOLATION = THREADS.flatMap((thread) => (["trivial", "slow"] as const).map((variant) => ({ thread, variant })));
  for (let round = 1; round <= settings.rounds; round++) {
    for (const { thread, variant } of alternate(ISOLATION, round)) {
      steps.push({
        label: `check isolation · ${thread} · ${
          variant === "slow" ? "with a 200 ms background check" : "trivial check only"
        } · line, 1 client · round ${round}/${settings.rounds}`,
        seconds: perRun,
        run: async () => {
          const path = h.socket(variant);
          const host = await h.host(path, variant, { thread });
          try {
            (isolationRuns[`${thread} ${variant}`] ??= []).push(
              await h.load(path, host.pid, "line", 1, settings.duration),
            );
          } finally {
            await host.stop();
          }
        },
      });
    }
  }

  // 3a. Idle memory: the same host, without the library, with it loaded,
  // serving; and the floor, a bare listener importing @logtape/logtape with
  // one timer. Interleaved, alternating the order run by run.
  const idleRuns = Object.fromEntries(IDLE_VARIANTS.map((v) => [v, [] as number[]])) as Record<IdleVariant, number[]>;
  const settle = settings.quick ? 200 : 1500;
  for (let i = 1; i <= settings.memoryRuns; i++) {
    for (const variant of alternate(IDLE_VARIANTS, i)) {
      steps.push({
        label: `idle memory · ${IDLE_NAMES[variant]} · ${i}/${settings.memoryRuns}`,
        seconds: settle / 1000 + 0.4,
        run: async () => {
          const path = h.socket(`idle-${variant}`);
          const host = await (variant === "floor"
            ? h.memoryFloor(path, "main")
            : variant === "floor-worker"
            ? h.memoryFloor(path, "worker")
            : variant === "trivial-main"
            ? h.host(path, "trivial", { thread: "main" })
            : h.host(path, variant));
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
      const host = await h.host(path, "trivial", { exposeGc: true });
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

  // 3c. Memory under churn: watch streams and complete requests at full speed, idle connections held.
  const churn: ChurnRow[] = [];
  steps.push(...churnSteps(h, settings, churn));

  // 2. Probe start-to-exit, against a running server; commands interleaved.
  const probeTimes = new Map<string, { command: string; ms: number[]; failures: number }>();
  steps.push({
    label:
      `probe start-to-exit · check and the Deno probe floor against both modes, empty scripts, socat, curl · ${settings.probes} runs each`,
    seconds: settings.probes * 0.6 + 3,
    run: async () => {
      const path = h.socket("probe");
      const host = await h.host(path, "trivial");
      const mainPath = h.socket("probe-main");
      const mainHost = await h.host(mainPath, "trivial", { thread: "main" }).catch(async (error) => {
        await host.stop();
        throw error;
      });
      const flags = permissionFlags(path).split(" ");
      const mainFlags = permissionFlags(mainPath).split(" ");
      const commands: [string, string, string[], string?][] = [
        ["healthsock check", "deno", ["run", "--no-prompt", ...flags, `${ROOT}main.ts`, "check", "--socket", path]],
        ["Deno probe floor", "deno", ["run", "--no-prompt", ...flags, `${BENCH}probe_floor.ts`, path]],
        ["healthsock check, main-thread server", "deno", [
          "run",
          "--no-prompt",
          ...mainFlags,
          `${ROOT}main.ts`,
          "check",
          "--socket",
          mainPath,
        ]],
        ["Deno probe floor, main-thread server", "deno", [
          "run",
          "--no-prompt",
          ...mainFlags,
          `${BENCH}probe_floor.ts`,
          mainPath,
        ]],
        ["empty script", "deno", ["run", "--no-prompt", ...flags, `${BENCH}empty.ts`]],
        ["empty script + node:util", "deno", ["run", "--no-prompt", ...flags, `${BENCH}empty_node_util.ts`]],
        ["socat", "socat", ["-", `UNIX-CONNECT:${path}`], "GET /healthz\n"],
        ["curl", "curl", ["-sS", "--unix-socket", path, "http://localhost/healthz"]],
      ];
      try {
        for (const [name, command, args] of commands) {
          const shown = [command, ...args].join(" ").replaceAll(mainPath, "$SOCK").replaceAll(path, "$SOCK")
            .replaceAll(ROOT, "");
          probeTimes.set(name, { command: shown, ms: [], failures: 0 });
        }
        for (let i = 0; i < (settings.quick ? 1 : 2); i++) { // warm the module and code caches
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
        await mainHost.stop();
      }
    },
  });

  // 5. Beside the app. (a) Probes of an app whose main thread blocks 1.5 s
  // of every 2 s, in both modes: /livez and /readyz in turn, 20 a second,
  // sent whether or not the earlier ones were answered.
  const blocked: BlockedSummary[] = [];
  for (const thread of THREADS) {
    steps.push({
      label: `beside the app · probes while the main thread blocks 1.5 s of every 2 s · ${thread} · ${
        formatDuration(settings.blocked)
      }`,
      seconds: settings.blocked + 1.5,
      run: async () => {
        const path = h.socket(`blocked-${thread}`);
        const host = await h.host(path, "trivial", { thread, block: [1500, 2000] });
        try {
          const run = await h.probes(path, 20, settings.blocked, ["/livez", "/readyz"]);
          const { sent, errors, p50, p99, max, over100 } = run;
          blocked.push({
            thread,
            sent,
            errors,
            p50,
            p99,
            max,
            over100,
            livez: run.statuses["/livez"],
            readyz: run.statuses["/readyz"],
          });
        } finally {
          await host.stop();
        }
      },
    });
  }

  // (b) The main thread's event-loop delay, with 1,000 probes a second and
  // without, in both modes; interleaved over the rounds.
  const LAG = THREADS.flatMap((thread) => [true, false].map((probes) => ({ thread, probes })));
  const lagRuns = new Map(LAG.map((c) => [c, [] as (ProbeRun & { lag: number[]; mainCpu: number })[]]));
  for (let round = 1; round <= settings.rounds; round++) {
    for (const condition of alternate(LAG, round)) {
      const { thread, probes } = condition;
      steps.push({
        label: `beside the app · main thread's event-loop delay · ${thread} · ${
          probes ? "1,000 probes a second" : "no probes"
        } · round ${round}/${settings.rounds}`,
        seconds: settings.lagWindow + 1.2,
        run: async () => {
          const path = h.socket(`lag-${thread}`);
          const host = await h.host(path, "trivial", { thread });
          try {
            await host.send("sample");
            await sleep(300);
            const cpuBefore = await mainThreadCpu(host.pid);
            const t0 = performance.now();
            let run: ProbeRun;
            if (probes) {
              run = await h.probes(path, 1000, settings.lagWindow, ["/livez"], 1000);
            } else {
              const from = performance.timeOrigin + performance.now();
              await sleep(settings.lagWindow * 1000);
              const to = performance.timeOrigin + performance.now();
              run = { from, to, sent: 0, errors: 0, p50: NaN, p99: NaN, max: NaN, over100: 0, statuses: {} };
            }
            const mainCpu = (await mainThreadCpu(host.pid) - cpuBefore) / ((performance.now() - t0) / 1000);
            const lag = (await host.ask(`lag ${run.from} ${run.to}`, "lag "))!.split(" ").slice(1).map(Number);
            lagRuns.get(condition)!.push({ ...run, lag, mainCpu });
          } finally {
            await host.stop();
          }
        },
      });
    }
  }

  // (c) The bridge: what each thread spends per request with an on-request check (`cacheTtl: 0`, every request runs
  // it: in Worker mode, every request needs the main thread), against a cached one and against the same check served
  // on the main thread; line mode, 16 clients, interleaved over the rounds.
  const BRIDGE = [
    { thread: "worker", variant: "trivial" },
    { thread: "worker", variant: "onrequest" },
    { thread: "main", variant: "onrequest" },
  ] as const;
  const bridgeRuns = new Map(BRIDGE.map((c) => [c, [] as LoadResult[]]));
  for (let round = 1; round <= settings.rounds; round++) {
    for (const condition of alternate(BRIDGE, round)) {
      const { thread, variant } = condition;
      steps.push({
        label: `beside the app · threads' CPU per request · ${thread} · ${
          variant === "onrequest" ? "on-request check" : "cached check"
        } · line, 16 clients · round ${round}/${settings.rounds}`,
        seconds: perRun,
        run: async () => {
          const path = h.socket(`bridge-${thread}-${variant}`);
          const host = await h.host(path, variant, { thread });
          try {
            bridgeRuns.get(condition)!.push(await h.load(path, host.pid, "line", 16, settings.duration));
          } finally {
            await host.stop();
          }
        },
      });
    }
  }

  // (d) Start-up, spawn to serving: the host importing the library only,
  // serving in each mode, and the floor of each mode; interleaved.
  const STARTUP = ["imported", ...THREADS, "floor", "floor-worker"] as const;
  const startupRuns = new Map(STARTUP.map((id) => [id, { spawn: [] as number[], serve: [] as number[] }]));
  steps.push({
    label:
      `beside the app · start-up, spawn to serving · imported only, main thread, Worker, both floors · ${settings.startups} runs each`,
    seconds: settings.startups * 5 * 0.35,
    run: async () => {
      for (let i = 0; i <= settings.startups; i++) {
        for (const id of alternate(STARTUP, i)) {
          const path = h.socket(`start-${id}`);
          const host = await (id === "imported"
            ? h.host(path, "imported")
            : id === "floor"
            ? h.memoryFloor(path, "main")
            : id === "floor-worker"
            ? h.memoryFloor(path, "worker")
            : h.host(path, "trivial", { thread: id }));
          try {
            const serve = Number((await host.take("serve "))?.slice(6));
            if (i === 0) {
              continue; // the first run of each warms the caches
            }
            startupRuns.get(id)!.spawn.push(host.startMs);
            startupRuns.get(id)!.serve.push(serve);
          } finally {
            await host.stop();
          }
        }
      }
    },
  });

  await runSteps(steps);

  const load = summarize(rows);
  const isolation = ISOLATION.map(({ thread, variant }) => {
    const runs = isolationRuns[`${thread} ${variant}`] ?? [];
    return {
      thread,
      variant: variant === "slow" ? "trivial + 200 ms background check" : "trivial check only",
      p50: median(runs.map((r) => r.p50)),
      p99: median(runs.map((r) => r.p99)),
      max: Math.max(...runs.map((r) => r.max)),
      rps: median(runs.map((r) => r.rps)),
    };
  });
  const idle = IDLE_VARIANTS.map((variant) => ({
    id: variant,
    variant: IDLE_NAMES[variant],
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
  const lag: LagSummary[] = LAG.map((condition) => {
    const runs = lagRuns.get(condition)!;
    const per = (f: (r: (typeof runs)[number]) => number) => median(runs.map(f));
    return {
      thread: condition.thread,
      probes: condition.probes,
      p50: per((r) => r.lag[0]),
      p99: per((r) => r.lag[1]),
      max: Math.max(...runs.map((r) => r.lag[2])),
      mainCpu: per((r) => r.mainCpu * 100),
      probeP99: per((r) => r.p99),
      rate: per((r) => r.sent ? (r.sent - r.errors) / ((r.to - r.from) / 1000) : 0),
      errors: runs.reduce((sum, r) => sum + r.errors, 0),
    };
  });
  const bridge: BridgeSummary[] = BRIDGE.map((condition) => {
    const runs = bridgeRuns.get(condition)!;
    const per = (f: (r: LoadResult) => number) => median(runs.map((r) => r.requests ? f(r) * 1e6 / r.requests : NaN));
    return {
      thread: condition.thread,
      variant: condition.variant,
      label: condition.variant === "onrequest" ? "one on-request check (`cacheTtl: 0`)" : "one cached check",
      rps: median(runs.map((r) => r.rps)),
      mainUs: per((r) => r.mainCpu),
      restUs: per((r) => r.serverCpu - r.mainCpu),
    };
  });
  const STARTUP_NAMES = {
    imported: "host importing healthsock, not serving",
    main: "host serving on the main thread",
    worker: "host serving from a Worker",
    floor: "floor: bare listener on the main thread",
    "floor-worker": "Worker floor: bare listener in an empty blob: Worker",
  };
  const startup: StartupSummary[] = STARTUP.map((id) => {
    const runs = startupRuns.get(id)!;
    return {
      id,
      label: STARTUP_NAMES[id],
      spawnMs: median(runs.spawn),
      serveMs: median(runs.serve),
      runs: runs.spawn.length,
    };
  });
  const results: Results = {
    machine,
    settings,
    load,
    isolation,
    blocked,
    lag,
    bridge,
    startup,
    idle,
    growth,
    probes,
    churn,
    targets: [],
  };
  return results;
}
