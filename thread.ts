/**
 * The messages between the main thread and the Worker that serves health
 * beside it, and the heartbeat the Worker reads without a message: a
 * `SharedArrayBuffer` the main thread stamps on a short timer. Pure but for
 * the clock: no sockets, no Workers.
 *
 * @module
 */
import { excludedOf, selects } from "./model.ts";
import type { HealthSnapshot } from "./model.ts";
import { isoTime } from "./report.ts";
import { LOG_LEVELS } from "./log.ts";
import type { LogFormat, LogLevel } from "./log.ts";
import type { CheckResult, Endpoint } from "./report.ts";

/** Milliseconds between the main thread's heartbeat stamps. */
export const HEARTBEAT_PERIOD = 50;

/**
 * Milliseconds the Worker waits for a main thread that has not turned since
 * it was asked (no heartbeat since) before it answers from the latest
 * results: far under any probe's time-out.
 */
export const ASK_BOUND = 50;

/**
 * {@linkcode ASK_BOUND} for a check that has no result yet, so nothing to
 * answer from but "no result yet": worth a longer wait, still far under a
 * probe's time-out.
 */
export const FIRST_ASK_BOUND = 250;

/**
 * Milliseconds past a missed heartbeat after which a main thread that took a
 * request (and is running its checks) counts as blocked, and the Worker
 * answers from the latest results.
 */
export const STALL_BOUND = 100;

/** Where the main thread's event loop stands, for the Worker. */
export interface LoopLimits {
  /** Milliseconds blocked after which `/readyz` and `/healthz` fail. */
  ready: number;
  /** Milliseconds blocked after which `/livez` and `/startupz` fail. */
  live: number;
}

/** What the Worker needs to start serving. */
export interface InitMessage {
  type: "init";
  path: string;
  /** The server's settings (`ServeOptions` resolved, without `signal`). */
  settings: Record<string, unknown>;
  /** The heartbeat's memory; see {@linkcode Heartbeat}. */
  heartbeat: SharedArrayBuffer;
  /** The lowest LogTape level enabled for healthsock's loggers on the main thread; undefined for none. */
  level: LogLevel | undefined;
  /** How the Worker writes its records to stderr when the main thread does not take them. */
  format: LogFormat;
  /** Who took which log record; see {@linkcode LogClaims}. */
  logs: SharedArrayBuffer;
  snapshot: HealthSnapshot;
}

/**
 * The latest results. `ids` answers the {@linkcode EvaluateMessage}s of those
 * ids (every one finished since the last snapshot: one snapshot answers them
 * all); `changed` means a status or the lifecycle changed.
 */
export interface SnapshotMessage {
  type: "snapshot";
  snapshot: HealthSnapshot;
  ids?: number[];
  changed: boolean;
}

/** Main thread to Worker: shut down, gracefully (`drain`) or now (`close`). */
export interface StopMessage {
  type: "drain" | "close";
}

/** Main thread to Worker, for tests only: throw an uncaught error, as a bug in the Worker would. */
export interface CrashMessage {
  type: "crash";
}

/** Messages the main thread sends. */
export type ToWorker = InitMessage | SnapshotMessage | StopMessage | CrashMessage;

/** Worker to main thread: the socket is claimed and served. */
export interface ListeningMessage {
  type: "listening";
}

/** Worker to main thread: the socket could not be served. */
export interface FailedMessage {
  type: "failed";
  error: ErrorShape;
}

/**
 * Worker to main thread: run these on-request checks once (a round: every
 * request waiting for them joins it), then send a snapshot answering `id`.
 * Ids grow by one per round. The main thread says it took the round, and
 * that it answered it, in the heartbeat's memory
 * ({@linkcode Heartbeat.prototype.taken}, {@linkcode Heartbeat.prototype.answered}).
 */
export interface EvaluateMessage {
  type: "evaluate";
  id: number;
  /** When the Worker asked ({@linkcode epochNow}); past `asked + bound` it has answered without the main thread. */
  asked: number;
  bound: number;
  /** The names of the checks to run. */
  checks: string[];
}

/** Worker to main thread: a lifecycle call of the server on the health. */
export interface CallMessage {
  type: "call";
  name: "startChecks" | "stopChecks" | "markDraining" | "markStopped";
}

/**
 * Worker to main thread: a log record, for the main thread's LogTape
 * configuration. Written by whoever claims its `seq` first
 * ({@linkcode LogClaims}): the main thread, or the Worker itself when the main
 * thread has not taken it in time.
 */
