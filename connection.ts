/**
 * One connection: read requests in either framing, answer them, stream
 * `?watch`. The server decides admission and shutdown from each connection's
 * {@linkcode ConnectionState}; everything else about a connection is here.
 *
 * @module
 */
import { getLogger } from "./log.ts";
import {
  encodeHead,
  encodeResponse,
  errorResponse,
  isUnterminatedLine,
  parseRequest,
  sniffFraming,
} from "./protocol.ts";
import type { Framing, ParseResult, ProtocolError, Route, WireRequest } from "./protocol.ts";
import { prepare } from "./responder.ts";
import type { Prepared, Responder } from "./responder.ts";
import type { HealthReport } from "./report.ts";

const logger = getLogger(["healthsock", "server"]);
const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
const QUIET = Symbol("quiet");

/** The limits a connection keeps to; see `ServeOptions` for each. */
export interface ConnectionLimits {
  maxHeaderBytes: number;
  requestTimeout: number;
  idleTimeout: number;
  lineQuiet: number;
  writeTimeout: number;
  maxRequestsPerConnection: number;
  watchInterval: number;
  keepAlive: number;
}

/**
 * What a connection is doing, as admission and shutdown see it:
 * - `waiting`: no complete request yet (new, idle between keep-alive requests, or half-sent);
 * - `answering`: a request was read and its answer is being built or written;
 * - `watching`: a `?watch` stream;
 * - `closed`: done.
 */
export type ConnectionState = "waiting" | "answering" | "watching" | "closed";

/** What a connection needs of its server. */
export interface ConnectionHost {
  readonly limits: ConnectionLimits;
  readonly responder: Responder;
  /** Debug lines are wanted: the logger's answer, refreshed by the server's sweeper. */
  readonly debug: boolean;
  /** The server is shutting down: finish the answer in hand, take no more requests. */
  readonly closing: boolean;
  /** The deadline `ms` from now, on the server's sweeper clock. */
  deadlineIn(ms: number): number;
  /** Sweeps of the deadlines so far: a write pending two sweeps after it began is stalled. */
  readonly sweeps: number;
  /** The connection waits for a request (again): it may be closed to make room, the longest-waiting first. */
  waiting(connection: Connection): void;
  /**
   * The connection has a complete request: take an answering slot (true), now
   * or once one is free, or (false: none came within its deadline, or too many
   * wait) answer 503 busy.
   */
  startAnswer(connection: Connection): boolean | Promise<boolean>;
  /** The answer is built: give the slot back (its write may still wait for the client). */
  endAnswer(): void;
  /** Move a connection into the watch streams, or refuse it: watch streams have a cap of their own. */
  startWatch(connection: Connection): Promise<boolean>;
  /** Call `wake` whenever watched reports may have changed (each interval, each change); returns the way to stop. */
  onWatchWake(wake: () => void): () => void;
  /** The report of a watched route, shared by every stream that follows it until the next wake. */
  watchReport(route: Route): Promise<HealthReport>;
  /** A read buffer, and giving one back. */
  takeBuffer(): Uint8Array;
  giveBuffer(buffer: Uint8Array): void;
  /** The connection has ended (closed, its buffer given back): forget it. */
  ended(connection: Connection): void;
}

/** What reading a request ended with. */
interface Read {
  parsed: ParseResult;
  /** The client ended its side, or went quiet after an unterminated line: nothing more will be read. */
  final: boolean;
}

/** One accepted connection. */
export class Connection {
  readonly conn: Deno.UnixConn;
  /**
   * `performance.now()` when it was accepted (a newcomer gets a moment to send its request before it
   * may be closed to make room); 0 once it has been answered (an idle keep-alive connection has no such moment).
   */
  waitingFrom = performance.now();
  /** Sweeper-clock time past which the server calls {@linkcode Connection.expire}; 0 for none. Set only here. */
  #deadline = 0;
  /** One more than the sweep count when the pending write began; 0 when no write is pending. */
  stalledSince = 0;
  /** The server's count of waiting turns when it was accepted. */
  turn = 0;
  #state: ConnectionState = "waiting";
  #host: ConnectionHost;
  #chunk: Uint8Array | undefined;
  /** Bytes received and not yet consumed. */
  #pending: Uint8Array = EMPTY;
  /** A request has begun arriving (the 408 rule applies), as opposed to an idle wait. */
  #begun = false;
  /** The connection answers in HTTP: set by its first request. */
  #http = false;
  /** A read still in flight may fill the buffer (the quiet period ended the wait for it): it is not given back. */
  #bufferLent = false;
  #endWatch?: () => void;
  /** Wakes a watch stream's loop: to stop, or because its report may have changed. */
  #wakeWatch?: () => void;
  /** The client shut its sending side: a watcher that may have left, noticed only at the next write. */
  #inputEnded = false;
  /** close() was called: whatever the connection is doing ends. */
  #closed = false;
  /** Holds an answering slot of its host. */
  #answering = false;
  /** A watch stream's last line (line mode), written again to learn whether a half-closed follower is there. */
  #lastLine?: Uint8Array;
  /** A write is in progress (a watch stream's report, or a presence check). */
  #writing?: Promise<unknown>;
  /** A presence check in progress. */
  #presence?: Promise<boolean>;
  /** `performance.now()` when this follower was last written to: it was there then. */
  #heardAt = -Infinity;

