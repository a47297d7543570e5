/**
 * The server under test: a host program that serves its health with the real
 * `serve()`, the way an application embeds it.
 *
 * Usage: `deno run PERMISSIONS bench/host.ts SOCKET VARIANT [THREAD [BLOCK EVERY]]`, where VARIANT is
 * - `trivial`: one check that passes at once (what every load figure uses);
 * - `onrequest`: the same check with `cacheTtl: 0`, as the demo's `ticker`: every request runs it, so in Worker
 *   mode every request needs the main thread;
 * - `slow`: `trivial` plus a background check that takes 200 ms a run;
 * - `imported`: loads the library but serves nothing (memory and start-up baseline);
 * - `none`: neither loads nor serves it (memory baseline);
 *
 * THREAD is `serve()`'s `thread` option, `worker` (its default) or `main`.
 * BLOCK and EVERY make the main thread spin BLOCK ms of every EVERY ms, as an
 * app's own synchronous work would.
 *
 * Prints `serve MS` (how long loading the library and `serve()` took, from
 * the program's first line) and then `ready` on stdout once it answers. On
 * stdin it answers
 * - `heap` with `heap BYTES`: the V8 heap in use after a full GC, when run
 *   with `--v8-flags=--expose-gc`;
 * - `sample`: start sampling the main thread's event-loop delay with a 10 ms
 *   timer (only when asked: a timer changes an idle host's memory);
 * - `lag FROM TO` (epoch ms) with `lag P50 P99 MAX COUNT`: that delay in ms
 *   over the window;
 *
 * and stops (closing the server) when its stdin ends.
 *
 * @module
 */
import { lines } from "./lines.ts";

const started = performance.now();
const [path, variant = "trivial", thread = "worker", block, every] = Deno.args;
if (
  !path || !["trivial", "onrequest", "slow", "imported", "none"].includes(variant) ||
  !["worker", "main"].includes(thread) ||
  (block !== undefined && !(Number(block) > 0 && Number(every) > Number(block)))
) {
  console.error("Usage: host.ts SOCKET trivial|onrequest|slow|imported|none [worker|main [BLOCK_MS EVERY_MS]]");
  Deno.exit(64);
}

// The main thread's event-loop delay: how late a 10 ms timer fires, with the
// epoch time it fired at, so the harness can ask for any window.
const PERIOD = 10;
const lagAt: number[] = [];
const lagMs: number[] = [];
let expected = 0;
let sampler: ReturnType<typeof setTimeout> | undefined;
function sample(): void {
  const now = performance.now();
  lagAt.push(performance.timeOrigin + now);
  lagMs.push(Math.max(0, now - expected));
  expected = now + PERIOD;
  sampler = setTimeout(sample, PERIOD);
}

let close = (): Promise<void> => Promise.resolve();
if (variant !== "none") {
  // Loaded on demand so that `none` is the same program without the library.
  const { Health, serve } = await import("../mod.ts");
  if (variant !== "imported") {
    const health = new Health();
    health.add("trivial", () => "pass", variant === "onrequest" ? { cacheTtl: 0 } : {});
    if (variant === "slow") {
      health.add("slow", (signal) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, 200);
          signal.addEventListener("abort", () => {
            clearTimeout(timer);
            reject(signal.reason);
          }, { once: true });
        }), { interval: 250, timeout: 1000 });
    }
    const server = await serve(path, health, { thread: thread as "worker" | "main" });
    health.markReady();
    close = () => server.close();
  }
}
console.log(`serve ${(performance.now() - started).toFixed(2)}`);
console.log("ready");

let blocker: ReturnType<typeof setInterval> | undefined;
let firstBlock: ReturnType<typeof setTimeout> | undefined;
if (block !== undefined) {
  const spin = () => {
    const end = performance.now() + Number(block);
    while (performance.now() < end) { /* the app's synchronous work */ }
  };
  // The first block soon after serving, then one every EVERY ms.
  firstBlock = setTimeout(() => {
    spin();
    blocker = setInterval(spin, Number(every));
  }, Number(every) - Number(block));
}

// Stay up until the harness closes our stdin. A line "heap" asks for the V8
// heap in use after a full collection (the host runs with --expose-gc then):
// what a leak would grow, unlike resident memory, which V8 keeps as it likes.
const gc = (globalThis as { gc?: () => void }).gc;
for await (const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream()).pipeThrough(lines())) {
  if (line === "heap") {
    gc?.();
    gc?.();
    console.log(`heap ${Deno.memoryUsage().heapUsed}`);
  } else if (line === "sample" && sampler === undefined) {
    expected = performance.now() + PERIOD;
    sampler = setTimeout(sample, PERIOD);
  } else if (line.startsWith("lag ")) {
    const [from, to] = line.slice(4).split(" ").map(Number);
    const window = lagMs.filter((_, i) => lagAt[i] >= from && lagAt[i] <= to).sort((a, b) => a - b);
    const at = (q: number) => window.length ? window[Math.min(window.length - 1, Math.floor(q * window.length))] : NaN;
    console.log(`lag ${at(0.5)} ${at(0.99)} ${window.at(-1) ?? NaN} ${window.length}`);
  }
}
clearTimeout(sampler);
clearTimeout(firstBlock);
clearInterval(blocker);
await close();
