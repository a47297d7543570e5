/**
 * Peer: the floor of an idle server's resident memory. A bare Unix listener
 * (it closes what it accepts) in a program that already imports
 * `@logtape/logtape`, as an application logging the way healthsock does would,
 * and runs one timer, which boots Deno's Node compatibility layer as any
 * timer does. What healthsock adds over this is its own.
 *
 * Usage: `deno run PERMISSIONS bench/memory_floor.ts SOCKET`.
 * Prints `ready` once listening; exits when its stdin ends.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";

const [path] = Deno.args;
getLogger(["bench", "memory-floor"]);
const listener = Deno.listen({ transport: "unix", path });
(async () => {
  for await (const conn of listener) conn.close();
})();
const timer = setInterval(() => {}, 1000);
console.log("ready");
for await (const _ of Deno.stdin.readable) { /* discard */ }
clearInterval(timer);
Deno.exit(0);
