/**
 * systemd's notification protocol (sd_notify(3)) spoken from a
 * {@linkcode Health}: `READY=1` once `/readyz` passes, `WATCHDOG=1` while
 * `/livez` passes, `WATCHDOG=trigger` when it fails, `STOPPING=1` when a drain
 * starts. Each message is one datagram on the Unix socket named by
 * `NOTIFY_SOCKET`.
 *
 * Deno sends Unix datagrams only through `Deno.listenDatagram`, which needs
 * `--unstable-net` and a local path to bind; the socket is bound there and the
 * name removed at once (nothing ever answers to it).
 *
 * A send to a socket whose queue is full waits inside Deno until the receiver
 * reads, and closing the socket does not cancel it. So one loop sends, and
 * nothing else (start-up, readiness, a drain, close) waits on it for more than
 * a quarter of a second.
 *
 * @module
 */
import { getLogger } from "./log.ts";
import type { Health } from "./health.ts";
import { MAX_DELAY, milliseconds, within } from "./delay.ts";
import { madeOnRequest } from "./model.ts";
import { componentOf, escapeText } from "./report.ts";
import type { HealthReport } from "./report.ts";

const logger = getLogger(["healthsock", "notify"]);
const encoder = new TextEncoder();

/** The environment variables systemd sets for a `Type=notify` service that the notifier reads. */
export const NOTIFY_VARIABLES: readonly ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] = [
  "NOTIFY_SOCKET",
  "WATCHDOG_USEC",
  "WATCHDOG_PID",
];

/** The variables systemd sets, as {@linkcode notifySystemd} reads them. */
export interface NotifyEnvironment {
  /** The service manager's datagram socket: a path, or `@name` for an abstract socket. */
  NOTIFY_SOCKET?: string;
  /** The watchdog period in microseconds (`WatchdogSec=`). */
  WATCHDOG_USEC?: string;
  /** The process the watchdog is for; another process's means this one sends no pings. */
  WATCHDOG_PID?: string;
}

/** Options of {@linkcode notifySystemd}. */
export interface NotifyOptions {
  /** The variables to use instead of the process environment (which needs `--allow-env` for them). @default {read from Deno.env} */
  environment?: NotifyEnvironment;
  /** Aborting it stops notifying, as {@linkcode SystemdNotifier.close} does. @default {undefined} */
  signal?: AbortSignal;
  /** Milliseconds between evaluations of `/readyz` while the health is marked ready but `/readyz` still fails. @default {1000} */
  readyInterval?: number;
}

/** A running notifier; it stops by itself when the health is marked stopped. */
export interface SystemdNotifier extends AsyncDisposable {
  /** Whether messages go to systemd: `NOTIFY_SOCKET` is set and usable. */
  readonly active: boolean;
  /** Milliseconds between `WATCHDOG=1` pings (half of `WATCHDOG_USEC`), or undefined when this process has no watchdog. */
  readonly watchdogInterval: number | undefined;
  /** Settles once the notifier has stopped and its socket is closed. */
  readonly finished: Promise<void>;
  /** Stop notifying and close the socket. Idempotent. */
  close(): Promise<void>;
}

/** What `Deno.listenDatagram` returns, declared here because the API exists only with `--unstable-net`. */
interface DatagramConn {
  send(data: Uint8Array, address: { transport: "unixpacket"; path: string }): Promise<number>;
  close(): void;
}

type ListenDatagram = (options: { transport: "unixpacket"; path: string }) => DatagramConn;

/**
 * The Deno flags the notifier needs, besides the server's: `--unstable-net`,
 * read, write and `net=unix:` for the bind path, write and `net=unix:` for the
 * notify socket, and the three variables.
 *
 * @param bindPath Where the notifier binds its sending end.
 * @param notifySocket The value of `NOTIFY_SOCKET` (systemd's is `/run/systemd/notify`); an abstract name
 * (`@name`) can be reached only with an unscoped `--allow-net`, which is what is returned for it.
 * @returns The flags, space-separated.
 * @example
 * ```ts
 * import { notifyPermissionFlags } from "@healthsock/healthsock";
 * notifyPermissionFlags("/run/app/app.sock.notify", "/run/systemd/notify");
 * // "--unstable-net --allow-read=/run/app/app.sock.notify --allow-write=/run/app/app.sock.notify,/run/systemd/notify …"
 * ```
 */
