/**
 * The healthsock wire protocol, shared by the server and the client: read a
 * request in either framing (a bare line, or HTTP/1.x), route its target, and
 * encode a response in the request's framing.
 *
 * Pure: bytes in, values out. Nothing here touches a socket, a timer or the
 * file system, so every rule of the protocol is testable without I/O.
 *
 * @module
 */
import { ENDPOINTS } from "./report.ts";
import type { Endpoint } from "./report.ts";

/** How a request was framed: a bare line (socat, nc) or HTTP/1.x (curl). */
export type Framing = "line" | "http";

/** A request read off the socket. */
export interface WireRequest {
  /** The method, as sent (`GET`, `HEAD`). */
  method: string;
  /** The request target, as sent. */
  target: string;
  /** Line mode or HTTP. */
  framing: Framing;
  /** Whether the connection stays open after the answer (HTTP keep-alive). */
  keepAlive: boolean;
  /** The request line as received, without its line ending. */
  line: string;
}

/** A request the protocol refuses, with the status that says why. */
export interface ProtocolError {
  /** The HTTP status code (also used as `code` in line mode). */
  code: number;
  /** A message for the client. */
  message: string;
  /** The framing to answer in. */
  framing: Framing;
}

/** What {@linkcode parseRequest} made of the bytes received so far. */
export type ParseResult =
  | { kind: "incomplete" }
  | { kind: "empty" }
  | { kind: "request"; request: WireRequest; size: number }
  | { kind: "error"; error: ProtocolError };

/** Options for {@linkcode parseRequest}. */
export interface ParseOptions {
  /**
   * No more bytes will be considered: the peer closed its side, or stayed
   * quiet after an unterminated line. An unterminated line is then complete.
   * @default {false}
   */
  final?: boolean;
  /**
   * The largest request line plus headers accepted, in bytes.
   * @default {8192}
   */
  maxHeaderBytes?: number;
}

/** A parsed request target. */
export interface Route {
  /** The endpoint addressed. */
  endpoint: Endpoint;
  /** One check, for `/healthz/NAME` and the like. */
  check?: string;
  /** `?verbose`: answer the text form. */
  verbose: boolean;
  /** `?exclude=NAME`, repeatable: checks to leave out. */
  exclude: string[];
  /** `?tag=NAME`, repeatable: keep only the checks that carry any of these tags (none given: every check). */
  tags: string[];
  /** `?watch`: keep the connection and send each status change. */
  watch: boolean;
  /** `?watch&timeout=SECONDS`: end the stream after this many milliseconds without a change. */
  watchTimeout?: number;
}

const LF = 0x0a;
const CR = 0x0d;
const KNOWN_ENDPOINTS: ReadonlySet<string> = new Set(ENDPOINTS);
const ENDPOINT_LIST = ENDPOINTS.map((name, i) => `${i === ENDPOINTS.length - 1 ? "or " : ""}/${name}`).join(", ")
  .replace(", or", " or");
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HTTP_VERSION = /^HTTP\/\d\.\d$/;
/** An HTTP version as a word anywhere in a line: whoever sent it speaks HTTP. */
const HAS_HTTP_VERSION = /(?:^|[ \t])HTTP\/\d\.\d(?:[ \t]|\r?$)/;
const utf8 = new TextDecoder("utf-8", { fatal: true });
const latin1 = new TextDecoder("latin1");
const encoder = new TextEncoder();

/** The largest request line plus headers a server accepts by default, in bytes. */
export const MAX_HEADER_BYTES = 8192;

/** The reason phrases of the statuses the server sends. */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  414: "URI Too Long",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** The content type of a JSON health report. */
export const HEALTH_JSON = "application/health+json";

