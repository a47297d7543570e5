/**
 * The health server: claims a Unix socket path (socket_file.ts), accepts
 * connections and decides which to keep (admission), hands each to a
 * {@linkcode Connection} (connection.ts), and drains and releases the path on
 * shutdown.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Health, HealthSource } from "./health.ts";
import { Connection, Responder } from "./connection.ts";
import { delay, MAX_DELAY } from "./delay.ts";
import { MAX_HEADER_BYTES } from "./protocol.ts";
import type { ConnectionHost, ConnectionLimits } from "./connection.ts";
import { claim, release } from "./socket_file.ts";
import type { ClaimedSocket } from "./socket_file.ts";
import { serveBeside } from "./worker_host.ts";

export { SocketError } from "./socket_file.ts";
export type { SocketErrorReason } from "./socket_file.ts";

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
  /**
   * Milliseconds `drain()` waits for requests in progress before closing them
   * and aborting the checks still running for them. @default {5000}
   */
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
  /**
   * Connections held at once, waiting for or answering a request. At the cap a
   * newcomer takes the place of the connection that has waited longest without
   * a complete request; only when every one is answering does it get a 503
   * "busy" in its request's framing. @default {64}
   */
  maxConnections?: number;
  /**
   * `?watch` streams held at once, apart from `maxConnections`. At the cap the oldest stream whose client has
   * shut its sending side makes room; if there is none, the newcomer gets a 503 "busy". @default {16}
   */
  maxWatchers?: number;
  /** Milliseconds between re-evaluations of watched reports (`?watch`). @default {1000} */
  watchInterval?: number;
  /**
   * Where the socket is served: `"worker"`, beside the app in a Worker, so probes are answered
   * within milliseconds whatever the main thread does; or `"main"`, on the main thread's event
   * loop, which saves the Worker's memory (a few MiB) but leaves probes waiting while the app's
   * synchronous work holds the loop. @default {"worker"}
   */
  thread?: "worker" | "main";
  /**
   * With `thread: "worker"`: milliseconds the main thread's event loop may go without turning
   * before `/readyz` (and `/healthz`) fail, naming the event loop; they pass again once it turns. @default {1000}
   */
  readyBlockLimit?: number;
  /**
   * With `thread: "worker"`: milliseconds the main thread's event loop may go without turning
   * before `/livez` (and `/startupz`) fail: busy is not dead, wedged is. @default {10000}
   */
  liveBlockLimit?: number;
}

/** A running health server. */
export interface HealthServer extends AsyncDisposable {
  /** The socket path. */
  readonly path: string;
  /** Settles once the server has stopped and released its socket. */
  readonly finished: Promise<void>;
  /** The number of open connections, watch streams included. */
  readonly connections: number;
  /**
   * Shut down gracefully: `/readyz` fails with "shutting down", the server
   * keeps answering for `drainDelay`, stops accepting, waits up to
   * `shutdownTimeout` for requests in progress, then aborts the checks still
   * running, closes and removes the socket. Ends within `drainDelay +
   * shutdownTimeout` and a moment, whatever the checks do. Idempotent.
   */
  drain(): Promise<void>;
  /** Shut down now: stop accepting, abort running checks, close every connection, remove the socket. Idempotent; cuts a drain short. */
  close(): Promise<void>;
}

/**
 * Serve a {@linkcode Health} on a Unix socket.
 *
 * The socket is served from a Worker by default (`thread: "worker"`), beside
 * the app: checks still run on the thread that added them, and the Worker
 * answers from their latest results, running an on-request check on the main
 * thread while that thread turns. Every report then carries a `mainloop`
 * entry saying how long the main thread's event loop has been blocked.
 *
 * The path is claimed for this server alone (a lock file `PATH.lock` is held
 * while it serves), and the socket is bound inside a private directory
 * (`PATH.tmp/`), given its mode, then renamed onto `path`: it never exists
 * at `path` with the wrong mode, nobody can connect before the mode is set,
 * and a stale socket is replaced atomically. A live socket, a file that is not
 * a socket, or another user's socket at `path` is refused untouched. On
 * shutdown the socket is removed only if it is still the one this server
 * created (same device and inode).
 *
 * @param path The absolute socket path.
 * @param health The checks and lifecycle to serve.
 * @param options Mode, limits, drain timing and cancellation.
 * @returns The running server.
 * @throws {TypeError} When `path` is not absolute.
 * @throws {RangeError} When an option is out of range.
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
  const server = settings.thread === "worker"
    ? await serveBeside(path, health, settings)
    : startServer(health, await claim(path, settings.mode), settings);
  options.signal?.addEventListener("abort", () => server.drain(), { once: true });
  if (options.signal?.aborted) server.drain();
  return server;
}

/** {@linkcode ServeOptions} with their defaults, `signal` aside. */
export type Settings = Required<Omit<ServeOptions, "signal">>;

