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
import { Connection } from "./connection.ts";
import { Responder } from "./responder.ts";
import { delay, MAX_DELAY, within } from "./delay.ts";
import { MAX_HEADER_BYTES } from "./protocol.ts";
import type { Route } from "./protocol.ts";
import type { HealthReport } from "./report.ts";
import type { ConnectionHost, ConnectionLimits } from "./connection.ts";
import { claim, release } from "./socket_file.ts";
import type { ClaimedSocket } from "./socket_file.ts";

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
   * Connections held at once, waiting for a request or answering one (watch
   * streams apart). A flood of idle or half-sent connections fills this set
   * before it delays anyone, so it is as large as descriptors allow: at the
   * cap, or when the process runs out of descriptors, a newcomer takes the
   * place of the connection that has waited longest without a complete
   * request (one that connected within the last 50 ms may stay over the cap
   * for that long, so a probe whose request is on its way is not dropped).
   * Only when every one is answering does a newcomer get a 503 "busy" in its
   * request's framing. A waiting connection costs about 8 KiB. Earlier
   * versions defaulted to 64. @default {16384}
   */
  maxConnections?: number;
  /**
   * Requests answered at once: a complete request arriving while this many are
   * being answered (their checks still running) gets a 503 "busy" at once. An
   * answer that is only waiting for its client to read does not count: such
   * writers are held to this many apart, the longest-stalled closed first.
   * @default {maxConnections if that is set, else 64}
   */
  maxAnswering?: number;
  /**
   * `?watch` streams held at once, apart from `maxConnections`. At the cap a
   * stream whose client has left makes room (a line-mode client that shut its
   * sending side is written to, to find out); while every follower still
   * reads, the newcomer gets a 503 "busy". Whoever can connect can hold these
   * slots. A follower costs about 22 KiB and a write per change (streams of
   * one target share each evaluation). Earlier versions defaulted to 16.
   * @default {256}
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
 * import { Health } from "@healthsock/healthsock";
 * import { serve } from "@healthsock/healthsock";
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
    // Loaded only for the Worker: it carries the Worker's whole source, which same-thread servers need not hold.
    ? await (await import("./worker_host.ts")).serveBeside(path, health, settings)
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
    maxConnections: options.maxConnections ?? 16384,
    // maxConnections bounded answers too, before there was maxAnswering: a program that set it keeps that.
    maxAnswering: options.maxAnswering ?? options.maxConnections ?? 64,
    maxWatchers: options.maxWatchers ?? 256,
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
// Milliseconds a newcomer may stay over the connection cap before it can be
// closed to make room: a probe writes its request as it connects, and this is
// ample time for the server to read it. Accepting never waits for it.
const GRACE = 50;
// The same at a hard limit (out of descriptors, or the ceiling over the cap),
// where a connection closed unread is a probe lost: longer, for a client that
// was descheduled between connecting and writing on a busy machine.
const HARD_GRACE = 100;
// Newcomers being told the server is busy, at most (or maxConnections if larger).
const MAX_REFUSED = 256;
// Descriptors kept free once accepting ran out of them (for the app and for newcomers being let in).
const DESCRIPTOR_MARGIN = 32;
// Milliseconds over which refusals and evictions are counted before they are logged.
const TALLY_PERIOD = 10_000;
// How long a newcomer at the watch cap waits to learn whether half-closed followers are still there.
const PRESENCE_WAIT = 100;

/** What admission did, counted per period and logged as counts, not one line each. */
interface Tally {
  /** Connections closed to make room for a newcomer. */
  evicted: number;
  /** Requests answered 503 busy: every answering slot was taken. */
  busy: number;
  /** Watch streams refused: every follower still reads. */
  watchers: number;
  /** Answers given up on: their clients did not read them, and other stalled writers waited. */
  stalled: number;
  /** Accepts that failed for lack of descriptors. */
  descriptors: number;
}