export function notifyPermissionFlags(bindPath: string, notifySocket: string): string {
  // Deno checks an abstract name as `net=unix:` plus a NUL byte, which no flag
  // can list: only an unscoped --allow-net reaches it (and it is no file to write).
  const abstract = notifySocket.startsWith("@");
  return [
    "--unstable-net",
    `--allow-read=${bindPath}`,
    `--allow-write=${abstract ? bindPath : `${bindPath},${notifySocket}`}`,
    abstract ? "--allow-net" : `--allow-net=unix:${bindPath},unix:${notifySocket}`,
    `--allow-env=${NOTIFY_VARIABLES.join(",")}`,
  ].join(" ");
}

/**
 * Tell systemd what a {@linkcode Health} knows, per sd_notify(3), when
 * `NOTIFY_SOCKET` is set; when it is not, do nothing at all.
 *
 * - `STATUS=starting` at once; `READY=1` with a `STATUS=` summary
 *   (`ready: 3 checks pass`) once the health is marked ready and `/readyz`
 *   passes, evaluated on each change and every `readyInterval` until then.
 * - With `WATCHDOG_USEC` set (and `WATCHDOG_PID` unset or this process),
 *   `WATCHDOG=1` every half period while `/livez` passes; once it fails,
 *   `WATCHDOG=trigger` with a `STATUS=` naming the failed checks, and no more
 *   pings, so systemd acts at once.
 * - `STOPPING=1` with `STATUS=draining` when a drain starts.
 *
 * A socket that cannot be used (no permission, no `--unstable-net`, nothing
 * listening, not a socket, an abstract name Deno may not address) logs one
 * warning saying what to do and leaves the notifier inactive; it never throws
 * for that, so the server keeps serving.
 *
 * Sending never holds up serving, readiness or shutdown. When systemd's queue
 * is full (a service manager that does not read), one warning says so and the
 * notifier keeps only the newest message of each kind waiting (the newest
 * status, the newest ping; a trigger drops waiting pings) and drops the rest;
 * closing waits for none of it and logs how many went unsent. A send already
 * waiting stays pending in Deno until systemd reads or its socket goes: a
 * program that ends with `Deno.exit` (as the CLI does) is not held by it.
 *
 * @param health The health to report.
 * @param bindPath An absolute path Deno may bind the sending socket at (Deno
 *   cannot send from an unbound one); removed right after binding. A socket
 *   left there by an earlier run is replaced only when it is this user's (Deno
 *   tells the user with `--allow-sys=uid`); anything else there is left alone
 *   with a warning.
 * @param options The environment, cancellation and readiness polling.
 * @returns The notifier; inactive when `NOTIFY_SOCKET` is unset or unusable.
 * @throws {TypeError} When `bindPath` is not absolute.
 * @throws {RangeError} When `readyInterval` is not a positive number of milliseconds.
 * @example Notify systemd from a served health
 * ```ts
 * import { Health, notifySystemd, serve } from "@healthsock/healthsock";
 * const health = new Health();
 * await using server = await serve("/run/app/app.sock", health);
 * await using notifier = await notifySystemd(health, "/run/app/app.sock.notify");
 * health.markReady(); // READY=1 once /readyz passes
 * await server.finished;
 * ```
 */
export async function notifySystemd(
  health: Health,
  bindPath: string,
  options: NotifyOptions = {},
): Promise<SystemdNotifier> {
  if (!bindPath.startsWith("/")) {
    throw new TypeError(`Cannot bind "${bindPath}" to notify systemd: the path must be absolute`);
  }
  const readyInterval = options.readyInterval ?? 1000;
  milliseconds(readyInterval, "readyInterval");
  const env = options.environment ?? readEnvironment();
  if (env === undefined || !env.NOTIFY_SOCKET || options.signal?.aborted) return INACTIVE;
  const target = env.NOTIFY_SOCKET;
  const conn = open(target, bindPath);
  if (!conn) return INACTIVE;
  const notifier = new Notifier(health, conn, target, bindPath, watchdogInterval(env), readyInterval);
  await notifier.start();
  if (!notifier.active) return notifier;
  options.signal?.addEventListener("abort", () => notifier.close(), { once: true });
  return notifier;
}

const INACTIVE: SystemdNotifier = {
  active: false,
  watchdogInterval: undefined,
  finished: Promise.resolve(),
  close: () => Promise.resolve(),
  [Symbol.asyncDispose]: () => Promise.resolve(),
};

