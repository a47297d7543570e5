/**
 * The health client: connect to a health socket, send one request, read one
 * answer, within a timeout; or follow a `?watch` stream.
 *
 * It does not log (the CLI reports what it gets): a probe loads no npm code,
 * which keeps `healthsock check` starting fast.
 *
 * @module
 */
import { delay } from "./delay.ts";
import { parseAnswer } from "./answer.ts";
import { permissionFlags } from "./paths.ts";
import { parseTarget } from "./protocol.ts";
import type { Framing } from "./protocol.ts";
import { isHealthReport } from "./report.ts";
import type { HealthReport, HealthStatus } from "./report.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Options of {@linkcode probe}. */
export interface ProbeOptions {
  /** The request target. @default {"/healthz"} */
  target?: string;
  /** Send a bare line (`GET /healthz`) or an HTTP/1.1 request. @default {"line"} */
  framing?: Framing;
  /** Milliseconds for the whole exchange. @default {5000} */
  timeout?: number;
  /** Cancels the probe. @default {undefined} */
  signal?: AbortSignal;
  /** The largest answer accepted, in bytes. @default {1048576} */
  maxBytes?: number;
}

/** A health answer. */
export interface ProbeResult {
  /** The reported status. */
  status: HealthStatus;
  /** The HTTP status (in line mode, 200 or 503 as HTTP would have said). */
  code: number;
  /** The body as received. */
  body: string;
  /** The report, unless the body was `?verbose` text. */
  report?: HealthReport;
  /** The framing used. */
  framing: Framing;
}

/**
 * Why a probe got no health answer; the CLI's exit codes follow it:
 * `unreachable` (3) no socket, refused or no permission; `timeout` (4) no
 * answer in time, or cancelled; `busy` (4) the server is there but not
 * answering for load: it did not accept the connection (its backlog stayed
 * full until the timeout) or it answered 503 with an error instead of a
 * report; `protocol` (5) an answer that is not a health report.
 */
export type ProbeErrorKind = "unreachable" | "timeout" | "busy" | "protocol";

/**
 * A probe that got no health answer: the socket was unreachable, too slow or
 * too busy, or answered something else.
 *
 * @example Map the kinds to exit codes, as `healthsock check` does
 * ```ts
 * import { probe, ProbeError } from "@healthsock/healthsock";
 * import type { ProbeErrorKind } from "@healthsock/healthsock";
 * const EXIT: Record<ProbeErrorKind, number> = { unreachable: 3, timeout: 4, busy: 4, protocol: 5 };
 * try {
 *   const result = await probe("/tmp/app.sock");
 *   Deno.exit(result.status === "fail" ? 1 : 0);
 * } catch (error) {
 *   if (!(error instanceof ProbeError)) throw error;
 *   Deno.exit(EXIT[error.kind]);
 * }
 * ```
 */
export class ProbeError extends Error {
  /** What went wrong. */
  readonly kind: ProbeErrorKind;
  /** The socket path. */
  readonly path: string;

  /**
   * Create the error.
   *
   * @param kind What went wrong.
   * @param path The socket path.
   * @param message The message.
   * @param options The underlying error.
   */
  constructor(kind: ProbeErrorKind, path: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProbeError";
    this.kind = kind;
    this.path = path;
  }
}

/**
 * Ask a health socket once.
 *
 * @param path The socket path.
 * @param options Target, framing, timeout and cancellation.
 * @returns The answer, whatever its status (`fail` included).
 * @throws {TypeError} When `target` asks for a `?watch` stream, which {@linkcode watch} follows.
 * @throws {ProbeError} When the socket is unreachable (`unreachable`), the
 * exchange takes longer than `timeout` (`timeout`), the server does not accept
 * the connection in that time or answers 503 with an error (`busy`), or the
 * answer is not a health report (`protocol`: another error answer, such as
 * 404, included).
 * @example
 * ```ts
 * import { probe } from "@healthsock/healthsock";
 * const result = await probe("/tmp/app.sock", { target: "/readyz", timeout: 1000 });
 * console.log(result.status);
 * ```
 */
export async function probe(path: string, options: ProbeOptions = {}): Promise<ProbeResult> {
  const { target = "/healthz", framing = "line", timeout = 5000, maxBytes = 1 << 20 } = options;
  checkTarget(target);
  if (asksToWatch(target)) {
    // The answer to ?watch never ends: waiting for its end would always time out.
    throw new TypeError(`Cannot probe "${target}": a ?watch target streams; follow it with watch() instead`);
  }
  const signal = combine(timeout, options.signal);
  const conn = await connect(path, signal);
  try {
    const request = framing === "line"
      ? `GET ${target}\n`
      : `GET ${target} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: healthsock\r\nConnection: close\r\n\r\n`;
    await guard(conn.write(encoder.encode(request)), signal, path);
    const bytes = await readAll(conn, signal, path, maxBytes);
    const answer = parseAnswer(bytes, framing);
    if (typeof answer === "string") throw new ProbeError("protocol", path, `${answer} (from "${path}")`);
    if (answer.error !== undefined && answer.code === 503) throw busy(path, answer.error);
    if (answer.error !== undefined || answer.status === undefined) {
      throw new ProbeError(
        "protocol",
        path,
        `"${path}" answered ${answer.code}: ${answer.error ?? "not a health report"}`,
      );
    }
    return { status: answer.status, code: answer.code, body: answer.body, report: answer.report, framing };
  } finally {
    try {
      conn.close();
    } catch { /* closed by the abort */ }
  }
}

