/**
 * A program's health: the registry of its checks and its lifecycle
 * (`starting` → `ready` → `draining` → `stopped`), reported through the
 * model's one report builder.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { MAX_CHECKS, MAX_NAME_BYTES, reportCost } from "./bounds.ts";
import { Check } from "./check.ts";
import type { CheckDefinition, CheckFunction, CheckOptions } from "./check.ts";
import { milliseconds } from "./delay.ts";
import {
  buildReport,
  hasCheck,
  HEALTH_PSEUDO,
  LIFECYCLE_CHECK,
  lifecycleEntry,
  lifecycleResult,
  MAIN_LOOP_CHECK,
  noSuchCheck,
  selectChecks,
} from "./model.ts";
import type { HealthSnapshot, Lifecycle, ReportOptions } from "./model.ts";
import { isoTime } from "./report.ts";
import type { CheckResult, Endpoint, HealthReport } from "./report.ts";

const logger = getLogger(["healthsock", "health"]);

/** Options of a {@linkcode Health}. */
export interface HealthOptions {
  /** Start in the `ready` state instead of `starting`. @default {false} */
  ready?: boolean;
  /** The default `cacheTtl` of on-request checks, in milliseconds. @default {1000} */
  cacheTtl?: number;
}

/** The checks an endpoint selects, and its last report with the results it was built from. */
interface Plan {
  selected: Check[];
  results?: (CheckResult | undefined)[];
  report?: HealthReport;
}

function sameResults(a: readonly (CheckResult | undefined)[], b: readonly (CheckResult | undefined)[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
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
    return hasCheck(this.#checks.get(name), name, endpoint, HEALTH_PSEUDO);
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
   * touched. Not part of the API: the server's business.
   *
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health();
   * health.startChecks();
   * health.stopChecks();
   * ```
   * @internal
   */
  startChecks(): void {
    if (this.#starts++ === 0) { for (const check of this.#checks.values()) check.start(); }
  }

  /**
   * Stop running the background checks once every `startChecks()` has been
   * matched, aborting the runs in progress, those on request included (they
   * end as `fail`). The lifecycle state is not touched: that is
   * {@linkcode Health.prototype.markStopped}. Not part of the API: the
   * server's business.
   *
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health();
   * health.startChecks();
   * health.stopChecks();
   * ```
   * @internal
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
   * waiting a turn of the event loop. Not part of the API: the server's
   * business; use {@linkcode Health.prototype.report}.
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
   * @internal
   */
  evaluate(endpoint: Endpoint, options: ReportOptions = {}): HealthReport | Promise<HealthReport> {
    const only = options.check;
    if (only !== undefined && !this.has(only, endpoint)) throw noSuchCheck(only, endpoint);
    // Exclusions are the client's to vary: only plans without them are kept (a bounded set).
    const key = !options.exclude?.length ? `${endpoint}/${only ?? ""}` : undefined;
    let plan = key === undefined ? undefined : this.#plans.get(key);
    if (!plan) {
      plan = { selected: selectChecks(this.#checks.values(), endpoint, options) };
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
    if (running) return Promise.all(current).then((results) => this.#build(endpoint, options, known, results));
    return this.#build(endpoint, options, plan, current as (CheckResult | undefined)[]);
  }

  #build(
    endpoint: Endpoint,
    options: ReportOptions,
    plan: Plan,
    results: (CheckResult | undefined)[],
  ): HealthReport {
    // The same results in the same state make the same report: reuse it, so
    // a server can reuse its encoding too.
    if (plan.report && sameResults(plan.results!, results)) return plan.report;
    const pseudo = [lifecycleEntry(this.#lifecycleResult(endpoint))];
    const report = buildReport(endpoint, options, plan.selected, results, pseudo, (name) => this.#checks.has(name));
    plan.results = results;
    plan.report = report;
    return report;
  }

  /**
   * The lifecycle and the latest result of every check, without running any:
   * what a Worker serving beside the app answers from. Not part of the API:
   * the server's business.
   * @returns Plain data, safe to post to another thread.
   * @example
   * ```ts
   * import { Health } from "./health.ts";
   * const health = new Health().add("db", () => "pass");
   * console.log(health.snapshot().checks[0].result); // undefined: it has not run
   * ```
   * @internal
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
