/**
 * The Worker that serves health beside the app: it claims and serves the
 * socket (server.ts) from a {@linkcode WorkerHealth}, which answers from the
 * main thread's latest results and the heartbeat (thread.ts). Bundled into
 * worker_source.ts by `deno task worker`; never imported by the library.
 *
 * @module
 */
import { within } from "./delay.ts";
import { reportFromSnapshot, snapshotHas } from "./model.ts";
import type { HealthSnapshot, HealthSource, ReportOptions } from "./model.ts";
import type { Endpoint, HealthReport } from "./report.ts";
import { startServer } from "./server.ts";
import type { HealthServer, Settings } from "./server.ts";
import { claim } from "./socket_file.ts";
import { formatLine, getLogger, LOG_LEVELS, messageParts, setLogSink } from "./log.ts";
import type { LogChannel, LogFormat, LogLevel, LogSink } from "./log.ts";
import {
  ASK_BOUND,
  dueChecks,
  epochNow,
  errorShape,
  FIRST_ASK_BOUND,
  Heartbeat,
  HEARTBEAT_PERIOD,
  LogClaims,
  loopResult,
  STALL_BOUND,
} from "./thread.ts";
import type { Due, FromWorker, InitMessage, LogMessage, LoopLimits, ToWorker } from "./thread.ts";

/** A round: checks the main thread was asked to run once, for every request waiting for any of them. */
interface Round {
  id: number;
  /** Settles when the round is answered, or given up on: the waiting requests then answer. */
  settled: Promise<void>;
  /** Resolves `settled`. */
  answer: () => void;
}

/**
 * Milliseconds a reply the main thread has posted may stay unread in this
 * thread's own queue (a flood keeps it busy) before the requests waiting for
 * it answer from the latest results: they would otherwise wait for the queue.
 */
export const REPLY_BOUND = HEARTBEAT_PERIOD;

/**
 * The health a Worker serves: the main thread's latest results (sent as they
 * change), an on-request check run on the main thread while it turns, and the
 * main loop's pseudo-check from the heartbeat.
 */
export class WorkerHealth extends EventTarget implements HealthSource {
  #snapshot: HealthSnapshot;
  #heartbeat: Heartbeat;
  #limits: LoopLimits;
  #post: (message: FromWorker) => void;
  /** The rounds not yet answered, by id. */
  #rounds = new Map<number, Round>();
  /** The round each check is being run in. */
  #running = new Map<string, Round>();
  #id = 0;
  /**
   * The last report of each endpoint (and single check), with what it was built from. Its main-loop entry changes
   * only with a heartbeat stamp (every 50 ms): reusing the same object until then lets the server reuse its encoding,
   * as it does for `Health`'s reports, instead of rendering every answer anew. Requests with exclusions (the client's
   * to vary) are not kept, so the map stays bounded.
   */
  #reports = new Map<string, { snapshot: HealthSnapshot; blocked: number; last: number; report: HealthReport }>();

  constructor(snapshot: HealthSnapshot, heartbeat: Heartbeat, limits: LoopLimits, post: (message: FromWorker) => void) {
    super();
    this.#snapshot = snapshot;
    this.#heartbeat = heartbeat;
    this.#limits = limits;
    this.#post = post;
  }

  /**
   * Take the main thread's latest results.
   *
   * @param snapshot The results.
   * @param ids The rounds they answer.
   * @param changed A status or the lifecycle changed.
   */
  update(snapshot: HealthSnapshot, ids: readonly number[] | undefined, changed: boolean): void {
    // A local drain or stop is not undone by a snapshot sent before the main thread heard of it.
    const local = this.#snapshot.state;
    if ((local === "draining" && snapshot.state !== "stopped") || local === "stopped") snapshot.state = local;
    this.#snapshot = snapshot;
    for (const id of ids ?? []) this.#rounds.get(id)?.answer();
    if (changed) this.dispatchEvent(new Event("change"));
  }