export interface LogMessage {
  type: "log";
  seq: number;
  /** When it was logged (ms since the epoch). */
  timestamp: number;
  category: string[];
  level: LogLevel;
  message: string;
  properties: Record<string, unknown>;
}

/** Worker to main thread: the server stopped and released its socket. */
export interface StoppedMessage {
  type: "stopped";
}

/** Messages the Worker sends. */
export type FromWorker =
  | ListeningMessage
  | FailedMessage
  | EvaluateMessage
  | CallMessage
  | LogMessage
  | StoppedMessage;

/** An error as it crosses threads: enough to throw the same kind again. */
export interface ErrorShape {
  name: string;
  message: string;
  /** A `SocketError`'s reason. */
  reason?: string;
}

/**
 * An error as plain data.
 *
 * @param error Anything thrown.
 * @returns Its name, message and, for a `SocketError`, reason.
 */
export function errorShape(error: unknown): ErrorShape {
  if (error instanceof Error) {
    const shape: ErrorShape = { name: error.name, message: error.message };
    const reason = (error as { reason?: unknown }).reason;
    if (typeof reason === "string") shape.reason = reason;
    return shape;
  }
  return { name: "Error", message: String(error) };
}

/**
 * Milliseconds since the epoch, on a clock both threads share and that does
 * not step back: each thread's time origin plus its monotonic time.
 *
 * @returns The time.
 */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * The main thread's heartbeat, in memory both threads see: the main thread
 * stamps it every {@linkcode HEARTBEAT_PERIOD} ms; the Worker reads how long
 * ago that was without a message, so it knows at once when the main thread's
 * event loop stopped turning. The same memory carries the Worker's count of
 * open connections back, which the Worker keeps up to date, and how far the
 * main thread has got with the Worker's rounds: a reply stuck behind other
 * work in the Worker's own queue is known to be there without reading it.
 */
export class Heartbeat {
  /** The shared memory: post it to the other thread. */
  readonly buffer: SharedArrayBuffer;
  #stamp: BigInt64Array;
  #connections: Int32Array;

