/**
 * A program's health: the registry of its checks and its lifecycle
 * (`starting` → `ready` → `draining` → `stopped`), reported through the
 * model's one report builder.
 *
 * @module
 */
import { getLogger } from "./log.ts";
import { cutText, MAX_CHECKS, MAX_NAME_BYTES, MAX_OUTPUT_BYTES, reportCost } from "./bounds.ts";
import { Check } from "./check.ts";
import type { CheckDefinition, CheckFunction, CheckOptions } from "./check.ts";
import { milliseconds } from "./delay.ts";
import {
  buildReport,
  changeEvent,
  hasCheck,
  HEALTH_PSEUDO,
  LIFECYCLE_CHECK,
  lifecycleEntry,
  lifecycleResult,
  MAIN_LOOP_CHECK,
  noSuchCheck,
  NOT_READY,
  selectChecks,
  SERVICE_FIELDS,
} from "./model.ts";
import type { HealthChange, HealthSnapshot, Lifecycle, ReportOptions, ServiceFields } from "./model.ts";
import { escapeText, isoTime } from "./report.ts";
import type { CheckResult, Endpoint, HealthReport, HealthStatus } from "./report.ts";

const logger = getLogger(["healthsock", "health"]);

/** Options of a {@linkcode Health}. */
export interface HealthOptions {
  /** Start in the `ready` state instead of `starting`. @default {false} */
  ready?: boolean;
  /** The default `cacheTtl` of on-request checks, in milliseconds. @default {1000} */
  cacheTtl?: number;
  /** The service's public version (the draft's `version`), at the top of every JSON report; at most 128 bytes. @default {undefined} */
  version?: string;
  /** The version of this release (`releaseId`), such as `"1.4.2"` or a commit; at most 128 bytes. @default {undefined} */
  releaseId?: string;
  /** An id of this instance of the service (`serviceId`); at most 128 bytes. @default {undefined} */
  serviceId?: string;
  /** What the service is, for people (`description`); at most 1 KiB. @default {undefined} */
  description?: string;
}

/** The events a {@linkcode Health} dispatches, by type. */
export interface HealthEventMap {
  /** A check's reported status, or the lifecycle state, changed. */
  change: CustomEvent<HealthChange>;
  /** A check was added or removed, or finished a run. */
  update: Event;
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
 * done. Dispatches a `change` event (a `CustomEvent` whose `detail` is a
 * {@linkcode HealthChange}) once per check whose reported status changes, and
 * when the lifecycle state changes (named `lifecycle`), and an `update` event
 * when a check is added or removed or finishes a run.
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
  /** Why the program is `not-ready`, bounded. */
  #reason?: string;
  #service?: ServiceFields;

  /**
   * Create an empty registry.
   *
   * @param options Initial state, default cache time, and the fields describing the service.
   * @throws {RangeError} When `cacheTtl` is negative, or a service field is too long.
   * @throws {TypeError} When a service field is not a string.
   */
  constructor(options: HealthOptions = {}) {
    super();
    this.#state = options.ready ? "ready" : "starting";
    this.#cacheTtl = milliseconds(options.cacheTtl ?? 1000, "cacheTtl", true);
    const service: ServiceFields = {};
    for (const field of SERVICE_FIELDS) {
      const value = options[field];
      if (value === undefined) continue;
      if (typeof value !== "string") throw new TypeError(`Cannot use ${field} ${typeof value}: expected a string`);
      const max = field === "description" ? MAX_OUTPUT_BYTES : MAX_NAME_BYTES;
      if (reportCost(value) > max) throw new RangeError(`Cannot use ${field}: it is longer than ${max} bytes`);
      service[field] = value;
    }
    if (Object.keys(service).length > 0) this.#service = service;
  }

