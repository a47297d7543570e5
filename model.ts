/**
 * The health model, pure: which checks an endpoint selects, the lifecycle
 * pseudo-check, and the one builder of reports. `Health` builds its reports
 * with it from its checks' latest results, and the Worker from a
 * {@linkcode HealthSnapshot} of them, so both threads answer alike.
 *
 * @module
 */
import { isoTime } from "./report.ts";
import type { CheckResult, Endpoint, HealthReport, HealthStatus } from "./report.ts";

/** Which probes a check answers to. */
export type CheckKind = "live" | "ready" | "startup";

/** Where a program is in its life, as the probes see it. */
export type Lifecycle = "starting" | "ready" | "draining" | "stopped";

/** Options of {@linkcode Health.prototype.report}. */
export interface ReportOptions {
  /** Report only this check. @default {undefined} */
  check?: string;
  /** Leave these checks out. @default {[]} */
  exclude?: readonly string[];
  /** Keep only the checks that carry any of these tags; none given keeps every check. @default {[]} */
  tags?: readonly string[];
}

/**
 * The kind of check each endpoint selects; undefined selects every check. The
 * one table of it: a new endpoint gets its row here (the type makes it), and
 * both threads select by it.
 */
export const ENDPOINT_KINDS: Readonly<Record<Endpoint, CheckKind | undefined>> = {
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

/** What the model needs of a check: a registered one, or one of a {@linkcode HealthSnapshot}. */
export interface ModelCheck {
  /** The check's name. */
  readonly name: string;
  /** Its report key, `name:measurement`. */
  readonly key: string;
  /** The probes it answers to. */
  readonly kinds: readonly CheckKind[];
  /** Whether failing fails the report. */
  readonly critical: boolean;
}

/** A pseudo-check's entry in a report: always critical. */
export interface PseudoEntry {
  /** Its name, such as {@linkcode LIFECYCLE_CHECK}. */
  name: string;
  /** Its report key. */
  key: string;
  /** Its result. */
  result: CheckResult;
}

const NONE: ReadonlySet<string> = new Set();
/** The pseudo-checks a `Health` reports. */
export const HEALTH_PSEUDO: readonly string[] = [LIFECYCLE_CHECK];
/** The pseudo-checks a Worker reports. */
const WORKER_PSEUDO: readonly string[] = [LIFECYCLE_CHECK, MAIN_LOOP_CHECK];

/**
 * Whether an endpoint answers to a check, by its kinds.
 *
 * @param check The check.
 * @param endpoint The endpoint.
 * @returns True when `/ENDPOINT` reports it.
 */
export function answersTo(check: ModelCheck, endpoint: Endpoint): boolean {
  const kind = ENDPOINT_KINDS[endpoint];
  return kind === undefined || check.kinds.includes(kind);
}

/**
 * Whether a report selects a check: the endpoint answers to it, and it is the
 * one asked for, or, when none is, not excluded.
 *
 * @param check The check.
 * @param endpoint The endpoint.
 * @param only The check asked for alone, if any.
 * @param excluded The checks left out (see {@linkcode excludedOf}).
 * @returns True when the report lists it.
 */
export function selects(
  check: ModelCheck,
  endpoint: Endpoint,
  only: string | undefined,
  excluded: ReadonlySet<string>,
): boolean {
  return (only === undefined ? !excluded.has(check.name) : check.name === only) && answersTo(check, endpoint);
}

/**
 * The checks a report selects, in order.
 *
 * @param checks Every check.
 * @param endpoint The endpoint.
 * @param options One check, or checks to exclude.
 * @returns Those selected.
 */
export function selectChecks<T extends ModelCheck>(
  checks: Iterable<T>,
  endpoint: Endpoint,
  options: ReportOptions = {},
): T[] {
  const excluded = excludedOf(options.exclude);
  const selected: T[] = [];
  for (const check of checks) if (selects(check, endpoint, options.check, excluded)) selected.push(check);
  return selected;
}

/**
 * Exclusions as a set, shared when there are none.
 *
 * @param exclude The names.
 * @returns The set.
 */
export function excludedOf(exclude: readonly string[] = []): ReadonlySet<string> {
  return exclude.length === 0 ? NONE : new Set(exclude);
}

/**
 * Whether `/ENDPOINT/NAME` exists: a pseudo-check's name, or a check the endpoint answers to.
 *
 * @param check The check of that name, if any.
 * @param name The name.
 * @param endpoint The endpoint.
 * @param pseudo The names of the pseudo-checks reported.
 * @returns True when it exists.
 */
export function hasCheck(
  check: ModelCheck | undefined,
  name: string,
  endpoint: Endpoint,
  pseudo: readonly string[],
): boolean {
  return pseudo.includes(name) || (check !== undefined && answersTo(check, endpoint));
}

/**
 * The error of a report asked for a check its endpoint does not have.
 *
 * @param name The check asked for.
 * @param endpoint The endpoint.
 * @returns The error to throw.
 */
export function noSuchCheck(name: string, endpoint: Endpoint): RangeError {
  return new RangeError(`No check named "${name}" on /${endpoint}`);
}

/**
 * The lifecycle pseudo-check's result on an endpoint, for a state entered at
 * `since`: `/readyz` fails unless ready, `/startupz` while starting, every
 * endpoint once stopped.
 *
 * @param state The lifecycle state.
 * @param since When it was entered (ISO).
 * @param endpoint The endpoint.
 * @returns The result, its `observedValue` the state.
 */
export function lifecycleResult(state: Lifecycle, since: string, endpoint: Endpoint): CheckResult {
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
 * The lifecycle pseudo-check's entry in a report.
 *
 * @param result Its result, from {@linkcode lifecycleResult}.
 * @returns The entry.
 */
export function lifecycleEntry(result: CheckResult): PseudoEntry {
  return { name: LIFECYCLE_CHECK, key: `${LIFECYCLE_CHECK}:state`, result };
}

/**
 * The main loop's pseudo-check entry in a report served from a Worker.
 *
 * @param result Its result.
 * @returns The entry.
 */
export function mainLoopEntry(result: CheckResult): PseudoEntry {
  return { name: MAIN_LOOP_CHECK, key: `${MAIN_LOOP_CHECK}:blocked`, result };
}

/**
 * The one builder of reports: aggregate the selected checks' results and the
 * pseudo-checks (each shown unless excluded, or when asked for alone). A
 * check with no result yet counts as `fail` except on `/livez`, which leaves
 * it out. The total is `fail` when a critical check fails (or the one asked
 * for alone), `warn` when a check warns or a non-critical one fails, `pass`
 * otherwise.
 *
 * @param endpoint The endpoint.
 * @param options One check, or checks to exclude.
 * @param selected The checks selected ({@linkcode selectChecks}).
 * @param results Their latest results, in the same order.
 * @param pseudo The pseudo-checks' entries.
 * @param known Whether a check of this name exists, for the notes on exclusions.
 * @returns The report.
 */
export function buildReport(
  endpoint: Endpoint,
  options: ReportOptions,
  selected: readonly ModelCheck[],
  results: readonly (CheckResult | undefined)[],
  pseudo: readonly PseudoEntry[],
  known: (name: string) => boolean,
): HealthReport {
  const { check: only, exclude = [] } = options;
  const checks: Record<string, CheckResult[]> = {};
  const failed: string[] = [];
  const warned: string[] = [];
  const tally = (name: string, result: CheckResult, critical: boolean) => {
    if (result.status === "fail") (critical ? failed : warned).push(name);
    else if (result.status === "warn") warned.push(name);
  };
  for (let i = 0; i < selected.length; i++) {
    const check = selected[i];
    let result = results[i];
    if (result === undefined) {
      if (endpoint === "livez") continue;
      result = { status: "fail", output: "no result yet", time: isoTime(Date.now()) };
    }
    checks[check.key] = [result];
    // Asked about alone, a check's own status is the answer.
    tally(check.name, result, check.critical || only !== undefined);
  }
  for (const entry of pseudo) {
    if (only === undefined ? exclude.includes(entry.name) : only !== entry.name) continue;
    checks[entry.key] = [entry.result];
    tally(entry.name, entry.result, true);
  }
  const status: HealthStatus = failed.length ? "fail" : warned.length ? "warn" : "pass";
  const report: HealthReport = { status, checks };
  if (status !== "pass") {
    report.output = [
      failed.length ? `failed: ${failed.join(", ")}` : "",
      warned.length ? `warn: ${warned.join(", ")}` : "",
    ].filter(Boolean).join("; ");
  }
  const unknown = [...new Set(exclude)].filter((name) => !pseudo.some((entry) => entry.name === name) && !known(name));
  if (unknown.length) {
    report.notes = unknown.map((name) => `cannot exclude "${name}": no check of that name`);
  }
  return report;
}

/**
 * A report built from a {@linkcode HealthSnapshot}, as {@linkcode Health.prototype.evaluate}
 * builds it from the same results, plus an optional event-loop entry
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
  const only = options.check;
  if (only !== undefined && !snapshotHas(snapshot, only, endpoint, loop !== undefined)) {
    throw noSuchCheck(only, endpoint);
  }
  const selected = selectChecks(snapshot.checks, endpoint, options);
  const pseudo = [lifecycleEntry(lifecycleResult(snapshot.state, snapshot.since, endpoint))];
  if (loop) pseudo.push(mainLoopEntry(loop));
  const known = (name: string) => snapshot.checks.some((check) => check.name === name);
  return buildReport(endpoint, options, selected, selected.map((check) => check.result), pseudo, known);
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
  const check = snapshot.checks.find((entry) => entry.name === name);
  return hasCheck(check, name, endpoint, loop ? WORKER_PSEUDO : HEALTH_PSEUDO);
}
