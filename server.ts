/**
 * The health server: claims a Unix socket path (socket_file.ts), accepts
 * connections and decides which to keep (admission), hands each to a
 * {@linkcode Connection} (connection.ts), and drains and releases the path on
 * shutdown.
 *
 * @module
 */
import { getLogger } from "./log.ts";
import { madeOnRequest } from "./model.ts";
import type { HealthSource } from "./model.ts";
import { Connection } from "./connection.ts";
import { Responder } from "./responder.ts";
import { delay, MAX_DELAY, within } from "./delay.ts";
import { MAX_HEADER_BYTES } from "./protocol.ts";
import type { Route } from "./protocol.ts";
import type { HealthReport } from "./report.ts";
import type { ConnectionHost, ConnectionLimits } from "./connection.ts";
import { closeListener, release } from "./socket_file.ts";
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
   * before it delays anyone, so it is as large as descriptors allow. At the
   * cap a newcomer is let in over it (a 32nd more are kept, so that a flood
   * just past the cap leaves room in the kernel's accept queue), and once
   * what it sent has been read, the connection that has waited longest
   * without a complete request (a second at least) is closed: a connection
   * whose request has arrived is never closed unread. Only when every one is
   * answering does a newcomer get a 503 "busy" in its request's framing. A
   * waiting connection costs about 8 KiB.
   * @default {16384}
   */
  maxConnections?: number;
  /**
   * Requests answered at once (their checks running). A complete request
   * arriving while this many are being answered waits its turn, first come
   * first answered, for up to `requestTimeout`; it is answered 503 "busy"
   * only once that has passed, or when as many requests as `maxConnections`
   * are already waiting. An answer that is only waiting for its client to
   * read does not count: such writers are held to this many apart, the
   * longest-stalled closed first. Independent of `maxConnections`.
   * @default {64}
   */
  maxAnswering?: number;
  /**
   * `?watch` streams held at once, apart from `maxConnections`. At the cap a
   * stream whose client has left makes room (a line-mode client that shut its
   * sending side is written to, to find out); while every follower still
   * reads, the newcomer gets a 503 "busy". Whoever can connect can hold these
   * slots. A follower costs about 22 KiB and a write per change (streams of
   * one target share each evaluation).
   * @default {256}
   */
  maxWatchers?: number;
  /** Milliseconds between re-evaluations of watched reports (`?watch`). @default {1000} */
  watchInterval?: number;
  /**
   * Milliseconds an HTTP `?watch` stream may go without sending before it is sent an SSE comment line
   * (`: keep-alive`), so clients with a read timeout (undici and aiohttp: 300 s, httpx: 5 s) keep it open.
   * Checked at each `watchInterval`; 0 sends none. Line-mode streams only ever carry reports. @default {15000}
   */
  keepAlive?: number;
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
    maxAnswering: options.maxAnswering ?? 64,
    maxWatchers: options.maxWatchers ?? 256,
    watchInterval: options.watchInterval ?? 1000,
    keepAlive: options.keepAlive ?? 15_000,
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
export function startServer(
  health: HealthSource,
  claimed: ClaimedSocket,
  settings: Settings,
  onCount?: (open: number) => void,
): HealthServer {
  return new Server(health, claimed, settings, onCount);
}

// How long shutdown waits for connections to finish once they are closed and
// their checks aborted: they end within a turn or two; this is the bound.
const LAST_WAIT = 1000;
// Milliseconds a newcomer keeps its place before it may be closed to make
// room, and that a newcomer let in over the cap stays over it before the
// longest-waiting connection is closed for it. A probe writes its request as
// it connects: this is ample time, with the turns of the event loop counted
// in #ripe, for the server to have read it. Accepting never waits for it.
const GRACE = 50;
// The same at a hard limit (out of descriptors, or the ceiling over the cap),
// where accepting waits for it: longer, for a client that was descheduled
// between connecting and writing on a busy machine.
const HARD_GRACE = 100;
// Milliseconds a connection has waited, at least, before it is closed to make
// room below the hard limits. Turns of the event loop do not prove a read was
// polled: under a flood, accepts and reads share one budget per turn, and a
// probe's read was seen to wait longer than a thousand accepts. Newcomers stay
// over the cap meanwhile (up to the ceiling).
const EVICT_AGE = 1000;
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
  /** Requests answered 503 busy: no answering slot came within their deadline, or too many waited for one. */
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
  /**
   * Complete requests waiting for an answering slot, first come first
   * answered: each is told true when a slot is handed to it, false (answer
   * 503) when its deadline (#sweep) passes first.
   */
  #queue = new Map<Connection, { until: number; turn: (granted: boolean) => void }>();
  /** `?watch` streams: these count against maxWatchers. */
  #watchers = new Set<Connection>();
  /** Newcomers told the server is busy. */
  #refused = new Set<Connection>();
  /**
   * Newcomers let in over the cap, in the order they came: each owes the
   * closing of the longest-waiting connection once what it sent has been
   * read (#ripe), so the choice of whom to close is made knowing whether it
   * brought a request (#pay).
   */
  #owing: Connection[] = [];
  /** A turn of the event loop scheduled, to pay what newcomers owe. */
  #turnTimer?: ReturnType<typeof setTimeout>;
  /**
   * Connections open when accepting last ran out of descriptors, less a margin:
   * from then on room is made as each newcomer arrives, rather than after a
   * failed accept.
   */
  #descriptorCap = Infinity;
  /** Turns of the event loop counted (macrotasks run while admission waits on one): see #ripe. */
  #turns = 0;
  /** Connections served or refused and not yet ended: shutdown waits for these. */
  #live = 0;
  /** Told #live each time it changes (a Worker publishes it where the main thread reads it without asking). */
  #onCount?: (open: number) => void;
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
  // A change a run on request made was made by evaluating a report: waking on it would evaluate again, without end.
  #onChange = (event: Event) => {
    if (!madeOnRequest(event)) this.#wakeWatchers();
  };

  constructor(health: HealthSource, claimed: ClaimedSocket, settings: Settings, onCount?: (open: number) => void) {
    this.path = claimed.path;
    this.#onCount = onCount;
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

  startAnswer(connection: Connection): boolean | Promise<boolean> {
    this.#waiting.delete(connection);
    this.#busy.add(connection);
    if (this.#answering < this.#settings.maxAnswering && this.#queue.size === 0) {
      this.#answering++;
      return true;
    }
    // Load is slowness: wait for a slot, unless too many wait already.
    if (this.#queue.size >= this.#settings.maxConnections) {
      this.#note("busy");
      return false;
    }
    const { promise, resolve } = Promise.withResolvers<boolean>();
    this.#queue.set(connection, { until: this.#clock + this.#settings.requestTimeout, turn: resolve });
    return promise;
  }

  endAnswer(): void {
    // The slot goes to the request that has waited longest for one.
    const next = first(this.#queue.entries());
    if (next === undefined) {
      this.#answering--;
      return;
    }
    this.#queue.delete(next[0]);
    next[1].turn(true);
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
    const key = JSON.stringify([route.endpoint, route.check, route.exclude, route.tags]);
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
    this.#queue.get(connection)?.turn(false);
    this.#queue.delete(connection);
    this.#waiting.delete(connection);
    this.#busy.delete(connection);
    this.#refused.delete(connection);
    this.#watchers.delete(connection);
    if (this.#watchers.size === 0 && this.#watchTimer !== undefined) this.#stopWatchTimer();
    this.#count(-1);
    if (this.#live === 0 && this.#allEnded) {
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
    // Requests that waited for an answering slot until their deadline are told the server is busy.
    for (const [connection, { until, turn }] of this.#queue) {
      if (until > now) break; // first come, first due
      this.#queue.delete(connection);
      this.#note("busy");
      turn(false);
    }
    // The program's own use of descriptors changes: let the learnt limit creep up until accepting fails again.
    if (this.#descriptorCap !== Infinity) this.#descriptorCap++;
    this.#turns++;
    this.#pay(now);
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
          if (this.#evict(now, HARD_GRACE)) continue;
        } else {
          // A closed connection's descriptor is freed a turn later, when its
          // pending read is cancelled: make room for a few newcomers at a time.
          for (let i = 0; i < DESCRIPTOR_MARGIN && this.#evict(now, HARD_GRACE); i++);
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
   * Whether what a connection sent has been read: it was accepted `grace` ms
   * ago and at least two turns of the event loop ago (each polls reads), so
   * a request that was there has been read, however busy the loop.
   */
  #ripe(connection: Connection, now: number, grace = GRACE): boolean {
    return now - connection.waitingFrom >= grace && this.#turns - connection.turn >= 2;
  }

  /**
   * Close the connection that has waited longest without a complete request,
   * once what it sent has been read (#ripe, with `grace`). Returns whether one
   * was closed.
   */
  #evict(now: number, grace = GRACE): boolean {
    const victim = first(this.#waiting);
    if (victim === undefined || !this.#ripe(victim, now, grace)) return false;
    this.#waiting.delete(victim);
    victim.close();
    this.#note("evicted");
    return true;
  }

  /**
   * Close the longest-waiting connections owed by newcomers let in over the
   * cap, each once the newcomer has been read; while some are owed, count
   * turns of the event loop (a macrotask each) so that the reads are known
   * to have had their turn.
   */
  #pay(now: number): void {
    const { maxConnections } = this.#settings;
    // A 32nd over the cap is kept for newcomers: a flood a little larger than the cap then still leaves room in
    // the kernel's accept queue (1,024) for a probe to connect.
    const limit = maxConnections + (maxConnections >> 5);
    while (this.#owing.length > 0) {
      const newcomer = this.#owing[0];
      if (newcomer.state === "waiting" && !this.#ripe(newcomer, now)) break;
      // The newcomer was read: whatever it brought, it holds a place now, and the longest-waiting gives it up.
      if (this.#held() > limit && !this.#evict(now, EVICT_AGE)) break;
      this.#owing.shift();
    }
    if (this.#held() <= limit) this.#owing.length = 0;
    if (this.#owing.length > 0 && this.#turnTimer === undefined) {
      this.#turnTimer = setTimeout(() => {
        this.#turnTimer = undefined;
        this.#turns++;
        if (!this.#closing) this.#pay(performance.now());
      }, Math.max(1, Math.min(GRACE, this.#owing[0].waitingFrom + GRACE - now)));
    }
  }

  /**
   * Take a new connection. At the cap the newcomer is let in over it (up to a
   * ceiling the accept loop keeps), and once what it sent has been read, the
   * connection that has waited longest without a complete request is closed
   * (#pay): an idle or half-sent one cannot hold a probe off, and a probe is
   * never closed before its request was read. When every connection is
   * answering, the newcomer is told the server is busy, in its own request's
   * framing.
   */
  #admit(conn: Deno.UnixConn): void {
    this.#wake();
    const connection = new Connection(conn, this);
    connection.turn = this.#turns;
    const { maxConnections } = this.#settings;
    let over = false;
    if (this.#held() >= maxConnections) {
      this.#pay(performance.now());
      // Someone can make room: the newcomer comes in, and is paid for once read.
      over = this.#waiting.size > 0;
      if (!over) {
        if (this.#refused.size >= Math.max(MAX_REFUSED, maxConnections)) {
          // The busy answers have a cap too: make room the same way, or give up on the newcomer.
          const stale = first(this.#refused);
          if (!stale) return connection.close();
          this.#refused.delete(stale);
          stale.close();
        }
        this.#note("busy");
        this.#refused.add(connection);
        this.#count(+1);
        connection.refuseBusy();
        return;
      }
    }
    this.#waiting.add(connection);
    this.#count(+1);
    connection.serve();
    if (over) {
      this.#owing.push(connection);
      this.#pay(performance.now());
    }
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
      const closed = closeListener(this.#claimed);
      for (const connection of this.#all()) connection.stop();
      if (graceful && this.#live > 0) await within(this.#settled(), shutdownTimeout, { signal: this.#hurry.signal });
      // Whatever is still running is cut short: checks are aborted, connections closed.
      this.#stopHealth();
      for (const connection of this.#all()) connection.close();
      await within(this.#settled(), LAST_WAIT);
      // Deno unlinks the listener's bound name (the temporary name) only once
      // its pending accept has ended; wait for that before the lock is given up
      // and the directory it is in removed.
      const unbound = closed && await within(this.#accepting.then(() => true, () => true), LAST_WAIT, {
        otherwise: false,
      });
      clearInterval(this.#sweeper);
      release(this.#claimed, unbound);
    } finally {
      clearInterval(this.#sweeper);
      clearTimeout(this.#turnTimer);
      this.#owing.length = 0;
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

  /** One connection more or fewer to wait for; whoever asked is told the count. */
  #count(change: 1 | -1): void {
    this.#live += change;
    this.#onCount?.(this.#live);
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

/** The first member of a set or map: the one added longest ago. */
function first<T>(set: Iterable<T>): T | undefined {
  for (const value of set) return value;
  return undefined;
}

/** EMFILE or ENFILE: the process or the system ran out of file descriptors. */
function outOfDescriptors(error: unknown): boolean {
  return /os error 2[34]\b|too many open files/i.test(String(error));
}
