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
 * Prints `ready` on stdout once it answers, and stops (closing the server)
 * when its stdin ends.
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
// Stay up until the harness closes our stdin.
for await (const _ of Deno.stdin.readable) { /* discard */ }
await close();