  /**
   * Listen to a {@linkcode HealthEventMap} event: `change` gets a
   * `CustomEvent` whose `detail` says what changed.
   *
   * @param type `change` or `update`.
   * @param listener Called with the event.
   * @param options As for any `EventTarget`.
   * @example
   * ```ts
   * import { Health } from "@healthsock/healthsock";
   * const health = new Health();
   * health.addEventListener("change", ({ detail }) => console.log(detail.name, detail.previous, detail.current));
   * ```
   */
  override addEventListener<K extends keyof HealthEventMap>(
    type: K,
    listener: (this: Health, event: HealthEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /** As for any `EventTarget`, for other event types. */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /**
   * Stop listening to a {@linkcode HealthEventMap} event.
   *
   * @param type `change` or `update`.
   * @param listener The listener added.
   * @param options As for any `EventTarget`.
   * @example
   * ```ts
   * import { Health } from "@healthsock/healthsock";
   * const health = new Health();
   * const log = () => {};
   * health.addEventListener("change", log);
   * health.removeEventListener("change", log);
   * ```
   */
  override removeEventListener<K extends keyof HealthEventMap>(
    type: K,
    listener: (this: Health, event: HealthEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /** As for any `EventTarget`, for other event types. */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
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
   * @throws {TypeError} When the name is invalid or taken, a kind is unknown, or a tag is not a name.
   * @throws {RangeError} When a timeout, interval, cache time, threshold or `maxTimeInError` is out of range, a tag is
   * longer than 128 bytes or there are more than 32, the
   * name, measurement or component type is longer than 128 bytes, or the registry
   * holds 128 checks already (a report of them all stays far below what a client accepts).
   * @example
   * ```ts
   * import { Health } from "@healthsock/healthsock";
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
    const entry = new Check(name, definition, this.#cacheTtl, (result, previous, changed) => {
      if (changed) this.#changed(name, previous, result.status, result.output, entry.interval === undefined);
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
   * import { Health } from "@healthsock/healthsock";
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
   * import { Health } from "@healthsock/healthsock";
   * new Health().has("lifecycle", "readyz"); // true
   * ```
   */
  has(name: string, endpoint: Endpoint = "healthz"): boolean {
    return hasCheck(this.#checks.get(name), name, endpoint, HEALTH_PSEUDO);
  }

  /**
   * Open `/readyz` and `/startupz`: start-up is done. After
   * {@linkcode Health.prototype.markNotReady}, open `/readyz` again.
   *
   * @throws {Error} Once draining has begun: a program shutting down is not ready again.
   * @example
   * ```ts
   * import { Health } from "@healthsock/healthsock";
   * const health = new Health();
   * health.markReady();
   * console.log(health.state); // "ready"
   * ```
   */
  markReady(): void {
    if (this.#state === "draining" || this.#state === "stopped") {
      throw new Error(`Cannot mark the health ready: it is ${this.#state}`);
    }
    if (this.#state !== "ready") this.#setState("ready");
  }

  /**
   * Take a ready program out of readiness until the next
   * {@linkcode Health.prototype.markReady}: a lost database connection, a full
   * queue, a maintenance window. `/readyz` fails, its `lifecycle` entry saying
   * `not ready: REASON`; `/livez` and `/startupz` are not affected. While
   * starting, the program is not ready anyway: nothing changes. Called again
   * while not ready, it replaces the reason.
   *
   * @param reason Why, for the report: cut so that `not ready: REASON` takes at most 1 KiB.
   * @throws {TypeError} When the reason is not a string.
   * @throws {Error} Once draining has begun.
   * @example
   * ```ts
   * import { Health } from "@healthsock/healthsock";
   * const health = new Health({ ready: true });
   * health.markNotReady("database connection lost");
   * console.log((await health.report("readyz")).status); // "fail"
   * health.markReady();
   * ```
   */
  markNotReady(reason: string): void {
    if (typeof reason !== "string") {
      throw new TypeError(`Cannot mark the health not ready: expected a reason string, got ${typeof reason}`);
    }
    if (this.#state === "draining" || this.#state === "stopped") {
      throw new Error(`Cannot mark the health not ready: it is ${this.#state}`);
    }
    if (this.#state === "starting") return;
    // "not ready: REASON" is the lifecycle's output: bounded as a check's is.
    const bounded = cutText(reason, MAX_OUTPUT_BYTES - NOT_READY.length);
    if (this.#state === "not-ready") {
      if (bounded === this.#reason) return;
      this.#reason = bounded;
      this.#lifecycleResults.clear();
      this.#plans.clear();
      this.dispatchEvent(new Event("update"));
      return;
    }
    this.#setState("not-ready", bounded);
  }

  /**
   * Fail `/readyz` with "shutting down" while `/livez` keeps passing. The
   * server's `drain()` calls this; call it yourself to stop taking traffic.
   *
   * @example
   * ```ts
   * import { Health } from "@healthsock/healthsock";
   * const health = new Health({ ready: true });
   * health.markDraining();
   * console.log((await health.report("readyz")).status); // "fail"
   * ```
   */
  markDraining(): void {
    if (this.#state === "starting" || this.#state === "ready" || this.#state === "not-ready") {
      this.#setState("draining");
    }
  }

  /**
   * Mark the program stopped: every probe fails from now on.
   *
   * @example
   * ```ts
   * import { Health } from "@healthsock/healthsock";
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
   * import { Health } from "@healthsock/healthsock";
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
   * import { Health } from "@healthsock/healthsock";
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
   * import { Health } from "@healthsock/healthsock";
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
   * import { Health } from "@healthsock/healthsock";
   * const health = new Health({ ready: true }).add("db", () => "pass", { interval: 1000 });
   * const report = health.evaluate("readyz");
   * console.log(report instanceof Promise ? "running" : report.status);
   * ```
   * @internal
   */
  evaluate(endpoint: Endpoint, options: ReportOptions = {}): HealthReport | Promise<HealthReport> {
    const only = options.check;
    if (only !== undefined && !this.has(only, endpoint)) throw noSuchCheck(only, endpoint);
    // Exclusions and tags are the client's to vary: only plans without them are kept (a bounded set).
    const key = !options.exclude?.length && !options.tags?.length ? `${endpoint}/${only ?? ""}` : undefined;
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
    const known = (name: string) => this.#checks.has(name);
    const report = buildReport(endpoint, options, plan.selected, results, pseudo, known, this.#service);
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
   * import { Health } from "@healthsock/healthsock";
   * const health = new Health().add("db", () => "pass");
   * console.log(health.snapshot().checks[0].result); // undefined: it has not run
   * ```
   * @internal
   */
  snapshot(): HealthSnapshot {
    const snapshot: HealthSnapshot = { state: this.#state, since: this.#stateSince, checks: [] };
    if (this.#reason !== undefined) snapshot.reason = this.#reason;
    if (this.#service) snapshot.service = { ...this.#service };
    for (const check of this.#checks.values()) snapshot.checks.push(check.snapshot());
    return snapshot;
  }

  /** The lifecycle pseudo-check's result on an endpoint, made once per state; its `time` is when the state last changed. */
  #lifecycleResult(endpoint: Endpoint): CheckResult {
    const known = this.#lifecycleResults.get(endpoint);
    if (known) return known;
    const result = lifecycleResult(this.#state, this.#stateSince, endpoint, this.#reason);
    this.#lifecycleResults.set(endpoint, result);
    return result;
  }

  #setState(state: Lifecycle, reason?: string): void {
    const previous = this.#state;
    if (reason === undefined) logger.info("Lifecycle {from} → {to}", { from: previous, to: state });
    else logger.info("Lifecycle {from} → {to}: {reason}", { from: previous, to: state, reason });
    this.#state = state;
    this.#reason = reason;
    this.#stateSince = isoTime(Date.now());
    this.#lifecycleResults.clear();
    this.#plans.clear();
    this.#changed(LIFECYCLE_CHECK, previous, state, reason || undefined, false);
  }

  /** Tell listeners what changed; `onRequest`: a run on request made the change (see `madeOnRequest`). */
  #changed(
    name: string,
    previous: HealthStatus | Lifecycle | undefined,
    current: HealthStatus | Lifecycle,
    output: string | undefined,
    onRequest: boolean,
  ): void {
    const detail: HealthChange = { name, previous, current };
    if (output !== undefined) detail.output = escapeText(output);
    this.dispatchEvent(changeEvent(detail, onRequest));
  }
}
