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

export function targets(r: Results): Results["targets"] {
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
