/**
 * The server under test: a host program that serves its health with the real
 * `serve()`, the way an application embeds it.
 *
 * Usage: `deno run PERMISSIONS bench/host.ts SOCKET VARIANT`, where VARIANT is
 * - `trivial`: one check that passes at once (what every load figure uses);
 * - `slow`: `trivial` plus a background check that takes 200 ms a run;
 * - `imported`: loads the library but serves nothing (memory baseline);
 * - `none`: neither loads nor serves it (memory baseline).
 *
 * Prints `ready` on stdout once it answers, answers a `heap` line on stdin
 * with `heap BYTES` (V8 heap in use after a full GC, when run with
 * `--v8-flags=--expose-gc`), and stops (closing the server) when its stdin ends.
 *
 * @module
 */

const [path, variant = "trivial"] = Deno.args;
if (!path || !["trivial", "slow", "imported", "none"].includes(variant)) {
  console.error("Usage: host.ts SOCKET trivial|slow|imported|none");
  Deno.exit(64);
}

let close = (): Promise<void> => Promise.resolve();
if (variant !== "none") {
  // Loaded on demand so that `none` is the same program without the library.
  const { Health, serve } = await import("../mod.ts");
  if (variant !== "imported") {
    const health = new Health();
    health.add("trivial", () => "pass");
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
    const server = await serve(path, health);
    health.markReady();
    close = () => server.close();
  }
}
console.log("ready");
// Stay up until the harness closes our stdin. A line "heap" asks for the V8
// heap in use after a full collection (the host runs with --expose-gc then):
// what a leak would grow, unlike resident memory, which V8 keeps as it likes.
const gc = (globalThis as { gc?: () => void }).gc;
for await (const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream()).pipeThrough(lines())) {
  if (line === "heap") {
    gc?.();
    gc?.();
    console.log(`heap ${Deno.memoryUsage().heapUsed}`);
  }
}
await close();

function lines(): TransformStream<string, string> {
  let buffered = "";
  return new TransformStream({
    transform(chunk, controller) {
      buffered += chunk;
      let lf: number;
      while ((lf = buffered.indexOf("\n")) >= 0) {
        controller.enqueue(buffered.slice(0, lf));
        buffered = buffered.slice(lf + 1);
      }
    },
  });
}