/** The three variables, or undefined (after a warning) when Deno may not read NOTIFY_SOCKET. */
function readEnvironment(): NotifyEnvironment | undefined {
  const env: NotifyEnvironment = {};
  for (const variable of NOTIFY_VARIABLES) {
    if (Deno.permissions.querySync({ name: "env", variable }).state !== "granted") {
      // Without NOTIFY_SOCKET nothing can be sent; without the watchdog pair
      // pings would be guessed, so ask for all three.
      logger.warn("Cannot notify systemd: Deno may not read {variable}; run with --allow-env={flags}", {
        variable,
        flags: NOTIFY_VARIABLES.join(","),
      });
      return undefined;
    }
    env[variable] = Deno.env.get(variable);
  }
  return env;
}

/** Half the watchdog period, when the watchdog is for this process. */
function watchdogInterval(env: NotifyEnvironment): number | undefined {
  if (!env.WATCHDOG_USEC) return undefined;
  if (env.WATCHDOG_PID && env.WATCHDOG_PID !== String(Deno.pid)) {
    logger.debug("Watchdog is for process {pid}, not this one ({self}): sending no pings", {
      pid: env.WATCHDOG_PID,
      self: Deno.pid,
    });
    return undefined;
  }
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isSafeInteger(usec) || usec <= 0) {
    logger.warn("Ignoring WATCHDOG_USEC {value}: expected a positive number of microseconds", {
      value: env.WATCHDOG_USEC,
    });
    return undefined;
  }
  return Math.min(MAX_DELAY, Math.max(1, Math.floor(usec / 2000)));
}

/** Bind the sending end, or warn and return undefined. */
function open(target: string, bindPath: string): DatagramConn | undefined {
  // Values go in as properties, never into the template, where a "{" would be taken for a placeholder.
  const where = 'Cannot notify systemd at "{target}"';
  const names = { target: printable(target), path: printable(bindPath) };
  if (!target.startsWith("/") && !target.startsWith("@")) {
    logger.warn(`${where}: only a socket path or an abstract @name is supported; check NOTIFY_SOCKET`, names);
    return undefined;
  }
  const listen = (Deno as unknown as { listenDatagram?: ListenDatagram }).listenDatagram;
  if (typeof listen !== "function") {
    logger.warn(`${where}: Deno sends Unix datagrams only with --unstable-net; run with --unstable-net`, names);
    return undefined;
  }
  const bind = () => listen({ transport: "unixpacket", path: bindPath });
  try {
    let conn: DatagramConn;
    try {
      conn = bind();
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
      // A socket this user left when killed between bind and removal is replaced; anything else is not ours to touch.
      const notOurs = notLeftover(bindPath);
      if (notOurs) {
        logger.warn(`${where}: "{path}" is in the way: {why}`, { ...names, why: notOurs });
        return undefined;
      }
      Deno.removeSync(bindPath);
      conn = bind();
    }
    // Nothing is ever sent back: the name is not needed after binding.
    Deno.removeSync(bindPath);
    return conn;
  } catch (error) {
    logger.warn(`${where}: cannot bind "{path}" to send from: {error}{hint}`, {
      ...names,
      error: printable(String(error)),
      hint: error instanceof Deno.errors.NotCapable ? `; run with ${notifyPermissionFlags(bindPath, target)}` : "",
    });
    return undefined;
  }
}

/**
 * Why what is at `path` is not a socket an earlier run of this program left
 * there, or undefined when it is: a socket owned by this process's user (root
 * included: root removes only root's).
 */
function notLeftover(path: string): string | undefined {
  const found = Deno.lstatSync(path);
  const uid = ownUid();
  if (!found.isSocket) {
    return `it is ${kindOf(found)}, which this program never leaves there; remove it or choose another socket path`;
  }
  if (uid === undefined) {
    return "a socket an earlier run may have left, which cannot be told apart from another user's without " +
      "--allow-sys=uid; remove it if it is this program's, or run with --allow-sys=uid";
  }
  if (found.uid !== uid) {
    return `it is a socket of uid ${found.uid}, not this user's (uid ${uid}), and is left alone; remove it as its owner or choose another socket path`;
  }
  return undefined;
}

