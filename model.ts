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

/**
 * Where a program is in its life, as the probes see it: `starting` →
 * `ready` → `draining` → `stopped`, and `not-ready` between `ready` and
 * `draining` while `markNotReady()` holds (until `markReady()`).
 */
export type Lifecycle = "starting" | "ready" | "not-ready" | "draining" | "stopped";

/** Options of {@linkcode Health.prototype.report}. */
export interface ReportOptions {
  /** Report only this check. @default {undefined} */
  check?: string;
  /** Leave these checks out. @default {[]} */
  exclude?: readonly string[];
  /**
   * Keep only the checks carrying any of these tags (the lifecycle and main-loop entries stay); a tag no check of
   * the endpoint carries is reported in `notes`. Not applied to a check asked for alone. @default {[]}
   */
  tags?: readonly string[];
}

/**
 * The draft-inadarei-api-health-check fields that describe the service, added
 * at the top of every JSON report when set.
 */
export interface ServiceFields {
  /** The service's public version, such as `"1"`. @default {undefined} */
  version?: string;
  /** The version of this release, such as `"1.4.2"` or a commit. @default {undefined} */
  releaseId?: string;
  /** An id of this instance of the service. @default {undefined} */
  serviceId?: string;
  /** What the service is, for people. @default {undefined} */
  description?: string;
}

/** The names of the {@linkcode ServiceFields}, in the order a report lists them. */
export const SERVICE_FIELDS = ["version", "releaseId", "serviceId", "description"] as const;

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
  /** Its tags. */
  tags: string[];
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
  /** Why the program is `not-ready` (bounded), while it is. */
  reason?: string;
  /** The fields describing the service, those set. */
  service?: ServiceFields;
  /** The checks, in registration order. */
  checks: CheckSnapshot[];
}

/**
 * A change of what a check, or the lifecycle, reports: the `detail` of the
 * `change` event a {@linkcode Health} dispatches.
 */
export interface HealthChange {
  /** The check's name, or {@linkcode LIFECYCLE_CHECK} (`"lifecycle"`) for the lifecycle. */
  name: string;
  /** The status reported before, undefined before a check's first result; for the lifecycle, the state left. */
  previous: HealthStatus | Lifecycle | undefined;
  /** The status reported now; for the lifecycle, the state entered. */
  current: HealthStatus | Lifecycle;
  /**
   * Why it does not pass: the result's output, or the reason given to `markNotReady()`; at most 1 KiB, escaped as
   * `?verbose` text is (one line, no control characters). Absent when it passes.
   */
  output?: string;
}

/** Marks a change event that a run on request made (see {@linkcode madeOnRequest}). */
const ON_REQUEST = Symbol("healthsock.onRequest");

/**
 * The `change` event of a {@linkcode HealthChange}.
 *
 * @param detail The change.
 * @param onRequest A run on request made it.
 * @returns The event.
 */
export function changeEvent(detail: HealthChange, onRequest: boolean): CustomEvent<HealthChange> {
  const event = new CustomEvent<HealthChange>("change", { detail });
  if (onRequest) Object.defineProperty(event, ON_REQUEST, { value: true });
  return event;
}

/**
 * Whether a `change` event comes from a run on request. Whoever asked has the
 * new report already: a listener that evaluates again on a change (a watch
 * stream, the Worker's host, the systemd notifier) ignores it, or a check that
 * flips at each run, asked again at each change, would run without end.
 *
 * @param event A `change` event.
 * @returns True when a run on request made it.
 */
export function madeOnRequest(event: Event): boolean {
  return (event as Event & { [ON_REQUEST]?: boolean })[ON_REQUEST] === true;
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
  /** Its tags. */
  readonly tags: readonly string[];
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
 * one asked for, or, when none is, not excluded and carrying one of the tags
 * asked for, if any.
 *
 * @param check The check.
 * @param endpoint The endpoint.
 * @param only The check asked for alone, if any.
 * @param excluded The checks left out (see {@linkcode excludedOf}).
 * @param tags The tags asked for; none keeps every check.
 * @returns True when the report lists it.
 */
export function selects(
  check: ModelCheck,
  endpoint: Endpoint,
  only: string | undefined,
  excluded: ReadonlySet<string>,
  tags: readonly string[] = [],
): boolean {
  if (only !== undefined) return check.name === only && answersTo(check, endpoint);
  return !excluded.has(check.name) && (tags.length === 0 || tagged(check, tags)) && answersTo(check, endpoint);
}

/** Whether a check carries any of the tags. */
function tagged(check: ModelCheck, tags: readonly string[]): boolean {
  for (const tag of tags) if (check.tags.includes(tag)) return true;
  return false;
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
  const tags = options.tags ?? [];
  for (const check of checks) if (selects(check, endpoint, options.check, excluded, tags)) selected.push(check);
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

/** What the lifecycle's output on `/readyz` says before the reason, while `not-ready`. */
export const NOT_READY = "not ready: ";

/**
 * The lifecycle pseudo-check's result on an endpoint, for a state entered at
 * `since`: `/readyz` fails unless ready (naming the reason when `not-ready`),
 * `/startupz` while starting, every endpoint once stopped.
 *
 * @param state The lifecycle state.
 * @param since When it was entered (ISO).
 * @param endpoint The endpoint.
 * @param reason Why the program is `not-ready`, bounded.
 * @returns The result, its `observedValue` the state.
 */
export function lifecycleResult(state: Lifecycle, since: string, endpoint: Endpoint, reason?: string): CheckResult {
  const result: CheckResult = { status: "pass", observedValue: state, time: since };
  let output: string | undefined;
  if (state === "stopped") output = "stopped";
  else if (endpoint === "readyz" && state !== "ready") {
    output = state === "draining"
      ? "shutting down"
      : state === "not-ready"
      ? (reason ? `${NOT_READY}${reason}` : "not ready")
      : "starting";
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
 * @param service The fields describing the service, added at the top when set.
 * @returns The report.
 */
export function buildReport(
  endpoint: Endpoint,
  options: ReportOptions,
  selected: readonly ModelCheck[],
  results: readonly (CheckResult | undefined)[],
  pseudo: readonly PseudoEntry[],
  known: (name: string) => boolean,
  service?: ServiceFields,
): HealthReport {
  const { check: only, exclude = [], tags = [] } = options;
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
  // The service's fields come right after the status, as the draft lists them (`service` holds only those set).
  const report: HealthReport = service ? { status, ...service, checks } : { status, checks };
  if (status !== "pass") {
    report.output = [
      failed.length ? `failed: ${failed.join(", ")}` : "",
      warned.length ? `warn: ${warned.join(", ")}` : "",
    ].filter(Boolean).join("; ");
  }
  const unknown = [...new Set(exclude)].filter((name) => !pseudo.some((entry) => entry.name === name) && !known(name));
  const notes = unknown.map((name) => `cannot exclude "${name}": no check of that name`);
  if (only === undefined) {
    for (const tag of new Set(tags)) {
      if (!selected.some((check) => check.tags.includes(tag))) {
        notes.push(`cannot select tag "${tag}": no check on /${endpoint} carries it`);
      }
    }
  }
  if (notes.length) report.notes = notes;
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
  const pseudo = [lifecycleEntry(lifecycleResult(snapshot.state, snapshot.since, endpoint, snapshot.reason))];
  if (loop) pseudo.push(mainLoopEntry(loop));
  const known = (name: string) => snapshot.checks.some((check) => check.name === name);
  const results = selected.map((check) => check.result);
  return buildReport(endpoint, options, selected, results, pseudo, known, snapshot.service);
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