class Server implements HealthServer, ConnectionHost {
  readonly path: string;
  readonly finished: Promise<void>;
  readonly limits: ConnectionLimits;
  readonly responder: Responder;
  debug = false;
  #health: HealthSource;
  #claimed: ClaimedSocket;
  #settings: Settings;
  /**
   * Connections without a complete request, in the order they began waiting:
   * the first has waited longest, and is the first closed to make room.
   */
  #waiting = new Set<Connection>();
  /** Connections answering a request (building or writing its answer). */
  #busy = new Set<Connection>();
  /** Answers being built now: these count against maxAnswering. */
  #answering = 0;
  /** `?watch` streams: these count against maxWatchers. */
  #watchers = new Set<Connection>();
  /** Newcomers told the server is busy. */
  #refused = new Set<Connection>();
  /**
   * Newcomers let in at the cap while every waiting connection was within its
   * grace: each still owes the closing of the longest-waiting one, once it is
   * past its grace (the sweeper closes them).
   */
  #owed = 0;
  /**
   * Connections open when accepting last ran out of descriptors, less a margin:
   * from then on room is made as each newcomer arrives, rather than after a
   * failed accept.
   */
  #descriptorCap = Infinity;
  /** Turns the accept loop has waited at a hard limit: see #ripe. */
  #turns = 0;
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
  // One interval per server enforces every connection's deadline: a timer
  // per read and write cost a fifth of the server's CPU per request. It runs
  // only while there are connections: an idle server does not wake.
  #sweeper?: ReturnType<typeof setInterval>;
  #period: number;
  // performance.now() as of the last sweep: deadlines count from it plus one
  // period, so they never fire early and cost no clock read per request.
  #clock = performance.now();
  /** Sweeps so far: a write still pending two sweeps after it began is stalled. */
  sweeps = 0;
  // Read buffers of finished connections, for the next ones.
  #buffers: Uint8Array[] = [];
  #tally: Tally = emptyTally();
  #tallyTimer?: ReturnType<typeof setTimeout>;
  // Watch streams wake together: one timer and one change listener per server,
  // and one report per route and wake, however many follow it.
  #watchTimer?: ReturnType<typeof setInterval>;
  #watchWakers = new Set<() => void>();
  #watchReports = new Map<string, Promise<HealthReport>>();
  #onChange = () => this.#wakeWatchers();

  constructor(health: HealthSource, claimed: ClaimedSocket, settings: Settings) {
    this.path = claimed.path;
    this.#health = health;
    this.#claimed = claimed;
    this.#settings = settings;
    this.limits = settings;
    this.responder = new Responder(health, settings.details);
    this.finished = this.#stopped.promise;
    health.startChecks();
    logger.info("Serving health on {path} (mode {mode})", {
      path: this.path,
      mode: settings.mode.toString(8).padStart(4, "0"),
    });
    const shortest = Math.min(settings.requestTimeout, settings.idleTimeout, settings.writeTimeout);
    this.#period = Math.min(250, Math.max(10, shortest / 4));
    this.#accepting = this.#acceptLoop();
  }

  get connections(): number {
    return this.#waiting.size + this.#busy.size + this.#watchers.size + this.#refused.size;
  }

  get closing(): boolean {
    return this.#closing;
  }

  deadlineIn(ms: number): number {
    return this.#clock + this.#period + ms;
  }

  waiting(connection: Connection): void {
    this.#busy.delete(connection);
    // Re-adding moves it to the end: the first of the set has waited longest.
    this.#waiting.delete(connection);
    this.#waiting.add(connection);
  }

  startAnswer(connection: Connection): boolean {
    this.#waiting.delete(connection);
    this.#busy.add(connection);
    if (this.#answering >= this.#settings.maxAnswering) {
      this.#note("busy");
      return false;
    }
    this.#answering++;
    return true;
  }

  endAnswer(): void {
    this.#answering--;
  }

