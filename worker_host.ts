/**
 * The main thread's side of serving beside the app: starts the Worker
 * (worker.ts, bundled into worker_source.ts), stamps the heartbeat, sends the
 * Worker the latest results as they change, runs the checks it asks for,
 * re-emits its logs, drives drain and close, and notices when it dies.
 *
 * @module
 */
import type { Health } from "./health.ts";
import { MAX_DELAY } from "./delay.ts";
import { madeOnRequest } from "./model.ts";
import type { HealthServer, Settings } from "./server.ts";
import { socketDirectory } from "./paths.ts";
import { keepDirectory, SocketError } from "./socket_file.ts";
import type { SocketErrorReason } from "./socket_file.ts";
import { epochNow, Heartbeat, HEARTBEAT_PERIOD, isFromWorker, LogClaims, lowestLevel } from "./thread.ts";
import type { ErrorShape, FromWorker, LogMessage, ToWorker } from "./thread.ts";
import { getLogger, logFormat } from "./log.ts";
import type { Logger } from "./log.ts";
import { WORKER_SOURCE } from "./worker_source.ts";

const logger = getLogger(["healthsock", "server"]);

// A blob: Worker needs no read permission: the library's files stay out of the program's grants.
let workerUrl: string | undefined;

// A Worker that dies this many times within RESPAWN_WINDOW ms is not started again: `finished` rejects.
const RESPAWNS = 3;
const RESPAWN_WINDOW = 60_000;
// How long close() waits for the Worker to release the socket before it ends it.
const CLOSE_BOUND = 3000;

/**
 * Serve `health` from a Worker: resolves once the Worker has claimed the
 * socket, rejects with the claim's error.
 *
 * @param path The absolute socket path.
 * @param health The checks and lifecycle, on this thread.
 * @param settings The server's settings.
 * @returns The running server.
 */
export async function serveBeside(path: string, health: Health, settings: Settings): Promise<HealthServer> {
  const host = new WorkerHost(path, health, settings);
  await host.listening;
  return host;
}

class WorkerHost implements HealthServer {
  readonly path: string;
  readonly finished: Promise<void>;
  readonly listening: Promise<void>;
  #health: Health;
  #settings: Settings;
  #heartbeat = new Heartbeat();
  #stamper: ReturnType<typeof setInterval>;
  #worker?: Worker;
  #starts = 0;
  #stopping?: "drain" | "close";
  #shutdown?: Promise<void>;
  #ended = Promise.withResolvers<void>();
  #finished = Promise.withResolvers<void>();
  #listening = Promise.withResolvers<void>();
  #served = false;
  #deaths: number[] = [];
  /** The private directory the Worker's listener is bound in, while it may be open. */
  #directory?: Deno.FileInfo;
  #logs = new LogClaims();
  /** A snapshot answering rounds is due to be posted at the end of this turn. */
  #flushing = false;
  /** Results came since the last snapshot. */
  #dirty = false;
  /** Posts them when no round's answer has: see #onUpdate. */
  #updateTimer?: ReturnType<typeof setTimeout>;
  /** The Worker's rounds answered since the last snapshot: the next one answers them. */
  #answeredIds: number[] = [];
  /** The Worker's rounds taken and not yet answered, by id. */
  #runningIds = new Set<number>();

