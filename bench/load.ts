/**
 * The load generator: a lean client in its own process (pinned to its own
 * core by the harness) that keeps N requests in flight against a socket and
 * measures the server's CPU time over the measured window from /proc.
 *
 * Usage:
 * ```sh
 * deno run --allow-run=cat --allow-read=SOCK --allow-write=SOCK --allow-net=unix:SOCK bench/load.ts \
 *   --socket SOCK --mode line|http|http-close|mixed --clients 16 --warmup 1000 --duration 5000 --server-pid PID
 * deno run ... bench/load.ts --socket SOCK --capture
 * ```
 *
 * Modes: `line` sends `GET /healthz\n` on a new connection per request and
 * reads to EOF (how probes arrive); `http` keeps each connection alive and
 * reconnects when the server closes it; `http-close` sends one request with
 * `Connection: close` per connection; `mixed` gives even clients `line`, odd
 * ones `http`. Prints one JSON object (see {@linkcode LoadResult}) on stdout.
 *
 * `--capture` prints the server's answers instead, base64-encoded, so the
 * peers can send the same bytes.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { catProc, cpuSeconds, parseStat } from "./proc.ts";

/** What one load run measured, over its measured window only. */
export interface LoadResult {
  /** Requests answered in the window. */
  requests: number;
  /** Failed requests in the window (refused, reset, empty or short answers). */
  errors: number;
  /** Connections opened in the window. */
  connections: number;
  /** The window's length, in seconds. */
  seconds: number;
  /** Requests per second. */
  rps: number;
  /** Latency percentiles, in milliseconds, from before connecting (or writing) to the full answer. */
  p50: number;
  /** 99th percentile latency, in milliseconds. */
  p99: number;
  /** The slowest request, in milliseconds. */
  max: number;
  /** CPU seconds the server used in the window (all its threads, from /proc/PID/stat). */
  serverCpu: number;
  /** CPU seconds the server's main thread used in the window (/proc/PID/task/PID/stat). */
  mainCpu: number;
  /** CPU seconds this generator used in the window. */
  loadCpu: number;
  /** The first answer received, for a sanity check of the server. */
  sample: string;
}

/** The answers of a server, base64-encoded, as `--capture` prints them. */
export interface Captured {
  /** The line-mode answer (body and `\n`). */
  line: string;
  /** The HTTP answer to a keep-alive request. */
  http: string;
  /** The HTTP answer to a `Connection: close` request. */
  httpClose: string;
}

