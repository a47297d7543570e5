/**
 * The health report: its statuses, endpoints and results, how a value is
 * recognised as one, and how it is rendered for people and line readers
 * (`?verbose` text, escaping, withholding details).
 *
 * Pure: values in, values out.
 *
 * @module
 */

/** The status of a health report or of one check, after draft-inadarei-api-health-check. */
export type HealthStatus = "pass" | "warn" | "fail";

/** The endpoints a request can target. */
export type Endpoint = "healthz" | "livez" | "readyz" | "startupz";

/** The endpoints a request can target, in the order they are listed to people. */
export const ENDPOINTS: readonly Endpoint[] = ["healthz", "livez", "readyz", "startupz"];

/** One entry of a report's `checks`: the result of one check. */
export interface CheckResult {
  /** The check's status. */
  status: HealthStatus;
  /** What the check measured, if anything; at most 1 KiB, or text cut to that ending `… (cut from N bytes)`. */
  observedValue?: unknown;
  /** The unit of `observedValue`; at most 64 bytes. */
  observedUnit?: string;
  /** When the result was obtained (ISO 8601). */
  time?: string;
  /** Why the check did not pass, at most 1 KiB; withheld when the server hides details. */
  output?: string;
  /** The kind of component checked (e.g. `datastore`, `system`). */
  componentType?: string;
}

/** A health report: the body of a `/healthz`-style answer (`application/health+json`). */
export interface HealthReport {
  /** The aggregated status. */
  status: HealthStatus;
  /** Results keyed `"component:measurement"`, each an array of one result. */
  checks: Record<string, CheckResult[]>;
  /** A summary of what failed, for `warn` and `fail`. */
  output?: string;
  /** Remarks about the request itself, such as an exclusion that matched nothing. */
  notes?: string[];
}

/**
 * The HTTP status for a report's status: `pass` and `warn` → 200, `fail` → 503.
 *
 * @param status The report's status.
 * @returns 200 or 503.
 * @example
 * ```ts
 * import { httpStatus } from "./report.ts";
 * httpStatus("warn"); // 200
 * ```
 */
export function httpStatus(status: HealthStatus): 200 | 503 {
  return status === "fail" ? 503 : 200;
}

/** Options of {@linkcode renderVerbose}. */
export interface VerboseOptions {
  /** Checks the request excluded: each is listed as `[+]NAME excluded: ok`, as kube-apiserver does. @default {[]} */
  excluded?: readonly string[];
}

/**
 * Render a report as the `?verbose` text: one line per check, then the
 * total, each line ending with a newline (so a terminal's prompt does not
 * land on the last one).
 *
 * A check's line is its own result, as its entry in the JSON report is:
 * `[+]name ok`, `[+]name warn: reason` or `[-]name failed: reason`, a
 * non-critical check that fails too. The last line is the report's status:
 * `NAME check passed` (`pass`), `NAME check passed with warnings` (`warn`: a
 * check warned, or a non-critical one failed) or `NAME check failed`.
 *
 * A failing check without an `output` shows `reason withheld`: the server
 * strips outputs when it hides details.
 *
 * Guarantee: the text has no CR, and its only LFs end these lines. Check
 * names, outputs and notes are escaped (CR and LF become `\r` and `\n`, other controls `\uXXXX`), so no check
 * can forge a `[+]name ok` line here, nor an extra event in a `?watch` event
 * stream, whose `data:` lines are this text's lines.
 *
 * @param report The report.
 * @param endpoint The endpoint, named in the last line.
 * @param options Checks that were excluded, to list as such.
 * @returns The text, ending with a newline.
 * @example
 * ```ts
 * import { renderVerbose } from "@healthsock/healthsock";
 * renderVerbose({ status: "pass", checks: { "db:responseTime": [{ status: "pass" }] } }, "readyz");
 * // "[+]db ok\nreadyz check passed\n"
 * renderVerbose({ status: "warn", checks: { "cache:hits": [{ status: "fail", output: "cold" }] } }, "readyz");
 * // "[-]cache failed: cold\nreadyz check passed with warnings\n"
 * ```
 */