  evaluate(endpoint: Endpoint, options: ReportOptions = {}): HealthReport | Promise<HealthReport> {
    const now = epochNow();
    const due = dueChecks(this.#snapshot, endpoint, options.check, options.exclude ?? [], now, options.tags);
    // Nothing to run, or a main thread that has stopped turning: answer from the latest results now.
    // (A stamp a little late is a loaded machine, not a blocked loop: ask, with a bound.)
    const patience = due?.first ? FIRST_ASK_BOUND : STALL_BOUND;
    if (due === undefined || this.#heartbeat.blockedFor(now) > patience) return this.#report(endpoint, options);
    this.#report(endpoint, options); // throws now, as Health does, for a check that is not there
    return this.#ask(endpoint, options, due);
  }

  has(name: string, endpoint: Endpoint = "healthz"): boolean {
    return snapshotHas(this.#snapshot, name, endpoint, true);
  }

  startChecks(): void {
    this.#post({ type: "call", name: "startChecks" });
  }

  stopChecks(): void {
    this.#post({ type: "call", name: "stopChecks" });
  }

  markDraining(): void {
    const state = this.#snapshot.state;
    if (state === "starting" || state === "ready" || state === "not-ready") this.#setState("draining");
    this.#post({ type: "call", name: "markDraining" });
  }

  markStopped(): void {
    if (this.#snapshot.state !== "stopped") this.#setState("stopped");
    this.#post({ type: "call", name: "markStopped" });
  }

  #setState(state: HealthSnapshot["state"]): void {
    this.#snapshot = { ...this.#snapshot, state, since: new Date().toISOString() };
    this.dispatchEvent(new Event("change"));
  }

  #report(endpoint: Endpoint, options: ReportOptions): HealthReport {
    const blocked = this.#heartbeat.blockedFor(epochNow());
    const last = this.#heartbeat.last;
    const snapshot = this.#snapshot;
    const key = options.exclude?.length || options.tags?.length ? undefined : `${endpoint}/${options.check ?? ""}`;
    const kept = key === undefined ? undefined : this.#reports.get(key);
    if (kept && kept.snapshot === snapshot && kept.blocked === blocked && kept.last === last) return kept.report;
    const report = reportFromSnapshot(snapshot, endpoint, options, loopResult(blocked, last, endpoint, this.#limits));
    if (key !== undefined) this.#reports.set(key, { snapshot, blocked, last, report });
    return report;
  }

  /**
   * Wait for the main thread to run the checks due, then answer from its
   * results. A check already being run for another request is not asked for
   * again: this request joins that round. The others are asked for in one
   * new round.
   */
  async #ask(endpoint: Endpoint, options: ReportOptions, due: Due): Promise<HealthReport> {
    const rounds = new Set<Round>();
    const missing: string[] = [];
    for (const name of due.names) {
      const round = this.#running.get(name);
      if (round) rounds.add(round);
      else missing.push(name);
    }
    if (missing.length > 0) rounds.add(this.#start(missing, due));
    await Promise.all([...rounds].map((round) => round.settled));
    return this.#report(endpoint, options);
  }

  /** Ask the main thread to run `names` once, and follow the round until it is answered or given up on. */
  #start(names: string[], due: Due): Round {
    const id = ++this.#id;
    const { promise, resolve } = Promise.withResolvers<void>();
    const round: Round = { id, settled: promise, answer: resolve };
    this.#rounds.set(id, round);
    for (const name of names) this.#running.set(name, round);
    const asked = epochNow();
    const bound = due.first ? FIRST_ASK_BOUND : ASK_BOUND;
    this.#post({ type: "evaluate", id, asked, bound, checks: names });
    this.#follow(round, asked, bound, due.timeout).finally(() => {
      this.#rounds.delete(id);
      for (const name of names) {
        if (this.#running.get(name) === round) this.#running.delete(name);
      }
      resolve();
    });
    return round;
  }

  /**
   * Wait while the main thread turns: give up when it has not turned since it
   * was asked (`bound`: {@linkcode ASK_BOUND}, or {@linkcode FIRST_ASK_BOUND}
   * for a check that never ran), when it stops turning while the checks run
   * ({@linkcode STALL_BOUND}), when its answer has waited in this thread's
   * own queue for {@linkcode REPLY_BOUND}, or when the checks' time-out has
   * passed.
   */
  async #follow(round: Round, asked: number, bound: number, timeout: number): Promise<void> {
    let answered = false;
    round.settled.then(() => answered = true);
    const limit = asked + timeout + HEARTBEAT_PERIOD * 2;
    let posted: number | undefined;
    while (!answered) {
      await within(round.settled, 10);
      if (answered) break;
      const now = epochNow();
      const heartbeat = this.#heartbeat;
      if (heartbeat.answered >= round.id) {
        // The answer is in our queue, behind other work: wait for it a moment only.
        posted ??= now;
        if (now - posted >= REPLY_BOUND) break;
        continue;
      }
      const taken = heartbeat.taken >= round.id;
      if (!taken && now - asked > bound && heartbeat.last < asked) break;
      if (taken && now - heartbeat.last > HEARTBEAT_PERIOD + STALL_BOUND) break;
      if (now > limit) break;
    }
  }
}

/**
 * Milliseconds the main thread has to take a log record before the Worker
 * writes it to stderr itself: a main thread that has not turned for this long
 * is blocked, and what the Worker logs then (that it is) must not wait for it.
 */
export const LOG_BOUND = 1000;

const encoder = new TextEncoder();

/** Lines the Worker holds for a stderr that is not read; past them it counts what it drops, and says so. */
const STDERR_LINES = 1000;

/**
 * The Worker's log sink: each record is posted to the main thread, which
 * writes it through its LogTape configuration. One the main thread has not
 * taken within {@linkcode LOG_BOUND}, the Worker writes to stderr itself, in
 * the program's log format; while the main thread is blocked past that bound
 * it writes at once, without posting. {@linkcode LogClaims} makes sure each
 * record is written once.
 */
export class WorkerLog implements LogSink {
  #lowest: number = LOG_LEVELS.length;
  #format: LogFormat = "text";
  #claims = new LogClaims();
  #heartbeat?: Heartbeat;
  #post: (message: FromWorker) => void = () => {};
  #seq = 0;
  #pending: { message: LogMessage; at: number }[] = [];
  #timer?: ReturnType<typeof setTimeout>;
  #lines: string[] = [];
  #dropped = 0;

