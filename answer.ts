/**
 * The client's side of the protocol: read a complete answer, in either
 * framing, and tell a health report, a `?verbose` text and an error object
 * apart from anything else.
 *
 * Pure: bytes in, values out.
 *
 * @module
 */
import { truncate } from "./protocol.ts";
import type { Framing } from "./protocol.ts";
import { ENDPOINTS, httpStatus, isHealthReport } from "./report.ts";
import type { HealthReport, HealthStatus } from "./report.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();
const KNOWN_ENDPOINTS: ReadonlySet<string> = new Set(ENDPOINTS);

/** An answer read by a client, before it is judged. */
export interface Answer {
  /** The HTTP status; in line mode 200/503 from the report, or the error's code. */
  code: number;
  /** The body. */
  body: string;
  /** The report, when the body is one. */
  report?: HealthReport;
  /** The status: the report's, or from the last line of `?verbose` text. */
  status?: HealthStatus;
  /** The error message, when the server answered an error object. */
  error?: string;
}

/**
 * Read a complete answer, as a client does once the server has closed or the
 * announced length has arrived.
 *
 * @param bytes The bytes received.
 * @param framing The framing the request was sent in.
 * @returns The answer, or a string saying why it is not one.
 * @example
 * ```ts
 * import { parseAnswer } from "./answer.ts";
 * const answer = parseAnswer(new TextEncoder().encode('{"status":"pass","checks":{}}\n'), "line");
 * if (typeof answer !== "string") console.log(answer.status); // "pass"
 * ```
 */
export function parseAnswer(bytes: Uint8Array, framing: Framing): Answer | string {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return "The answer is not valid UTF-8";
  }
  let code: number | undefined;
  // A server over its connection limit answers HTTP whatever was asked.
  if (framing === "http" || text.startsWith("HTTP/1.")) {
    const head = /^HTTP\/1\.[01] (\d{3})[^\r\n]*\r?\n([\s\S]*?)\r?\n\r?\n/.exec(text);
    if (!head) return `The answer is not an HTTP response: "${truncate(text.trim())}"`;
    code = Number(head[1]);
    const length = /^content-length:\s*(\d+)\s*$/im.exec(head[2]);
    const body = bytes.subarray(encoder.encode(head[0]).length);
    if (length && body.length < Number(length[1])) {
      return `The answer ended after ${body.length} of its ${length[1]} bytes`;
    }
    try {
      text = utf8.decode(length ? body.subarray(0, Number(length[1])) : body);
    } catch {
      return "The answer's body is not valid UTF-8";
    }
  } else {
    if (!text.endsWith("\n")) return "The answer ended before its final newline";
    // Line mode ends a JSON body with "\n"; `?verbose` text ends with its own, which line mode does not double.
    if (text.startsWith("{")) text = text.slice(0, -1);
  }
  return judgeBody(text, code);
}

function judgeBody(body: string, code: number | undefined): Answer | string {
  if (body.startsWith("{")) {
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      return `The answer is not valid JSON: "${truncate(body)}"`;
    }
    if (isHealthReport(value)) {
      return { code: code ?? httpStatus(value.status), body, report: value, status: value.status };
    }
    const object = value as Record<string, unknown>;
    if (typeof object?.error === "string" && typeof object.code === "number") {
      return { code: code ?? object.code, body, error: object.error };
    }
    return `The answer is JSON but not a health report: "${truncate(body)}"`;
  }
  // The text ends with a newline over HTTP (line mode's is its framing).
  const last = /(\S+) check (passed|failed)( with warnings)?\n?$/.exec(body);
  if (last && KNOWN_ENDPOINTS.has(last[1])) {
    const status: HealthStatus = last[2] === "failed" ? "fail" : last[3] ? "warn" : "pass";
    return { code: code ?? httpStatus(status), body, status };
  }
  return `The answer is not a health report: "${truncate(body)}"`;
}
