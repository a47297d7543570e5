/**
 * Peer: Deno's built-in HTTP server, `Deno.serve({ path })`, on a Unix socket,
 * answering the same body and headers as healthsock. HTTP only.
 *
 * Usage: `deno run PERMISSIONS bench/deno_serve.ts SOCKET BODY_B64`.
 * Prints `ready` once listening; exits when its stdin ends.
 *
 * @module
 */

const [path, bodyB64] = Deno.args;
const body = Uint8Array.from(atob(bodyB64), (c) => c.charCodeAt(0));
const headers = { "content-type": "application/health+json", "cache-control": "no-store" };

Deno.serve({ path, onListen: () => console.log("ready") }, () => new Response(body, { headers }));
for await (const _ of Deno.stdin.readable) { /* discard */ }
Deno.exit(0);
