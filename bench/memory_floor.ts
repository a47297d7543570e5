/**
 * Peer: the floor of an idle server's resident memory. A bare Unix listener
 * (it closes what it accepts) in a program that already imports
 * `@logtape/logtape`, as an application logging the way healthsock does would,
 * and runs one timer, which boots Deno's Node compatibility layer as any
 * timer does. What healthsock adds over this is its own.
 *
 * With `worker`, the floor of serving beside the app: the same program, but
 * the listener runs in a Worker (`memory_floor_worker.ts`) that imports
 * `@logtape/logtape` too, as healthsock's Worker does. What a Worker costs by
 * itself is this floor minus the other.
 *
 * Usage: `deno run PERMISSIONS bench/memory_floor.ts SOCKET [main|worker]`
 * (with `worker`, also `--allow-read` of `memory_floor_worker.ts`: a Worker
 * started from a file reads it). Prints `ready` once listening; exits when its
 * stdin ends.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";

const [path, thread = "main"] = Deno.args;
getLogger(["bench", "memory-floor"]);
if (thread === "worker") {
  const worker = new Worker(new URL("./memory_floor_worker.ts", import.meta.url), { type: "module" });
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
console.log("ready");
for await (const _ of Deno.stdin.readable) { /* discard */ }
clearInterval(timer);
Deno.exit(0);