  async startWatch(connection: Connection): Promise<boolean> {
    const { maxWatchers } = this.#settings;
    if (this.#watchers.size >= maxWatchers) {
      // A line-mode follower that shut its sending side (socat, nc -N, ncat) may
      // still be reading, or may have left: only a write tells. Those that left
      // make room; one that still reads is never dropped for a newcomer.
      const halfClosed = [...this.#watchers].filter((watcher) => watcher.inputEnded);
      const gone: Connection[] = [];
      const asking = halfClosed.map((watcher) =>
        watcher.stillThere().then((there) => {
          if (!there) gone.push(watcher);
        })
      );
      await within(Promise.allSettled(asking), PRESENCE_WAIT);
      for (const watcher of gone) this.#watchers.delete(watcher);
    }
    if (this.#watchers.size >= maxWatchers || connection.state === "closed") {
      this.#note("watchers");
      return false;
    }
    // A watch stream leaves the connection slots: it never takes a probe's place.
    this.#busy.delete(connection);
    this.#waiting.delete(connection);
    this.#watchers.add(connection);
    if (this.#watchTimer === undefined) {
      this.#watchTimer = setInterval(() => this.#wakeWatchers(), this.#settings.watchInterval);
      this.#health.addEventListener("change", this.#onChange);
    }
    return true;
  }

  onWatchWake(wake: () => void): () => void {
    this.#watchWakers.add(wake);
    return () => this.#watchWakers.delete(wake);
  }

  watchReport(route: Route): Promise<HealthReport> {
    const key = `${route.endpoint}\0${route.check ?? ""}\0${route.exclude.join("\0")}`;
    let report = this.#watchReports.get(key);
    if (report === undefined) {
      report = this.responder.report(route);
      this.#watchReports.set(key, report);
    }
    return report;
  }

  #wakeWatchers(): void {
    // Reports are shared for one wake: the next wake asks afresh.
    this.#watchReports.clear();
    for (const wake of this.#watchWakers) wake();
  }

  #stopWatchTimer(): void {
    clearInterval(this.#watchTimer);
    this.#watchTimer = undefined;
    this.#health.removeEventListener("change", this.#onChange);
    this.#watchReports.clear();
  }

  takeBuffer(): Uint8Array {
    return this.#buffers.pop() ?? new Uint8Array(BUFFER_SIZE);
  }

  giveBuffer(buffer: Uint8Array): void {
    if (this.#buffers.length < this.#settings.maxAnswering) this.#buffers.push(buffer);
  }

  // Connections report their end themselves: a then() chain per connection to
  // learn it cost two promises and two closures per request in line mode.
  ended(connection: Connection): void {
    this.#waiting.delete(connection);
    this.#busy.delete(connection);
    this.#refused.delete(connection);
    this.#watchers.delete(connection);
    if (this.#watchers.size === 0 && this.#watchTimer !== undefined) this.#stopWatchTimer();
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
    this.sweeps++;
    // Asking the logger once per connection showed in the line-mode profile:
    // ask once a sweep instead (a logging change shows within a period).
    this.debug = logger.isEnabledFor("debug");
    let stalled: Connection[] | undefined;
    for (const set of [this.#waiting, this.#busy, this.#watchers, this.#refused]) {
      for (const connection of set) {
        if (connection.deadline !== 0 && now >= connection.deadline) {
          connection.expire();
        } else if (connection.stalledSince !== 0 && connection.stalledSince <= this.sweeps - 1) {
          (stalled ??= []).push(connection);
        }
      }
    }
    // An answer its client does not read sits in the socket's buffer; hold a
    // bounded number of them, and give up on the longest-stalled first.
    if (stalled && stalled.length > this.#settings.maxAnswering) {
      stalled.sort((a, b) => a.stalledSince - b.stalledSince);
      for (const connection of stalled.slice(0, stalled.length - this.#settings.maxAnswering)) {
        this.#busy.delete(connection);
        this.#watchers.delete(connection);
        connection.close();
        this.#note("stalled");
      }
    }
    // The program's own use of descriptors changes: let the learnt limit creep up until accepting fails again.
    if (this.#descriptorCap !== Infinity) this.#descriptorCap++;
    // Newcomers let in at the cap while the others were young take their places now.
    const { maxConnections } = this.#settings;
    while (this.#owed > 0 && this.#held() >= maxConnections && this.#evict(now, false)) this.#owed--;
    if (this.#held() < maxConnections) this.#owed = 0;
  }

  *#all(): Iterable<Connection> {
    yield* this.#waiting;
    yield* this.#busy;
    yield* this.#watchers;
    yield* this.#refused;
  }

  /** Connections counted against maxConnections. */
  #held(): number {
    return this.#waiting.size + this.#busy.size;
  }

  /**
   * Accept every connection as it comes. Room is made as each arrives
   * (#admit), so a flood only ever closes its own oldest members and the
   * accept queue stays short enough for a probe to get through; accepting
   * waits only at a hard limit, for a connection that may be closed.
   */
  async #acceptLoop(): Promise<void> {
    const { listener } = this.#claimed;
    const { maxConnections } = this.#settings;
    const ceiling = maxConnections + Math.max(maxConnections, MAX_REFUSED);
    for (;;) {
      // At a hard limit (descriptors, or the ceiling over maxConnections) the
      // longest-waiting connection makes room before the next accept; if it is
      // still within its grace, wait for that: its request may be on its way,
      // and a probe must not be closed unread. Below these limits (up to
      // maxConnections, which defaults to thousands) accepting never waits.
      while (this.#live >= this.#descriptorCap || this.#held() >= ceiling) {
        const now = performance.now();
        const oldest = first(this.#waiting);
        if (oldest === undefined) break; // every one answering: newcomers are told so
        if (this.#live < this.#descriptorCap) {
          if (this.#ripe(oldest, now)) {
            this.#evict(now, true);
            continue;
          }
        } else {
          // A closed connection's descriptor is freed a turn later, when its
          // pending read is cancelled: make room for a few newcomers at a time.
          for (let i = 0; i < DESCRIPTOR_MARGIN; i++) {
            const victim = first(this.#waiting);
            if (victim === undefined || !this.#ripe(victim, now)) break;
            this.#evict(now, true);
          }
        }
        await delay(Math.max(0, oldest.waitingFrom + HARD_GRACE - now), this.#hurry.signal);
        this.#turns++;
        if (this.#closing) return;
      }
      let conn: Deno.UnixConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        if (outOfDescriptors(error)) {
          // From now on hold fewer, counting every connection not yet ended
          // (a closed one frees its descriptor a turn later).
          this.#note("descriptors");
          if (this.#live > DESCRIPTOR_MARGIN) this.#descriptorCap = this.#live - DESCRIPTOR_MARGIN;
          // Nothing of ours to close: wait for the program to free some.
          if (this.#waiting.size === 0) await delay(100, this.#hurry.signal);
        } else {
          logger.error("Cannot accept a connection on {path}: {error}", { path: this.path, error: String(error) });
          await delay(100, this.#hurry.signal);
        }
        if (this.#hurry.signal.aborted) return;
        continue;
      }
      this.#admit(conn);
    }
  }

  /**
   * Whether a connection may be closed at a hard limit: it was accepted
   * HARD_GRACE ago and at least two turns of the accept loop's waiting ago (each
   * lets the event loop poll reads), so a request that was there has been
   * read, however busy the loop.
   */
  #ripe(connection: Connection, now: number): boolean {
    return now - connection.waitingFrom >= HARD_GRACE && this.#turns - connection.turn >= 2;
  }

  /**
   * Close the connection that has waited longest without a complete request,
   * if it has had its grace (or `force`d: at a hard limit, see #ripe).
   * Returns whether one was closed.
   */
  #evict(now: number, force: boolean): boolean {
    const victim = first(this.#waiting);
    if (victim === undefined || (!force && now - victim.waitingFrom < GRACE)) return false;
    this.#waiting.delete(victim);
    victim.close();
    this.#note("evicted");
    return true;
  }

  /**
   * Take a new connection. At the cap, make room by closing the connection
   * that has waited longest without a complete request (an idle or half-sent
   * one cannot hold a probe off); while every waiting connection is younger
   * than its grace, the newcomer is taken over the cap (up to a ceiling the
   * accept loop keeps), and the sweeper closes the longest-waiting once it is
   * past its grace. When every connection is answering, the newcomer is told
   * the server is busy, in its own request's framing.
   */
  #admit(conn: Deno.UnixConn): void {
    this.#wake();
    const connection = new Connection(conn, this);
    connection.turn = this.#turns;
    const { maxConnections } = this.#settings;
    if (this.#held() >= maxConnections) {
      const now = performance.now();
      let room = this.#evict(now, false);
      if (!room && this.#waiting.size > 0) {
        // Every waiting connection is within its grace: let the newcomer in,
        // and close the longest-waiting once it is past it.
        room = true;
        this.#owed = Math.min(this.#owed + 1, Math.max(maxConnections, MAX_REFUSED));
      }
      if (!room) {
        if (this.#refused.size >= Math.max(MAX_REFUSED, maxConnections)) {
          // The busy answers have a cap too: make room the same way, or give up on the newcomer.
          const stale = first(this.#refused);
          if (!stale) return connection.close();
          this.#refused.delete(stale);
          stale.close();
        }
        this.#note("busy");
        this.#refused.add(connection);
        this.#live++;
        connection.refuseBusy();
        return;
      }
    }
    this.#waiting.add(connection);
    this.#live++;
    connection.serve();
  }

  /** Count an admission event; the first of a period is logged at once, the rest as a count at its end. */
  #note(kind: keyof Tally): void {
    this.#tally[kind]++;
    if (this.#tallyTimer !== undefined) return;
    this.#logTally();
    this.#tallyTimer = setTimeout(() => this.#flushTally(), TALLY_PERIOD);
  }

  #flushTally(): void {
    this.#tallyTimer = undefined;
    if (counted(this.#tally)) {
      this.#logTally();
      this.#tallyTimer = setTimeout(() => this.#flushTally(), TALLY_PERIOD);
    }
  }

  #logTally(): void {
    const { evicted, busy, watchers, stalled, descriptors } = this.#tally;
    this.#tally = emptyTally();
    const parts = [
      evicted && `closed ${evicted} waiting connection(s) to make room`,
      busy && `answered ${busy} request(s) 503 busy (${this.#settings.maxAnswering} answering at once)`,
      watchers && `refused ${watchers} watch stream(s) (${this.#settings.maxWatchers} open)`,
      stalled && `dropped ${stalled} client(s) that did not read their answers`,
      descriptors && `ran out of file descriptors ${descriptors} time(s)`,
    ].filter(Boolean);
    logger.warn("Server on {path} is under pressure: {what} (counted for {seconds} s)", {
      path: this.path,
      what: parts.join("; "),
      seconds: TALLY_PERIOD / 1000,
    });
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
      if (graceful && this.#live > 0) await within(this.#settled(), shutdownTimeout, { signal: this.#hurry.signal });
      // Whatever is still running is cut short: checks are aborted, connections closed.
      this.#stopHealth();
      for (const connection of this.#all()) connection.close();
      await within(this.#settled(), LAST_WAIT);
      // Deno unlinks the listener's bound name (the temporary name) only once
      // its pending accept has ended; wait for that before the lock is given up.
      await within(this.#accepting.catch(() => {}), LAST_WAIT);
      clearInterval(this.#sweeper);
      release(this.#claimed);
    } finally {
      clearInterval(this.#sweeper);
      this.#stopWatchTimer();
      clearTimeout(this.#tallyTimer);
      this.#tallyTimer = undefined;
      if (counted(this.#tally)) this.#logTally();
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
    this.#health.stopChecks();
  }
}

/** A period with nothing counted yet. */
function emptyTally(): Tally {
  return { evicted: 0, busy: 0, watchers: 0, stalled: 0, descriptors: 0 };
}

/** Whether anything was counted. */
function counted(tally: Tally): boolean {
  return Object.values(tally).some((count) => count > 0);
}

/** A read buffer's size: small, as a flood may hold thousands of waiting connections, each reading into one. */
const BUFFER_SIZE = 1024;

/** The first member of a set: the one added longest ago. */
function first<T>(set: Set<T>): T | undefined {
  for (const value of set) return value;
  return undefined;
}

/** EMFILE or ENFILE: the process or the system ran out of file descriptors. */
function outOfDescriptors(error: unknown): boolean {
  return /os error 2[34]\b|too many open files/i.test(String(error));
}
