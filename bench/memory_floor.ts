/**
 * Peer: the floor of an idle server, in memory and in start-up. A bare Unix
 * listener (it closes what it accepts) in a program that already imports
 * `@logtape/logtape`, as an application logging the way healthsock does would,
 * and runs one timer, which boots Deno's Node compatibility layer as any
 * timer does. What healthsock adds over this is its own.
 *
 * With `worker`, the floor of serving beside the app: the same program, but
 * the listener runs in an empty `blob:` Worker that only listens, started the
 * way healthsock starts its own. What a Worker costs by itself is this floor
 * minus the other; what healthsock's Worker adds is its figure minus this one.
 *
 * Usage: `deno run PERMISSIONS bench/memory_floor.ts SOCKET [main|worker]`.
 * Prints `serve MS` (from the program's first line to listening, as bench/host.ts
 * prints for `serve()`), then `ready`; exits when its stdin ends.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";

const started = performance.now();
const [path, thread = "main"] = Deno.args;
getLogger(["bench", "memory-floor"]);

// The Worker: a bare listener on the path it is sent; says so once listening.
const WORKER = `self.onmessage = (event) => {
  const listener = Deno.listen({ transport: "unix", path: event.data });
  (async () => {
    for await (const conn of listener) conn.close();
  })();
  self.postMessage("listening");
};`;

if (thread === "worker") {
  const url = URL.createObjectURL(new Blob([WORKER], { type: "text/javascript" }));
  const worker = new Worker(url, { type: "module" });
  const { promise, resolve } = Promise.withResolvers<void>();
  worker.onmessage = () => resolve();
  worker.postMessage(path);
  await promise;
} else {
  const listener = Deno.listen({ transport: "unix", path });
  (async () => {
    for await (const conn of listener) conn.close();
  })();
}
const timer = setInterval(() => {}, 1000);
console.log(`serve ${(performance.now() - started).toFixed(2)}`);
console.log("ready");
for await (const _ of Deno.stdin.readable) { /* discard */ }
clearInterval(timer);
Deno.exit(0);