/**
 * Fill in the defaults and check the ranges.
 *
 * @param options The options given.
 * @returns The settings.
 * @throws {RangeError} When an option is out of range.
 */
export function resolveOptions(options: ServeOptions): Settings {
  const settings: Settings = {
    mode: options.mode ?? 0o600,
    details: options.details ?? true,
    drainDelay: options.drainDelay ?? 0,
    shutdownTimeout: options.shutdownTimeout ?? 5000,
    maxHeaderBytes: options.maxHeaderBytes ?? MAX_HEADER_BYTES,
    requestTimeout: options.requestTimeout ?? 5000,
    idleTimeout: options.idleTimeout ?? 5000,
    lineQuiet: options.lineQuiet ?? 50,
    writeTimeout: options.writeTimeout ?? 5000,
    maxRequestsPerConnection: options.maxRequestsPerConnection ?? 100,
    maxConnections: options.maxConnections ?? 64,
    maxWatchers: options.maxWatchers ?? 16,
    watchInterval: options.watchInterval ?? 1000,
    thread: options.thread ?? "worker",
    readyBlockLimit: options.readyBlockLimit ?? 1000,
    liveBlockLimit: options.liveBlockLimit ?? 10_000,
  };
  if (settings.thread !== "worker" && settings.thread !== "main") {
    throw new RangeError(`Cannot use thread "${settings.thread}": expected "worker" or "main"`);
  }
  if (!Number.isInteger(settings.mode) || settings.mode < 0 || settings.mode > 0o777) {
    throw new RangeError(`Cannot use mode ${settings.mode}: expected a permission mode such as 0o600`);
  }
  for (const [name, value] of Object.entries(settings)) {
    // Timers clamp longer delays to 1 ms; no limit here needs more.
    if (typeof value === "number" && !(value >= 0 && value <= MAX_DELAY)) {
      throw new RangeError(`Cannot use ${name} ${value}: expected a number from 0 to ${MAX_DELAY}`);
    }
  }
  return settings;
}

/**
 * Serve a claimed socket on this thread.
 *
 * @param health What to answer from.
 * @param claimed The claimed socket.
 * @param settings The settings.
 * @returns The running server.
 */
export function startServer(health: HealthSource, claimed: ClaimedSocket, settings: Settings): HealthServer {
  return new Server(health, claimed, settings);
}

// How long shutdown waits for connections to finish once they are closed and
// their checks aborted: they end within a turn or two; this is the bound.
const LAST_WAIT = 1000;
// Milliseconds a newcomer has to send its request before it may be closed to
// make room: a probe writes its request as it connects, and this is ample time
// for the server to read it, even on a loaded machine.
const GRACE = 50;
// Newcomers being told the server is busy, at most (or maxConnections if larger).
const REFUSED = 256;

class Server implements HealthServer, ConnectionHost {
  readonly path: string;
  readonly finished: Promise<void>;
  readonly limits: ConnectionLimits;
  readonly responder: Responder;
  debug = false;
  #health: HealthSource;
  #claimed: ClaimedSocket;
  #settings: Settings;
  /** Connections waiting for or answering a request: these count against maxConnections. */
  #connections = new Set<Connection>();
  /** `?watch` streams: these count against maxWatchers. */
  #watchers = new Set<Connection>();
  /** Newcomers told the server is busy. */
  #refused = new Set<Connection>();
  /** Connections served or refused and not yet ended: shutdown waits for these. */
  #live = 0;
  /** Resolved when #live next reaches 0, for a shutdown waiting on it. */
  #allEnded?: PromiseWithResolvers<void>;
  #closing = false;
  #healthStopped = false;
  #shutdown?: Promise<void>;
  #hurry = new AbortController();
  #stopped = Promise.withResolvers<void>();
  #accepting: Promise<void>;
  #order = 0;
  // One interval per server enforces every connection's deadline: a timer
  // per read and write cost a fifth of the server's CPU per request. It runs
  // only while there are connections: an idle server does not wake.
  #sweeper?: ReturnType<typeof setInterval>;
  #period: number;
  // performance.now() as of the last sweep: deadlines count from it plus one
  // period, so they never fire early and cost no clock read per request.
  #clock = performance.now();
  // Read buffers of finished connections, for the next ones.
  #buffers: Uint8Array[] = [];