  constructor(path: string, health: Health, settings: Settings) {
    this.path = path;
    this.#health = health;
    this.#settings = settings;
    this.finished = this.#finished.promise;
    this.listening = this.#listening.promise;
    this.#stamper = setInterval(() => this.#heartbeat.stamp(), HEARTBEAT_PERIOD);
    Deno.unrefTimer(this.#stamper);
    health.addEventListener("change", this.#onChange);
    health.addEventListener("update", this.#onUpdate);
    this.#spawn();
  }

  get connections(): number {
    // The Worker writes its count into the heartbeat's memory as it serves: read it, never waiting for the Worker.
    return this.#worker ? this.#heartbeat.connections : 0;
  }

  drain(): Promise<void> {
    return this.#stop("drain");
  }

  close(): Promise<void> {
    return this.#stop("close");
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The Worker, for tests that need to make it fail. */
  get worker(): Worker | undefined {
    return this.#worker;
  }

  #stop(how: "drain" | "close"): Promise<void> {
    if (this.#stopping !== "close") {
      this.#stopping = how;
      // /readyz fails at once, whatever the Worker is doing.
      this.#health.markDraining();
      this.#post({ type: how });
      // Timers cannot hold more than MAX_DELAY: a longer one would fire at once.
      const bound = how === "close"
        ? CLOSE_BOUND
        : Math.min(MAX_DELAY, this.#settings.drainDelay + this.#settings.shutdownTimeout + CLOSE_BOUND);
      const timer = setTimeout(() => {
        logger.error("The health Worker for {path} did not stop within {ms} ms: ending it", {
          path: this.path,
          ms: bound,
        });
        this.#keepDirectory();
        this.#end();
      }, bound);
      this.#ended.promise.then(() => clearTimeout(timer));
    }
    this.#shutdown ??= this.#ended.promise;
    return this.#shutdown;
  }

  #spawn(): void {
    workerUrl ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
    const worker = this.#worker = new Worker(workerUrl, { type: "module" });
    worker.onmessage = (event: MessageEvent) => {
      if (worker === this.#worker && isFromWorker(event.data)) this.#receive(event.data);
    };
    worker.onerror = (event: ErrorEvent) => {
      // Handled here: an error left unhandled in a Worker would end the program without a word of why.
      event.preventDefault();
      if (worker === this.#worker) this.#died(event.message);
    };
    this.#runningIds = new Set();
    this.#answeredIds = [];
    this.#heartbeat.taken = this.#heartbeat.answered = 0;
    const level = lowestLevel((level) => logger.isEnabledFor(level));
    this.#logs = new LogClaims();
    worker.postMessage(
      {
        type: "init",
        path: this.path,
        settings: { ...this.#settings },
        heartbeat: this.#heartbeat.buffer,
        level,
        format: logFormat(),
        logs: this.#logs.buffer,
        snapshot: this.#health.snapshot(),
      } satisfies ToWorker,
    );
  }

  #post(message: ToWorker): void {
    try {
      this.#worker?.postMessage(message);
    } catch (error) {
      logger.error("Cannot send to the health Worker for {path}: {error}", { path: this.path, error: String(error) });
    }
  }

  // A change a run on request made reaches the Worker with that run's round (its answer, or the next update).
  #onChange = (event: Event) => {
    if (!madeOnRequest(event)) this.#snapshot(true);
  };

  // Results come in bursts (every check of a round at once, a background check's run): send one snapshot per burst,
  // before any I/O, so that a check added or removed is seen by the next request. While a round runs, its answer
  // sends them (one snapshot per round, whatever its checks' runs made), or the next turn does if it is still running.
  #onUpdate = () => {
    this.#dirty = true;
    if (this.#runningIds.size === 0) {
      this.#flush();
      return;
    }
    this.#updateTimer ??= setTimeout(() => {
      this.#updateTimer = undefined;
      if (this.#dirty) this.#snapshot(false);
    }, 0);
  };

  /** Send the results and answer the rounds done, with one snapshot, at the end of this turn's work. */
  #flush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    queueMicrotask(() => {
      this.#flushing = false;
      if (this.#dirty || this.#answeredIds.length > 0) this.#snapshot(false);
    });
  }

