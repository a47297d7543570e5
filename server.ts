/**
 * The health server: claims a Unix socket path, answers probes in line mode
 * and HTTP/1.1, drains and releases the path on shutdown.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Health } from "./health.ts";
import {
  encodeHead,
  encodeResponse,
  errorResponse,
  HEALTH_JSON,
  httpStatus,
  isUnterminatedLine,
  parseRequest,
  parseTarget,
  permissionFlags,
  renderVerbose,
  sniffFraming,
  temporaryPath,
  withholdDetails,
} from "./protocol.ts";
import type { Framing, HealthReport, ParseResult, ProtocolError, Request, Response, Route } from "./protocol.ts";

const logger = getLogger(["healthsock", "server"]);

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /** The socket file's mode; 0o660 lets the file's group connect. @default {0o600} */
  mode?: number;
  /** Aborting it drains the server, as {@linkcode HealthServer.drain} does. @default {undefined} */
  signal?: AbortSignal;
  /** Show why checks failed; `false` withholds each check's `output`. @default {true} */
  details?: boolean;
  /** Milliseconds `drain()` keeps answering, with `/readyz` failing, before it stops accepting. @default {0} */
  drainDelay?: number;
  /** Milliseconds `drain()` waits for requests in progress before closing them. @default {5000} */
  shutdownTimeout?: number;
  /** Largest request line plus headers, in bytes; larger gets 414/431 and a close. @default {8192} */
  maxHeaderBytes?: number;
  /** Milliseconds to receive a complete request; slower gets 408 and a close. @default {5000} */
  requestTimeout?: number;
  /** Milliseconds an idle keep-alive connection is kept. @default {5000} */
  idleTimeout?: number;
  /** Milliseconds of quiet after which an unterminated line-mode request (`GET /healthz` with no newline) is answered. @default {50} */
  lineQuiet?: number;
  /** Milliseconds a response may take to be written before the connection is dropped (a client that does not read). @default {5000} */
  writeTimeout?: number;
  /** Requests served on one keep-alive connection before it is closed. @default {100} */
  maxRequestsPerConnection?: number;
  /** Connections served at once; more get a short 503 and a close. @default {64} */
  maxConnections?: number;
  /** Milliseconds between re-evaluations of watched reports (`?watch`). @default {1000} */
  watchInterval?: number;
}

/** A running health server. */
export interface HealthServer extends AsyncDisposable {
  /** The socket path. */
  readonly path: string;
  /** Settles once the server has stopped and released its socket. */
  readonly finished: Promise<void>;
  /** The number of open connections. */
  readonly connections: number;
  /**
   * Shut down gracefully: `/readyz` fails with "shutting down", the server
   * keeps answering for `drainDelay`, stops accepting, waits up to
   * `shutdownTimeout` for requests in progress, then closes and removes the
   * socket. Idempotent.
   */
  drain(): Promise<void>;
  /** Shut down now: stop accepting, close every connection, remove the socket. Idempotent; cuts a drain short. */
  close(): Promise<void>;
}

/** Why a socket path could not be served. */
export type SocketErrorReason =
  | "in-use"
  | "not-a-socket"
  | "foreign"
  | "missing-directory"
  | "path-too-long"
  | "permission"
  | "not-capable";

/**
 * The socket path cannot be served: in use, not a socket, another user's, or not permitted.
 *
 * @example Tell "already serving" from other failures
 * ```ts
 * import { Health } from "./health.ts";
 * import { serve, SocketError } from "./server.ts";
 * try {
 *   await serve("/tmp/app.sock", new Health());
 * } catch (error) {
 *   if (error instanceof SocketError && error.reason === "in-use") console.error(error.message);
 *   else throw error;
 * }
 * ```
 */
export class SocketError extends Error {
  /** The socket path. */
  readonly path: string;
  /** What stood in the way. */
  readonly reason: SocketErrorReason;

  /**
   * Create the error.
   *
   * @param path The socket path.
   * @param reason What stood in the way.
   * @param message The message.
   * @param options The underlying error.
   */
  constructor(path: string, reason: SocketErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SocketError";
    this.path = path;
    this.reason = reason;
  }
}

