/**
 * The Worker that serves health beside the app: it claims and serves the
 * socket (server.ts) from a {@linkcode WorkerHealth}, which answers from the
 * main thread's latest results and the heartbeat (thread.ts). Bundled into
 * worker_source.ts by `deno task worker`; never imported by the library.
 *
 * @module
 */
import { configure } from "@logtape/logtape";
import type { LogRecord } from "@logtape/logtape";
import { within } from "./delay.ts";
import { reportFromSnapshot, snapshotHas } from "./model.ts";
import type { HealthSnapshot, HealthSource, ReportOptions } from "./model.ts";
import type { Endpoint, HealthReport } from "./report.ts";
import { startServer } from "./server.ts";
import type { HealthServer, Settings } from "./server.ts";
import { claim } from "./socket_file.ts";
import type { ClaimedSocket } from "./socket_file.ts";
import {
  ASK_BOUND,
  dueChecks,
  epochNow,
  errorShape,
  FIRST_ASK_BOUND,
  Heartbeat,
  HEARTBEAT_PERIOD,
  loopResult,
  STALL_BOUND,
} from "./thread.ts";
import type { Due, FromWorker, InitMessage, LoopLimits, ToWorker } from "./thread.ts";

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
    const due = dueChecks(this.#snapshot, endpoint, options.check, options.exclude ?? [], now);
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
    if (state === "starting" || state === "ready") this.#setState("draining");
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
    const key = options.exclude?.length ? undefined : `${endpoint}/${options.check ?? ""}`;
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

/** Send log records of healthsock's loggers to the main thread's LogTape configuration. */
async function forwardLogs(level: InitMessage["level"], post: (message: FromWorker) => void): Promise<void> {
  if (level === undefined) return;
  const sink = (record: LogRecord) => {
    const message = typeof record.rawMessage === "string" ? record.rawMessage : record.message.join("");
    try {
      post({
        type: "log",
        category: [...record.category],
        level: record.level,
        message,
        properties: { ...record.properties },
      });
    } catch {
      post({ type: "log", category: [...record.category], level: record.level, message, properties: {} });
    }
  };
  await configure({
    sinks: { main: sink },
    loggers: [
      { category: ["healthsock"], lowestLevel: level, sinks: ["main"] },
      { category: ["logtape", "meta"], lowestLevel: "fatal", sinks: [] },
    ],
  });
}

/**
 * Serve, keeping the number of open connections in the heartbeat's memory,
 * where the main thread reads it whenever it likes without waiting for this
 * thread: one more as a connection is accepted, one fewer as it is closed
 * (before its client can see it closed), or, had it not been, as the server
 * forgets it.
 */
function counted(
  claimed: ClaimedSocket,
  heartbeat: Heartbeat,
  start: (claimed: ClaimedSocket) => HealthServer,
): HealthServer {
  let open = 0;
  const closed = new WeakSet<Deno.Conn>();
  const gone = (conn: Deno.Conn) => {
    if (closed.has(conn)) return;
    closed.add(conn);
    heartbeat.connections = --open;
  };
  const { listener } = claimed;
  const accept = listener.accept.bind(listener);
  listener.accept = () =>
    accept().then((conn) => {
      heartbeat.connections = ++open;
      const close = conn.close.bind(conn);
      conn.close = () => {
        gone(conn);
        close();
      };
      return conn;
    });
  const server = start(claimed);
  const host = server as HealthServer & { ended(connection: { conn?: Deno.Conn }): void };
  const ended = host.ended.bind(host);
  host.ended = (connection) => {
    ended(connection);
    if (connection.conn) gone(connection.conn);
  };
  server.finished.finally(() => heartbeat.connections = 0);
  return server;
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
  let health: WorkerHealth | undefined;
  let server: HealthServer | undefined;
  let stop: "drain" | "close" | undefined;
  const shutdown = (how: "drain" | "close") => {
    stop = how;
    if (!server) return;
    const done = how === "drain" ? server.drain() : server.close();
    done.then(() => post({ type: "stopped" }));
  };
  const init = async (message: InitMessage) => {
    await forwardLogs(message.level, post);
    const beat = new Heartbeat(message.heartbeat);
    const settings = message.settings as unknown as Settings;
    health = new WorkerHealth(message.snapshot, beat, {
      ready: settings.readyBlockLimit,
      live: settings.liveBlockLimit,
    }, post);
    let claimed;
    try {
      claimed = await claim(message.path, settings.mode);
    } catch (error) {
      post({ type: "failed", error: errorShape(error) });
      return;
    }
    server = counted(claimed, beat, (claimed) => startServer(health!, claimed, settings));
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

main();
