/**
 * One check's runs: its options, the call under its timeout, caching and a
 * single run shared by concurrent callers, the background interval and watch,
 * and what a run's outcome becomes in a report.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { boundValue, cutOutput, cutText, describe, MAX_UNIT_BYTES, messageOf } from "./bounds.ts";
import { milliseconds } from "./delay.ts";
import type { CheckKind, CheckSnapshot } from "./model.ts";
import { isoTime, isStatus } from "./report.ts";
import type { CheckResult, HealthStatus } from "./report.ts";

const logger = getLogger(["healthsock", "health"]);

/** What a check may return: a status, or a status with what it observed. */
export interface CheckOutcome {
  /** The check's status. */
  status: HealthStatus;
  /**
   * What the check measured: any value JSON can encode. A string is cut to
   * 1 KiB like `output`; an object or array whose JSON is longer than 1 KiB
   * is reported as its JSON text, cut and marked the same way. The report
   * keeps a copy taken when the check finished.
   */
  observedValue?: unknown;
  /** The unit of `observedValue`; cut to 64 bytes in reports. */
  observedUnit?: string;
  /** Why the check did not pass; cut to 1 KiB in reports, ending `… (cut from N bytes)`. */
  output?: string;
  /** When `observedValue` was recorded (a Date or ISO string); defaults to when the check finished. */
  time?: Date | string;
}

/**
 * A check: an async function that gets an `AbortSignal` (aborted when the
 * check times out or the server stops) and returns a status, an outcome, or
 * nothing (meaning `pass`). Throwing or rejecting, with anything, is `fail`
 * with the message as `output`.
 */
export type CheckFunction = (
  signal: AbortSignal,
) =>
  | CheckOutcome
  | HealthStatus
  | void
  | Promise<CheckOutcome | HealthStatus | void>;

/** Options of one check. */
export interface CheckOptions {
  /** Milliseconds a run may take before it is `fail` and its signal aborted. @default {1000} */
  timeout?: number;
  /** Whether failing makes the whole report `fail`; if not, it makes it `warn`. @default {true} */
  critical?: boolean;
  /** The probes this check answers to. @default {["ready"]} */
  kinds?: CheckKind[];
  /** Run in the background every this many milliseconds; requests read the last result. @default {undefined} */
  interval?: number;
  /** For a check without `interval`: reuse a result for this many milliseconds. @default {the Health's cacheTtl} */
  cacheTtl?: number;
  /** The measurement part of the report key `"name:measurement"`; the default reports the run time in ms. @default {"responseTime"} */
  measurement?: string;
  /** The IETF `componentType` of the result, such as `datastore` or `system`. @default {undefined} */
  componentType?: string;
}

/** A check function together with its options, as the built-in checks return it. */
export interface CheckDefinition extends CheckOptions {
  /** The check function. */
  check: CheckFunction;
}

interface Settled {
  result: CheckResult;
  at: number;
}

/**
 * How a check observes between its runs: called when the Health's checks start
 * (with a check's interval loop, see {@linkcode Health.prototype.startChecks}),
 * its signal aborted when they stop, and told the registered check's options
 * (`critical`, as the app set it). What it observes is the check function's
 * to read when it runs: `eventLoopLag()` watches the loop with a timer so that
 * a stall between two probes is not missed.
 */
export type Watch = (signal: AbortSignal, check: { readonly critical: boolean }) => void;

/**
 * The key of a definition's {@linkcode Watch}. Internal for now (only
 * built-in checks watch), hence a symbol: it is no field of the public
 * {@linkcode CheckDefinition}, no user's field can collide with it, and it is
 * kept when a definition is spread with options, as `Health.add()` does.
 */
export const WATCH: unique symbol = Symbol("healthsock.watch");

/** A check definition that may also observe between its runs. */
export interface WatchingDefinition extends CheckDefinition {
  /** Started and stopped with the check's background work. */
  [WATCH]?: Watch;
}

