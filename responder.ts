/**
 * The answers a server gives: route a target, build its report, render it
 * (JSON or `?verbose` text, details withheld or not) and encode it once for
 * both framings, keeping each while its report is unchanged.
 *
 * @module
 */
import { getLogger } from "./log.ts";
import type { HealthSource, ReportOptions } from "./model.ts";
import { errorResponse, HEALTH_JSON, lineOf, parseTarget } from "./protocol.ts";
import type { Framing, ProtocolError, Route, WireRequest, WireResponse } from "./protocol.ts";
import { httpStatus, renderVerbose, withholdDetails } from "./report.ts";
import type { HealthReport } from "./report.ts";

const logger = getLogger(["healthsock", "server"]);
const encoder = new TextEncoder();
const TEXT = "text/plain; charset=utf-8";

/** A response with its bytes encoded once for both framings, reused while its report is unchanged. */
export interface Prepared {
  response: WireResponse;
  /** The whole line-mode answer: the body and `\n` (see `lineOf`). */
  line: Uint8Array;
  /** The HTTP body. */
  body: Uint8Array;
  /** Whole HTTP answers (head and body) for the current Date, filled as they are asked for. */
  http?: HttpAnswers;
}

/** The HTTP answers of one prepared response within one second: the Date header is all that changes. */
export interface HttpAnswers {
  date: string;
  /** Indexed by keep-alive (1) and HEAD (2). */
  bytes: (Uint8Array | undefined)[];
}

/** Encode a response once for both framings. */
export function prepare(response: WireResponse): Prepared {
  return { response, line: encoder.encode(lineOf(response.body)), body: encoder.encode(response.body) };
}

/**
 * Builds answers for one server's connections: routes, reports and their
 * encodings, each kept while it is unchanged.
 */
export class Responder {
  #health: HealthSource;
  #details: boolean;
  #prepared = new WeakMap<HealthReport, Map<string, Prepared>>();
  #routes = new Map<string, Route | ProtocolError>();
  #date = "";
  #dateAt = 0;

  constructor(health: HealthSource, details: boolean) {
    this.#health = health;
    this.#details = details;
  }

  get health(): HealthSource {
    return this.#health;
  }

  /** Parse a target, remembering the first few seen: probes ask the same few targets again and again. */
  route(target: string): Route | ProtocolError {
    let route = this.#routes.get(target);
    if (route === undefined) {
      route = parseTarget(target);
      if (this.#routes.size < 64) this.#routes.set(target, route);
    }
    return route;
  }

  /** The answer to a request: synchronous when the report is at hand, as it is for most probes. */
  answer(request: WireRequest, route: Route | ProtocolError): Prepared | Promise<Prepared> {
    if ("code" in route) return prepare(errorResponse({ ...route, framing: request.framing }));
    const missing = this.unknownCheck(route, request.framing);
    if (missing) return missing;
    const report = this.#health.evaluate(route.endpoint, reportOptions(route));
    return report instanceof Promise ? report.then((done) => this.render(done, route)) : this.render(report, route);
  }

  /** The 404 for `/ENDPOINT/NAME` when that endpoint has no such check. */
  unknownCheck({ endpoint, check }: Route, framing: Framing): Prepared | undefined {
    if (check === undefined || this.#health.has(check, endpoint)) return undefined;
    return prepare(errorResponse({ code: 404, message: `No check named "${check}" on /${endpoint}`, framing }));
  }

  /** The report of a route, for watch streams; a report that cannot be built is a `fail`. */
  async report(route: Route): Promise<HealthReport> {
    try {
      return await this.#health.evaluate(route.endpoint, reportOptions(route));
    } catch (error) {
      // A check that vanished between has() and report(): answer as absent.
      logger.warn("Cannot build a report: {error}", { error: String(error) });
      return { status: "fail", checks: {}, output: "report unavailable" };
    }
  }

  /** Health returns the same report object while nothing changed: encode it once. */
  render(report: HealthReport, { endpoint, verbose, exclude }: Route): Prepared {
    const variant = verbose ? `verbose:${endpoint}` : "json";
    let variants = this.#prepared.get(report);
    let prepared = variants?.get(variant);
    if (!prepared) {
      const shown = this.#details ? report : withholdDetails(report);
      let response: WireResponse;
      if (verbose) {
        // kube-apiserver lists each excluded check, so a reader sees the exclusion took effect.
        const excluded = exclude.filter((name) => this.#health.has(name, endpoint));
        const body = renderVerbose(shown, endpoint, { excluded });
        response = { code: httpStatus(report.status), contentType: TEXT, body };
      } else {
        response = { code: httpStatus(report.status), contentType: HEALTH_JSON, body: JSON.stringify(shown) };
      }
      prepared = prepare(response);
      if (!variants) this.#prepared.set(report, variants = new Map());
      variants.set(variant, prepared);
    }
    return prepared;
  }

  /** The HTTP Date header, formatted at most once a second. */
  httpDate(): string {
    const now = Date.now();
    if (now - this.#dateAt >= 1000) {
      this.#dateAt = now - (now % 1000);
      this.#date = new Date(now).toUTCString();
    }
    return this.#date;
  }
}

/** What a route asks of the health model. */
function reportOptions({ check, exclude, tags }: Route): ReportOptions {
  return { check, exclude, tags };
}
