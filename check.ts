/**
 * One check's runs: its options, the call under its timeout, caching and a
 * single run shared by concurrent callers, the background interval and watch,
 * and what a run's outcome becomes in a report.
 *
 * @module
 */
import { getLogger } from "./log.ts";
import {
  boundValue,
  cutOutput,
  cutText,
  describe,
  MAX_NAME_BYTES,
  MAX_TAGS,
  MAX_UNIT_BYTES,
  messageOf,
  reportCost,
} from "./bounds.ts";
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
 * check times out or the server stops) and returns a status, an outcome, a
 * boolean (`true` is `pass`, `false` is `fail` with the output "check
 * returned false"), or nothing (meaning `pass`). Throwing or rejecting, with
 * anything, is `fail` with the message as `output`.
 */
export type CheckFunction = (
  signal: AbortSignal,
) =>
  | CheckOutcome
  | HealthStatus
  | boolean
  | void
  | Promise<CheckOutcome | HealthStatus | boolean | void>;

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
  /**
   * Failing runs in a row before the check reports `fail`; until then it reports `warn`, saying how many of how
   * many, with the last failure's output. A cached result is not a run. @default {1}
   */
  failureThreshold?: number;
  /** After reporting `fail`, passing runs in a row before the check reports `pass` again; until then, `fail`. @default {1} */
  successThreshold?: number;
  /**
   * Milliseconds a check must have failed continuously (from its first failing run in a row) before it reports
   * `fail`; until then, `warn`. With `failureThreshold`, both must be reached. @default {undefined}
   */
  maxTimeInError?: number;
  /**
   * Labels to select the check by: `?tag=NAME` keeps the checks carrying any of the tags named. Letters, digits,
   * `.`, `_` and `-`; at most 32 of at most 128 bytes each. @default {[]}
   */
  tags?: string[];
}

/** A check function together with its options, as the built-in checks return it. */
export interface CheckDefinition extends CheckOptions {
  /** The check function. */
  check: CheckFunction;
}

/**
 * Told of each run's result as reported: the status reported before (undefined
 * before the first run), and whether the status changed.
 */
export type OnResult = (result: CheckResult, previous: HealthStatus | undefined, changed: boolean) => void;

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
  readonly tags: readonly string[];
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
  #onResult: OnResult;
  #failureThreshold: number;
  #successThreshold: number;
  #maxTimeInError?: number;
  /** Failing runs in a row, and when the first of them finished (`performance.now()`). */
  #failures = 0;
  #failingSince = 0;
  /** The check reports `fail` (past its thresholds): passing runs in a row since, and the last failure's output. */
  #failed = false;
  #passes = 0;
  #lastFailure?: string;

  constructor(name: string, definition: WatchingDefinition, cacheTtl: number, onResult: OnResult) {
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
    this.#failureThreshold = runs(definition.failureThreshold ?? 1, "failureThreshold");
    this.#successThreshold = runs(definition.successThreshold ?? 1, "successThreshold");
    if (definition.maxTimeInError !== undefined) {
      this.#maxTimeInError = milliseconds(definition.maxTimeInError, "maxTimeInError", true);
    }
    this.tags = tagsOf(name, definition.tags ?? []);
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
      tags: [...this.tags],
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
    return this.#record(this.#resultOf(outcome, finished - started), finished);
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
   * Keep a run's result finished at `at` as the latest (what is cached and
   * snapshotted), as its thresholds make it (see `#judge`),
   * log a change of status, and tell the Health.
   */
  #record(run: CheckResult, at: number): CheckResult {
    const result = this.#judge(run, at);
    const previous = this.#last?.result.status;
    this.#last = { result, at };
    const changed = previous !== result.status;
    if (changed) this.#logChange(result);
    this.#onResult(result, previous, changed);
    return result;
  }

  /**
   * What a run's result reports, by the thresholds: each run counts once (a
   * cached result is no run). A failing run reports `warn` until
   * `failureThreshold` runs in a row have failed, and for `maxTimeInError`
   * ms since the first of them; once the check reports `fail`, a passing run
   * (or warning one) reports `fail` until `successThreshold` runs in a row
   * have not failed. With the defaults, a run reports what it returned.
   */
  #judge(run: CheckResult, at: number): CheckResult {
    if (run.status === "fail") {
      this.#passes = 0;
      if (this.#failures++ === 0) this.#failingSince = at;
      this.#lastFailure = run.output;
      if (this.#failed) return run;
      const failures = this.#failures;
      const threshold = this.#failureThreshold;
      const time = Math.round(at - this.#failingSince);
      const limit = this.#maxTimeInError;
      if (failures >= threshold && (limit === undefined || time >= limit)) {
        this.#failed = true;
        return run;
      }
      const parts: string[] = [];
      if (threshold > 1 || limit === undefined) {
        parts.push(failures < threshold ? `${failures} of ${threshold} runs in a row` : `${failures} runs in a row`);
      }
      if (limit !== undefined) parts.push(`for ${time} of ${limit} ms`);
      return { ...run, status: "warn", output: cutOutput(`failed ${parts.join(", ")}: ${run.output}`) };
    }
    this.#failures = 0;
    if (!this.#failed) return run;
    if (++this.#passes >= this.#successThreshold) {
      this.#failed = false;
      this.#passes = 0;
      return run;
    }
    const output = `recovering: passed ${this.#passes} of ${this.#successThreshold} runs in a row; last failure: ${
      this.#lastFailure ?? "check failed"
    }`;
    return { ...run, status: "fail", output: cutOutput(output) };
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
  if (value === undefined || value === true) return { status: "pass" };
  if (value === false) return { status: "fail", output: "check returned false" };
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

/** A number of runs, from 1. */
function runs(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
    throw new RangeError(`Cannot use ${name} ${value}: expected a whole number of runs from 1 to ${2 ** 31 - 1}`);
  }
  return value;
}

/** A check's tags, checked as names are, without repeats. */
function tagsOf(name: string, tags: readonly string[]): string[] {
  if (!Array.isArray(tags)) throw new TypeError(`Cannot add check "${name}": tags must be an array of names`);
  const unique = [...new Set(tags)];
  for (const tag of unique) {
    if (typeof tag !== "string" || !/^[A-Za-z0-9._-]+$/.test(tag)) {
      throw new TypeError(`Cannot add check "${name}": tag ${describe(tag)} is not letters, digits, ".", "_" and "-"`);
    }
    if (reportCost(tag) > MAX_NAME_BYTES) {
      throw new RangeError(
        `Cannot add check "${name}": tag "${tag.slice(0, 32)}…" is longer than ${MAX_NAME_BYTES} bytes`,
      );
    }
  }
  if (unique.length > MAX_TAGS) {
    throw new RangeError(`Cannot add check "${name}": a check carries at most ${MAX_TAGS} tags`);
  }
  return unique;
}
