/**
 * Peer: the floor of `check`'s start-to-exit time, the least a Deno probe
 * does. It connects, writes `GET /healthz\n`, reads to EOF and prints the
 * answer, with one timer as its guard (cleared at the end), as a probe with a
 * timeout must. The harness runs it with the `check` task's permission flags.
 *
 * Usage: `deno run PERMISSIONS bench/probe_floor.ts SOCKET`.
 *
 * @module
 */

const [path] = Deno.args;
const guard = setTimeout(() => Deno.exit(4), 2000);
const conn = await Deno.connect({ transport: "unix", path });
const request = new TextEncoder().encode("GET /healthz\n");
for (let written = 0; written < request.length;) written += await conn.write(request.subarray(written));
const chunks: Uint8Array[] = [];
const buffer = new Uint8Array(16384);
for (let n; (n = await conn.read(buffer)) !== null;) chunks.push(buffer.slice(0, n));
conn.close();
clearTimeout(guard);
for (const chunk of chunks) await Deno.stdout.write(chunk);