  /**
   * Wrap shared memory, or make it.
   *
   * @param buffer The memory another thread made; new memory, stamped now, when absent.
   */
  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(24);
    this.#stamp = new BigInt64Array(this.buffer, 0, 1);
    // [connections, taken, answered, unused]
    this.#connections = new Int32Array(this.buffer, 8, 4);
    if (!buffer) this.stamp();
  }

  /**
   * Record that the event loop turned.
   *
   * @param now The time, from {@linkcode epochNow}.
   */
  stamp(now: number = epochNow()): void {
    Atomics.store(this.#stamp, 0, BigInt(Math.round(now)));
  }

  /** When the loop last turned (ms since the epoch). */
  get last(): number {
    return Number(Atomics.load(this.#stamp, 0));
  }

  /**
   * How long the loop has gone without turning, beyond the stamp's own period.
   *
   * @param now The time, from {@linkcode epochNow}.
   * @returns Milliseconds, 0 while it turns on time.
   */
  blockedFor(now: number = epochNow()): number {
    return Math.max(0, Math.round(now - this.last - HEARTBEAT_PERIOD));
  }

  /**
   * The Worker's open connections, which it writes as each is accepted and
   * closed: read without waiting for the Worker, so a busy Worker never holds
   * the reader.
   */
  get connections(): number {
    return Atomics.load(this.#connections, 0);
  }

  set connections(count: number) {
    Atomics.store(this.#connections, 0, count);
  }

  /** The last {@linkcode EvaluateMessage} id the main thread has taken (ids grow, and arrive in order). */
  get taken(): number {
    return Atomics.load(this.#connections, 1);
  }

  set taken(id: number) {
    Atomics.store(this.#connections, 1, id);
  }

  /**
   * Every {@linkcode EvaluateMessage} id up to this one has been answered:
   * its snapshot is posted, and in the Worker's queue if not yet read.
   */
  get answered(): number {
    return Atomics.load(this.#connections, 2);
  }

  set answered(id: number) {
    Atomics.store(this.#connections, 2, id);
  }
}

/**
 * Which of the Worker's log records have been written, in memory both threads
 * see: records are numbered from 1 in the order logged, and each is claimed
 * once, in order, by the main thread as it takes it or by the Worker once the
 * main thread is late. So none is written twice and none is lost, whichever
 * thread turns. Numbers are 32-bit and wrap: they are compared as such.
 */
export class LogClaims {
  /** The shared memory: post it to the other thread. */
  readonly buffer: SharedArrayBuffer;
  #last: Int32Array;

  /**
   * Wrap shared memory, or make it.
   *
   * @param buffer The memory another thread made; new memory when absent.
   */
  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(4);
    this.#last = new Int32Array(this.buffer, 0, 1);
  }

  /**
   * The number after `seq`.
   *
   * @param seq A record's number; 0 before the first.
   * @returns The next record's.
   */
  static next(seq: number): number {
    return (seq + 1) | 0;
  }

  /**
   * Claim record `seq`: true once, for the first thread to ask, when every
   * record before it is claimed.
   *
   * @param seq The record's number.
   * @returns Whether this thread writes it.
   */
  claim(seq: number): boolean {
    const before = (seq - 1) | 0;
    return Atomics.compareExchange(this.#last, 0, before, seq | 0) === before;
  }

  /**
   * Whether record `seq` has been claimed, by either thread.
   *
   * @param seq The record's number.
   * @returns True once it is.
   */
  claimed(seq: number): boolean {
    return ((seq - Atomics.load(this.#last, 0)) | 0) <= 0;
  }
}

/**
 * The main loop's pseudo-check (`mainloop`) for an
 * endpoint: `fail` on `/readyz` and `/healthz` once the loop has been
 * blocked longer than `limits.ready`, on `/livez` and `/startupz` once
 * longer than `limits.live`.
 *
 * @param blocked Milliseconds the loop has been blocked.
 * @param last When it last turned (ms since the epoch).
 * @param endpoint The endpoint.
 * @param limits The two thresholds.
 * @returns The result, its `observedValue` the milliseconds blocked.
 */
export function loopResult(blocked: number, last: number, endpoint: Endpoint, limits: LoopLimits): CheckResult {
  const live = endpoint === "livez" || endpoint === "startupz";
  const limit = live ? limits.live : limits.ready;
  const result: CheckResult = {
    status: blocked > limit ? "fail" : "pass",
    componentType: "system",
    observedValue: blocked,
    observedUnit: "ms",
    time: isoTime(Math.round(last)),
  };
  if (blocked > limit) {
    result.output = `main thread's event loop blocked for ${seconds(blocked)} (${
      live ? "liveness" : "readiness"
    } fails after ${seconds(limit)})`;
  }
  return result;
}

/** A duration for people: `850 ms`, `1.5 s`. */
function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

/** The checks a report needs the main thread to run. */
export interface Due {
  /** Their names. */
  names: string[];
  /** The longest time-out among them. */
  timeout: number;
  /** One of them has never run: there is no result to answer from. */
  first: boolean;
}

/**
 * Whether answering needs the main thread to run checks: a selected
 * on-request check the report selects (as the model selects it, see
 * model.ts's `selects`) has no result, or one no longer fresh.
 *
 * @param snapshot The latest results.
 * @param endpoint The endpoint.
 * @param check One check, if asked for alone.
 * @param exclude Checks left out.
 * @param now The time (ms since the epoch).
 * @param tags The tags asked for; none keeps every check.
 * @returns What is due, or undefined when nothing is.
 */
export function dueChecks(
  snapshot: HealthSnapshot,
  endpoint: Endpoint,
  check: string | undefined,
  exclude: readonly string[],
  now: number,
  tags: readonly string[] = [],
): Due | undefined {
  const excluded = excludedOf(exclude);
  let due: Due | undefined;
  for (const entry of snapshot.checks) {
    if (entry.background || !selects(entry, endpoint, check, excluded, tags)) continue;
    if (entry.result === undefined || entry.freshUntil === undefined || entry.freshUntil <= now) {
      due ??= { names: [], timeout: 0, first: false };
      due.names.push(entry.name);
      due.timeout = Math.max(due.timeout, entry.timeout);
      if (entry.result === undefined) due.first = true;
    }
  }
  return due;
}

/**
 * Whether a message posted from the Worker is one of {@linkcode FromWorker}.
 *
 * @param data A message's data.
 * @returns True when it has a known `type`.
 */
export function isFromWorker(data: unknown): data is FromWorker {
  const type = (data as { type?: unknown } | null)?.type;
  return typeof type === "string" &&
    ["listening", "failed", "evaluate", "call", "log", "stopped"].includes(type);
}

/**
 * The lowest level a logger is enabled for.
 *
 * @param enabled Whether a level is enabled.
 * @returns The level, or undefined when none is.
 */
export function lowestLevel(enabled: (level: LogLevel) => boolean): LogLevel | undefined {
  return LOG_LEVELS.find(enabled);
}