  /** Write the levels the main thread has enabled, from now on. */
  start(init: InitMessage, heartbeat: Heartbeat, post: (message: FromWorker) => void): void {
    this.#lowest = init.level === undefined ? LOG_LEVELS.length : LOG_LEVELS.indexOf(init.level);
    this.#format = init.format;
    this.#claims = new LogClaims(init.logs);
    this.#heartbeat = heartbeat;
    this.#post = post;
  }

  channel(category: readonly string[]): LogChannel {
    return {
      enabled: (level) => LOG_LEVELS.indexOf(level) >= this.#lowest,
      write: (level, message, properties) => this.#write([...category], level, message, properties),
    };
  }

  #write(category: string[], level: LogLevel, text: string, properties: Record<string, unknown>): void {
    const message: LogMessage = {
      type: "log",
      seq: this.#seq = LogClaims.next(this.#seq),
      timestamp: Date.now(),
      category,
      level,
      message: text,
      properties,
    };
    const now = epochNow();
    if ((this.#heartbeat?.blockedFor(now) ?? 0) > LOG_BOUND) {
      this.#flush(Infinity);
      this.#own(message);
      return;
    }
    try {
      this.#post(message);
    } catch {
      // A value that cannot cross threads crosses as text.
      const plain = Object.fromEntries(Object.entries(properties).map(([key, value]) => [key, String(value)]));
      try {
        this.#post({ ...message, properties: plain });
      } catch { /* not taken: written here once late */ }
    }
    this.#pending.push({ message, at: now });
    // Under a burst, forget the records already taken without waiting for the timer.
    if (this.#pending.length > 256) this.#flush(-Infinity);
    this.#timer ??= setTimeout(() => this.#late(), LOG_BOUND);
  }

  /** Write the records the main thread has not taken within the bound; look again when the next one is due. */
  #late(): void {
    this.#timer = undefined;
    const now = epochNow();
    this.#flush(now - LOG_BOUND);
    if (this.#pending.length > 0) {
      this.#timer = setTimeout(() => this.#late(), Math.max(1, this.#pending[0].at + LOG_BOUND - now));
    }
  }