/** This process's user, when Deno may tell (`--allow-sys=uid`); it is never asked for. */
function ownUid(): number | undefined {
  if (Deno.permissions.querySync({ name: "sys", kind: "uid" }).state !== "granted") return undefined;
  return Deno.uid() ?? undefined;
}

/** "a directory", "a regular file", … */
function kindOf(info: Deno.FileInfo): string {
  if (info.isDirectory) return "a directory";
  if (info.isFile) return "a regular file";
  if (info.isSymlink) return "a symbolic link";
  if (info.isSocket) return "a socket";
  if (info.isFifo) return "a FIFO";
  return "a device";
}

/** How long a datagram may wait for room in systemd's queue before nothing waits for it any more. */
const SEND_BOUND = 250;

/**
 * What a message says, for dropping what a newer one makes stale: an older
 * ping or status line, or any ping once the watchdog fires.
 */
type Kind = "status" | "ping" | "ready" | "trigger" | "stopping";

interface Outgoing {
  kind: Kind;
  text: string;
  /** Resolved once sent, failed, dropped, or waiting longer than {@linkcode SEND_BOUND}. */
  done: PromiseWithResolvers<void>;
}

class Notifier implements SystemdNotifier {
  readonly watchdogInterval: number | undefined;
  readonly finished: Promise<void>;
  #health: Health;
  #conn: DatagramConn;
  #target: string;
  #address: string;
  #bindPath: string;
  #readyInterval: number;
  #active = true;
  #closed = false;
  #done = Promise.withResolvers<void>();
  #queue: Outgoing[] = [];
  #sending = false;
  #lastSent: Promise<void> = Promise.resolve();
  /** A send is waiting for room in systemd's queue. */
  #stalled = false;
  #stalls = 0;
  #dropped = 0;
  #updating?: Promise<void>;
  #again = false;
  #readySent = false;
  #stoppingSent = false;
  #lastStatus = "";
  #watchdog?: ReturnType<typeof setInterval>;
  #pinging?: Promise<void>;
  #readyTimer?: ReturnType<typeof setTimeout>;
  // A change a run on request made came from evaluating: the timer looks again (see #follow).
  #onChange = (event: Event) => {
    if (!madeOnRequest(event)) this.#update();
  };

  constructor(
    health: Health,
    conn: DatagramConn,
    target: string,
    bindPath: string,
    watchdog: number | undefined,
    readyInterval: number,
  ) {
    this.#health = health;
    this.#conn = conn;
    this.#target = target;
    // sd_notify(3): a leading "@" names a socket in the abstract namespace.
    this.#address = target.startsWith("@") ? `\0${target.slice(1)}` : target;
    this.#bindPath = bindPath;
    this.watchdogInterval = watchdog;
    this.#readyInterval = readyInterval;
    this.finished = this.#done.promise;
  }

  get active(): boolean {
    return this.#active && !this.#closed;
  }

  /** Send the first message, which shows whether the socket can be used at all, then follow the health. */
  async start(): Promise<void> {
    // Bounded: a socket whose queue is full is usable, and readiness must not wait for it.
    await this.#send(["STATUS=starting"], "status");
    if (!this.active) return;
    logger.info(`Notifying systemd at "{target}"{watchdog}`, {
      target: printable(this.#target),
      watchdog: this.watchdogInterval === undefined ? "" : ` (watchdog ping every ${this.watchdogInterval} ms)`,
    });
    this.#health.addEventListener("change", this.#onChange);
    if (this.watchdogInterval !== undefined) {
      this.#watchdog = setInterval(() => this.#ping(), this.watchdogInterval);
      this.#ping();
    }
    this.#update();
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#health.removeEventListener("change", this.#onChange);
      clearInterval(this.#watchdog);
      clearTimeout(this.#readyTimer);
      // Let what was already decided reach systemd (a drain's STOPPING=1), but never wait on a full queue.
      Promise.allSettled([this.#updating, this.#pinging])
        .then(() => this.#stalled ? undefined : within(this.#lastSent, SEND_BOUND))
        .finally(() => this.#finish());
    }
    return this.finished;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #finish(): void {
    const unsent = this.#dropped + this.#queue.length + (this.#stalled ? 1 : 0);
    for (const outgoing of this.#queue.splice(0)) outgoing.done.resolve();
    if (unsent > 0 && this.#active) {
      logger.warn(`Stopped notifying systemd at "{target}" with {unsent} message{s} it had no room for`, {
        target: printable(this.#target),
        unsent,
        s: unsent === 1 ? "" : "s",
      });
    }
    this.#active = false;
    try {
      // A send still waiting for room is not cancelled by this (Deno cannot): it ends when systemd reads or goes.
      this.#conn.close();
    } catch { /* closed */ }
    this.#done.resolve();
  }

  /** Follow the lifecycle; runs one at a time, once more when a change came in meanwhile. */
  #update(): void {
    if (this.#closed) return;
    if (this.#updating) {
      this.#again = true;
      return;
    }
    this.#updating = this.#follow().catch((error) => {
      logger.error("Cannot evaluate the health for systemd: {error}", { error: String(error) });
    }).finally(() => {
      this.#updating = undefined;
      if (this.#again) {
        this.#again = false;
        this.#update();
      }
    });
  }

  async #follow(): Promise<void> {
    const state = this.#health.state;
    if (state === "draining" || state === "stopped") {
      if (!this.#stoppingSent) {
        this.#stoppingSent = true;
        this.#send(["STOPPING=1", "STATUS=draining"], "stopping");
      }
      if (state === "stopped") this.close();
      return;
    }
    if (state !== "ready" || this.#readySent) return;
    clearTimeout(this.#readyTimer);
    const ready = await this.#health.evaluate("readyz");
    if (this.#closed || this.#health.state !== "ready") return;
    if (ready.status === "fail") {
      // On-request checks announce no change: look again in a while.
      this.#readyTimer = setTimeout(() => this.#update(), this.#readyInterval);
      this.#setStatus(`starting: /readyz fails (${ready.output ?? "fail"})`);
      return;
    }
    this.#readySent = true;
    const healthz = await this.#health.evaluate("healthz");
    this.#send(["READY=1", `STATUS=${summary(healthz)}`], "ready");
  }

  /** One watchdog period: ping while /livez passes; on the first failure, trigger and stop. */
  #ping(): void {
    if (this.#closed || this.#pinging) return; // a slow evaluation: this period's ping is the one running
    this.#pinging = (async () => {
      const live = await this.#health.evaluate("livez");
      if (this.#closed || this.#watchdog === undefined) return;
      if (live.status !== "fail") {
        this.#send(["WATCHDOG=1"], "ping");
        return;
      }
      clearInterval(this.#watchdog);
      this.#watchdog = undefined;
      const failed = failures(live);
      logger.error("Telling systemd the watchdog fired: /livez fails ({failed})", { failed });
      this.#send(["WATCHDOG=trigger", `STATUS=live check failed: ${failed}`], "trigger");
    })().catch((error) => {
      logger.error("Cannot evaluate /livez for systemd: {error}", { error: String(error) });
    }).finally(() => this.#pinging = undefined);
  }

  #setStatus(text: string): void {
    if (text === this.#lastStatus) return;
    this.#send([`STATUS=${text}`], "status");
  }

  /**
   * Queue one datagram, in order after those before it, dropping what it
   * makes stale. Nothing waits on systemd: the promise settles once the
   * datagram is sent, fails or is dropped, or after {@linkcode SEND_BOUND} ms.
   */
  #send(lines: string[], kind: Kind): Promise<void> {
    const status = lines.find((line) => line.startsWith("STATUS="));
    if (status) this.#lastStatus = status.slice("STATUS=".length);
    if (!this.#active) return Promise.resolve();
    const stale: Kind[] = kind === "ping" || kind === "status" ? [kind] : kind === "trigger" ? ["ping"] : [];
    if (stale.length > 0) {
      this.#queue = this.#queue.filter((queued) => {
        if (!stale.includes(queued.kind)) return true;
        this.#dropped++;
        queued.done.resolve();
        return false;
      });
    }
    const outgoing: Outgoing = { kind, text: lines.map(oneLine).join("\n"), done: Promise.withResolvers<void>() };
    this.#queue.push(outgoing);
    this.#lastSent = outgoing.done.promise;
    if (!this.#sending) void this.#drain();
    return within(outgoing.done.promise, SEND_BOUND);
  }

  /** Send what is queued, one datagram at a time; the only code that waits for systemd. */
  async #drain(): Promise<void> {
    this.#sending = true;
    try {
      while (this.#active && this.#queue.length > 0) {
        const outgoing = this.#queue.shift()!;
        const sent = this.#conn.send(encoder.encode(outgoing.text), { transport: "unixpacket", path: this.#address })
          .then(() => undefined, (error: unknown) => error ?? new Error("Send failed"));
        let result = await within(sent, SEND_BOUND, { otherwise: "waiting" });
        if (result === "waiting") {
          this.#stall();
          outgoing.done.resolve();
          result = await sent;
          this.#stalled = false;
          if (!this.#active) return;
          if (this.#stalls === 1 && result === undefined) {
            logger.info(`The notify socket "{target}" has room again; {dropped} stale message{s} dropped meanwhile`, {
              target: printable(this.#target),
              dropped: this.#dropped,
              s: this.#dropped === 1 ? "" : "s",
            });
          }
        }
        if (result === undefined) {
          logger.debug("Told systemd {message}", { message: outgoing.text.replaceAll("\n", " ") });
        } else {
          this.#fail(result);
        }
        outgoing.done.resolve();
      }
    } finally {
      this.#sending = false;
    }
  }

  /** A send waits for room in systemd's queue: say so once, and let nothing else wait for it. */
  #stall(): void {
    this.#stalled = true;
    if (this.#stalls++ > 0) {
      logger.debug("systemd's queue is full again");
      return;
    }
    logger.warn(
      `Cannot notify systemd at "{target}" now: its queue is full (a message waited {ms} ms); serving goes on, and ` +
        "only the newest message of each kind waits for room while the rest are dropped",
      { target: printable(this.#target), ms: SEND_BOUND },
    );
  }

  /** A send failed: warn once and stop the notifier. */
  #fail(error: unknown): void {
    this.#active = false;
    logger.warn(`Cannot notify systemd at "{target}": {error}; {hint}`, {
      target: printable(this.#target),
      error: describe(error, this.#target),
      hint: hint(error, this.#target, this.#bindPath),
    });
    this.close();
  }
}

/** A send's error, saying what NOTIFY_SOCKET is when the kernel only says "refused". */
function describe(error: unknown, target: string): string {
  if (!(error instanceof Deno.errors.ConnectionRefused)) return printable(String(error));
  if (target.startsWith("@")) return "nothing listens on that abstract name (connection refused)";
  if (Deno.permissions.querySync({ name: "read", path: target }).state !== "granted") {
    return `it is not a socket, or nothing listens on it (connection refused; with --allow-read=${
      printable(target)
    } this message says which)`;
  }
  try {
    const info = Deno.statSync(target);
    if (info.isSocket) return "it is a socket nothing listens on (connection refused)";
    return `it is ${kindOf(info)}, not a socket (connection refused)`;
  } catch (statError) {
    return `connection refused, and it cannot be looked at: ${printable(String(statError))}`;
  }
}

function hint(error: unknown, target: string, bindPath: string): string {
  if (error instanceof Deno.errors.NotCapable) {
    return target.startsWith("@")
      ? "Deno addresses an abstract socket only with --allow-net unscoped, which healthsock does not ask for; serving goes on without systemd notifications"
      : `run with ${notifyPermissionFlags(bindPath, target)}`;
  }
  return "check NOTIFY_SOCKET and that this user may write to it; serving goes on without systemd notifications";
}

/**
 * Text for a log line: an abstract socket's NUL shown as sd_notify(3) writes
 * it ("@name"), any other control character escaped.
 */
function printable(text: string): string {
  return escapeText(text.replaceAll("\0", "@"));
}

/** `ready: 3 checks pass`, or what does not. */
function summary(report: HealthReport): string {
  const results = Object.entries(report.checks).filter(([key]) => !key.startsWith("lifecycle:"));
  const passing = results.filter(([, [result]]) => result.status === "pass").length;
  const noun = results.length === 1 ? "check" : "checks";
  if (passing === results.length) return `ready: ${passing} ${noun} ${results.length === 1 ? "passes" : "pass"}`;
  return `ready: ${passing} of ${results.length} ${noun} pass (${report.output ?? report.status})`;
}

/** The failing checks of a report, with why: `ticker (no tick for 2.1 s)`. */
function failures(report: HealthReport): string {
  const failed = Object.entries(report.checks)
    .filter(([, [result]]) => result.status === "fail")
    .map(([key, [result]]) => {
      const name = componentOf(key);
      return result.output ? `${name} (${oneLine(result.output)})` : name;
    });
  return failed.join(", ") || report.output || "fail";
}

/** A value on one line: a newline in a STATUS= would start a new assignment. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, " ");
}