/**
 * Parse one request from the start of `bytes`.
 *
 * The first line decides the framing: `METHOD TARGET` is line mode,
 * `METHOD TARGET HTTP/1.x` is HTTP, whose headers must follow. A request line
 * without its newline is incomplete until `final` is set, then it is taken as
 * complete (how the seed's client, which sends `GET /healthz` and waits, gets
 * an answer).
 *
 * @param bytes The bytes received and not yet consumed.
 * @param options Whether more bytes may come, and the size limit.
 * @returns `incomplete` (read more), `empty` (nothing was sent), a request
 * with the number of bytes it used, or the error to answer.
 * @example Parse a line-mode request
 * ```ts
 * import { parseRequest } from "./protocol.ts";
 * const result = parseRequest(new TextEncoder().encode("GET /healthz\n"));
 * console.log(result.kind); // "request"
 * ```
 */
export function parseRequest(
  bytes: Uint8Array,
  options: ParseOptions = {},
): ParseResult {
  const { final = false, maxHeaderBytes = MAX_HEADER_BYTES } = options;
  // Robustness (RFC 9112 §2.2): ignore empty lines before the request line.
  let start = 0;
  while (start < bytes.length && (bytes[start] === LF || bytes[start] === CR)) {
    start++;
  }
  let lf = bytes.indexOf(LF, start);
  // The line with its newline must fit; blank lines skipped above count too:
  // a flood of them is no request either.
  if (lf >= maxHeaderBytes || (lf < 0 && bytes.length > maxHeaderBytes)) {
    return error(414, tooLong(maxHeaderBytes), sniffFraming(bytes));
  }
  if (lf < 0) {
    if (!final) return { kind: "incomplete" };
    if (start === bytes.length) return { kind: "empty" };
    lf = bytes.length;
  }
  const end = lf > start && bytes[lf - 1] === CR ? lf - 1 : lf;
  const line = decodeText(bytes.subarray(start, end));
  if (line === undefined) return error(400, "Request line is not valid UTF-8", sniffFraming(bytes));
  const parts = line.split(" ");
  if (parts.length === 3 && HTTP_VERSION.test(parts[2])) {
    // A head is its request line and the empty line that ends it, at least:
    // a line that leaves no room for that is too long whatever follows.
    if (lf + 1 + (lf - end + 1) > maxHeaderBytes) return error(414, tooLong(maxHeaderBytes), "http");
    return parseHttp(bytes, parts, line, lf + 1, options);
  }
  if (HAS_HTTP_VERSION.test(line)) {
    // An HTTP client that spaced its line oddly reads an HTTP answer, not a line-mode one.
    return error(400, 'Malformed request line: expected "METHOD TARGET HTTP/1.1" with single spaces', "http");
  }
  if (parts.length !== 2) {
    return error(400, 'Malformed request line: expected "METHOD TARGET" or "METHOD TARGET HTTP/1.1"', "line");
  }
  const [method, target] = parts;
  const invalid = checkRequestLine(method, target, "line");
  if (invalid) return { kind: "error", error: invalid };
  return {
    kind: "request",
    request: { method, target, framing: "line", keepAlive: false, line },
    size: Math.min(lf + 1, bytes.length),
  };
}

