/**
 * The health model: named checks, their timeouts and caching, the lifecycle
 * (`starting` → `ready` → `draining` → `stopped`) and the aggregation of
 * results into a report.
 *
 * @module
 */
import { getLogger } from "./log.ts";
import { milliseconds } from "./delay.ts";
import { isStatus } from "./report.ts";
import type { CheckResult, Endpoint, HealthReport, HealthStatus } from "./report.ts";

const logger = getLogger(["healthsock", "health"]);

/** Which probes a check answers to. */
export type CheckKind = "live" | "ready" | "startup";

/** Where a program is in its life, as the probes see it. */
export type Lifecycle = "starting" | "ready" | "draining" | "stopped";

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

/** Options of a {@linkcode Health}. */
export interface HealthOptions {
  /** Start in the `ready` state instead of `starting`. @default {false} */
  ready?: boolean;
  /** The default `cacheTtl` of on-request checks, in milliseconds. @default {1000} */
  cacheTtl?: number;
}

/** Options of {@linkcode Health.prototype.report}. */
export interface ReportOptions {
  /** Report only this check. @default {undefined} */
  check?: string;
  /** Leave these checks out. @default {[]} */
  exclude?: readonly string[];
}

const KINDS: Record<Endpoint, CheckKind | undefined> = {
  healthz: undefined,
  livez: "live",
  readyz: "ready",
  startupz: "startup",
};

/** The name of the pseudo-check that reports the lifecycle state. */
export const LIFECYCLE_CHECK = "lifecycle";

/**
 * The name of the pseudo-check that reports how long the main thread's event
 * loop has been blocked, in reports served from a Worker.
 */
export const MAIN_LOOP_CHECK = "mainloop";

/**
 * What a health server needs of the health it serves: reports, their changes
 * (a `change` event), and the lifecycle calls a server makes.
 * {@linkcode Health} is one; a Worker serving beside the app has its own,
 * fed by the main thread.
 */
export interface HealthSource extends EventTarget {
  /** A report, synchronous when every result is at hand; see {@linkcode Health.prototype.evaluate}. */
  evaluate(endpoint: Endpoint, options?: ReportOptions): HealthReport | Promise<HealthReport>;
  /** Whether `/ENDPOINT/NAME` exists. */
  has(name: string, endpoint?: Endpoint): boolean;
  /** Start running the background checks; each call is matched by a {@linkcode HealthSource.stopChecks}. */
  startChecks(): void;
  /** Stop running the background checks and abort the runs in progress; the lifecycle is left as it is. */
  stopChecks(): void;
  /** Fail `/readyz` with "shutting down". */
  markDraining(): void;
  /** Fail every probe from now on. */
  markStopped(): void;
}

/** One check as a {@linkcode HealthSnapshot} shows it. */
export interface CheckSnapshot {
  /** The check's name. */
  name: string;
  /** Its report key, `name:measurement`. */
  key: string;
  /** The probes it answers to. */
  kinds: CheckKind[];
  /** Whether failing fails the report. */
  critical: boolean;
  /** It runs in the background: answering never runs it. */
  background: boolean;
  /** Milliseconds a run may take. */
  timeout: number;
  /** Its latest result, if it has run. */
  result?: CheckResult;
  /** For an on-request check: the latest result is reused until this time (ms since the epoch). */
  freshUntil?: number;
}

/** A copy of a {@linkcode Health}'s lifecycle and latest results, as plain data another thread can be sent. */
export interface HealthSnapshot {
  /** The lifecycle state. */
  state: Lifecycle;
  /** When it was entered (ISO). */
  since: string;
  /** The checks, in registration order. */
  checks: CheckSnapshot[];
}

/** A result as a report lists it: which check, under which key, and whether it is critical. */
interface ReportEntry {
  name: string;
  key: string;
  critical: boolean;
  result: CheckResult | undefined;
}

/** The checks an endpoint selects, and its last report with the results it was built from. */
interface Plan {
  selected: Check[];
  results?: (CheckResult | undefined)[];
  report?: HealthReport;
}

interface Settled {
  result: CheckResult;
  at: number;
}

/**
 * How a check observes between its runs: called when the Health's checks start
 * (with a check's interval loop, see {@linkcode Health.prototype.startChecks}),
 * its signal aborted when they stop. What it observes is the check function's
 * to read when it runs: `eventLoopLag()` watches the loop with a timer so that
 * a stall between two probes is not missed.
 */
type Watch = (signal: AbortSignal) => void;