/** One registered check: its options, its runs, its latest result, and its background work while started. */
export class Check {
  readonly name: string;
  readonly key: string;
  readonly kinds: readonly CheckKind[];
  readonly critical: boolean;
  readonly interval?: number;
  #fn: CheckFunction;
  #timeout: number;
  #cacheTtl: number;
  #measurement: string;
  #componentType?: string;
  /** Observes between runs while the check is started: a built-in's ({@linkcode WATCH}). */
  #watch?: Watch;
  #last?: Settled;
  #inflight?: Promise<CheckResult>;
  #timer?: ReturnType<typeof setTimeout>;
  #stop?: AbortController;
  /** Aborts the on-request runs in progress when the health stops serving. */
  #runs = new AbortController();
  #onResult: (changed: boolean) => void;

  constructor(name: string, definition: WatchingDefinition, cacheTtl: number, onResult: (changed: boolean) => void) {
    this.name = name;
    this.#fn = definition.check;
    this.#timeout = milliseconds(definition.timeout ?? 1000, "timeout");
    this.#cacheTtl = milliseconds(definition.cacheTtl ?? cacheTtl, "cacheTtl", true);
    this.interval = definition.interval === undefined ? undefined : milliseconds(definition.interval, "interval");
    this.critical = definition.critical ?? true;
    this.kinds = [...new Set<CheckKind>(definition.kinds ?? ["ready"])];
    for (const kind of this.kinds) {
      if (kind !== "live" && kind !== "ready" && kind !== "startup") {
        throw new TypeError(`Cannot add check "${name}": unknown kind "${kind}"; use live, ready or startup`);
      }
    }
    this.#measurement = definition.measurement ?? "responseTime";
    this.#componentType = definition.componentType;
    this.#watch = definition[WATCH];
    this.key = `${name}:${this.#measurement}`;
    this.#onResult = onResult;
  }

  /** The check and its latest result, as plain data. */
  snapshot(): CheckSnapshot {
    const snapshot: CheckSnapshot = {
      name: this.name,
      key: this.key,
      kinds: [...this.kinds],
      critical: this.critical,
      background: this.interval !== undefined,
      timeout: this.#timeout,
    };
    if (this.#last) {
      snapshot.result = this.#last.result;
      if (this.interval === undefined) snapshot.freshUntil = performance.timeOrigin + this.#last.at + this.#cacheTtl;
    }
    return snapshot;
  }

  /** The current result: cached, shared with concurrent callers, or a new run. */
  current(): CheckResult | undefined | Promise<CheckResult> {
    if (this.interval !== undefined) return this.#last?.result;
    if (this.#last && performance.now() - this.#last.at < this.#cacheTtl) {
      return this.#last.result;
    }
    this.#inflight ??= this.#run(this.#runs.signal).finally(() => this.#inflight = undefined);
    return this.#inflight;
  }