const encoder = new TextEncoder();
const LINE_REQUEST = encoder.encode("GET /healthz\n");
const HTTP_REQUEST = encoder.encode("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
const HTTP_CLOSE_REQUEST = encoder.encode("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
const CRLFCRLF = [13, 10, 13, 10];

/**
 * Latencies in a histogram of 1 µs buckets up to 1 s, so recording costs no
 * allocation and no sort; slower requests are kept exactly.
 */
class Histogram {
  #buckets = new Uint32Array(1_000_000);
  #slow: number[] = [];
  count = 0;
  max = 0;

  record(ms: number): void {
    const us = Math.round(ms * 1000);
    if (us < this.#buckets.length) this.#buckets[us]++;
    else this.#slow.push(ms);
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  reset(): void {
    this.#buckets.fill(0);
    this.#slow = [];
    this.count = 0;
    this.max = 0;
  }

  /** The nearest-rank percentile, in ms. */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let us = 0; us < this.#buckets.length; us++) {
      seen += this.#buckets[us];
      if (seen >= rank) return us / 1000;
    }
    const slow = [...this.#slow].sort((a, b) => a - b);
    return slow[rank - seen - 1];
  }
}

/** Index of `\r\n\r\n` in `bytes[0, length)`, or -1. */
function headEnd(bytes: Uint8Array, length: number): number {
  for (let i = 0; i + 3 < length; i++) {
    if (
      bytes[i] === CRLFCRLF[0] && bytes[i + 1] === CRLFCRLF[1] && bytes[i + 2] === CRLFCRLF[2] &&
      bytes[i + 3] === CRLFCRLF[3]
    ) return i;
  }
  return -1;
}

/** The length of a complete HTTP response at the start of `bytes`, and whether the server will close, or undefined while incomplete. */
function httpFrame(bytes: Uint8Array, length: number): { size: number; close: boolean } | undefined {
  const end = headEnd(bytes, length);
  if (end < 0) return undefined;
  const head = String.fromCharCode(...bytes.subarray(0, end));
  const match = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  const size = end + 4 + (match ? Number(match[1]) : 0);
  if (length < size) return undefined;
  return { size, close: /\r\nconnection:\s*close/i.test(head) };
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

class Load {
  readonly histogram = new Histogram();
  requests = 0;
  errors = 0;
  connections = 0;
  sample = "";
  stopped = false;
  #path: string;

  constructor(path: string) {
    this.#path = path;
  }

  connect(): Promise<Deno.UnixConn> {
    this.connections++;
    return Deno.connect({ transport: "unix", path: this.#path });
  }

  #done(started: number): void {
    this.histogram.record(performance.now() - started);
    this.requests++;
  }

  /** A new connection per request: connect, send the line, read to EOF. */
  async line(): Promise<void> {
    const buffer = new Uint8Array(16384);
    while (!this.stopped) {
      const started = performance.now();
      let conn: Deno.UnixConn | undefined;
      try {
        conn = await this.connect();
        await writeAll(conn, LINE_REQUEST);
        let total = 0;
        for (;;) {
          const n = await conn.read(buffer.subarray(Math.min(total, buffer.length - 4096)));
          if (n === null) break;
          total += n;
        }
        if (total === 0) throw new Error("empty answer");
        if (!this.sample) this.sample = new TextDecoder().decode(buffer.subarray(0, total));
        this.#done(started);
      } catch {
        this.errors++;
      } finally {
        try {
          conn?.close();
        } catch { /* closed */ }
      }
    }
  }

  /** HTTP/1.1: keep-alive (reconnecting when the server closes), or one request per connection. */
  async http(close: boolean): Promise<void> {
    const request = close ? HTTP_CLOSE_REQUEST : HTTP_REQUEST;
    const buffer = new Uint8Array(65536);
    let conn: Deno.UnixConn | undefined;
    while (!this.stopped) {
      const started = performance.now();
      try {
        conn ??= await this.connect();
        await writeAll(conn, request);
        let length = 0;
        let frame: { size: number; close: boolean } | undefined;
        while (!(frame = httpFrame(buffer, length))) {
          const n = await conn.read(buffer.subarray(length));
          if (n === null) throw new Error("closed before the answer was complete");
          length += n;
        }
        if (!this.sample) this.sample = new TextDecoder().decode(buffer.subarray(0, frame.size));
        this.#done(started);
        if (close || frame.close) {
          conn.close();
          conn = undefined;
        }
      } catch {
        this.errors++;
        try {
          conn?.close();
        } catch { /* closed */ }
        conn = undefined;
      }
    }
    try {
      conn?.close();
    } catch { /* closed */ }
  }
}

async function exchange(path: string, request: Uint8Array): Promise<Uint8Array> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await writeAll(conn, request);
    const chunks: number[] = [];
    const buffer = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(...buffer.subarray(0, n));
      // A keep-alive answer does not end with EOF: stop at its announced length.
      const bytes = Uint8Array.from(chunks);
      const frame = request !== LINE_REQUEST ? httpFrame(bytes, bytes.length) : undefined;
      if (frame) return bytes.subarray(0, frame.size);
    }
    return Uint8Array.from(chunks);
  } finally {
    conn.close();
  }
}

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      socket: { type: "string" },
      mode: { type: "string", default: "line" },
      clients: { type: "string", default: "16" },
      warmup: { type: "string", default: "1000" },
      duration: { type: "string", default: "5000" },
      "server-pid": { type: "string" },
      capture: { type: "boolean", default: false },
    },
  });
  const path = values.socket;
  if (!path) throw new TypeError("Missing --socket");
  if (values.capture) {
    const captured: Captured = {
      line: base64(await exchange(path, LINE_REQUEST)),
      http: base64(await exchange(path, HTTP_REQUEST)),
      httpClose: base64(await exchange(path, HTTP_CLOSE_REQUEST)),
    };
    console.log(JSON.stringify(captured));
    return;
  }
  const mode = values.mode;
  if (!["line", "http", "http-close", "mixed"].includes(mode)) throw new TypeError(`Unknown --mode "${mode}"`);
  const clients = Number(values.clients);
  const warmup = Number(values.warmup);
  const duration = Number(values.duration);
  const serverPid = Number(values["server-pid"]);
  if (!(serverPid > 0)) throw new TypeError("Missing --server-pid");

  const load = new Load(path);
  const workers = Array.from({ length: clients }, (_, i) => {
    const kind = mode === "mixed" ? (i % 2 === 0 ? "line" : "http") : mode;
    return kind === "line" ? load.line() : load.http(kind === "http-close");
  });
  await new Promise((resolve) => setTimeout(resolve, warmup));
  // The measured window: counters restart, CPU times are read at both ends.
  // (/proc is read by one `cat`; its few ms are within the window at both ends.)
  load.histogram.reset();
  load.requests = 0;
  load.errors = 0;
  load.connections = 0;
  const t0 = performance.now();
  const [server0, self0, main0] = await cpuOf(serverPid);
  await new Promise((resolve) => setTimeout(resolve, duration));
  const [server1, self1, main1] = await cpuOf(serverPid);
  const seconds = (performance.now() - t0) / 1000;
  const { requests, errors, connections, histogram, sample } = load;
  const result: LoadResult = {
    requests,
    errors,
    connections,
    seconds,
    rps: requests / seconds,
    p50: histogram.percentile(50),
    p99: histogram.percentile(99),
    max: histogram.max,
    serverCpu: server1 - server0,
    mainCpu: main1 - main0,
    loadCpu: self1 - self0,
    sample: sample.slice(0, 200),
  };
  load.stopped = true;
  await Promise.all(workers);
  console.log(JSON.stringify(result));
}

/** CPU seconds of the server, of this generator, and of the server's main thread, read at one instant (one `cat`). */
async function cpuOf(server: number): Promise<number[]> {
  const paths = [`/proc/${server}/stat`, `/proc/${Deno.pid}/stat`, `/proc/${server}/task/${server}/stat`];
  const lines = (await catProc(paths)).split("\n").filter((line) => line !== "");
  if (lines.length !== paths.length) throw new Error(`Cannot read ${paths.join(", ")}`);
  return lines.map((line) => cpuSeconds(parseStat(line)));
}

if (import.meta.main) await main();