// sun_path holds 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH = 107;
const TIMEOUT = Symbol("timeout");
const QUIET = Symbol("quiet");
const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/**
 * Serve a {@linkcode Health} on a Unix socket.
 *
 * The socket is bound at a temporary sibling (`PATH.tmp`), given its mode,
 * then renamed onto `path`, so it never exists at `path` with the wrong mode
 * and a stale socket is replaced atomically. A live socket, a file that is
 * not a socket, or another user's socket at `path` is refused untouched. On
 * shutdown the socket is removed only if it is still the one this server
 * created (same device and inode).
 *
 * @param path The absolute socket path.
 * @param health The checks and lifecycle to serve.
 * @param options Mode, limits, drain timing and cancellation.
 * @returns The running server.
 * @throws {TypeError} When `path` is not absolute.
 * @throws {SocketError} When the path cannot be served.
 * @example Serve until SIGTERM
 * ```ts
 * import { Health } from "./health.ts";
 * import { serve } from "./server.ts";
 * const health = new Health({ ready: true }).add("db", () => "pass");
 * await using server = await serve("/tmp/app.sock", health, { mode: 0o660 });
 * Deno.addSignalListener("SIGTERM", () => server.drain());
 * await server.finished;
 * ```
 */
export async function serve(
  path: string,
  health: Health,
  options: ServeOptions = {},
): Promise<HealthServer> {
  if (!path.startsWith("/")) {
    throw new TypeError(`Cannot serve on "${path}": the socket path must be absolute`);
  }
  const settings = resolveOptions(options);
  const claimed = await claim(path, settings.mode);
  const server = new Server(path, health, claimed, settings);
  options.signal?.addEventListener("abort", () => server.drain(), { once: true });
  if (options.signal?.aborted) server.drain();
  return server;
}

type Settings = Required<Omit<ServeOptions, "signal">>;

function resolveOptions(options: ServeOptions): Settings {
  const settings: Settings = {
    mode: options.mode ?? 0o600,
    details: options.details ?? true,
    drainDelay: options.drainDelay ?? 0,
    shutdownTimeout: options.shutdownTimeout ?? 5000,
    maxHeaderBytes: options.maxHeaderBytes ?? 8192,
    requestTimeout: options.requestTimeout ?? 5000,
    idleTimeout: options.idleTimeout ?? 5000,
    lineQuiet: options.lineQuiet ?? 50,
    writeTimeout: options.writeTimeout ?? 5000,
    maxRequestsPerConnection: options.maxRequestsPerConnection ?? 100,
    maxConnections: options.maxConnections ?? 64,
    watchInterval: options.watchInterval ?? 1000,
  };
  if (!Number.isInteger(settings.mode) || settings.mode < 0 || settings.mode > 0o777) {
    throw new RangeError(`Cannot use mode ${settings.mode}: expected a permission mode such as 0o600`);
  }
  for (const [name, value] of Object.entries(settings)) {
    // Timers clamp delays over 2^31-1 ms to 1 ms; no limit here needs more.
    if (typeof value === "number" && !(value >= 0 && value <= 2 ** 31 - 1)) {
      throw new RangeError(`Cannot use ${name} ${value}: expected a number from 0 to ${2 ** 31 - 1}`);
    }
  }
  return settings;
}

interface Claimed {
  listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr>;
  dev: number;
  ino: number | null;
}

async function claim(path: string, mode: number): Promise<Claimed> {
  const tmp = temporaryPath(path);
  if (encoder.encode(tmp).length > MAX_SOCKET_PATH) {
    throw new SocketError(
      path,
      "path-too-long",
      `Cannot listen on "${path}": a Unix socket path may have at most ${
        MAX_SOCKET_PATH - 4
      } bytes here (the server also binds "${tmp}"); choose a shorter path`,
    );
  }
  try {
    const existing = await lstat(path);
    if (existing && !existing.isSocket) {
      throw new SocketError(
        path,
        "not-a-socket",
        `Cannot listen on "${path}": a ${
          existing.isDirectory ? "directory" : "file"
        } that is not a socket is there; remove it or choose another path`,
      );
    }
    if (existing && await answers(path)) {
      throw new SocketError(path, "in-use", `Cannot listen on "${path}": another process is serving it`);
    }
    const stranded = await lstat(tmp);
    if (stranded) {
      if (!stranded.isSocket || await answers(tmp)) {
        throw new SocketError(
          path,
          "in-use",
          `Cannot listen on "${path}": "${tmp}" is in use; is another server starting?`,
        );
      }
      await Deno.remove(tmp);
    }
    const listener = listen(path, tmp);
    try {
      await Deno.chmod(tmp, mode);
      const mine = await Deno.lstat(tmp);
      if (existing && existing.uid !== mine.uid) {
        throw new SocketError(
          path,
          "foreign",
          `Cannot listen on "${path}": the socket there belongs to uid ${existing.uid}, not to this user; remove it as that user`,
        );
      }
      await Deno.rename(tmp, path);
      if (existing) logger.info("Replaced a stale socket at {path}", { path });
      return { listener, dev: mine.dev, ino: mine.ino };
    } catch (error) {
      listener.close(); // Deno unlinks the temporary name
      throw error;
    }
  } catch (error) {
    throw toSocketError(error, path);
  }
}