  /** Start the background work, if the check has any: its watch, and its interval loop. */
  start(): void {
    if (this.#stop || (this.interval === undefined && this.#watch === undefined)) return;
    const stop = new AbortController();
    this.#stop = stop;
    this.#watch?.(stop.signal, this);
    if (this.interval === undefined) return;
    const loop = async () => {
      this.#timer = undefined;
      try {
        await this.#run(stop.signal);
      } catch (error) {
        logger.error("Check {name} could not run: {error}", { name: this.name, error: String(error) });
      }
      if (!stop.signal.aborted) this.#timer = setTimeout(loop, this.interval);
    };
    loop();
  }

  /** Stop the background work, and abort every run in progress, on request ones included. */
  stop(): void {
    const reason = new DOMException("The health server stopped", "AbortError");
    this.#stop?.abort(reason);
    this.#stop = undefined;
    // A server that stops waits for no check: runs on request end now, as "fail".
    this.#runs.abort(reason);
    this.#runs = new AbortController();
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * One run: call the function, make its outcome a result, record it. Each
   * step has its own method; a rule about one of them (how long a run may
   * take, what a result may hold, when a change counts) belongs there.
   */
  async #run(stopSignal: AbortSignal): Promise<CheckResult> {
    const started = performance.now();
    const outcome = await this.#call(stopSignal);
    const finished = performance.now();
    const result = this.#resultOf(outcome, finished - started);
    this.#record(result, finished);
    return result;
  }

  /**
   * Call the check function with a signal aborted when the run times out or
   * the checks stop. Whatever the function does (throw, reject, return a value
   * whose getters throw, never settle) ends in an outcome, by the timeout at
   * the latest; the abort listener stays until then.
   */
  #call(stopSignal: AbortSignal): Promise<CheckOutcome> {
    const timeout = AbortSignal.timeout(this.#timeout);
    const signal = AbortSignal.any([timeout, stopSignal]);
    return new Promise<CheckOutcome>((resolve) => {
      const settle = (outcome: CheckOutcome) => {
        signal.removeEventListener("abort", onAbort);
        resolve(outcome);
      };
      const onAbort = () =>
        settle({
          status: "fail",
          output: timeout.aborted ? `timed out after ${this.#timeout} ms` : "cancelled: the health server stopped",
        });
      signal.addEventListener("abort", onAbort, { once: true });
      new Promise<unknown>((run) => run(this.#fn(signal)))
        .then(normalize)
        .then(settle, (error) => settle({ status: "fail", output: messageOf(error) }));
    });
  }

  /**
   * The result a report shows of an outcome: its component type, its
   * observation or else the run time (`took` ms) when the measurement is
   * `responseTime`, its time, and a bounded output when it did not pass.
   */
  #resultOf(outcome: CheckOutcome, took: number): CheckResult {
    const result: CheckResult = { status: outcome.status };
    if (this.#componentType) result.componentType = this.#componentType;
    if (outcome.observedValue !== undefined) {
      result.observedValue = outcome.observedValue;
      if (outcome.observedUnit !== undefined) result.observedUnit = outcome.observedUnit;
    } else if (this.#measurement === "responseTime") {
      result.observedValue = Math.round(took * 10) / 10;
      result.observedUnit = "ms";
    }
    result.time = typeof outcome.time === "string" ? outcome.time : isoTime(Date.now());
    if (outcome.status !== "pass") result.output = cutOutput(outcome.output ?? `check ${outcome.status}ed`);
    return result;
  }

  /**
   * Keep a result finished at `at` as the latest (what is cached and
   * snapshotted), log a change of status, and tell the Health: a change of a
   * background check's status is a change of the reports.
   */
  #record(result: CheckResult, at: number): void {
    const previous = this.#last?.result.status;
    this.#last = { result, at };
    const changed = previous !== result.status;
    if (changed) this.#logChange(result);
    this.#onResult(changed && this.interval !== undefined);
  }

  #logChange(result: CheckResult): void {
    const level = result.status === "fail" ? "warn" : "info";
    if (result.output) {
      logger[level]("Check {name} is {status}: {output}", {
        name: this.name,
        status: result.status,
        output: result.output,
      });
    } else logger[level]("Check {name} is {status}", { name: this.name, status: result.status });
  }
}

/** Turn what a check returned into an outcome; throws only from getters of the value (caught by the caller). */
export function normalize(value: unknown): CheckOutcome {
  if (value === undefined) return { status: "pass" };
  if (isStatus(value)) return { status: value };
  if (typeof value === "object" && value !== null && isStatus((value as CheckOutcome).status)) {
    const { status, observedValue, observedUnit, output, time } = value as CheckOutcome;
    const outcome: CheckOutcome = { status };
    if (observedValue !== undefined) {
      // The report is JSON: a value JSON cannot encode (BigInt, a cycle) would make it unanswerable.
      let bounded: unknown;
      try {
        bounded = boundValue(observedValue);
      } catch (error) {
        return { status: "fail", output: `check returned an observedValue JSON cannot encode: ${messageOf(error)}` };
      }
      if (bounded !== undefined) outcome.observedValue = bounded;
    }
    if (typeof observedUnit === "string") outcome.observedUnit = cutText(observedUnit, MAX_UNIT_BYTES);
    if (output !== undefined) outcome.output = String(output);
    const ms = time instanceof Date ? time.getTime() : typeof time === "string" ? Date.parse(time) : NaN;
    if (Number.isFinite(ms)) outcome.time = new Date(ms).toISOString(); // otherwise: when the check finished
    return outcome;
  }
  return { status: "fail", output: `check returned an invalid result: ${describe(value)}` };
}
