/**
 * Peer: the runtime's floor for this design. A minimal `Deno.listen` server
 * that reads a request until it is complete and writes fixed bytes: the
 * answers healthsock gave, captured by the harness. No parsing, no checks,
 * no timers; keep-alive when the request does not say `Connection: close`.
 *
 * Usage: `deno run PERMISSIONS bench/floor.ts SOCKET LINE_B64 HTTP_B64 HTTP_CLOSE_B64`.
 * Prints `ready` once listening; exits when its stdin ends.
 *
 * @module
 */

const [path, lineB64, httpB64, httpCloseB64] = Deno.args;
const decode = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const LINE = decode(lineB64);
const HTTP = decode(httpB64);
const HTTP_CLOSE = decode(httpCloseB64);
const LF = 10;
const CLOSE = new TextEncoder().encode("Connection: close");

function indexOf(bytes: Uint8Array, length: number, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

async function handle(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(4096);
  let length = 0;
  try {
    for (;;) {
      const n = await conn.read(buffer.subarray(length));
      if (n === null) return;
      length += n;
      const lf = buffer.subarray(0, length).indexOf(LF);
      if (lf < 0) continue;
      // "GET /healthz\n" is line mode; "GET /healthz HTTP/1.1\r\n" ends with a CR.
      if (buffer[lf - 1] !== 13) return await writeAll(conn, LINE);
      const last = length - 1;
      if (!(buffer[last] === LF && buffer[last - 1] === 13 && buffer[last - 2] === LF)) continue;
      const close = indexOf(buffer, length, CLOSE) >= 0;
      await writeAll(conn, close ? HTTP_CLOSE : HTTP);
      if (close) return;
      length = 0;
    }
  } catch {
    // the client went away
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

const listener = Deno.listen({ transport: "unix", path });
(async () => {
  for await (const conn of listener) handle(conn);
})();
console.log("ready");
for await (const _ of Deno.stdin.readable) { /* discard */ }
Deno.exit(0);