  #snapshot(changed: boolean): void {
    const ids = this.#answeredIds;
    this.#answeredIds = [];
    this.#dirty = false;
    this.#post({ type: "snapshot", snapshot: this.#health.snapshot(), ids: ids.length ? ids : undefined, changed });
    // Posted, so in the Worker's queue: every round taken and not still running is answered.
    const heartbeat = this.#heartbeat;
    heartbeat.answered = this.#runningIds.size === 0 ? heartbeat.taken : Math.min(...this.#runningIds) - 1;
  }

  #receive(message: FromWorker): void {
    switch (message.type) {
      case "listening":
        try {
          this.#directory = Deno.lstatSync(socketDirectory(this.path));
        } catch { /* not there: nothing to keep */ }
        this.#served = true;
        this.#listening.resolve();
        break;
      case "failed": {
        const error = rebuild(this.path, message.error);
        this.#end();
        if (this.#served) {
          logger.error("The health Worker for {path} cannot serve again: {error}", {
            path: this.path,
            error: String(error),
          });
          this.#finished.reject(error);
        } else {
          this.#listening.reject(error);
          this.#finished.resolve();
        }
        break;
      }
      case "evaluate":
        this.#heartbeat.taken = message.id;
        // Taken too late, after a block: the Worker has answered without us; a run now would be wasted.
        if (epochNow() - message.asked > message.bound) {
          this.#answeredIds.push(message.id);
          this.#flush();
          break;
        }
        this.#evaluate(message.id, message.checks);
        break;
      case "call":
        this.#call(message.name);
        break;
      case "log":
        // Unless the Worker, finding us late, has written it itself.
        if (this.#logs.claim(message.seq)) relay(message);
        break;
      case "stopped":
        this.#directory = undefined; // the Worker closed its listener and released the path
        this.#health.markStopped();
        this.#end();
        this.#finished.resolve();
        break;
    }
  }

  /** Run a round of the Worker's: each check once, however many requests wait for it; then answer it. */
  async #evaluate(id: number, checks: string[]): Promise<void> {
    const worker = this.#worker;
    const running = this.#runningIds;
    running.add(id);
    await Promise.all(checks.map(async (check) => {
      try {
        await this.#health.evaluate("healthz", { check });
      } catch { /* removed since: the Worker builds the answer, and its error, from the snapshot */ }
    }));
    running.delete(id);
    // A round of a Worker that has died since is answered by nobody: the new one counts from 1 again.
    if (worker !== this.#worker) return;
    this.#answeredIds.push(id);
    this.#flush();
  }

  #call(name: "startChecks" | "stopChecks" | "markDraining" | "markStopped"): void {
    if (name === "startChecks") {
      this.#starts++;
      this.#health.startChecks();
    } else if (name === "stopChecks") {
      if (this.#starts === 0) return;
      this.#starts--;
      this.#health.stopChecks();
    } else {
      this.#health[name]();
    }
  }

  /** The Worker died: say so, and serve again, or make `finished` reject. */
  #died(why: string): void {
    this.#directory = undefined; // the Worker looked at it itself as it died (socket_file.ts)
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#balance();
    const now = performance.now();
    this.#deaths = [...this.#deaths.filter((at) => now - at < RESPAWN_WINDOW), now];
    if (!this.#served) {
      this.#end();
      this.#listening.reject(new Error(`Cannot serve health on "${this.path}": the Worker died: ${why}`));
      this.#finished.resolve();
      return;
    }
    if (this.#stopping || this.#deaths.length > RESPAWNS) {
      logger.error("The health Worker for {path} died: {error}; health is no longer served", {
        path: this.path,
        error: why,
      });
      this.#end();
      this.#finished.reject(
        new Error(`The health Worker for "${this.path}" died: ${why}; health is no longer served`),
      );
      return;
    }
    logger.error("The health Worker for {path} died: {error}; serving again", { path: this.path, error: why });
    this.#spawn();
  }

  /**
   * Before a Worker that may hold its listener is ended: Deno then drops the
   * listener, unlinking its bound name `PATH.tmp/s` through whatever is at
   * `PATH.tmp`. (A Worker that dies of an uncaught error is ended by Deno
   * as its error reaches this thread, sometimes before: measured on 2.9.6,
   * its bound name was already unlinked at the error event in 1 of 5 runs.
   * So it looks for itself, in socket_file.ts.)
   */
  #keepDirectory(): void {
    if (this.#directory) keepDirectory(this.path, this.#directory);
    this.#directory = undefined;
  }

  /** Match every startChecks() the Worker's server made, so the background checks stop. */
  #balance(): void {
    for (; this.#starts > 0; this.#starts--) this.#health.stopChecks();
  }

  #end(): void {
    clearInterval(this.#stamper);
    this.#health.removeEventListener("change", this.#onChange);
    this.#health.removeEventListener("update", this.#onUpdate);
    clearTimeout(this.#updateTimer);
    this.#updateTimer = undefined;
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#balance();
    this.#heartbeat.connections = 0;
    this.#ended.resolve();
  }
}

/** The Worker's error, thrown again on this thread as the same kind. */
function rebuild(path: string, shape: ErrorShape): Error {
  if (shape.name === "SocketError" && shape.reason !== undefined) {
    return new SocketError(path, shape.reason as SocketErrorReason, shape.message);
  }
  const errors = Deno.errors as unknown as Record<string, new (message: string) => Error>;
  if (Object.hasOwn(errors, shape.name)) return new errors[shape.name](shape.message);
  if (shape.name === "TypeError") return new TypeError(shape.message);
  if (shape.name === "RangeError") return new RangeError(shape.message);
  const error = new Error(shape.message);
  error.name = shape.name;
  return error;
}

const relays = new Map<string, Logger>();

/** Write a Worker's log record through this thread's loggers (LogTape). */
function relay(message: LogMessage): void {
  const key = message.category.join("\0");
  let target = relays.get(key);
  if (!target) relays.set(key, target = getLogger(message.category));
  target.log(message.level, message.message, message.properties);
}
