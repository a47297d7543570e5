/**
 * The report: the targets judged from the figures, RESULTS.md and the chart.
 *
 * @module
 */
import { renderChart } from "./chart.ts";
import type { LoadSummary, Results } from "./measure.ts";
import { ROOT, SCENARIOS, SERVER_ORDER, serverName } from "./scenarios.ts";
import type { ServerKind } from "./scenarios.ts";
import { decoder, encoder } from "./servers.ts";
import { COMPLETE_CLIENTS, perConnectionKiB, WATCH_CLIENTS } from "./memory.ts";
import type { ChurnRow, ChurnRun } from "./memory.ts";

/**
 * Judge the figures against their goals. The first four compare healthsock
 * with the floor the runtime sets for the same work, measured in the same run:
 * a bare `Deno.listen` server writing the same bytes, `Deno.serve`, a minimal
 * Deno probe, and a bare listener importing @logtape/logtape with one timer.
 */
export function targets(r: Results): Results["targets"] {
  const find = (scenario: string, kind: ServerKind) => r.load.find((l) => l.scenario === scenario && l.kind === kind);
  const out: Results["targets"] = [];
  const ratio = (target: string, a: LoadSummary | undefined, b: LoadSummary | undefined, goal: number) => {
    const value = a && b ? a.cpuPerRequestUs / b.cpuPerRequestUs : NaN;
    out.push({
      target,
      measured: `${value.toFixed(2)}× (${a?.cpuPerRequestUs.toFixed(1)} vs ${b?.cpuPerRequestUs.toFixed(1)} µs)`,
      goal: `≤ ${goal.toFixed(2)}×`,
      met: value <= goal,
    });
  };
  const modes = [["healthsock", "Worker"], ["healthsock-main", "main thread"]] as const;
  for (const [kind, mode] of modes) {
    ratio(
      `${mode}: line mode, new conn, 1 client: server CPU/request vs Deno.listen floor`,
      find("line-1", kind),
      find("line-1", "floor"),
      1.05,
    );
    ratio(
      `${mode}: line mode, new conn, 16 clients: server CPU/request vs Deno.listen floor`,
      find("line-16", kind),
      find("line-16", "floor"),
      1.05,
    );
    ratio(
      `${mode}: HTTP keep-alive, 16 conns: server CPU/request vs Deno.serve`,
      find("http-ka", kind),
      find("http-ka", "deno-serve"),
      1.15,
    );
  }
  const probe = (name: string) => r.probes.find((p) => p.name === name)?.medianMs ?? NaN;
  for (const [suffix, mode] of [["", "Worker"], [", main-thread server", "main thread"]]) {
    const check = probe(`healthsock check${suffix}`);
    const floor = probe(`Deno probe floor${suffix}`);
    out.push({
      target: `${mode}: probe start-to-exit: check vs Deno probe floor (medians)`,
      measured: `${(check / floor).toFixed(2)}× (${check.toFixed(1)} vs ${floor.toFixed(1)} ms; ${
        (check / probe("empty script")).toFixed(2)
      }× an empty script)`,
      goal: "≤ 1.10×",
      met: check / floor <= 1.1,
    });
  }
  const rss = (id: string) => r.idle.find((i) => i.id === id)?.rssMiB ?? NaN;
  const overWorkerFloor = rss("trivial") - rss("floor-worker");
  out.push({
    target: "Worker: idle resident memory over the Worker floor (bare listener in an empty blob: Worker, one timer)",
    measured: `${signed(overWorkerFloor)} MiB (${rss("trivial").toFixed(2)} vs ${rss("floor-worker").toFixed(2)} MiB; ${
      signed(rss("floor-worker") - rss("floor"))
    } MiB is the Worker itself, floor vs floor)`,
    goal: "≤ +2 MiB",
    met: overWorkerFloor <= 2,
  });
  const serveMs = (id: string) => r.startup.find((s) => s.id === id)?.serveMs ?? NaN;
  for (
    const [id, floor, mode, what] of [
      ["worker", "floor-worker", "Worker", "an empty blob: Worker listening"],
      ["main", "floor", "main thread", "a bare listener"],
    ]
  ) {
    const over = serveMs(id) - serveMs(floor);
    out.push({
      target: `${mode}: serve() over the floor's start (${what}), first line to serving, library import included`,
      measured: `${signed(over)} ms (${serveMs(id).toFixed(1)} vs ${serveMs(floor).toFixed(1)} ms)`,
      goal: "≤ +10 ms",
      met: over <= 10,
    });
  }
  const added = rss("trivial-main") - rss("floor");
  out.push({
    target: "main thread: idle resident memory over the floor (bare listener, @logtape/logtape, one timer)",
    measured: `${signed(added)} MiB (${rss("trivial-main").toFixed(2)} vs ${rss("floor").toFixed(2)} MiB; ${
      signed(rss("trivial-main") - rss("none"))
    } MiB over a host without healthsock, ${signed(rss("trivial-main") - rss("imported"))} MiB of it serving)`,
    goal: "≤ +2 MiB",
    met: added <= 2,
  });
  const worker = r.blocked.find((b) => b.thread === "worker");
  const main = r.blocked.find((b) => b.thread === "main");
  if (worker && main) {
    out.push({
      target: "Worker: probes while the main thread blocks 1.5 s of every 2 s, slowest (every one answered)",
      measured: `${worker.max.toFixed(1)} ms, p99 ${
        worker.p99.toFixed(1)
      } ms, ${worker.errors} unanswered (main thread: ${main.max.toFixed(0)} ms, p99 ${
        main.p99.toFixed(0)
      } ms, ${main.over100} of ${main.sent} over 100 ms)`,
      goal: "≤ 100 ms",
      met: worker.max <= 100 && worker.errors === 0,
    });
  }
  const lag = (thread: string, probes: boolean) => r.lag.find((l) => l.thread === thread && l.probes === probes);
  const [wp, wn, mp, mn] = [lag("worker", true), lag("worker", false), lag("main", true), lag("main", false)];
  if (wp && wn && mp && mn) {
    const cpu = wp.mainCpu - wn.mainCpu;
    out.push({
      target: "Worker: main thread's CPU added by 1,000 probes a second (with vs without)",
      measured: `${signed(cpu)} % of a core; event-loop delay p99 ${signed(wp.p99 - wn.p99)} ms (main thread: ${
        signed(mp.mainCpu - mn.mainCpu)
      } %, ${signed(mp.p99 - mn.p99)} ms)`,
      goal: "≤ +1 % of a core",
      met: cpu <= 1,
    });
  }
  // A leak is memory the program keeps: the V8 heap after a full GC, before
  // vs after the load. Resident memory is shown beside it, not judged: V8
  // grows its heap under load and returns it to the system at its own pace
  // (idle after − idle before ranged from +0.4 to +27 MiB between runs).
  const kept = r.growth.heapAfterMiB - r.growth.heapBeforeMiB;
  const during = r.growth.lastQuarterMiB - r.growth.firstQuarterMiB;
  const retained = r.growth.afterMiB - r.growth.beforeMiB;
  out.push({
    target: `Memory growth over ${r.growth.seconds} s of load (V8 heap after a full GC, after vs before)`,
    measured: `${signed(kept)} MiB (resident: ${signed(during)} MiB last vs first quarter of the load, ${
      signed(retained)
    } MiB idle after vs before)`,
    goal: "≤ +2 MiB (noise)",
    met: kept <= 2,
  });
  out.push(...churnTargets(r));
  for (const [thread, mode] of [["worker", "Worker"], ["main", "main thread"]]) {
    const [trivial, slow] = r.isolation.filter((i) => i.thread === thread);
    const bound = trivial.p99 * 1.5 + 1;
    out.push({
      target: `${mode}: probe p99 with a 200 ms background check vs trivial check`,
      measured: `${slow.p99.toFixed(2)} vs ${trivial.p99.toFixed(2)} ms`,
      goal: `≤ 1.5× + 1 ms (${bound.toFixed(2)} ms)`,
      met: slow.p99 <= bound,
    });
  }
  return out;
}