/** Options of {@linkcode watch}. */
export interface WatchOptions {
  /** The endpoint to watch (without `?watch`). @default {"/healthz"} */
  target?: string;
  /** Milliseconds to connect and receive the first report. @default {5000} */
  timeout?: number;
  /** Ends the watch. @default {undefined} */
  signal?: AbortSignal;
}

/**
 * Follow a `?watch` stream in line mode: yields the current report, then one
 * each time the status changes, until the server ends the stream or `signal`
 * aborts.
 *
 * @param path The socket path.
 * @param options Target, first-answer timeout and cancellation.
 * @returns An async iterator of reports.
 * @throws {ProbeError} As {@linkcode probe} does; `protocol` when the server does not stream.
 * @example
 * ```ts
 * import { watch } from "@healthsock/healthsock";
 * for await (const report of watch("/tmp/app.sock", { target: "/readyz" })) {
 *   console.log(report.status);
 * }
 * ```
 */
export async function* watch(path: string, options: WatchOptions = {}): AsyncGenerator<HealthReport> {
  const { target = "/healthz", timeout = 5000, signal } = options;
  checkTarget(target);
  const first = combine(timeout, signal);
  const conn = await connect(path, first);
  const onAbort = () => {
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const separator = target.includes("?") ? "&" : "?";
    await guard(conn.write(encoder.encode(`GET ${target}${separator}watch\n`)), first, path);
    let buffered = "";
    let received = 0;
    const chunk = new Uint8Array(16384);
    for (;;) {
      const read = conn.read(chunk);
      const n = received === 0 ? await guard(read, first, path) : await read.catch((error) => {
        if (signal?.aborted) return null;
        throw error;
      });
      if (n === null) return;
      buffered += decoder.decode(chunk.subarray(0, n), { stream: true });
      if (buffered.length > 1 << 20) throw new ProbeError("protocol", path, `"${path}" sent a line over 1 MiB`);
      let lf: number;
      while ((lf = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, lf);
        buffered = buffered.slice(lf + 1);
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch {
          throw new ProbeError("protocol", path, `"${path}" sent a line that is not JSON: "${line.slice(0, 64)}"`);
        }
        if (!isHealthReport(value)) {
          const { error, code } = (value ?? {}) as { error?: unknown; code?: unknown };
          if (typeof error === "string" && code === 503) throw busy(path, error);
          throw new ProbeError(
            "protocol",
            path,
            `"${path}" does not stream ${target}: ${typeof error === "string" ? error : "not a health report"}`,
          );
        }
        received++;
        yield value;
      }
    }
  } catch (error) {
    if (signal?.aborted && !(error instanceof ProbeError)) return;
    throw error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    onAbort();
  }
}

function checkTarget(target: string): void {
  if (!target.startsWith("/") || /[\s\0]/.test(target)) {
    throw new TypeError(`Cannot request "${target}": a target starts with "/" and has no spaces`);
  }
}

/**
 * Whether `target` asks for a `?watch` stream, as the server reads it.
 *
 * @param target A request target such as `/livez?watch`.
 * @returns True when its query turns `watch` on.
 */
export function asksToWatch(target: string): boolean {
  const route = parseTarget(target);
  return "watch" in route && route.watch;
}

function combine(timeout: number, signal: AbortSignal | undefined): AbortSignal {
  if (!(timeout > 0)) throw new RangeError(`Cannot use timeout ${timeout}: expected a positive number of ms`);
  const timer = AbortSignal.timeout(timeout);
  return signal ? AbortSignal.any([timer, signal]) : timer;
}

/** The server answered that it cannot take the request now (503 with an error object). */
function busy(path: string, message: string): ProbeError {
  return new ProbeError("busy", path, `"${path}" answered 503, too busy to answer: ${message}`);
}

/** How long to wait before connecting again to a server whose accept backlog is full. */
const BACKLOG_RETRY_MS = 25;