function parseHttp(
  bytes: Uint8Array,
  [method, target, version]: string[],
  line: string,
  headStart: number,
  options: ParseOptions,
): ParseResult {
  const { final = false, maxHeaderBytes = MAX_HEADER_BYTES } = options;
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    return error(505, `HTTP version "${version}" is not supported; use HTTP/1.1`, "http");
  }
  const tooLarge = `Request head longer than ${maxHeaderBytes} bytes`;
  let pos = headStart;
  let contentLength: string | undefined;
  let transferEncoding = false;
  let connection = "";
  for (;;) {
    const lf = bytes.indexOf(LF, pos);
    if (lf < 0) {
      if (bytes.length > maxHeaderBytes) return error(431, tooLarge, "http");
      if (final) return error(400, "Request ended before its headers did", "http");
      return { kind: "incomplete" };
    }
    if (lf + 1 > maxHeaderBytes) return error(431, tooLarge, "http");
    const end = lf > pos && bytes[lf - 1] === CR ? lf - 1 : lf;
    const fieldStart = pos;
    pos = lf + 1;
    if (end === fieldStart) break; // the empty line that ends the head
    const field = decodeText(bytes.subarray(fieldStart, end));
    if (field === undefined) return error(400, "Header field is not valid UTF-8", "http");
    if (field[0] === " " || field[0] === "\t") {
      return error(400, "Obsolete line folding in headers is not accepted", "http");
    }
    const colon = field.indexOf(":");
    const name = colon > 0 ? field.slice(0, colon) : "";
    if (!TOKEN.test(name)) {
      return error(400, `Malformed header field "${truncate(field)}"`, "http");
    }
    const value = field.slice(colon + 1).trim();
    switch (name.toLowerCase()) {
      case "content-length":
        if (!/^\d+$/.test(value) || (contentLength !== undefined && contentLength !== value)) {
          return error(400, `Invalid Content-Length "${truncate(value)}"`, "http");
        }
        contentLength = value;
        break;
      case "transfer-encoding":
        transferEncoding = true;
        break;
      case "connection":
        connection += "," + value.toLowerCase();
        break;
    }
  }
  if (transferEncoding || (contentLength !== undefined && Number(contentLength) > 0)) {
    return error(413, "Request bodies are refused: a health probe sends none", "http");
  }
  const invalid = checkRequestLine(method, target, "http");
  if (invalid) return { kind: "error", error: invalid };
  const tokens = connection.split(",").map((t) => t.trim());
  const keepAlive = version === "HTTP/1.1" ? !tokens.includes("close") : tokens.includes("keep-alive");
  return {
    kind: "request",
    request: { method, target, framing: "http", keepAlive, line },
    size: pos,
  };
}

