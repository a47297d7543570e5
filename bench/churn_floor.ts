/**
 * Peer: the floor of the memory figures under churn. A bare `Deno.listen` Unix
 * server that reads each connection's request into a 1 KiB buffer, writes one
 * line, and closes, except for a `?watch` request, whose connection it keeps
 * until the client leaves; a connection that sends nothing is held with its read
 * pending. What healthsock adds over it is its own.
 *
 * Usage: `deno run --allow-read=SOCKET --allow-write=SOCKET --allow-net=unix:SOCKET bench/churn_floor.ts SOCKET`.
 * Prints `ready` once listening; exits when its stdin ends.
 *
 * @module
 */
const [path] = Deno.args;
const LINE = new TextEncoder().encode('{"status":"pass"}\n');
const listener = Deno.listen({ transport: "unix", path });

async function serve(conn: Deno.UnixConn): Promise<void> {
  const buffer = new Uint8Array(1024);
  try {
    const n = await conn.read(buffer);
    if (n === null) return;
    await conn.write(LINE);
    if (buffer.subarray(0, n).includes(0x3f)) { while ((await conn.read(buffer)) !== null) { /* until it leaves */ } }
  } catch {
    /* the client left */
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

(async () => {
  for await (const conn of listener) serve(conn);
})();
const timer = setInterval(() => {}, 1000);
console.log("ready");
for await (const _ of Deno.stdin.readable) { /* discard */ }
clearInterval(timer);
Deno.exit(0);