function signed(n: number): string {
  return `${n >= 0 ? "+" : ""}${n.toFixed(2)}`;
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "–";
}

export function markdown(r: Results): string {
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
  lines.push("## Targets", "", "| target | measured | goal | met |", "| --- | --- | --- | --- |");
  for (const t of r.targets) {
    lines.push(`| ${t.target} | ${t.measured} | ${t.goal} | ${t.met ? "met" : "**missed**"} |`);
  }
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
  lines.push(
    "## Probe start-to-exit",
    "",
    "| probe | median ms | × probe floor | × empty | p90 ms | runs | failures | command |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  );
  const median = (name: string) => r.probes.find((p) => p.name === name)?.medianMs ?? NaN;
  for (const p of r.probes) {
    lines.push(
      `| ${p.name} | ${fixed(p.medianMs, 1)} | ${fixed(p.medianMs / median("Deno probe floor"), 2)} | ${
        fixed(p.medianMs / median("empty script"), 2)
      } | ${fixed(p.p90Ms, 1)} | ${p.runs} | ${p.failures} | \`${p.command}\` |`,
    );
  }
  lines.push(
    "",
    "The Deno probe floor connects, writes `GET /healthz\\n`, reads to EOF and exits, with one timer as its guard; " +
      "it runs with the same flags as `check`.",
    "",
  );
  lines.push(
    "## Resident memory",
    "",
    "| process | VmRSS MiB (median) | over the floor | over the Worker floor | runs |",
    "| --- | ---: | ---: | ---: | --- |",
  );
  const floor = r.idle.find((i) => i.id === "floor")?.rssMiB ?? NaN;
  const workerFloor = r.idle.find((i) => i.id === "floor-worker")?.rssMiB ?? NaN;
  for (const i of r.idle) {
    lines.push(
      `| ${i.variant} | ${fixed(i.rssMiB, 2)} | ${signed(i.rssMiB - floor)} | ${signed(i.rssMiB - workerFloor)} | ${
        i.runs.map((v) => v.toFixed(1)).join(", ")
      } |`,
    );
  }
  lines.push(
    "",
    `The Worker itself (Worker floor minus floor) costs ${signed(workerFloor - floor)} MiB; healthsock's own share ` +
      `in Worker mode is what the Worker host adds over the Worker floor.`,
  );
  const g = r.growth;
  lines.push(
    "",
    `Sustained load: ${g.seconds} s of mixed load (line mode and HTTP keep-alive, 16 clients), ${g.requests} requests. ` +
      `Before (after a warm-up load, idle): ${fixed(g.beforeMiB, 2)} MiB; after (idle): ${fixed(g.afterMiB, 2)} MiB; ` +
      `during: first quarter ${fixed(g.firstQuarterMiB, 2)} MiB, last quarter ${fixed(g.lastQuarterMiB, 2)} MiB; ` +
      `peak ${fixed(g.peakMiB, 2)} MiB. V8 heap in use after a full GC: ${fixed(g.heapBeforeMiB, 2)} MiB before, ` +
      `${fixed(g.heapAfterMiB, 2)} MiB after. (Worker mode, the default.)`,
    "",
  );
  lines.push(...churnSection(r));
  lines.push(
    "## Check cost isolation",
    "",
    "| serving | host | p50 ms | p99 ms | max ms | req/s |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
  );
  for (const i of r.isolation) {
    lines.push(
      `| ${i.thread} | ${i.variant} | ${fixed(i.p50, 3)} | ${fixed(i.p99, 3)} | ${fixed(i.max, 1)} | ${
        fixed(i.rps, 0)
      } |`,
    );
  }
  lines.push("", "Line mode, a new connection per request, 1 client; the background check runs every 250 ms.", "");
  lines.push(...beside(r));
  lines.push("![benchmark chart](chart.svg)", "");
  return lines.join("\n");
}

function counts(statuses: Record<string, number> | undefined): string {
  const entries = Object.entries(statuses ?? {});
  return entries.length ? entries.map(([status, n]) => `${status} ${n}`).join(", ") : "–";
}

/** The figures of serving beside the app: probes of a blocking app, event-loop delay, start-up. */
function beside(r: Results): string[] {
  const lines = ["## Beside the app: Worker vs main thread", ""];
  lines.push(
    "Probes of an app whose main thread blocks 1.5 s of every 2 s (`/livez` and `/readyz` in turn, 20 a second, " +
      `line mode, each on its own connection, sent whether or not the earlier ones were answered; ` +
      `${r.settings.blocked} s a mode):`,
    "",
    "| serving | probes | unanswered | p50 ms | p99 ms | max ms | over 100 ms | /livez | /readyz |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
  );
  for (const b of r.blocked) {
    lines.push(
      `| ${b.thread} | ${b.sent} | ${b.errors} | ${fixed(b.p50, 1)} | ${fixed(b.p99, 1)} | ${
        fixed(b.max, 1)
      } | ${b.over100} | ${counts(b.livez)} | ${counts(b.readyz)} |`,
    );
  }
  lines.push(
    "",
    "The main thread's event-loop delay (how late a 10 ms timer fires; median of the rounds, max of all) and its " +
      `CPU, over ${r.settings.lagWindow} s windows with 1,000 probes a second (line mode, \`/livez\`) and without:`,
    "",
    "| serving | probes | delay p50 ms | delay p99 ms | delay max ms | main thread CPU | probes answered/s | probe p99 ms |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const l of r.lag) {
    lines.push(
      `| ${l.thread} | ${l.probes ? "1,000/s" : "none"} | ${fixed(l.p50, 2)} | ${fixed(l.p99, 2)} | ${
        fixed(l.max, 2)
      } | ${fixed(l.mainCpu, 1)}% | ${l.probes ? fixed(l.rate, 0) : "–"}${l.errors ? ` (${l.errors} errors)` : ""} | ${
        l.probes ? fixed(l.probeP99, 2) : "–"
      } |`,
    );
  }
  const sameThread = r.bridge.find((b) => b.thread === "main" && b.variant === "onrequest");
  lines.push(
    "",
    "What each thread spends per request answered (line mode, a new connection each, 16 clients; CPU from " +
      "`/proc/PID/task/TID/stat`, median of the rounds): with a check cached for its default second, and with one " +
      "that runs on every request (`cacheTtl: 0`), which in Worker mode needs the main thread. Requests waiting for " +
      "the same check share one round trip, so the main thread's share is per round, not per request. The last " +
      "column is the main thread's cost against serving the same check on the main thread:",
    "",
    "| serving | host | req/s | main thread µs/req | other threads µs/req | main thread vs same-thread mode |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
  );
  for (const b of r.bridge) {
    lines.push(
      `| ${b.thread} | ${b.label} | ${fixed(b.rps, 0)} | ${fixed(b.mainUs, 2)} | ${fixed(b.restUs, 2)} | ${
        fixed(b.mainUs / (sameThread?.mainUs ?? NaN), 2)
      }× |`,
    );
  }
  const imported = r.startup.find((s) => s.id === "imported");
  lines.push(
    "",
    "Start-up (median of the runs after one warm-up each): spawning the host to its `ready` line, and its first line " +
      "to `serve()` resolved (the library's import included):",
    "",
    "| host | spawn to serving ms | added to importing only | first line to serving ms | runs |",
    "| --- | ---: | ---: | ---: | ---: |",
  );
  for (const s of r.startup) {
    lines.push(
      `| ${s.label} | ${fixed(s.spawnMs, 1)} | ${signed(s.spawnMs - (imported?.spawnMs ?? NaN))} | ${
        fixed(s.serveMs, 1)
      } | ${s.runs} |`,
    );
  }
  const worker = r.startup.find((s) => s.id === "worker");
  const main = r.startup.find((s) => s.id === "main");
  lines.push(
    "",
    `The Worker adds ${signed((worker?.spawnMs ?? NaN) - (main?.spawnMs ?? NaN))} ms to start-up over serving on the ` +
      "main thread. Every process here is pinned to one core, as in the load runs: the app's main thread and the " +
      "Worker share it, which is the Worker's worst case.",
    "",
  );
  return lines;
}

export function chart(r: Results): string {
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

/** Format generated text as `deno fmt` would (the project's config), so `deno fmt --check` passes on the outputs. */
export async function formatted(text: string, ext: "md" | "svg"): Promise<string> {
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

/** Memory under churn, judged for healthsock in each mode (without flags) against idle, beside the floor's figures. */
function churnTargets(r: Results): Results["targets"] {
  const out: Results["targets"] = [];
  const floor = r.churn.find((row) => row.id === "floor");
  const floorOf = (run: ChurnRun | undefined, key: "peakMiB" | "settleMiB") =>
    run ? `; floor ${signed(run[key] - run.idleMiB)} MiB` : "";
  for (const id of ["worker", "main"] as const) {
    const row = r.churn.find((row) => row.id === id);
    if (!row) continue;
    const mode = id === "worker" ? "Worker" : "main thread";
    for (const kind of ["watch", "complete"] as const) {
      const run = row[kind];
      if (!run) continue;
      const what = kind === "watch" ? "watch-stream churn" : "complete-request churn";
      const peak = run.peakMiB - run.idleMiB;
      const settle = run.settleMiB - run.idleMiB;
      out.push({
        target: `${mode}: peak RSS under ${r.settings.churn / 1000} s of ${what}, over idle`,
        measured: `${signed(peak)} MiB (${fixed(run.peakMiB, 1)} vs ${fixed(run.idleMiB, 1)}${
          floorOf(floor?.[kind], "peakMiB")
        })`,
        goal: "≤ +48 MiB",
        met: peak <= 48,
      });
      out.push({
        target: `${mode}: RSS ${r.settings.churn / 1000} s after the ${what}, over idle`,
        measured: `${signed(settle)} MiB (${fixed(run.settleMiB, 1)} vs ${fixed(run.idleMiB, 1)}${
          floorOf(floor?.[kind], "settleMiB")
        })`,
        goal: "≤ +16 MiB",
        met: settle <= 16,
      });
    }
    const kib = perConnectionKiB(row);
    if (Number.isFinite(kib)) {
      out.push({
        target: `${mode}: RSS per idle connection, ${row.hold!.held} held`,
        measured: `${fixed(kib, 1)} KiB (floor ${floor ? fixed(perConnectionKiB(floor), 1) : "–"} KiB)`,
        goal: "≤ 8 KiB",
        met: kib <= 8,
      });
    }
  }
  return out;
}

function churnSection(r: Results): string[] {
  if (r.churn.length === 0) return [];
  const seconds = r.settings.churn / 1000;
  const cell = (run: ChurnRun | undefined) =>
    run
      ? `${fixed(run.idleMiB, 1)} | ${fixed(run.peakMiB, 1)} (${signed(run.peakMiB - run.idleMiB)}) | ${
        fixed(run.settleMiB, 1)
      } (${signed(run.settleMiB - run.idleMiB)}) | ${run.cycles}`
      : "– | – | – | –";
  const lines = [
    "## Memory under churn",
    "",
    `RSS in MiB. Watch: ${WATCH_CLIENTS} clients open a line-mode \`GET /healthz?watch\`, read the first line and ` +
    `close, again, for ${seconds} s; complete: ${COMPLETE_CLIENTS} clients send \`GET /livez\`, never read, ` +
    `reconnect when closed, for ${seconds} s (bench/churn.py, its own process). Peak is VmHWM; settle is RSS ` +
    `${seconds} s after the churn. Each in a fresh server process.`,
    "",
    "| server | watch: idle | peak | settle | streams | complete: idle | peak | settle | requests | KiB per idle connection |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const row of r.churn as ChurnRow[]) {
    lines.push(`| ${row.label} | ${cell(row.watch)} | ${cell(row.complete)} | ${fixed(perConnectionKiB(row), 1)} |`);
  }
  const held = r.churn[0]?.hold?.held ?? 0;
  lines.push(
    "",
    `KiB per idle connection: RSS with ${held} connections that send nothing held open, minus idle, divided by ` +
      `${held} (taken 2 s after they connected, within the server's 5 s request timeout).`,
    "",
  );
  return lines;
}