export function renderVerbose(report: HealthReport, endpoint: Endpoint, options: VerboseOptions = {}): string {
  const lines: string[] = [];
  for (const [key, results] of Object.entries(report.checks)) {
    const name = escapeText(componentOf(key));
    for (const result of results) {
      const why = result.output === undefined ? "reason withheld" : escapeText(String(result.output));
      if (result.status === "pass") lines.push(`[+]${name} ok`);
      else if (result.status === "warn") lines.push(`[+]${name} warn: ${why}`);
      else lines.push(`[-]${name} failed: ${why}`);
    }
  }
  for (const name of options.excluded ?? []) lines.push(`[+]${escapeText(name)} excluded: ok`);
  for (const note of report.notes ?? []) lines.push(`warn: ${escapeText(String(note))}`);
  const verdict = { pass: "passed", warn: "passed with warnings", fail: "failed" }[report.status];
  lines.push(`${endpoint} check ${verdict}`);
  return lines.join("\n") + "\n";
}

// C0 controls but tab, DEL, C1 controls (NEL among them) and the Unicode line and paragraph separators.
// deno-lint-ignore no-control-regex -- matching control characters is the point
const UNSAFE = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/g;

/**
 * Make a value safe to put in one line of text: CR and LF become the two
 * characters `\r` and `\n`; other control characters (but tab), NEL and the
 * Unicode line and paragraph separators become `\uXXXX`. A backslash is left
 * as it is, so the text stays readable (`C:\new` is not doubled) but is not
 * reversible: it is for people and line-based readers, not for parsing back.
 *
 * @param text Any text, such as a check's output.
 * @returns The text without any character that a reader could take for a line break, or a terminal for a command.
 * @example
 * ```ts
 * import { escapeText } from "./report.ts";
 * escapeText("refused\n[+]payments ok"); // "refused\\n[+]payments ok"
 * ```
 */
export function escapeText(text: string): string {
  UNSAFE.lastIndex = 0;
  if (!UNSAFE.test(text)) return text;
  return text.replace(
    UNSAFE,
    (c) => c === "\n" ? "\\n" : c === "\r" ? "\\r" : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * The component part of a `"component:measurement"` key.
 *
 * @param key A key of a report's `checks`.
 * @returns The check's name.
 * @example
 * ```ts
 * import { componentOf } from "./report.ts";
 * componentOf("db:responseTime"); // "db"
 * ```
 */
export function componentOf(key: string): string {
  const colon = key.lastIndexOf(":");
  return colon > 0 ? key.slice(0, colon) : key;
}

/**
 * Remove the `output` of failing and warning checks, for servers that do not
 * tell callers why a check failed (`details: false`).
 *
 * @param report The report.
 * @returns A copy without check outputs.
 * @example
 * ```ts
 * import { withholdDetails } from "./report.ts";
 * withholdDetails({ status: "fail", checks: { "db:x": [{ status: "fail", output: "secret" }] } });
 * ```
 */
export function withholdDetails(report: HealthReport): HealthReport {
  const checks: Record<string, CheckResult[]> = {};
  for (const [key, results] of Object.entries(report.checks)) {
    checks[key] = results.map(({ output: _output, ...rest }) => rest);
  }
  const { output: _output, ...rest } = report;
  return { ...rest, checks };
}

/**
 * Whether a value has the shape of a health report: a `status` of
 * `pass`/`warn`/`fail` and a `checks` object of arrays.
 *
 * @param value Any value, such as parsed JSON.
 * @returns True for a report.
 * @example
 * ```ts
 * import { isHealthReport } from "./report.ts";
 * isHealthReport({ status: "pass", checks: {} }); // true
 * ```
 */
export function isHealthReport(value: unknown): value is HealthReport {
  if (typeof value !== "object" || value === null) return false;
  const { status, checks } = value as Record<string, unknown>;
  if (!isStatus(status) || typeof checks !== "object" || checks === null) return false;
  return Object.values(checks).every((results) => Array.isArray(results) && results.every((r) => isStatus(r?.status)));
}

/**
 * Whether a value is a health status.
 *
 * @param value Any value.
 * @returns True for `pass`, `warn` and `fail`.
 * @example
 * ```ts
 * import { isStatus } from "./report.ts";
 * isStatus("warn"); // true
 * ```
 */
export function isStatus(value: unknown): value is HealthStatus {
  return value === "pass" || value === "warn" || value === "fail";
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