/**
 * The key of a definition's {@linkcode Watch}. Internal for now (only
 * built-in checks watch), hence a symbol: it is no field of the public
 * {@linkcode CheckDefinition}, no user's field can collide with it, and it is
 * kept when a definition is spread with options, as `Health.add()` does.
 */
const WATCH: unique symbol = Symbol("healthsock.watch");

/** A check definition that may also observe between its runs. */
interface WatchingDefinition extends CheckDefinition {
  /** Started and stopped with the check's background work. */
  [WATCH]?: Watch;
}

/** One registered check: its options, its runs, its latest result, and its background work while started. */
class Check {
  readonly name: string;
  readonly key: string;
  readonly kinds: ReadonlySet<CheckKind>;
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
    this.kinds = new Set(definition.kinds ?? ["ready"]);
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
    this.#watch?.(stop.signal);
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

function sameResults(a: readonly (CheckResult | undefined)[], b: readonly (CheckResult | undefined)[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The lifecycle pseudo-check's result on an endpoint, for a state entered at `since`. */
function lifecycleResult(state: Lifecycle, since: string, endpoint: Endpoint): CheckResult {
  const result: CheckResult = { status: "pass", observedValue: state, time: since };
  let output: string | undefined;
  if (state === "stopped") output = "stopped";
  else if (endpoint === "readyz" && state !== "ready") {
    output = state === "draining" ? "shutting down" : "starting";
  } else if (endpoint === "startupz" && state === "starting") output = "starting";
  if (output) {
    result.status = "fail";
    result.output = output;
  }
  return result;
}

/**
 * Aggregate the selected checks' results and the pseudo-checks (each shown
 * unless excluded, or when asked for alone) into a report.
 */
function buildReport(
  endpoint: Endpoint,
  only: string | undefined,
  exclude: readonly string[],
  entries: readonly ReportEntry[],
  pseudo: readonly ReportEntry[],
  known: (name: string) => boolean,
): HealthReport {
  const excluded = new Set(exclude);
  const checks: Record<string, CheckResult[]> = {};
  const failed: string[] = [];
  const warned: string[] = [];
  const tally = (name: string, result: CheckResult, critical: boolean) => {
    if (result.status === "fail") (critical ? failed : warned).push(name);
    else if (result.status === "warn") warned.push(name);
  };
  for (const entry of entries) {
    let result = entry.result;
    if (result === undefined) {
      if (endpoint === "livez") continue;
      result = { status: "fail", output: "no result yet", time: isoTime(Date.now()) };
    }
    checks[entry.key] = [result];
    // Asked about alone, a check's own status is the answer.
    tally(entry.name, result, entry.critical || only !== undefined);
  }
  for (const entry of pseudo) {
    if (only === undefined ? excluded.has(entry.name) : only !== entry.name) continue;
    checks[entry.key] = [entry.result!];
    tally(entry.name, entry.result!, true);
  }
  const status: HealthStatus = failed.length ? "fail" : warned.length ? "warn" : "pass";
  const report: HealthReport = { status, checks };
  if (status !== "pass") {
    report.output = [
      failed.length ? `failed: ${failed.join(", ")}` : "",
      warned.length ? `warn: ${warned.join(", ")}` : "",
    ].filter(Boolean).join("; ");
  }
  const unknown = [...excluded].filter((name) => !pseudo.some((entry) => entry.name === name) && !known(name));
  if (unknown.length) {
    report.notes = unknown.map((name) => `cannot exclude "${name}": no check of that name`);
  }
  return report;
}

/**
 * A report built from a {@linkcode HealthSnapshot}, as {@linkcode Health.prototype.evaluate}
 * would build it from the same results, plus an optional event-loop entry
 * ({@linkcode MAIN_LOOP_CHECK}).
 *
 * @param snapshot The lifecycle and latest results.
 * @param endpoint Which checks.
 * @param options One check, or checks to exclude.
 * @param loop The main loop's pseudo-check result, if there is one.
 * @returns The report.
 * @throws {RangeError} When `check` names no check of that endpoint.
 */
export function reportFromSnapshot(
  snapshot: HealthSnapshot,
  endpoint: Endpoint,
  options: ReportOptions = {},
  loop?: CheckResult,
): HealthReport {
  const { check: only, exclude = [] } = options;
  if (only !== undefined && !snapshotHas(snapshot, only, endpoint, loop !== undefined)) {
    throw new RangeError(`No check named "${only}" on /${endpoint}`);
  }
  const kind = KINDS[endpoint];
  const excluded = new Set(exclude);
  const entries: ReportEntry[] = [];
  for (const check of snapshot.checks) {
    if (only === undefined ? excluded.has(check.name) : check.name !== only) continue;
    if (kind !== undefined && !check.kinds.includes(kind)) continue;
    entries.push({ name: check.name, key: check.key, critical: check.critical, result: check.result });
  }
  const pseudo: ReportEntry[] = [{
    name: LIFECYCLE_CHECK,
    key: `${LIFECYCLE_CHECK}:state`,
    critical: true,
    result: lifecycleResult(snapshot.state, snapshot.since, endpoint),
  }];
  if (loop) pseudo.push({ name: MAIN_LOOP_CHECK, key: `${MAIN_LOOP_CHECK}:blocked`, critical: true, result: loop });
  return buildReport(endpoint, only, exclude, entries, pseudo, (name) => snapshot.checks.some((c) => c.name === name));
}

/**
 * Whether `/ENDPOINT/NAME` exists in a snapshot, as {@linkcode Health.prototype.has} says.
 *
 * @param snapshot The checks.
 * @param name The check's name.
 * @param endpoint The endpoint.
 * @param loop The main loop's pseudo-check is reported.
 * @returns True when it exists.
 */
export function snapshotHas(snapshot: HealthSnapshot, name: string, endpoint: Endpoint, loop: boolean): boolean {
  if (name === LIFECYCLE_CHECK || (loop && name === MAIN_LOOP_CHECK)) return true;
  const kind = KINDS[endpoint];
  return snapshot.checks.some((check) => check.name === name && (kind === undefined || check.kinds.includes(kind)));
}

/** Turn what a check returned into an outcome; throws only from getters of the value (caught by the caller). */
function normalize(value: unknown): CheckOutcome {
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

/**
 * The most bytes a check's `output`, or its `observedValue`, takes in a report.
 * With {@linkcode MAX_UNIT_BYTES}, {@linkcode MAX_NAME_BYTES} and
 * {@linkcode MAX_CHECKS} this bounds a report: about 2.7 KiB a check, 350 KiB
 * for the most checks, all fields full, far below the 1 MiB a client accepts.
 */
const MAX_OUTPUT_BYTES = 1024;
/** The most bytes of an `observedUnit` in a report: a unit is a word. */
const MAX_UNIT_BYTES = 64;
/** The most bytes of a check's name, measurement or component type. */
const MAX_NAME_BYTES = 128;
/** The most checks a {@linkcode Health} holds, so that a report of all of them stays bounded. */
const MAX_CHECKS = 128;
const encoder = new TextEncoder();

/**
 * The bytes a text takes in a report at most, escaped: as JSON writes it, or
 * as `?verbose` text does (DEL, C1 and the line separators as `\uXXXX`).
 * Each UTF-16 unit costs at most 6, so `text.length * 6` bounds it. Counting
 * stops once the cost is above `stopAbove`.
 */
function reportCost(text: string, from = 0, until = text.length, stopAbove = Infinity): number {
  let cost = 0;
  for (let i = from; i < until && cost <= stopAbove; i++) cost += unitCost(text, i);
  return cost;
}

/** The cost of the character at `i`: a surrogate pair counts once, at its first half, and its second costs 0. */
function unitCost(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c < 0x20) return c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d ? 2 : 6;
  if (c === 0x22 || c === 0x5c) return 2;
  if (c < 0x7f) return 1;
  if (c <= 0x9f || c === 0x2028 || c === 0x2029) return 6;
  if (c < 0x800) return 2;
  if (c >= 0xd800 && c <= 0xdbff) {
    const next = text.charCodeAt(i + 1);
    return next >= 0xdc00 && next <= 0xdfff ? 4 : 6;
  }
  if (c >= 0xdc00 && c <= 0xdfff) {
    const previous = text.charCodeAt(i - 1);
    return previous >= 0xd800 && previous <= 0xdbff ? 0 : 6;
  }
  return 3;
}

/**
 * Cut a text that takes more than `max` bytes in a report (see
 * {@linkcode reportCost}) to at most that, its end replaced by
 * `… (cut from N bytes)` (N its UTF-8 size), never inside a character.
 */
function cutText(text: string, max: number): string {
  // Most texts need no counting.
  if (text.length * 6 <= max || reportCost(text, 0, text.length, max) <= max) return text;
  const mark = `… (cut from ${encoder.encode(text).length} bytes)`;
  const room = max - reportCost(mark);
  let cost = 0;
  let end = 0;
  while (end < text.length) {
    const c = text.charCodeAt(end);
    const pair = c >= 0xd800 && c <= 0xdbff && end + 1 < text.length;
    const width = pair ? 2 : 1;
    const next = cost + reportCost(text, end, end + width);
    if (next > room) break;
    cost = next;
    end += width;
  }
  return text.slice(0, end) + mark;
}

/**
 * What a report shows of an `observedValue`: numbers, booleans and null as
 * they are; a string cut as an output is; an object or array copied through
 * JSON (so later changes to it do not show), or, when its JSON takes more than
 * {@linkcode MAX_OUTPUT_BYTES}, that JSON text cut and marked. Undefined for
 * what JSON leaves out (a function). Throws what `JSON.stringify` throws.
 */
function boundValue(value: unknown): unknown {
  if (typeof value === "string") return cutText(value, MAX_OUTPUT_BYTES);
  if (typeof value === "number" || typeof value === "boolean" || value === null) return value;
  const json = JSON.stringify(value);
  if (json === undefined) return undefined;
  // JSON text needs no more escaping: its cost is its UTF-8 size.
  if (json.length * 3 <= MAX_OUTPUT_BYTES || encoder.encode(json).length <= MAX_OUTPUT_BYTES) return JSON.parse(json);
  return cutText(json, MAX_OUTPUT_BYTES);
}

/** Cut a check's output to {@linkcode MAX_OUTPUT_BYTES}. */
function cutOutput(output: string): string {
  return cutText(output, MAX_OUTPUT_BYTES);
}

function messageOf(error: unknown): string {
  try {
    if (error instanceof Error) return String(error.message || error.name);
    if (typeof error === "string") return error;
  } catch { /* a message getter that throws */ }
  return `threw ${describe(error)}`;
}

function describe(value: unknown): string {
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 80 ? text.slice(0, 80) + "…" : text;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * A program's health: the registry of its checks and its lifecycle state.
 *
 * Register checks with {@linkcode Health.prototype.add}, serve them with
 * `serve()`, and call {@linkcode Health.prototype.markReady} once start-up is
 * done. Dispatches a `change` event when the lifecycle state or the status of
 * a background check changes, and an `update` event when a check is added or
 * removed or finishes a run.
 *
 * @example Register two checks
 * ```ts
 * import { Health } from "@healthsock/healthsock";
 * const health = new Health();
 * health.add("db", async (signal) => {
 *   await fetch("http://localhost:5432/", { signal }).catch(() => {
 *     throw new Error("database unreachable");
 *   });
 * }, { timeout: 500 });
 * health.add("worker", () => "pass", { kinds: ["live"] });
 * const report = await health.report("livez");
 * console.log(report.status); // "pass"
 * ```
 */
export class Health extends EventTarget {
  #checks = new Map<string, Check>();
  #state: Lifecycle;
  #cacheTtl: number;
  /** The calls of startChecks() not yet matched by stopChecks(): the checks run while it is above 0. */
  #starts = 0;
  #stateSince = isoTime(Date.now());
  /** The lifecycle pseudo-check's result on each endpoint, for the current state (cleared when it changes). */
  #lifecycleResults = new Map<Endpoint, CheckResult>();
  #plans = new Map<string, Plan>();

  /**
   * Create an empty registry.
   *
   * @param options Initial state and default cache time.
   * @throws {RangeError} When `cacheTtl` is negative.
   */
  constructor(options: HealthOptions = {}) {
    super();
    this.#state = options.ready ? "ready" : "starting";
    this.#cacheTtl = milliseconds(options.cacheTtl ?? 1000, "cacheTtl", true);
  }

  /** The lifecycle state. */
  get state(): Lifecycle {
    return this.#state;
  }

  /** The names of the registered checks, in registration order. */
  get names(): string[] {
    return [...this.#checks.keys()];
  }

  /**
   * Register a check.
   *
   * @param name The check's name: letters, digits, `.`, `_` and `-`, at most 128.
   * @param check The check function, or a definition such as a built-in check returns.
   * @param options Options; they override those of a definition.
   * @returns This registry, for chaining.
   * @throws {TypeError} When the name is invalid or taken, or a kind is unknown.
   * @throws {RangeError} When a timeout, interval or cache time is out of range, the
   * name, measurement or component type is longer than 128 bytes, or the registry
   * holds 128 checks already (a report of them all stays far below what a client accepts).
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * new Health().add("cache", () => ({ status: "warn", output: "cold" }), { critical: false });
   * ```
   */
  add(name: string, check: CheckFunction | CheckDefinition, options: CheckOptions = {}): this {
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name === LIFECYCLE_CHECK || name === MAIN_LOOP_CHECK) {
      throw new TypeError(
        `Cannot add check "${name}": use letters, digits, ".", "_" and "-", and not "${LIFECYCLE_CHECK}" or "${MAIN_LOOP_CHECK}"`,
      );
    }
    if (name.length > MAX_NAME_BYTES) {
      throw new RangeError(`Cannot add check "${name.slice(0, 32)}…": its name is longer than ${MAX_NAME_BYTES} bytes`);
    }
    if (this.#checks.has(name)) throw new TypeError(`Cannot add check "${name}": a check of that name exists`);
    if (this.#checks.size >= MAX_CHECKS) {
      throw new RangeError(`Cannot add check "${name}": a Health holds at most ${MAX_CHECKS} checks`);
    }
    const definition = typeof check === "function" ? { ...options, check } : { ...check, ...options };
    if (typeof definition.check !== "function") {
      throw new TypeError(`Cannot add check "${name}": expected a function`);
    }
    for (const field of ["measurement", "componentType"] as const) {
      const value = definition[field];
      if (value !== undefined && (typeof value !== "string" || reportCost(value) > MAX_NAME_BYTES)) {
        throw new RangeError(
          `Cannot add check "${name}": its ${field} must be text of at most ${MAX_NAME_BYTES} bytes`,
        );
      }
    }
    const entry = new Check(name, definition, this.#cacheTtl, (changed) => {
      if (changed) this.#changed();
      this.dispatchEvent(new Event("update"));
    });
    this.#checks.set(name, entry);
    this.#plans.clear();
    this.dispatchEvent(new Event("update"));
    if (this.#starts > 0) entry.start();
    return this;
  }

  /**
   * Remove a check.
   *
   * @param name The check's name.
   * @returns Whether a check was removed.
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * new Health().remove("db"); // false
   * ```
   */
  remove(name: string): boolean {
    this.#checks.get(name)?.stop();
    this.#plans.clear();
    const removed = this.#checks.delete(name);
    if (removed) this.dispatchEvent(new Event("update"));
    return removed;
  }

  /**
   * Whether an endpoint has a check of this name (including `lifecycle`).
   *
   * @param name The check's name.
   * @param endpoint The endpoint; `healthz` has every check.
   * @returns True when `/ENDPOINT/NAME` exists.
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * new Health().has("lifecycle", "readyz"); // true
   * ```
   */
  has(name: string, endpoint: Endpoint = "healthz"): boolean {
    if (name === LIFECYCLE_CHECK) return true;
    const check = this.#checks.get(name);
    const kind = KINDS[endpoint];
    return check !== undefined && (kind === undefined || check.kinds.has(kind));
  }

  /**
   * Open `/readyz` and `/startupz`: start-up is done.
   *
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health();
   * health.markReady();
   * console.log(health.state); // "ready"
   * ```
   */
  markReady(): void {
    if (this.#state === "starting") this.#setState("ready");
  }

  /**
   * Fail `/readyz` with "shutting down" while `/livez` keeps passing. The
   * server's `drain()` calls this; call it yourself to stop taking traffic.
   *
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health({ ready: true });
   * health.markDraining();
   * console.log((await health.report("readyz")).status); // "fail"
   * ```
   */
  markDraining(): void {
    if (this.#state === "starting" || this.#state === "ready") this.#setState("draining");
  }

  /**
   * Mark the program stopped: every probe fails from now on.
   *
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health();
   * health.markStopped();
   * console.log(health.state); // "stopped"
   * ```
   */
  markStopped(): void {
    if (this.#state !== "stopped") this.#setState("stopped");
  }

  /**
   * Start running the background checks (those with an `interval`, and the
   * watchers of built-in checks such as {@linkcode eventLoopLag}). `serve()`
   * calls this; each call needs a matching
   * {@linkcode Health.prototype.stopChecks}. The lifecycle state is not
   * touched.
   *
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health();
   * health.startChecks();
   * health.stopChecks();
   * ```
   */
  startChecks(): void {
    if (this.#starts++ === 0) { for (const check of this.#checks.values()) check.start(); }
  }

  /**
   * Stop running the background checks once every `startChecks()` has been
   * matched, aborting the runs in progress, those on request included (they
   * end as `fail`). The lifecycle state is not touched: that is
   * {@linkcode Health.prototype.markStopped}.
   *
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health();
   * health.startChecks();
   * health.stopChecks();
   * ```
   */
  stopChecks(): void {
    if (this.#starts === 0) return;
    if (--this.#starts === 0) { for (const check of this.#checks.values()) check.stop(); }
  }

  /**
   * Evaluate the checks of an endpoint and aggregate them.
   *
   * On-request checks run at most once per `cacheTtl`, concurrent callers
   * sharing one run; background checks give their last result. A background
   * check with no result yet counts as `fail` except on `/livez`, which leaves
   * it out. The total is `fail` when a critical check fails, `warn` when a
   * check warns or a non-critical one fails, `pass` otherwise.
   *
   * @param endpoint Which checks: `healthz` (all), `livez`, `readyz` or `startupz`.
   * @param options One check, or checks to exclude.
   * @returns The report; treat it as read-only, as an unchanged report is
   * returned again to later callers.
   * @throws {RangeError} When `check` names no check of that endpoint.
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health({ ready: true }).add("db", () => "pass");
   * const report = await health.report("readyz", { exclude: ["db"] });
   * console.log(Object.keys(report.checks)); // ["lifecycle:state"]
   * ```
   */
  async report(endpoint: Endpoint, options: ReportOptions = {}): Promise<HealthReport> {
    return await this.evaluate(endpoint, options);
  }

  /**
   * {@linkcode Health.prototype.report}, but synchronous when every result is
   * at hand (cached, or kept by a background check), as it is for most probes;
   * a promise only while a check runs. Servers use it to answer without
   * waiting a turn of the event loop.
   *
   * @param endpoint Which checks: `healthz` (all), `livez`, `readyz` or `startupz`.
   * @param options One check, or checks to exclude.
   * @returns The report, or a promise of it; treat it as read-only.
   * @throws {RangeError} When `check` names no check of that endpoint.
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health({ ready: true }).add("db", () => "pass", { interval: 1000 });
   * const report = health.evaluate("readyz");
   * console.log(report instanceof Promise ? "running" : report.status);
   * ```
   */
  evaluate(endpoint: Endpoint, options: ReportOptions = {}): HealthReport | Promise<HealthReport> {
    const { check: only, exclude = [] } = options;
    if (only !== undefined && !this.has(only, endpoint)) {
      throw new RangeError(`No check named "${only}" on /${endpoint}`);
    }
    // Exclusions are the client's to vary: only plans without them are kept (a bounded set).
    const key = exclude.length === 0 ? `${endpoint}/${only ?? ""}` : undefined;
    let plan = key === undefined ? undefined : this.#plans.get(key);
    if (!plan) {
      const kind = KINDS[endpoint];
      const excluded = new Set(exclude);
      const selected = [...this.#checks.values()].filter((check) =>
        (only === undefined ? !excluded.has(check.name) : check.name === only) &&
        (kind === undefined || check.kinds.has(kind))
      );
      plan = { selected };
      if (key !== undefined) this.#plans.set(key, plan);
    }
    const { selected } = plan;
    const current: (CheckResult | undefined | Promise<CheckResult>)[] = new Array(selected.length);
    let running = false;
    for (let i = 0; i < selected.length; i++) {
      const result = current[i] = selected[i].current();
      if (result instanceof Promise) running = true;
    }
    const known = plan;
    if (running) return Promise.all(current).then((results) => this.#build(endpoint, only, exclude, known, results));
    return this.#build(endpoint, only, exclude, plan, current as (CheckResult | undefined)[]);
  }

  #build(
    endpoint: Endpoint,
    only: string | undefined,
    exclude: readonly string[],
    plan: Plan,
    results: (CheckResult | undefined)[],
  ): HealthReport {
    // The same results in the same state make the same report: reuse it, so
    // a server can reuse its encoding too.
    if (plan.report && sameResults(plan.results!, results)) return plan.report;
    const entries = plan.selected.map((check, i): ReportEntry => ({
      name: check.name,
      key: check.key,
      critical: check.critical,
      result: results[i],
    }));
    const lifecycle = {
      name: LIFECYCLE_CHECK,
      key: `${LIFECYCLE_CHECK}:state`,
      critical: true,
      result: this.#lifecycleResult(endpoint),
    };
    const report = buildReport(endpoint, only, exclude, entries, [lifecycle], (name) => this.#checks.has(name));
    plan.results = results;
    plan.report = report;
    return report;
  }

  /**
   * The lifecycle and the latest result of every check, without running any:
   * what a Worker serving beside the app answers from.
   *
   * @returns Plain data, safe to post to another thread.
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health().add("db", () => "pass");
   * console.log(health.snapshot().checks[0].result); // undefined: it has not run
   * ```
   */
  snapshot(): HealthSnapshot {
    return { state: this.#state, since: this.#stateSince, checks: [...this.#checks.values()].map((c) => c.snapshot()) };
  }

  /** The lifecycle pseudo-check's result on an endpoint, made once per state; its `time` is when the state last changed. */
  #lifecycleResult(endpoint: Endpoint): CheckResult {
    const known = this.#lifecycleResults.get(endpoint);
    if (known) return known;
    const result = lifecycleResult(this.#state, this.#stateSince, endpoint);
    this.#lifecycleResults.set(endpoint, result);
    return result;
  }

  #setState(state: Lifecycle): void {
    logger.info("Lifecycle {from} → {to}", { from: this.#state, to: state });
    this.#state = state;
    this.#stateSince = isoTime(Date.now());
    this.#lifecycleResults.clear();
    this.#plans.clear();
    this.#changed();
  }

  #changed(): void {
    this.dispatchEvent(new Event("change"));
  }
}

/** Options of {@linkcode eventLoopLag}. */
export interface EventLoopLagOptions {
  /** Fail when the loop was held this many milliseconds past a timer's time within `window`. @default {100} */
  threshold?: number;
  /** Milliseconds between the watching timer's firings: stalls shorter than this may go unseen. @default {20} */
  sample?: number;
  /** Report the worst lag of this many most recent milliseconds; at least `sample`. @default {5000} */
  window?: number;
}

/**
 * A built-in check of how long the event loop is held. From when it is
 * served (`serve()` calls `Health.startChecks()`) until the server stops, a timer
 * fires every `sample` ms and records how late it fired; the check reports the
 * worst lag of the last `window` ms, so a stall between two probes is not
 * missed, and fails above `threshold`. The timer does not keep the process
 * alive. On a Health that is not started it times one `sample` ms timer when
 * asked. A `ready` check (a lagging loop is saturated, not dead: pass
 * `kinds: ["live"]` to change that) reporting `lag` in ms.
 *
 * @param options The threshold, the timer's period and the window.
 * @returns A check definition for {@linkcode Health.prototype.add}.
 * @throws {RangeError} When an option is not a number of milliseconds from 1 to 2^31-1, or `window` is under `sample`.
 * @example
 * ```ts
 * import { eventLoopLag, Health } from "@healthsock/healthsock";
 * new Health().add("eventloop", eventLoopLag({ threshold: 200, window: 10_000 }));
 * ```
 */
export function eventLoopLag(options: EventLoopLagOptions = {}): CheckDefinition {
  const { threshold = 100, sample = 20, window = 5000 } = options;
  milliseconds(threshold, "threshold");
  milliseconds(sample, "sample");
  milliseconds(window, "window");
  if (window < sample) {
    throw new RangeError(`Cannot use window ${window}: expected milliseconds at least sample (${sample})`);
  }
  milliseconds(threshold * 2 + sample, "threshold * 2 + sample");
  const watcher = new LagWatcher(sample, window);
  const outcome = (lag: number, within: string): CheckOutcome => {
    lag = Math.round(lag * 10) / 10;
    return {
      status: lag > threshold ? "fail" : "pass",
      observedValue: lag,
      observedUnit: "ms",
      output: lag > threshold ? `event loop lag ${lag} ms${within} exceeds ${threshold} ms` : undefined,
    };
  };
  const check: CheckFunction = (signal) => {
    const worst = watcher.worst();
    if (worst !== undefined) return outcome(worst, ` in the last ${window} ms`);
    return lagOnce(sample, signal).then((lag) => outcome(lag, ""));
  };
  const definition: WatchingDefinition = {
    kinds: ["ready"],
    measurement: "lag",
    componentType: "system",
    timeout: Math.max(1000, threshold * 2 + sample),
    check,
    [WATCH]: (signal) => watcher.watch(signal),
  };
  return definition;
}

/** How late one timer of `sample` ms fires, in ms. */
function lagOnce(sample: number, signal: AbortSignal): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const started = performance.now();
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(Math.max(0, performance.now() - started - sample));
    }, sample);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A timer that fires every `sample` ms while anyone watches, keeping the worst
 * lateness of the last `window` ms. Probes come when the loop is free, so a
 * lag measured only when asked misses the stalls between them.
 */
class LagWatcher {
  #sample: number;
  #window: number;
  #watchers = 0;
  #timer?: ReturnType<typeof setTimeout>;
  /** When the pending firing is due (`performance.now()`). */
  #due = 0;
  /** Lags with when they were seen: times rise, lags fall, so the first one in the window is the worst. */
  #worst: { at: number; lag: number }[] = [];

  constructor(sample: number, window: number) {
    this.#sample = sample;
    this.#window = window;
  }

  /** Watch until `signal` aborts; one timer serves every watcher. */
  watch(signal: AbortSignal): void {
    if (signal.aborted) return;
    if (this.#watchers++ === 0) this.#arm(performance.now());
    signal.addEventListener("abort", () => {
      if (--this.#watchers > 0) return;
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#worst = [];
    }, { once: true });
  }

  /** The worst lag in the window, the firing overdue now included; undefined when nobody watches. */
  worst(): number | undefined {
    if (this.#watchers === 0) return undefined;
    const now = performance.now();
    const worst = this.#worst;
    while (worst.length > 0 && worst[0].at <= now - this.#window) worst.shift();
    return Math.max(0, now - this.#due, worst[0]?.lag ?? 0);
  }

  #arm(now: number): void {
    this.#due = now + this.#sample;
    const timer = this.#timer = setTimeout(this.#fire, this.#sample);
    Deno.unrefTimer(timer);
  }

  #fire = (): void => {
    const now = performance.now();
    const lag = Math.max(0, now - this.#due);
    const worst = this.#worst;
    while (worst.length > 0 && worst[worst.length - 1].lag <= lag) worst.pop();
    worst.push({ at: now, lag });
    this.#arm(now);
  };
}

/** Options of {@linkcode heapUsage}. */
export interface HeapUsageOptions {
  /** Fail when the V8 heap in use exceeds this many bytes. */
  limit: number;
  /** Warn above this many bytes. @default {undefined} */
  warn?: number;
}

/**
 * A built-in check of the V8 heap in use against a limit. A `live` check
 * reporting `heapUsed` in bytes.
 *
 * @param options The limit, and an optional warning level.
 * @returns A check definition for {@linkcode Health.prototype.add}.
 * @throws {RangeError} When the limit is not a positive number.
 * @example
 * ```ts
 * import { Health, heapUsage } from "@healthsock/healthsock";
 * new Health().add("heap", heapUsage({ limit: 512 * 2 ** 20 }));
 * ```
 */
export function heapUsage(options: HeapUsageOptions): CheckDefinition {
  const { limit, warn } = options;
  for (const [name, bytes] of [["limit", limit], ["warn", warn ?? 1]] as const) {
    if (!(bytes > 0) || !Number.isFinite(bytes)) {
      throw new RangeError(`Cannot use ${name} ${bytes}: expected a positive number of bytes`);
    }
  }
  return {
    kinds: ["live"],
    measurement: "heapUsed",
    componentType: "system",
    check: () => {
      const used = Deno.memoryUsage().heapUsed;
      const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
      if (used > limit) {
        return {
          status: "fail",
          observedValue: used,
          observedUnit: "bytes",
          output: `heap ${mib(used)} exceeds ${mib(limit)}`,
        };
      }
      if (warn !== undefined && used > warn) {
        return {
          status: "warn",
          observedValue: used,
          observedUnit: "bytes",
          output: `heap ${mib(used)} above ${mib(warn)}`,
        };
      }
      return { status: "pass", observedValue: used, observedUnit: "bytes" };
    },
  };
}

/**
 * A time as `Date#toISOString()` writes it, by arithmetic. The first
 * toISOString() of a process faults about 1.5 MiB of the runtime's date
 * code into resident memory, and every server does it at start (the
 * lifecycle's `time`): this keeps an idle server's memory down.
 */
export function isoTime(ms: number): string {
  const days = Math.floor(ms / 86_400_000);
  let rest = ms - days * 86_400_000;
  // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  if (!Number.isInteger(ms) || year < 0 || year > 9999) return new Date(ms).toISOString();
  const hour = Math.floor(rest / 3_600_000);
  rest -= hour * 3_600_000;
  const minute = Math.floor(rest / 60_000);
  rest -= minute * 60_000;
  const second = Math.floor(rest / 1000);
  const milli = rest - second * 1000;
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}.${
    pad(milli, 3)
  }Z`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}