async function connect(path: string, signal: AbortSignal): Promise<Deno.UnixConn> {
  for (;;) {
    const attempt = Deno.connect({ transport: "unix", path });
    try {
      return await guard(attempt, signal, path);
    } catch (error) {
      attempt.then((conn) => conn.close(), () => {});
      if (error instanceof ProbeError) throw error;
      // A full accept backlog (EAGAIN) clears as soon as the server accepts
      // again: try until the timeout, then say the server is not accepting.
      if (!(error instanceof Deno.errors.WouldBlock)) throw await unreachable(error, path);
      await delay(BACKLOG_RETRY_MS, signal);
      if (signal.aborted) throw notAccepting(signal, path, error);
    }
  }
}

function notAccepting(signal: AbortSignal, path: string, cause: unknown): ProbeError {
  const reason = signal.reason;
  if (!(reason instanceof DOMException && reason.name === "TimeoutError")) return aborted(signal, path);
  return new ProbeError(
    "busy",
    path,
    `Cannot connect to "${path}": the server is not accepting connections (its backlog stayed full); it is stalled or overloaded`,
    { cause },
  );
}

async function unreachable(error: unknown, path: string): Promise<ProbeError> {
  const options = { cause: error };
  const cannot = (why: string) => new ProbeError("unreachable", path, `Cannot connect to "${path}": ${why}`, options);
  if (error instanceof Deno.errors.NotCapable) {
    return cannot(`Deno lacks permission; run with ${permissionFlags(path)}`);
  }
  if (error instanceof Deno.errors.NotFound) {
    const directory = path.slice(0, path.lastIndexOf("/")) || "/";
    switch (await directoryState(directory)) {
      case "missing":
        return cannot(
          `the directory "${directory}" does not exist; check the path, or start the server that creates it`,
        );
      case "not-a-directory":
        return cannot(`"${directory}" is not a directory; check the path`);
      case "present":
        return cannot("no socket there; is the server running?");
      default:
        return cannot(`no socket there, or no directory "${directory}"; is the server running, and is the path right?`);
    }
  }
  if (error instanceof Deno.errors.NotADirectory) {
    return cannot("a part of the path is a file, not a directory; check the path");
  }
  if (error instanceof Deno.errors.ConnectionRefused) {
    const kind = await kindOf(path);
    if (kind) return cannot(`${kind} is there, not a socket; check the path`);
    return cannot("connection refused; the socket is stale or its server stopped");
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return cannot(
      "permission denied; check that this user may write the socket (its owner, group and mode) and search its directory",
    );
  }
  return cannot(error instanceof Error ? error.message : String(error));
}

/** What is at `path` when it is not a socket ("a regular file", "a directory"…), or undefined for a socket or nothing. */
async function kindOf(path: string): Promise<string | undefined> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    return undefined;
  }
  if (info.isFile) return "a regular file";
  if (info.isDirectory) return "a directory";
  if (info.isFifo) return "a named pipe (FIFO)";
  if (info.isCharDevice || info.isBlockDevice) return "a device";
  return undefined;
}

/**
 * Whether the socket's directory exists, when Deno may look (a client granted
 * only the socket path may not: then "unknown", and the message names both).
 */
async function directoryState(directory: string): Promise<"present" | "missing" | "not-a-directory" | "unknown"> {
  if ((await Deno.permissions.query({ name: "read", path: directory })).state !== "granted") return "unknown";
  try {
    return (await Deno.stat(directory)).isDirectory ? "present" : "not-a-directory";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "missing";
    if (error instanceof Deno.errors.NotADirectory) return "not-a-directory";
    return "unknown";
  }
}

/** Settle with `work`, or reject with a timeout/cancel ProbeError when `signal` aborts first. */
function guard<T>(work: Promise<T>, signal: AbortSignal, path: string): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(aborted(signal, path));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(aborted(signal, path));
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, (error) => {
      if (error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe) {
        reject(new ProbeError("protocol", path, `"${path}" closed the connection before answering`, { cause: error }));
      } else reject(error);
    }).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function aborted(signal: AbortSignal, path: string): ProbeError {
  const reason = signal.reason;
  if (reason instanceof DOMException && reason.name === "TimeoutError") {
    return new ProbeError("timeout", path, `No answer from "${path}" in time`, { cause: reason });
  }
  return new ProbeError("timeout", path, `Probe of "${path}" cancelled`, { cause: reason });
}

async function readAll(conn: Deno.Conn, signal: AbortSignal, path: string, maxBytes: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const chunk = new Uint8Array(16384);
  for (;;) {
    let n: number | null;
    try {
      n = await guard(conn.read(chunk), signal, path);
    } catch (error) {
      // A server that closes with our request unread resets the connection after its answer.
      if (error instanceof ProbeError && error.kind === "protocol" && total > 0) break;
      throw error;
    }
    if (n === null) break;
    total += n;
    if (total > maxBytes) throw new ProbeError("protocol", path, `"${path}" answered more than ${maxBytes} bytes`);
    chunks.push(chunk.slice(0, n));
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}