  /** Write, in order, the pending records posted at or before `until` that the main thread has not taken. */
  #flush(until: number): void {
    let i = 0;
    for (; i < this.#pending.length && this.#pending[i].at <= until; i++) this.#own(this.#pending[i].message);
    while (i < this.#pending.length && this.#claims.claimed(this.#pending[i].message.seq)) i++;
    if (i > 0) this.#pending.splice(0, i);
  }

  #own(message: LogMessage): void {
    if (!this.#claims.claim(message.seq)) return;
    const line = formatLine(this.#format, { ...message, message: messageParts(message.message, message.properties) });
    if (this.#lines.length >= STDERR_LINES) {
      this.#dropped++;
      return;
    }
    this.#lines.push(line);
    if (this.#lines.length === 1) this.#drain();
  }

  /** Write the queued lines, never blocking the thread that answers probes on a stderr nobody reads. */
  async #drain(): Promise<void> {
    try {
      while (this.#lines.length > 0) {
        let text = this.#lines.join("\n") + "\n";
        const count = this.#lines.length;
        if (this.#dropped > 0) {
          text += formatLine(this.#format, {
            category: ["healthsock", "server"],
            level: "warning",
            message: [`${this.#dropped} log records dropped: stderr was not read`],
            properties: { dropped: this.#dropped },
            timestamp: Date.now(),
          }) + "\n";
          this.#dropped = 0;
        }
        const bytes = encoder.encode(text);
        for (let done = 0; done < bytes.length;) done += await Deno.stderr.write(bytes.subarray(done));
        this.#lines.splice(0, count);
      }
    } catch {
      this.#lines.length = 0; // stderr is gone: nowhere left to say it
    }
  }
}

const loopLogger = getLogger(["healthsock", "server"]);

/**
 * Log the main thread's event loop blocked past a limit, from the heartbeat:
 * once when `/readyz` starts failing on it, once when `/livez` does, and once
 * when it turns again. The main thread cannot say it, so these records are
 * the Worker's, written by the Worker itself when the main thread stays
 * blocked ({@linkcode LOG_BOUND}).
 *
 * @returns Stops watching.
 */
function watchLoop(path: string, heartbeat: Heartbeat, limits: LoopLimits): () => void {
  if (!loopLogger.isEnabledFor("error")) return () => {};
  let failing: "turning" | "ready" | "live" = "turning";
  let since = 0;
  const timer = setInterval(() => {
    const blocked = heartbeat.blockedFor();
    if (blocked > limits.live && failing !== "live") {
      if (failing === "turning") since = heartbeat.last;
      failing = "live";
      loopLogger.error(
        "The main thread's event loop is blocked ({ms} ms so far): /livez fails on {path} until it turns",
        {
          path,
          ms: blocked,
          limit: limits.live,
        },
      );
    } else if (blocked > limits.ready && failing === "turning") {
      since = heartbeat.last;
      failing = "ready";
      loopLogger.warn(
        "The main thread's event loop is blocked ({ms} ms so far): /readyz fails on {path} until it turns",
        {
          path,
          ms: blocked,
          limit: limits.ready,
        },
      );
    } else if (blocked <= limits.ready && failing !== "turning") {
      failing = "turning";
      loopLogger.info("The main thread's event loop turns again after {ms} ms blocked: {path} no longer fails on it", {
        path,
        ms: Math.max(0, heartbeat.last - since - HEARTBEAT_PERIOD),
      });
    }
  }, HEARTBEAT_PERIOD);
  return () => clearInterval(timer);
}

/** The Worker's global scope, as far as this module uses it. */
interface WorkerScope {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
}

/** Run the Worker: wait for `init`, serve, follow the main thread's messages. */
function main(): void {
  const scope = self as unknown as WorkerScope;
  const post = (message: FromWorker) => scope.postMessage(message);
  const log = new WorkerLog();
  setLogSink(log);
  let unwatch = () => {};
  let health: WorkerHealth | undefined;
  let server: HealthServer | undefined;
  let stop: "drain" | "close" | undefined;
  const shutdown = (how: "drain" | "close") => {
    stop = how;
    unwatch();
    if (!server) return;
    const done = how === "drain" ? server.drain() : server.close();
    done.then(() => post({ type: "stopped" }));
  };
  const init = async (message: InitMessage) => {
    const beat = new Heartbeat(message.heartbeat);
    log.start(message, beat, post);
    const settings = message.settings as unknown as Settings;
    const limits = { ready: settings.readyBlockLimit, live: settings.liveBlockLimit };
    health = new WorkerHealth(message.snapshot, beat, limits, post);
    let claimed;
    try {
      claimed = await claim(message.path, settings.mode);
    } catch (error) {
      post({ type: "failed", error: errorShape(error) });
      return;
    }
    // The main thread reads the count of open connections from shared memory, without asking.
    server = startServer(health, claimed, settings, (open) => beat.connections = open);
    server.finished.finally(() => beat.connections = 0);
    if (!stop) unwatch = watchLoop(message.path, beat, limits);
    post({ type: "listening" });
    if (stop) shutdown(stop);
  };
  scope.onmessage = (event: MessageEvent<ToWorker>) => {
    const message = event.data;
    switch (message.type) {
      case "init":
        init(message).catch((error) => post({ type: "failed", error: errorShape(error) }));
        break;
      case "snapshot":
        health?.update(message.snapshot, message.ids, message.changed);
        break;
      case "drain":
      case "close":
        shutdown(message.type);
        break;
      case "crash":
        setTimeout(() => {
          throw new Error("The health Worker was told to crash");
        });
        break;
    }
  };
}

// Only as the Worker's entry (the bundle started as a blob: Worker): importing this module runs nothing.
if (import.meta.main && "WorkerGlobalScope" in globalThis) main();
