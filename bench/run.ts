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
 * 5. beside the app, Worker vs main thread: probes of an app whose main
 *    thread blocks 1.5 s of every 2 s; the main thread's event-loop delay and
 *    CPU with 1,000 probes a second and without; start-up, spawn to serving.
 *
 * Load, isolation, memory and probe figures are taken in both modes
 * (`thread: "worker"`, the default, and `"main"`).
 *
 * Prints progress on stderr, a markdown report on stdout, and writes
 * RESULTS.md (between its markers, keeping the hand-written sections around
 * them) and chart.svg (into bench/, or `--out DIR`).
 *
 * Flags: `--quick` (a few seconds, for CI), `--duration S` and `--rounds N`
 * (each load run), `--growth S` (the memory growth run), `--probes N` (probe
 * runs per command), `--out DIR`, `--json FILE` (the figures, for tests),
 * `--no-pin`.
 *
 * @module
 */
import { machineInfo, measure } from "./measure.ts";
import { merged } from "./markers.ts";
import { catProc } from "./proc.ts";
import { chart, formatted, markdown, targets } from "./report.ts";
import { settingsFrom } from "./scenarios.ts";
import { Harness, placement } from "./servers.ts";

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
    results.targets = targets(results);
    machine.loadAfter = (await catProc(["/proc/loadavg"]).catch(() => "")).split(" ").slice(0, 3).join(" ");
    const report = await formatted(markdown(results), "md");
    console.log(report);
    await Deno.writeTextFile(`${settings.out}RESULTS.md`, merged(await existing(`${settings.out}RESULTS.md`), report));
    await Deno.writeTextFile(`${settings.out}chart.svg`, await formatted(chart(results), "svg"));
    if (settings.json) await Deno.writeTextFile(settings.json, JSON.stringify(results, null, 2));
    console.error(`Wrote ${settings.out}RESULTS.md and ${settings.out}chart.svg`);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function existing(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  }
}

if (import.meta.main) await main();
