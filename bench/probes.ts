/**
 * The probe generator: probes at a steady rate, each on its own connection in
 * line mode, whether or not the earlier ones were answered (an orchestrator
 * does not wait for a late probe before sending the next), and times each.
 *
 * Usage:
 * ```sh
 * deno run --allow-read=SOCK --allow-write=SOCK --allow-net=unix:SOCK bench/probes.ts \
 *   --socket SOCK --rate 1000 --seconds 5 --targets /livez,/readyz --timeout 5000
 * ```
 *
 * Targets are probed in turn. Prints one JSON object (see
 * {@linkcode ProbeRun}) on stdout.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** What one run of the probe generator saw. */
export interface ProbeRun {
  /** The measured window, epoch ms: from the first probe sent to the last answered. */
  from: number;
  to: number;
  /** Probes sent. */
  sent: number;
  /** Probes not answered within the time-out, refused or cut short. */
  errors: number;
  /** Latency, connect to the answer's end, in ms, of the answered probes. */
  p50: number;
  p99: number;
  max: number;
  /** Answered probes that took longer than 100 ms. */
  over100: number;
  /** Per target, how many answers said each status (`pass`, `fail`, …). */
  statuses: Record<string, Record<string, number>>;
}

const { values } = parseArgs({
  options: {
    socket: { type: "string" },
    rate: { type: "string", default: "20" },
    seconds: { type: "string", default: "5" },
    targets: { type: "string", default: "/livez" },
    timeout: { type: "string", default: "5000" },
  },
});
const path = values.socket;
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const timeout = Number(values.timeout);
const targets = values.targets.split(",");
if (!path || !(rate > 0) || !(seconds > 0) || !(timeout > 0)) {
  console.error("Usage: probes.ts --socket SOCK --rate N --seconds S [--targets /livez,/readyz] [--timeout MS]");
  Deno.exit(64);
}

const encoder = new TextEncoder();
const requests = targets.map((target) => encoder.encode(`GET ${target}\n`));
const statuses: Record<string, Record<string, number>> = Object.fromEntries(targets.map((t) => [t, {}]));
const times: number[] = [];
let errors = 0;
let sent = 0;
let last = 0;

async function probe(i: number): Promise<void> {
  const target = targets[i % targets.length];
  const signal = AbortSignal.timeout(timeout);
  const started = performance.now();
  let conn: Deno.UnixConn | undefined;
  try {
    conn = await Deno.connect({ transport: "unix", path: path! });
    const c = conn;
    signal.addEventListener("abort", () => {
      try {
        c.close();
      } catch { /* closed */ }
    }, { once: true });
    await conn.write(requests[i % requests.length]);
    let text = "";
    const decoder = new TextDecoder(); // one per probe: a streaming decoder keeps state
    const buffer = new Uint8Array(16384);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
    const status = /"status":"(\w+)"/.exec(text)?.[1];
    if (!status) throw new Error("Not a health answer");
    times.push(performance.now() - started);
    last = performance.timeOrigin + performance.now();
    statuses[target][status] = (statuses[target][status] ?? 0) + 1;
  } catch {
    errors++;
  } finally {
    try {
      conn?.close();
    } catch { /* closed on time-out */ }
  }
}

// Send in batches every TICK ms, catching up by the clock, so the rate holds
// whatever timers do.
const TICK = Math.max(1, Math.min(50, 1000 / rate));
const total = Math.round(rate * seconds);
const from = performance.timeOrigin + performance.now();
const start = performance.now();
const inflight: Promise<void>[] = [];
while (sent < total) {
  const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
  while (sent < due) inflight.push(probe(sent++));
  await new Promise((resolve) => setTimeout(resolve, TICK));
}
await Promise.all(inflight);

const sorted = times.sort((a, b) => a - b);
const at = (q: number) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN;
const run: ProbeRun = {
  from,
  to: last || performance.timeOrigin + performance.now(),
  sent,
  errors,
  p50: at(0.5),
  p99: at(0.99),
  max: sorted.at(-1) ?? NaN,
  over100: sorted.filter((ms) => ms > 100).length,
  statuses,
};
console.log(JSON.stringify(run));