/** Decode UTF-8, or undefined when invalid; plain ASCII (every probe's request) skips the decoder. */
function decodeText(bytes: Uint8Array): string | undefined {
  let ascii = bytes.length <= 1024;
  for (let i = 0; ascii && i < bytes.length; i++) ascii = bytes[i] < 0x80;
  if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

function checkRequestLine(
  method: string,
  target: string,
  framing: Framing,
): ProtocolError | undefined {
  const allowed = method === "GET" || method === "HEAD";
  if (!allowed && !TOKEN.test(method)) {
    return { code: 400, message: `Malformed method "${truncate(method)}"`, framing };
  }
  if (!(target[0] === "/" || /^https?:\/\//i.test(target))) {
    return { code: 400, message: `Malformed target "${truncate(target)}": expected a path such as /healthz`, framing };
  }
  if (!allowed) {
    return { code: 405, message: `Method "${truncate(method)}" is not allowed; use GET or HEAD`, framing };
  }
  return undefined;
}

function tooLong(maxHeaderBytes: number): string {
  return `Request line longer than ${maxHeaderBytes} bytes`;
}

function error(code: number, message: string, framing: Framing): ParseResult {
  return { kind: "error", error: { code, message, framing } };
}

/** The start of a text quoted in a message: at most `max` characters, and an ellipsis when cut. */
export function truncate(text: string, max = 64): string {
  return text.length > max ? text.slice(0, max) + "…" : text;
}

/**
 * Guess the framing of a request that could not be parsed, so an error can be
 * answered in a form the client reads: HTTP when the first line (as far as it
 * was received) holds an HTTP version as a word, line mode otherwise.
 *
 * @param bytes The bytes received.
 * @returns The framing to answer in.
 * @example
 * ```ts
 * import { sniffFraming } from "./protocol.ts";
 * sniffFraming(new TextEncoder().encode("GET / HTTP/1.1\r\n")); // "http"
 * ```
 */
export function sniffFraming(bytes: Uint8Array): Framing {
  const lf = bytes.indexOf(LF);
  const line = bytes.subarray(0, lf < 0 ? bytes.length : lf);
  // Latin-1 keeps every byte one character, valid UTF-8 or not; only errors take this path.
  return HAS_HTTP_VERSION.test(latin1.decode(line)) ? "http" : "line";
}

/**
 * Whether `bytes` is an unterminated line-mode request (`GET /healthz` with no
 * newline yet): the server answers it once the client has been quiet briefly.
 *
 * @param bytes The bytes received and not yet consumed.
 * @returns True when the bytes look like a whole line-mode request line.
 * @example
 * ```ts
 * import { isUnterminatedLine } from "./protocol.ts";
 * isUnterminatedLine(new TextEncoder().encode("GET /healthz")); // true
 * ```
 */
export function isUnterminatedLine(bytes: Uint8Array): boolean {
  if (bytes.length === 0 || bytes.length > 2048 || bytes.includes(LF)) return false;
  return /^[A-Za-z]+ \S+$/.test(String.fromCharCode(...bytes));
}

/**
 * Parse a request target into a route.
 *
 * Accepts origin form (`/readyz/db?verbose`) and absolute form
 * (`http://localhost/readyz`); path segments are percent-decoded.
 *
 * @param target The request target.
 * @returns The route, or a 400/404 protocol error (framed as line mode; the
 * caller sets the framing).
 * @example
 * ```ts
 * import { parseTarget } from "./protocol.ts";
 * parseTarget("/readyz?exclude=db"); // { endpoint: "readyz", exclude: ["db"], ... }
 * ```
 */
export function parseTarget(target: string): Route | ProtocolError {
  let rest = target;
  const absolute = target[0] === "/" ? null : /^https?:\/\/[^/?#]*/i.exec(rest);
  if (absolute) rest = rest.slice(absolute[0].length) || "/";
  const hash = rest.indexOf("#");
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf("?");
  const path = q >= 0 ? rest.slice(0, q) : rest;
  const query = q >= 0 ? rest.slice(q + 1) : "";
  let segments = path.split("/").filter((s) => s !== "");
  if (path.includes("%")) {
    try {
      segments = segments.map(decodeURIComponent);
    } catch {
      return { code: 400, message: `Invalid percent-encoding in "${truncate(path)}"`, framing: "line" };
    }
  }
  if (segments.length === 0 || segments.length > 2 || !KNOWN_ENDPOINTS.has(segments[0])) {
    return {
      code: 404,
      message: `Unknown target "${truncate(path)}": try ${ENDPOINT_LIST}`,
      framing: "line",
    };
  }
  const route: Route = {
    endpoint: segments[0] as Endpoint,
    check: segments[1],
    verbose: false,
    exclude: [],
    tags: [],
    watch: false,
  };
  if (query === "") return route;
  const params = new URLSearchParams(query);
  route.verbose = flag(params, "verbose");
  route.exclude = params.getAll("exclude").filter((name) => name !== "");
  route.tags = params.getAll("tag").filter((name) => name !== "");
  route.watch = flag(params, "watch");
  const timeout = params.get("timeout");
  if (timeout !== null) {
    const seconds = Number(timeout);
    if (!(seconds > 0) || !Number.isFinite(seconds)) {
      return {
        code: 400,
        message: `Invalid timeout "${truncate(timeout)}": expected seconds, such as 30`,
        framing: "line",
      };
    }
    route.watchTimeout = seconds * 1000;
  }
  return route;
}

function flag(params: URLSearchParams, name: string): boolean {
  const value = params.get(name);
  return value !== null && value !== "0" && value !== "false";
}

/** A response ready to be written in either framing. */
export interface WireResponse {
  /** The HTTP status code. */
  code: number;
  /** The content type of the body. */
  contentType: string;
  /** The body; byte-for-byte the same in both framings (line mode adds `\n` unless it ends with one). */
  body: string;
  /** Extra header lines for HTTP, such as `Allow`. */
  headers?: Record<string, string>;
}

/**
 * The response for a protocol error: a JSON object `{"error", "code"}`, never
 * with a `status` field, so it cannot be read as a health report.
 *
 * @param error The error.
 * @returns The response.
 * @example
 * ```ts
 * import { errorResponse } from "./protocol.ts";
 * errorResponse({ code: 404, message: "Unknown target", framing: "line" }).body;
 * // '{"error":"Unknown target","code":404}'
 * ```
 */
export function errorResponse(error: ProtocolError): WireResponse {
  return {
    code: error.code,
    contentType: "application/json",
    body: JSON.stringify({ error: error.message, code: error.code }),
    headers: error.code === 405 ? { Allow: "GET, HEAD" } : undefined,
  };
}

/** Options for {@linkcode encodeResponse}. */
export interface EncodeOptions {
  /** Answer a HEAD request: headers only. @default {false} */
  head?: boolean;
  /** Keep the HTTP connection open after this response. @default {false} */
  keepAlive?: boolean;
  /** The `Date` header's value; omitted when not given. @default {undefined} */
  date?: string;
}

/**
 * A body as line mode sends it: ended by one `\n`, added unless the body
 * already ends with one (`?verbose` text does, so it reads well over HTTP too).
 *
 * @param body The body.
 * @returns The body ending with exactly the one newline line mode ends with.
 * @example
 * ```ts
 * import { lineOf } from "./protocol.ts";
 * lineOf('{"status":"pass","checks":{}}'); // '{"status":"pass","checks":{}}\n'
 * lineOf("livez check passed\n"); // "livez check passed\n"
 * ```
 */
export function lineOf(body: string): string {
  return body.endsWith("\n") ? body : body + "\n";
}

/**
 * Encode a response in a framing: line mode writes the body and `\n` (see {@linkcode lineOf}); HTTP
 * writes a status line, `Content-Type`, `Content-Length`,
 * `Cache-Control: no-store` and `Connection`, then the body.
 *
 * @param response The response.
 * @param framing The framing of the request answered.
 * @param options HEAD, keep-alive and date.
 * @returns The bytes to write.
 * @example
 * ```ts
 * import { encodeResponse } from "./protocol.ts";
 * encodeResponse({ code: 200, contentType: "text/plain", body: "ok" }, "line"); // "ok\n" as bytes
 * ```
 */
export function encodeResponse(
  response: WireResponse,
  framing: Framing,
  options: EncodeOptions = {},
): Uint8Array {
  if (framing === "line") return encoder.encode(lineOf(response.body));
  const body = encoder.encode(response.body);
  const head = encodeHead(response, body.length, options);
  if (options.head) return head;
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

/**
 * Encode the status line and headers of an HTTP response whose body is
 * `length` bytes: what {@linkcode encodeResponse} sends before the body, for
 * servers that keep a body's bytes to send again.
 *
 * @param response The response.
 * @param length The body's length in bytes.
 * @param options Keep-alive and date (`head` is not used here).
 * @returns The head, ending with the empty line.
 * @example
 * ```ts
 * import { encodeHead } from "./protocol.ts";
 * encodeHead({ code: 503, contentType: "application/health+json", body: "" }, 0);
 * ```
 */
export function encodeHead(response: WireResponse, length: number, options: EncodeOptions = {}): Uint8Array {
  let head = `HTTP/1.1 ${response.code} ${STATUS_TEXT[response.code] ?? "Unknown"}\r\n` +
    `Content-Type: ${response.contentType}\r\n` +
    `Content-Length: ${length}\r\n` +
    "Cache-Control: no-store\r\n" +
    `Connection: ${options.keepAlive ? "keep-alive" : "close"}\r\n`;
  if (options.date) head += `Date: ${options.date}\r\n`;
  for (const [name, value] of Object.entries(response.headers ?? {})) {
    head += `${name}: ${value}\r\n`;
  }
  return encoder.encode(head + "\r\n");
}