  constructor(health: HealthSource, claimed: ClaimedSocket, settings: Settings) {
    this.path = claimed.path;
    this.#health = health;
    this.#claimed = claimed;
    this.#settings = settings;
    this.limits = settings;
    this.responder = new Responder(health, settings.details);
    this.finished = this.#stopped.promise;
    health.start();
    logger.info("Serving health on {path} (mode {mode})", {
      path: this.path,
      mode: settings.mode.toString(8).padStart(4, "0"),
    });
    const shortest = Math.min(settings.requestTimeout, settings.idleTimeout, settings.writeTimeout);
    this.#period = Math.min(250, Math.max(10, shortest / 4));
    this.#accepting = this.#acceptLoop();
  }

  get connections(): number {
    return this.#connections.size + this.#watchers.size + this.#refused.size;
  }

  get closing(): boolean {
    return this.#closing;
  }

  deadlineIn(ms: number): number {
    return this.#clock + this.#period + ms;
  }

  startWatch(connection: Connection): boolean {
    if (this.#watchers.size >= this.#settings.maxWatchers) {
      // A line-mode client that half-closed (socat, nc -N) and then left is noticed only at the
      // next write: at the cap, the oldest such stream makes room before anyone is refused.
      const gone = oldest(this.#watchers, (watcher) => watcher.inputEnded);
      if (gone) {
        this.#watchers.delete(gone);
        gone.close();
      }
    }
    if (this.#watchers.size >= this.#settings.maxWatchers) {
      logger.warn("Refused a watch stream on {path}: {limit} are open", {
        path: this.path,
        limit: this.#settings.maxWatchers,
      });
      return false;
    }
    // A watch stream leaves the connection slots: it never takes a probe's place.
    this.#connections.delete(connection);
    this.#watchers.add(connection);
    return true;
  }

  takeBuffer(): Uint8Array {
    return this.#buffers.pop() ?? new Uint8Array(4096);
  }

  giveBuffer(buffer: Uint8Array): void {
    if (this.#buffers.length < this.#settings.maxConnections) this.#buffers.push(buffer);
  }

  nextOrder(): number {
    return ++this.#order;
  }

  // Connections report their end themselves: a then() chain per connection to
  // learn it cost two promises and two closures per request in line mode.
  ended(connection: Connection): void {
    this.#connections.delete(connection);
    this.#watchers.delete(connection);
    this.#refused.delete(connection);
    if (--this.#live === 0 && this.#allEnded) {
      this.#allEnded.resolve();
      this.#allEnded = undefined;
    }
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

  /** Run the sweeper, if it is not running: there are connections to watch over. */
  #wake(): void {
    if (this.#sweeper !== undefined) return;
    this.#clock = performance.now();
    this.debug = logger.isEnabledFor("debug");
    this.#sweeper = setInterval(() => this.#sweep(), this.#period);
  }

  #sweep(): void {
    if (this.connections === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
      return;
    }
    const now = performance.now();
    this.#clock = now;
    // Asking the logger once per connection showed in the line-mode profile:
    // ask once a sweep instead (a logging change shows within a period).
    this.debug = logger.isEnabledFor("debug");
    for (const set of [this.#connections, this.#watchers, this.#refused]) {
      for (const connection of set) {
        if (connection.deadline !== 0 && now >= connection.deadline) {
          connection.deadline = 0;
          connection.expire();
        }
      }
    }
  }

  *#all(): Iterable<Connection> {
    yield* this.#connections;
    yield* this.#watchers;
    yield* this.#refused;
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
        await delay(100, this.#hurry.signal);
        if (this.#hurry.signal.aborted) return;
        continue;
      }
      let victim: Connection | undefined;
      while (this.#connections.size >= this.#settings.maxConnections) {
        const now = performance.now();
        victim = longestWaiting(this.#connections, (connection) => now - connection.acceptedAt >= GRACE);
        const wait = victim ? undefined : this.#untilEligible(now);
        if (wait === undefined) break; // a victim, or every slot is answering
        // Every waiting connection arrived within GRACE: in a burst or a
        // reconnecting flood, accepting outruns reading, and a probe whose
        // request is already here must not be taken for an idle connection.
        // Wait until the oldest has had its grace, then choose again.
        await delay(Math.max(1, wait), this.#hurry.signal);
        if (this.#closing) {
          conn.close();
          return;
        }
      }
      this.#admit(conn, victim);
    }
  }

  /** Milliseconds until a waiting connection is past its grace; undefined when none is waiting. */
  #untilEligible(now: number): number | undefined {
    let wait: number | undefined;
    for (const connection of this.#connections) {
      if (connection.state !== "waiting") continue;
      const left = Math.max(0, connection.acceptedAt + GRACE - now);
      if (wait === undefined || left < wait) wait = left;
    }
    return wait;
  }

  /**
   * Take a new connection. At the cap, make room by closing `victim`, the
   * connection that has waited longest without a complete request (an idle or
   * half-sent one cannot hold a probe off); when there is none, every slot is
   * answering a request, and the newcomer is told the server is busy, in its
   * own request's framing.
   */
  #admit(conn: Deno.UnixConn, victim: Connection | undefined): void {
    this.#wake();
    const connection = new Connection(conn, this, ++this.#order);
    const { maxConnections } = this.#settings;
    if (this.#connections.size >= maxConnections) {
      if (victim) {
        this.#connections.delete(victim);
        victim.close();
      } else {
        if (this.#refused.size >= Math.max(REFUSED, maxConnections)) {
          // The busy answers have a cap too: make room the same way, or give up on the newcomer.
          const stale = longestWaiting(this.#refused);
          if (!stale) return connection.close();
          this.#refused.delete(stale);
          stale.close();
        }
        logger.warn("Server on {path} is busy: {limit} connections are answering", {
          path: this.path,
          limit: maxConnections,
        });
        this.#refused.add(connection);
        this.#live++;
        connection.refuseBusy();
        return;
      }
    }
    this.#connections.add(connection);
    this.#live++;
    connection.serve();
  }

  async #stop(graceful: boolean): Promise<void> {
    try {
      this.#health.markDraining();
      const { drainDelay, shutdownTimeout } = this.#settings;
      if (graceful && drainDelay > 0) {
        logger.info("Draining {path}: answering for {ms} ms more", { path: this.path, ms: drainDelay });
        await delay(drainDelay, this.#hurry.signal);
      }
      this.#closing = true;
      try {
        this.#claimed.listener.close();
      } catch { /* already closed */ }
      for (const connection of this.#all()) connection.stop();
      if (graceful && this.#live > 0) await within(this.#settled(), shutdownTimeout, this.#hurry.signal);
      // Whatever is still running is cut short: checks are aborted, connections closed.
      this.#stopHealth();
      for (const connection of this.#all()) connection.close();
      await within(this.#settled(), LAST_WAIT);
      // Deno unlinks the listener's bound name (the temporary name) only once
      // its pending accept has ended; wait for that before the lock is given up.
      await within(this.#accepting, LAST_WAIT);
      clearInterval(this.#sweeper);
      release(this.#claimed);
    } finally {
      clearInterval(this.#sweeper);
      this.#stopHealth();
      this.#health.markStopped();
      logger.info("Stopped serving {path}", { path: this.path });
      this.#stopped.resolve();
    }
  }

  /** Every connection has ended. */
  #settled(): Promise<void> {
    if (this.#live === 0) return Promise.resolve();
    return (this.#allEnded ??= Promise.withResolvers<void>()).promise;
  }

  #stopHealth(): void {
    if (this.#healthStopped) return;
    this.#healthStopped = true;
    this.#health.stop();
  }
}

/** The connection that has waited longest without a complete request, among those `eligible`. */
function longestWaiting(
  connections: Iterable<Connection>,
  eligible: (connection: Connection) => boolean = () => true,
): Connection | undefined {
  return oldest(connections, (connection) => connection.state === "waiting" && eligible(connection));
}

/** Of the connections that `keep`, the one whose wait for a request began first. */
function oldest(connections: Iterable<Connection>, keep: (connection: Connection) => boolean): Connection | undefined {
  let found: Connection | undefined;
  for (const connection of connections) {
    if (keep(connection) && (!found || connection.waitingSince < found.waitingSince)) found = connection;
  }
  return found;
}

/** Wait for `work`, for at most `ms` (less if `signal` aborts); never rejects. */
async function within(work: Promise<unknown>, ms: number, signal?: AbortSignal): Promise<void> {
  const done = new AbortController();
  try {
    await Promise.race([
      work.catch(() => {}),
      delay(ms, signal ? AbortSignal.any([signal, done.signal]) : done.signal),
    ]);
  } finally {
    done.abort();
  }
}