  constructor(conn: Deno.UnixConn, host: ConnectionHost) {
    this.conn = conn;
    this.#host = host;
  }

  /** What the connection is doing. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** A line-mode watch stream whose client has shut its sending side: it may still read, or may have left. */
  get inputEnded(): boolean {
    return this.#inputEnded;
  }

  /**
   * Whether a watch stream's client is still there: a half-closed follower is
   * written its last report again (a valid line, unchanged), which fails if it
   * has left, and the stream is then closed. At most once per watch interval:
   * a follower written to within the last one is taken to be there. Resolves
   * true while a write is already in progress (it will tell). Never rejects.
   */
  stillThere(): Promise<boolean> {
    if (this.#closed || this.#state === "closed") return Promise.resolve(false);
    if (this.#presence) return this.#presence;
    if (this.#writing || !this.#lastLine) return Promise.resolve(true);
    const now = performance.now();
    if (now - this.#heardAt < this.#host.limits.watchInterval) return Promise.resolve(true);
    this.#heardAt = now;
    const presence = this.#send(this.#lastLine).then(() => true, () => {
      this.close();
      return false;
    });
    this.#writing = this.#presence = presence;
    presence.then(() => {
      this.#presence = undefined;
      if (this.#writing === presence) this.#writing = undefined;
    });
    return presence;
  }

  /** Serve requests until the connection ends, then tell the host; never rejects. */
  async serve(): Promise<void> {
    const debug = this.#host.debug;
    const limits = this.#host.limits;
    let served = 0;
    try {
      for (;;) {
        const { parsed, final } = await this.#readRequest(served === 0);
        if (parsed.kind === "empty" || parsed.kind === "incomplete") return;
        this.#state = "answering";
        this.waitingFrom = 0;
        let granted = this.#host.startAnswer(this);
        // Every answering slot is taken: wait for one, first come first answered.
        if (granted instanceof Promise) granted = await granted;
        if (this.#closed) return;
        if (!granted) {
          // No slot came within the request's deadline (checks slower than requests arrive): say so, in its framing.
          const framing = this.#http
            ? "http"
            : parsed.kind === "request"
            ? parsed.request.framing
            : parsed.error.framing;
          await this.#write(busy("no answering slot came free in time", framing), framing, false, false);
          return;
        }
        this.#answering = true;
        if (parsed.kind === "error") {
          const error = this.#http ? { ...parsed.error, framing: "http" as const } : parsed.error;
          if (debug) {
            logger.debug("Server refused a request: {code} {message}", { code: error.code, message: error.message });
          }
          await this.#write(prepare(errorResponse(error)), error.framing, false, false);
          return;
        }
        const { request, size } = parsed;
        if (this.#http && request.framing !== "http") {
          // Once a connection speaks HTTP it is answered in HTTP: a bare line here is malformed.
          const error = { code: 400, message: "Expected an HTTP request line on this connection", framing: "http" };
          await this.#write(prepare(errorResponse(error as ProtocolError)), "http", false, false);
          return;
        }
        this.#http = request.framing === "http";
        this.#pending = this.#pending.subarray(size);
        served++;
        if (debug) logger.debug("Server got: {request}", { request: request.line });
        const responder = this.#host.responder;
        const route = responder.route(request.target);
        if (!("code" in route) && route.watch) {
          this.#endAnswer();
          await this.#watch(request, route);
          return;
        }
        let response: Prepared;
        try {
          const answer = responder.answer(request, route);
          response = answer instanceof Promise ? await answer : answer;
        } catch (error) {
          logger.error("Cannot answer {request}: {error}", { request: request.line, error: String(error) });
          const failure = { code: 500, message: "The server could not build its answer", framing: request.framing };
          response = prepare(errorResponse(failure));
        }
        // The answer is built: its write waits on the client alone, and takes no answering slot.
        this.#endAnswer();
        const keepAlive = request.keepAlive && !final && !this.#host.closing &&
          served < limits.maxRequestsPerConnection && response.response.code !== 400;
        const bytes = await this.#write(response, request.framing, request.method === "HEAD", keepAlive);
        if (debug) logger.debug("Server responded with {bytes} bytes.", { bytes });
        if (!keepAlive || this.#host.closing) return;
        this.#state = "waiting";
      }
    } catch (error) {
      if (!isDisconnect(error)) logger.warn("Connection failed: {error}", { error: String(error) });
    } finally {
      this.#finish();
    }
  }

  /**
   * Answer that the server is too busy, in the framing of the request the
   * client sends, then close and tell the host: every connection slot is
   * answering a request. Never rejects.
   */
  async refuseBusy(): Promise<void> {
    try {
      const { parsed } = await this.#readRequest(true, false);
      if (parsed.kind === "empty" || parsed.kind === "incomplete") return;
      this.#state = "answering";
      const framing = parsed.kind === "request" ? parsed.request.framing : parsed.error.framing;
      await this.#write(busy("every connection is answering a request", framing), framing, false, false);
    } catch (error) {
      if (!isDisconnect(error)) logger.warn("Connection failed: {error}", { error: String(error) });
    } finally {
      this.#finish();
    }
  }

  /** Sweeper-clock time past which the server calls {@linkcode Connection.expire}; 0 for none. */
  get deadline(): number {
    return this.#deadline;
  }

  /** The deadline passed: a request begun gets a 408; anything else is closed. */
  expire(): void {
    this.#deadline = 0;
    // Past a write deadline the client is not reading: nothing more can be sent.
    if (this.#state !== "waiting" || !this.#begun) return this.close();
    const framing = this.#http ? "http" : sniffFraming(this.#pending);
    const response = errorResponse({
      code: 408,
      message: `Request not complete in time (${this.#pending.length} bytes received)`,
      framing,
    });
    const bytes = encodeResponse(response, framing, { date: this.#host.responder.httpDate() });
    this.#state = "answering";
    this.conn.write(bytes).catch(() => {}).finally(() => this.close());
  }

  /** Shutdown: end a watch stream (after its last report), close a waiting connection, let an answer finish. */
  stop(): void {
    if (this.#state === "watching") this.#endWatch?.();
    else if (this.#state === "waiting") this.close();
  }

  /**
   * Close now, however the connection is occupied: a read or write in progress
   * fails, a watch stream's loop wakes and ends, and the connection then tells
   * its host, once. Idempotent.
   */
  close(): void {
    this.#closed = true;
    try {
      this.conn.close();
    } catch { /* already closed */ }
    this.#wakeWatch?.();
  }

  #endAnswer(): void {
    if (!this.#answering) return;
    this.#answering = false;
    this.#host.endAnswer();
  }

  #finish(): void {
    if (this.#state === "closed") return;
    this.#deadline = 0;
    this.stalledSince = 0;
    this.#state = "closed";
    this.#endAnswer();
    this.close();
    if (this.#chunk && !this.#bufferLent) this.#host.giveBuffer(this.#chunk);
    this.#chunk = undefined;
    this.#host.ended(this);
  }

  /**
   * Read one request: the first within requestTimeout of connecting, later
   * ones within idleTimeout of the previous answer, and each within
   * requestTimeout of its first byte. Blank lines between requests are
   * tolerated (RFC 9112 §2.2) and start nothing.
   */
  async #readRequest(first: boolean, admitted = true): Promise<Read> {
    const host = this.#host;
    const limits = host.limits;
    this.#state = "waiting";
    if (admitted && !first) host.waiting(this);
    this.#begun = first || hasContent(this.#pending);
    this.#deadline = host.deadlineIn(this.#begun ? limits.requestTimeout : limits.idleTimeout);
    const chunk = this.#chunk ??= host.takeBuffer();
    let final = false;
    let quiet: { promise: Promise<typeof QUIET>; timer: ReturnType<typeof setTimeout> } | undefined;
    try {
      for (;;) {
        // Nothing pending (a keep-alive connection between requests) is incomplete until the client ends:
        // skip parsing it and copying it, which showed in the keep-alive profile.
        if (this.#pending.length === 0 && !final) {
          this.#pending = EMPTY;
        } else {
          const parsed = parseRequest(this.#pending, { final, maxHeaderBytes: limits.maxHeaderBytes });
          if (parsed.kind !== "incomplete" || final) {
            this.#deadline = 0;
            return { parsed, final };
          }
          if (!this.#begun && hasContent(this.#pending)) {
            this.#begun = true;
            this.#deadline = host.deadlineIn(limits.requestTimeout);
          }
          // The first chunk is parsed in place; keep it only as a copy, as the next read reuses the buffer.
          if (this.#pending.buffer === chunk.buffer) this.#pending = this.#pending.slice();
        }
        let n: number | null | typeof QUIET;
        if (first && isUnterminatedLine(this.#pending)) {
          // The seed's client sends "GET /healthz" with no newline and waits: answer after a quiet moment.
          quiet ??= quietTimer(limits.lineQuiet);
          n = await Promise.race([this.conn.read(chunk), quiet.promise]);
        } else {
          n = await this.conn.read(chunk);
        }
        if (n === QUIET) this.#bufferLent = true; // that read may still fill the buffer
        if (n === QUIET || n === null) {
          final = true;
          continue;
        }
        const received = chunk.subarray(0, n);
        this.#pending = this.#pending.length === 0 ? received : concat(this.#pending, received);
        if (quiet) {
          // Quiet means no byte for lineQuiet ms: restart the count.
          clearTimeout(quiet.timer);
          quiet = undefined;
        }
      }
    } finally {
      if (quiet) clearTimeout(quiet.timer);
    }
  }

  /**
   * Whether a half-closed line-mode follower has left, found out without writing a byte: a zero-length write fails
   * only on a socket whose peer has closed. Asked when its input ends and at each wake, so a stream whose client
   * left ends (and its state is freed) within an interval, not when the watch cap next wants room.
   */
  #leftYet(): void {
    if (!this.#closed) this.conn.write(EMPTY).catch(() => this.close());
  }

  /** Write a prepared response in a framing. */
  #write(prepared: Prepared, framing: Framing, head: boolean, keepAlive: boolean): Promise<number> {
    if (framing !== "http") return this.#send(prepared.line);
    // Encoding the head and joining it to the body was a fifth of a keep-alive
    // request's CPU: keep the whole answer while the Date header stands.
    const date = this.#host.responder.httpDate();
    let answers = prepared.http;
    if (answers === undefined || answers.date !== date) {
      prepared.http = answers = { date, bytes: [undefined, undefined, undefined, undefined] };
    }
    const index = (keepAlive ? 1 : 0) | (head ? 2 : 0);
    let bytes = answers.bytes[index];
    if (bytes === undefined) {
      const top = encodeHead(prepared.response, prepared.body.length, { keepAlive, date });
      bytes = answers.bytes[index] = head ? top : concat(top, prepared.body);
    }
    return this.#send(bytes);
  }

  /** Write within writeTimeout: a client that does not read is dropped, never buffered for. */
  async #send(bytes: Uint8Array): Promise<number> {
    const host = this.#host;
    this.#deadline = host.deadlineIn(host.limits.writeTimeout);
    this.stalledSince = host.sweeps + 1;
    let written = 0;
    while (written < bytes.length) written += await this.conn.write(bytes.subarray(written));
    this.#deadline = 0;
    this.stalledSince = 0;
    return written;
  }

  /**
   * `?watch`: send the report now and again whenever its status changes; one
   * JSON line each in line mode, server-sent events in HTTP (chunked on
   * HTTP/1.1). Reports are computed one at a time and only after the
   * previous one was written, so a slow reader gets fewer reports, never a
   * growing buffer.
   */
  async #watch(request: WireRequest, route: Route): Promise<void> {
    const host = this.#host;
    const responder = host.responder;
    const http = request.framing === "http";
    const missing = responder.unknownCheck(route, request.framing);
    if (missing) {
      await this.#write(missing, request.framing, false, false);
      return;
    }
    if (!(await host.startWatch(this))) {
      if (this.#closed) return;
      await this.#write(busy("too many watch streams are open", request.framing), request.framing, false, false);
      return;
    }
    this.#state = "watching";
    let stopped = false;
    let wake = Promise.withResolvers<void>();
    this.#wakeWatch = () => wake.resolve();
    this.#endWatch = () => {
      stopped = true;
      wake.resolve();
    };
    const unsubscribe = host.onWatchWake(this.#wakeWatch);
    // HTTP clients close when they are done; a line-mode client's half-close
    // (socat, nc -N) ends its request, not the stream: whether it left is
    // learnt by writing to it: zero bytes when its input ends and at each wake (#leftYet), or a line.
    this.conn.read(new Uint8Array(256)).then((n) => {
      if (n !== null) return;
      if (http) return this.#endWatch?.();
      this.#inputEnded = true;
      this.#leftYet();
    }, () => this.close());
    const chunked = http && request.line.endsWith(" HTTP/1.1");
    // One write at a time: a presence check may be writing the last line again.
    const send = async (bytes: Uint8Array) => {
      while (this.#writing) await this.#writing;
      const writing = this.#send(bytes);
      this.#writing = writing;
      try {
        await writing;
      } finally {
        if (this.#writing === writing) this.#writing = undefined;
      }
    };
    const sendText = (text: string) => send(encoder.encode(chunked ? asChunk(text) : text));
    const idle = route.watchTimeout;
    try {
      if (http) {
        const head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n" +
          `Connection: close\r\n${chunked ? "Transfer-Encoding: chunked\r\n" : ""}` +
          `Date: ${responder.httpDate()}\r\n\r\n`;
        await send(encoder.encode(head));
        if (request.method === "HEAD") return;
      }
      let last: string | undefined;
      let changedAt = performance.now();
      let sentAt = changedAt;
      let timedOut = false;
      const { keepAlive } = host.limits;
      for (let fresh = true; !this.#closed; fresh = false) {
        // Evaluate once more after a stop, so a drain's last change (readyz
        // "shutting down") reaches the watcher before the stream ends.
        const stopping = stopped;
        // Streams following one route share its report for a wake; the first and the last are asked afresh.
        const report = fresh || stopping ? await responder.report(route) : await host.watchReport(route);
        if (this.#closed) break;
        const now = performance.now();
        if (report.status !== last) {
          // The line is the one the responder keeps for this report: shared by every stream, not encoded anew.
          const { response, line } = responder.render(report, route);
          // The first event tells an EventSource how soon to reconnect if the stream is lost.
          if (http) await sendText(`${last === undefined ? `retry: ${RETRY}\n` : ""}${event(response.body)}`);
          else await send(this.#lastLine = line);
          last = report.status;
          changedAt = sentAt = now;
          this.#heardAt = now;
        } else if (idle !== undefined && now - changedAt >= idle) {
          timedOut = true;
          break;
        } else if (http && keepAlive > 0 && now - sentAt >= keepAlive && !stopping) {
          // A comment line: no event for the client, but bytes for its read timeout.
          await sendText(": keep-alive\n\n");
          sentAt = now;
        }
        if (stopping) break;
        await wake.promise;
        wake = Promise.withResolvers<void>();
        if (this.#inputEnded) this.#leftYet();
      }
      if (this.#closed) return;
      if (http && host.closing) await sendText("event: end\ndata: shutting down\n\n");
      else if (http && timedOut) await sendText(`event: end\ndata: no change for ${seconds(idle!)}\n\n`);
      if (chunked) await send(encoder.encode("0\r\n\r\n"));
    } finally {
      unsubscribe();
      this.#wakeWatch = undefined;
    }
  }
}

/** The reconnection delay an HTTP stream's first event suggests to EventSource clients, in milliseconds. */
const RETRY = 1000;

/** A `&timeout=` for people: `30 s`, `0.5 s`. */
function seconds(ms: number): string {
  return `${Math.round(ms) / 1000} s`;
}

/** One server-sent event carrying a body: a `data:` line per body line, no `event:` field (so `onmessage` gets it). */
function event(body: string): string {
  // Bodies hold no CR, and LF only at the end of lines (renderVerbose escapes both inside values).
  return `data: ${body.replace(/\n$/, "").replaceAll("\n", "\ndata: ")}\n\n`;
}

/** One chunk of a chunked HTTP/1.1 body. */
function asChunk(text: string): string {
  return `${encoder.encode(text).length.toString(16)}\r\n${text}\r\n`;
}

function busy(why: string, framing: Framing): Prepared {
  return prepare(errorResponse({ code: 503, message: `Server busy: ${why}; try again`, framing }));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function hasContent(bytes: Uint8Array): boolean {
  return bytes.some((byte) => byte !== 0x0a && byte !== 0x0d);
}

function quietTimer(ms: number): { promise: Promise<typeof QUIET>; timer: ReturnType<typeof setTimeout> } {
  const { promise, resolve } = Promise.withResolvers<typeof QUIET>();
  return { promise, timer: setTimeout(resolve, ms, QUIET) };
}

/** Whether an error only says the client went away: nothing to log. */
export function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected || error instanceof Deno.errors.TimedOut;
}