function listen(path: string, tmp: string): Deno.Listener<Deno.UnixConn, Deno.UnixAddr> {
  try {
    return Deno.listen({ transport: "unix", path: tmp });
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new SocketError(path, "in-use", `Cannot listen on "${path}": "${tmp}" is in use`, { cause: error });
    }
    throw error;
  }
}

function toSocketError(error: unknown, path: string): unknown {
  if (error instanceof SocketError) return error;
  if (error instanceof Deno.errors.NotCapable) {
    return new SocketError(
      path,
      "not-capable",
      `Cannot listen on "${path}": Deno lacks permission; run with ${permissionFlags(path, true)}`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.NotFound) {
    const dir = path.slice(0, path.lastIndexOf("/")) || "/";
    return new SocketError(
      path,
      "missing-directory",
      `Cannot listen on "${path}": directory "${dir}" does not exist; create it first`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    const dir = path.slice(0, path.lastIndexOf("/")) || "/";
    return new SocketError(
      path,
      "permission",
      `Cannot listen on "${path}": permission denied; this user must be able to write directory "${dir}"`,
      { cause: error },
    );
  }
  return error;
}

async function lstat(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Whether a socket accepts connections; a socket that takes over a second to accept counts as live. */
async function answers(path: string): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const attempt = Deno.connect({ transport: "unix", path });
  try {
    const conn = await Promise.race([
      attempt,
      new Promise<typeof TIMEOUT>((resolve) => timer = setTimeout(resolve, 1000, TIMEOUT)),
    ]);
    if (conn === TIMEOUT) {
      attempt.then((late) => late.close(), () => {});
      return true;
    }
    conn.close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused || error instanceof Deno.errors.NotFound) return false;
    if (error instanceof Deno.errors.PermissionDenied) return false; // not ours: the owner check refuses it
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

interface Entry {
  conn: Deno.UnixConn;
  /** A request is being answered: drain waits for it. */
  busy: boolean;
  /** `performance.now()` past which the sweeper expires the connection; 0 for none. */
  deadline: number;
  /** What the sweeper does at the deadline (a 408 before closing, or just closing). */
  expire: () => void;
  /** Ends a `?watch` stream. */
  stopWatch?: () => void;
}

class Server implements HealthServer {
  readonly path: string;
  readonly finished: Promise<void>;
  #health: Health;
  #claimed: Claimed;
  #settings: Settings;
  #entries = new Set<Entry>();
  #tasks = new Set<Promise<void>>();
  #closing = false;
  #shutdown?: Promise<void>;
  #hurry = new AbortController();
  #settled = Promise.withResolvers<void>();
  #date = "";
  #dateAt = 0;
  #accepting: Promise<void>;
  #prepared = new WeakMap<HealthReport, Map<string, Prepared>>();
  #routes = new Map<string, Route | ProtocolError>();
  // One interval per server enforces every connection's deadline: a timer
  // per read and write cost a fifth of the server's CPU per request.
  #sweeper: ReturnType<typeof setInterval>;
  #period: number;
  // performance.now() as of the last sweep: deadlines count from it plus one
  // period, so they never fire early and cost no clock read per request.
  #clock = performance.now();
  // Read buffers of finished connections, for the next ones.
  #buffers: Uint8Array[] = [];

  constructor(path: string, health: Health, claimed: Claimed, settings: Settings) {
    this.path = path;
    this.#health = health;
    this.#claimed = claimed;
    this.#settings = settings;
    this.finished = this.#settled.promise;
    health.start();
    logger.info("Serving health on {path} (mode {mode})", {
      path,
      mode: settings.mode.toString(8).padStart(4, "0"),
    });
    const shortest = Math.min(settings.requestTimeout, settings.idleTimeout, settings.writeTimeout);
    this.#period = Math.min(250, Math.max(10, shortest / 4));
    this.#sweeper = setInterval(() => this.#sweep(), this.#period);
    this.#accepting = this.#acceptLoop();
  }

  #sweep(): void {
    const now = performance.now();
    this.#clock = now;
    for (const entry of this.#entries) {
      if (entry.deadline !== 0 && now >= entry.deadline) {
        entry.deadline = 0;
        entry.expire();
      }
    }
  }

  get connections(): number {
    return this.#entries.size;
  }

  drain(): Promise<void> {
    this.#shutdown ??= this.#stop(true);
    return this.#shutdown;
  }

  close(): Promise<void> {
    this.#hurry.abort();
    this.#shutdown ??= this.#stop(false);
    return this.#shutdown;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #stop(graceful: boolean): Promise<void> {
    try {
      this.#health.markDraining();
      const { drainDelay, shutdownTimeout } = this.#settings;
      if (graceful && drainDelay > 0) {
        logger.info("Draining {path}: answering for {ms} ms more", { path: this.path, ms: drainDelay });
        await sleep(drainDelay, this.#hurry.signal);
      }
      this.#closing = true;
      try {
        this.#claimed.listener.close();
      } catch { /* already closed */ }
      for (const entry of this.#entries) {
        if (entry.stopWatch) entry.stopWatch();
        else if (!entry.busy) closeQuietly(entry.conn);
      }
      if (graceful && this.#entries.size > 0) {
        const patience = new AbortController();
        const hurry = AbortSignal.any([patience.signal, this.#hurry.signal]);
        await Promise.race([Promise.allSettled([...this.#tasks]), sleep(shutdownTimeout, hurry)]);
        patience.abort();
      }
      for (const entry of this.#entries) closeQuietly(entry.conn);
      await Promise.allSettled([...this.#tasks]);
      // Deno unlinks the listener's bound name (the temporary sibling) only
      // once its pending accept has ended; wait for that, or the unlink could
      // hit the temporary socket of a server started right after this one.
      await this.#accepting;
      clearInterval(this.#sweeper);
      await this.#release();
    } finally {
      this.#health.stop();
      this.#health.markStopped();
      logger.info("Stopped serving {path}", { path: this.path });
      this.#settled.resolve();
    }
  }

  async #release(): Promise<void> {
    const current = await lstat(this.path).catch(() => null);
    if (current && current.dev === this.#claimed.dev && current.ino === this.#claimed.ino) {
      await Deno.remove(this.path).catch((error) => {
        logger.warn("Cannot remove {path}: {error}", { path: this.path, error: String(error) });
      });
    } else if (current) {
      logger.warn("Left {path} alone: it is no longer the socket this server created", { path: this.path });
    }
  }

  async #acceptLoop(): Promise<void> {
    const { listener } = this.#claimed;
    for (;;) {
      let conn: Deno.UnixConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        // EMFILE and the like: keep serving once descriptors free up.
        logger.error("Cannot accept a connection on {path}: {error}", { path: this.path, error: String(error) });
        await sleep(100, this.#hurry.signal);
        if (this.#hurry.signal.aborted) return;
        continue;
      }
      if (this.#entries.size >= this.#settings.maxConnections) {
        this.#track(this.#refuse(conn));
        continue;
      }
      const entry: Entry = { conn, busy: false, deadline: 0, expire: () => closeQuietly(conn) };
      this.#entries.add(entry);
      this.#track(this.#serveConnection(entry));
    }
  }

  /** Keep a connection's task until it settles, for shutdown to wait on. */
  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    // #serveConnection and #refuse never reject: a then() is all it takes.
    task.then(() => this.#tasks.delete(task));
  }

  /** Over the connection limit: a short 503 without reading, so a flood cannot hold probes off. */
  async #refuse(conn: Deno.UnixConn): Promise<void> {
    logger.warn("Refused a connection on {path}: {limit} connections are open", {
      path: this.path,
      limit: this.#settings.maxConnections,
    });
    const response = errorResponse({ code: 503, message: "Too many connections; try again", framing: "http" });
    try {
      // A few hundred bytes into a new connection's empty buffer: the write cannot block.
      await conn.write(encodeResponse(response, "http", { date: this.#httpDate() }));
    } catch {
      /* the client went away */
    } finally {
      closeQuietly(conn);
    }
  }

  async #serveConnection(entry: Entry): Promise<void> {
    const { conn } = entry;
    const settings = this.#settings;
    const chunk = this.#buffers.pop() ?? new Uint8Array(4096);
    let readAhead = false;
    const debug = logger.isEnabledFor("debug");
    let pending: Uint8Array = EMPTY;
    let served = 0;
    let http = false;
    let started = false;
    let reading = false;
    let quiet: { promise: Promise<typeof QUIET>; timer: ReturnType<typeof setTimeout> } | undefined;
    entry.expire = () => {
      // Past a write deadline the client is not reading: nothing more can be sent.
      if (!reading || !started) return closeQuietly(conn);
      // A request begun and not finished in time: say so, then close.
      const framing = http ? "http" : sniffFraming(pending);
      const bytes = encodeResponse(timeoutResponse(pending, framing), framing, { date: this.#httpDate() });
      conn.write(bytes).catch(() => {}).finally(() => closeQuietly(conn));
    };
    try {
      for (;;) {
        // Read one request: the first within requestTimeout of connecting,
        // later ones within idleTimeout of the previous answer, and each
        // within requestTimeout of its first byte. Blank lines between
        // requests are tolerated (RFC 9112 §2.2) and start nothing.
        started = served === 0 || hasContent(pending);
        entry.deadline = this.#clock + this.#period + (started ? settings.requestTimeout : settings.idleTimeout);
        let final = false;
        let parsed: ParseResult;
        reading = true;
        for (;;) {
          parsed = parseRequest(pending, { final, maxHeaderBytes: settings.maxHeaderBytes });
          if (parsed.kind !== "incomplete" || final) break;
          if (!started && hasContent(pending)) {
            started = true;
            entry.deadline = this.#clock + this.#period + settings.requestTimeout;
          }
          // The first chunk is parsed in place; keep it only as a copy, as the next read reuses the buffer.
          if (pending.buffer === chunk.buffer) pending = pending.slice();
          let n: number | null | typeof QUIET;
          if (served === 0 && isUnterminatedLine(pending)) {
            quiet ??= quietTimer(settings.lineQuiet);
            n = await Promise.race([conn.read(chunk), quiet.promise]);
          } else {
            n = await conn.read(chunk);
          }
          if (n === QUIET) readAhead = true; // that read may still fill the buffer
          if (n === QUIET || n === null) {
            final = true;
            continue;
          }
          pending = pending.length === 0 ? chunk.subarray(0, n) : concat(pending, chunk.subarray(0, n));
          if (quiet) {
            // Quiet means no byte for lineQuiet ms: restart the count.
            clearTimeout(quiet.timer);
            quiet = undefined;
          }
        }
        entry.deadline = 0;
        reading = false;
        if (parsed.kind === "empty" || parsed.kind === "incomplete") return;
        if (parsed.kind === "error") {
          const error = http ? { ...parsed.error, framing: "http" as const } : parsed.error;
          if (debug) {
            logger.debug("Server refused a request: {code} {message}", { code: error.code, message: error.message });
          }
          await this.#write(entry, prepare(errorResponse(error)), error.framing, false, false);
          return;
        }
        const { request, size } = parsed;
        if (http && request.framing !== "http") {
          // Once a connection speaks HTTP it is answered in HTTP: a bare line here is malformed.
          const error = {
            code: 400,
            message: "Expected an HTTP request line on this connection",
            framing: "http",
          } as const;
          await this.#write(entry, prepare(errorResponse(error)), "http", false, false);
          return;
        }
        http = request.framing === "http";
        pending = pending.subarray(size);
        served++;
        if (debug) logger.debug("Server got: {request}", { request: request.line });
        const route = this.#route(request.target);
        if (!("code" in route) && route.watch) {
          await this.#watch(entry, request, route);
          return;
        }
        entry.busy = true;
        let response: Prepared;
        try {
          const answer = this.#answer(request, route);
          response = answer instanceof Promise ? await answer : answer;
        } catch (error) {
          logger.error("Cannot answer {request}: {error}", { request: request.line, error: String(error) });
          const failure = { code: 500, message: "The server could not build its answer", framing: request.framing };
          response = prepare(errorResponse(failure));
        }
        const keepAlive = request.keepAlive && !final && !this.#closing &&
          served < settings.maxRequestsPerConnection && response.response.code !== 400;
        const bytes = await this.#write(entry, response, request.framing, request.method === "HEAD", keepAlive);
        if (debug) logger.debug("Server responded with {bytes} bytes.", { bytes });
        entry.busy = false;
        if (!keepAlive || this.#closing) return;
      }
    } catch (error) {
      if (!isDisconnect(error)) {
        logger.warn("Connection on {path} failed: {error}", { path: this.path, error: String(error) });
      }
    } finally {
      entry.deadline = 0;
      if (quiet) clearTimeout(quiet.timer);
      entry.busy = false;
      closeQuietly(conn);
      this.#entries.delete(entry);
      if (!readAhead && this.#buffers.length < this.#settings.maxConnections) this.#buffers.push(chunk);
    }
  }

  /** Parse a target, remembering the first few seen: probes ask the same few targets again and again. */
  #route(target: string): Route | ProtocolError {
    let route = this.#routes.get(target);
    if (route === undefined) {
      route = parseTarget(target);
      if (this.#routes.size < 64) this.#routes.set(target, route);
    }
    return route;
  }

  /** The answer to a request: synchronous when the report is at hand, as it is for most probes. */
  #answer(request: Request, route: Route | ProtocolError): Prepared | Promise<Prepared> {
    if ("code" in route) return prepare(errorResponse({ ...route, framing: request.framing }));
    const missing = this.#unknownCheck(route, request.framing);
    if (missing) return missing;
    const { endpoint, check } = route;
    const report = this.#health.evaluate(endpoint, { check, exclude: route.exclude });
    return report instanceof Promise ? report.then((done) => this.#render(done, route)) : this.#render(report, route);
  }

  /** The 404 for `/ENDPOINT/NAME` when that endpoint has no such check. */
  #unknownCheck({ endpoint, check }: Route, framing: Framing): Prepared | undefined {
    if (check === undefined || this.#health.has(check, endpoint)) return undefined;
    return prepare(errorResponse({ code: 404, message: `No check named "${check}" on /${endpoint}`, framing }));
  }

  /** Health returns the same report object while nothing changed: encode it once. */
  #render(report: HealthReport, { endpoint, verbose }: Route): Prepared {
    const variant = verbose ? `verbose:${endpoint}` : "json";
    let variants = this.#prepared.get(report);
    let prepared = variants?.get(variant);
    if (!prepared) {
      const shown = this.#settings.details ? report : withholdDetails(report);
      prepared = prepare(
        verbose
          ? { code: httpStatus(report.status), contentType: TEXT, body: renderVerbose(shown, endpoint) }
          : { code: httpStatus(report.status), contentType: HEALTH_JSON, body: JSON.stringify(shown) },
      );
      if (!variants) this.#prepared.set(report, variants = new Map());
      variants.set(variant, prepared);
    }
    return prepared;
  }

  /** The report a watch stream sends; details are withheld by {@linkcode Server.#render}. */
  async #report(route: Route): Promise<HealthReport> {
    try {
      return await this.#health.evaluate(route.endpoint, { check: route.check, exclude: route.exclude });
    } catch (error) {
      // A check that vanished between has() and report(): answer as absent.
      logger.warn("Cannot build a report: {error}", { error: String(error) });
      return { status: "fail", checks: {}, output: "report unavailable" };
    }
  }

  /** Write a prepared response in a framing; see {@linkcode Server.#send}. */
  #write(entry: Entry, prepared: Prepared, framing: Framing, head: boolean, keepAlive: boolean): Promise<number> {
    let bytes = prepared.line;
    if (framing === "http") {
      const top = encodeHead(prepared.response, prepared.body.length, { keepAlive, date: this.#httpDate() });
      bytes = head ? top : concat(top, prepared.body);
    }
    return this.#send(entry, bytes);
  }

  /**
   * `?watch`: send the report now and again whenever its status changes; one
   * JSON line each in line mode, server-sent events in HTTP. Reports are
   * computed one at a time and only after the previous one was written, so a
   * slow reader gets fewer reports, never a growing buffer.
   */
  async #watch(entry: Entry, request: Request, route: Route): Promise<void> {
    const { conn } = entry;
    const http = request.framing === "http";
    const missing = this.#unknownCheck(route, request.framing);
    if (missing) {
      await this.#write(entry, missing, request.framing, false, false);
      return;
    }
    const stop = new AbortController();
    entry.stopWatch = () => stop.abort();
    let wake = Promise.withResolvers<void>();
    const onChange = () => wake.resolve();
    this.#health.addEventListener("change", onChange);
    const timer = setInterval(onChange, this.#settings.watchInterval);
    stop.signal.addEventListener("abort", onChange);
    // A read that ends means the client went away.
    conn.read(new Uint8Array(256)).then(() => stop.abort(), () => stop.abort());
    const idle = route.watchTimeout;
    try {
      if (http) {
        const head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n" +
          `Connection: close\r\nDate: ${this.#httpDate()}\r\n\r\n`;
        await this.#send(entry, encoder.encode(head));
        if (request.method === "HEAD") return;
      }
      let last: string | undefined;
      let changedAt = performance.now();
      for (;;) {
        // Evaluate once more after a stop, so a drain's last change (readyz
        // "shutting down") reaches the watcher before the stream ends.
        const stopping = stop.signal.aborted;
        const report = await this.#report(route);
        if (report.status !== last) {
          last = report.status;
          changedAt = performance.now();
          const { body } = this.#render(report, route).response;
          const frame = http ? `event: ${report.status}\ndata: ${body.replaceAll("\n", "\ndata: ")}\n\n` : `${body}\n`;
          await this.#send(entry, encoder.encode(frame));
        } else if (idle !== undefined && performance.now() - changedAt >= idle) {
          break;
        }
        if (stopping) break;
        await wake.promise;
        wake = Promise.withResolvers<void>();
      }
      if (http && this.#closing) {
        await this.#send(entry, encoder.encode("event: end\ndata: shutting down\n\n"));
      }
    } finally {
      clearInterval(timer);
      this.#health.removeEventListener("change", onChange);
    }
  }

  /** Write within writeTimeout: a client that does not read is dropped, never buffered for. */
  async #send(entry: Entry, bytes: Uint8Array): Promise<number> {
    entry.deadline = this.#clock + this.#settings.writeTimeout + this.#period;
    let written = 0;
    while (written < bytes.length) written += await entry.conn.write(bytes.subarray(written));
    entry.deadline = 0;
    return written;
  }

  /** The HTTP Date header, formatted at most once a second. */
  #httpDate(): string {
    const now = Date.now();
    if (now - this.#dateAt >= 1000) {
      this.#dateAt = now - (now % 1000);
      this.#date = new Date(now).toUTCString();
    }
    return this.#date;
  }
}

const TEXT = "text/plain; charset=utf-8";

/** A response with its bytes encoded once for both framings, reused while its report is unchanged. */
interface Prepared {
  response: Response;
  /** The whole line-mode answer: the body and `\n`. */
  line: Uint8Array;
  /** The HTTP body. */
  body: Uint8Array;
}

function prepare(response: Response): Prepared {
  return { response, line: encoder.encode(response.body + "\n"), body: encoder.encode(response.body) };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function timeoutResponse(pending: Uint8Array, framing: Framing): Response {
  return errorResponse({
    code: 408,
    message: `Request not complete in time (${pending.length} bytes received)`,
    framing,
  });
}

function hasContent(bytes: Uint8Array): boolean {
  return bytes.some((byte) => byte !== 0x0a && byte !== 0x0d);
}

function quietTimer(ms: number): { promise: Promise<typeof QUIET>; timer: ReturnType<typeof setTimeout> } {
  const { promise, resolve } = Promise.withResolvers<typeof QUIET>();
  return { promise, timer: setTimeout(resolve, ms, QUIET) };
}

function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected || error instanceof Deno.errors.TimedOut;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
