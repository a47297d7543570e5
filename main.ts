/**
 * The healthsock command line: `demo`, `check` and `watch`.
 *
 * ```sh
 * deno run --allow-read=/tmp/app.sock --allow-write=/tmp/app.sock \
 *   --allow-net=unix:/tmp/app.sock main.ts check --path /readyz
 * ```
 *
 * @module
 */
import type { LogLevel } from "./log.ts";
import { parseFlags } from "./args.ts";
import { asksToWatch, probe, ProbeError, watch } from "./client.ts";
import type { ProbeResult } from "./client.ts";
import type { Demo } from "./demo.ts";
import { delay, MAX_DELAY } from "./delay.ts";
import { permissionFlags, permissionPaths } from "./paths.ts";
import type { Framing } from "./protocol.ts";
import { ENDPOINTS, escapeText, renderVerbose } from "./report.ts";
import type { Endpoint, HealthStatus } from "./report.ts";

// `check` and `watch` are what probes run, many times a minute: they load only
// the client, protocol and args modules. Logging (an npm package), node:util's parseArgs
// (for demo) and the server load on demand: any npm package or node: module
// boots Deno's Node layer, a fifth of a probe's start-up.

const DEFAULT_SOCKET = "/tmp/app.sock";

/** Exit codes, as the README lists them. Never 2: container runtimes reserve it. */
const EXIT = {
  ok: 0,
  fail: 1,
  unreachable: 3,
  timeout: 4,
  busy: 4,
  protocol: 5,
  usage: 64,
  /** A bug: never 1, which says the health is fail. */
  internal: 70,
  noPermission: 77,
} as const;

const GLOBAL_USAGE = `Usage: healthsock <command> [options]

Publish and probe a program's health on a Unix socket.

Commands:
  demo     Run the demo: a ticking worker, its health server and a polling client
  check    Ask a health socket once; the exit code says the answer
  watch    Ask a health socket repeatedly and print each answer

Options for every command:
  --socket PATH          Socket path, absolute (default ${DEFAULT_SOCKET})
  --log-level LEVEL      trace, debug, info, warning, error or fatal
                         (default info; debug shows each request served)
  --log-format FORMAT    text or json; logs go to stderr. With json every line
                         on stderr is a JSON object, the exit line included,
                         but a usage error's (exit 64)
  -h, --help             Show help; "healthsock <command> --help" for a command

Exit codes of check and watch --count: 0 pass or warn, 1 fail, 3 unreachable,
4 timed out or busy, 5 protocol error, 64 usage error, 70 internal error.`;

const USAGE: Record<Command, string> = {
  check: `Usage: healthsock check [options]

Ask a health socket once and exit with its status.

Options:
  --path TARGET          Endpoint: /healthz, /livez, /readyz, /startupz or
                         /ENDPOINT/CHECK, with a query (default /healthz)
  --timeout DURATION     Give up after this long, e.g. 500ms, 2s (default 2s)
  --format FORMAT        text or json (the report as received) (default text)
  --verbose              Print one line per check (text format)
  --quiet                Print nothing on stdout; the exit code tells
  --http                 Speak HTTP/1.1 instead of line mode
  --socket PATH          Socket path (default ${DEFAULT_SOCKET})

Exit codes: 0 pass or warn, 1 fail, 3 unreachable (no socket, refused,
permission denied), 4 timed out or busy (the server is not accepting, or said
it is too busy), 5 protocol error, 64 usage error, 70 internal error.`,
  watch: `Usage: healthsock watch [options]

Ask a health socket every --interval and print each answer, until Ctrl-C,
SIGTERM or SIGHUP, or until its output is closed (exit 0). A closed output is
noticed at the next line printed, so with --changes under "| head -1" that is
the next change: use --count 1 instead.

Options:
  --path TARGET          Endpoint, as for check (default /healthz)
  --interval DURATION    Time between probes (default 3s)
  --changes              Print only changes of status; follows the server's
                         ?watch stream, and polls servers without one
  --count N              Stop after N answers printed; exit as check would
                         for the last one
  --timeout DURATION     Per probe (default 2s)
  --format FORMAT        text (a line per answer) or json (a JSON object per
                         line) (default text)
  --http                 Speak HTTP/1.1 instead of line mode when polling
  --socket PATH          Socket path (default ${DEFAULT_SOCKET})`,
  demo: `Usage: healthsock demo [options]

Run the demo application: a worker ticking at random 0-500 ms intervals, its
health server on the socket, and a client polling it. Ctrl-C, SIGTERM or SIGHUP
drains (/readyz fails, /livez passes) and stops; signals within 500 ms of the
first count as one (a terminal's Ctrl-C reaches every wrapper, which pass it on
again); one after that stops at once.

Options:
  --stall-after DURATION     Stop the worker after this long, to watch /livez fail
  --block-every DURATION     Make the worker block the main thread this often,
                             as an app busy with synchronous work (with
                             --block-for), e.g. --block-every 2s --block-for 1.5s
  --block-for DURATION       How long each block lasts; less than --block-every
  --wedge-after DURATION     Block the main thread for good after this long, as a
                             wedged app (only SIGKILL stops it then)
  --unhealthy-after DURATION Fail the ticker check after this long without a
                             tick (default 2s)
  --ready-after DURATION     Start-up time before /readyz passes (default 1s)
  --poll-interval DURATION   Time between the demo client's polls; 0 turns the
                             client off (default 3s)
  --drain-delay DURATION     How long a drain keeps answering (default 1s)
  --mode MODE                Socket file mode, octal (default 0600)
  --notify                   Under systemd (NOTIFY_SOCKET set): READY=1 once
                             /readyz passes, WATCHDOG=1 while /livez passes,
                             STOPPING=1 on drain; sends from PATH.notify and
                             needs --unstable-net (see the README)
  --socket PATH              Socket path (default ${DEFAULT_SOCKET})`,
};

/** Safe to paste into a shell and to print: quoted unless plain, control characters escaped. */
function shellWord(text: string): string {
  return escapeText(/^[\w/.,:@%+=-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`);
}

/** A command's usage; the demo's names the socket it would serve, so its examples can be pasted as they are. */
function usage(command: Command, socket: string): string {
  if (command !== "demo") return USAGE[command];
  const path = shellWord(socket);
  return `${USAGE.demo}

While it runs, from another terminal:
  socat - UNIX-CONNECT:${path} <<< "GET /healthz"
  curl --unix-socket ${path} http://localhost/healthz`;
}

type Command = "demo" | "check" | "watch";

const GLOBAL_OPTIONS = {
  socket: { type: "string", default: DEFAULT_SOCKET },
  "log-level": { type: "string" },
  "log-format": { type: "string", default: "text" },
  help: { type: "boolean", short: "h", default: false },
} as const;

const PROBE_OPTIONS = {
  path: { type: "string", default: "/healthz" },
  timeout: { type: "string", default: "2s" },
  format: { type: "string", default: "text" },
  http: { type: "boolean", default: false },
} as const;

const OPTIONS = {
  check: {
    ...GLOBAL_OPTIONS,
    ...PROBE_OPTIONS,
    verbose: { type: "boolean", default: false },
    quiet: { type: "boolean", default: false },
  },
  watch: {
    ...GLOBAL_OPTIONS,
    ...PROBE_OPTIONS,
    interval: { type: "string", default: "3s" },
    changes: { type: "boolean", default: false },
    count: { type: "string" },
  },
  demo: {
    ...GLOBAL_OPTIONS,
    "stall-after": { type: "string" },
    "block-every": { type: "string" },
    "block-for": { type: "string" },
    "wedge-after": { type: "string" },
    "unhealthy-after": { type: "string", default: "2s" },
    "ready-after": { type: "string", default: "1s" },
    "poll-interval": { type: "string", default: "3s" },
    "drain-delay": { type: "string", default: "1s" },
    mode: { type: "string", default: "0600" },
    notify: { type: "boolean", default: false },
  },
} as const;

class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parse `500ms`, `2s`, `1.5m`, `1h`; a bare number is seconds. At most 2^31-1 ms (24.8 days), as timers hold. */
function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!match) throw new UsageError(`Invalid ${flag} "${text}": expected a duration such as 500ms, 2s or 1m`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? "s"]!;
  const ms = Number(match[1]) * unit;
  if (!(ms <= MAX_DELAY)) {
    throw new UsageError(`Invalid ${flag} "${text}": at most ${MAX_DELAY} ms (about 24 days)`);
  }
  return ms;
}

function positiveDuration(text: string, flag: string): number {
  const ms = parseDuration(text, flag);
  if (ms <= 0) throw new UsageError(`Invalid ${flag} "${text}": must be more than zero`);
  return ms;
}

function choice<T extends string>(value: string, allowed: readonly T[], flag: string): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`Invalid ${flag} "${value}": use ${allowed.join(" or ")}`);
  }
  return value as T;
}

function endpointOf(target: string): Endpoint {
  const name = target.replace(/^https?:\/\/[^/]*/, "").split(/[/?]/)[1];
  return ((ENDPOINTS as readonly string[]).includes(name) ? name : "healthz") as Endpoint;
}

/** The logging module, once logging is set up: the CLI's own lines follow its format. */
let logging: typeof import("./logging.ts") | undefined;

/** Fail early, with the flags to add, rather than on the first socket call. */
async function missingPermissions(path: string, server: boolean): Promise<string | undefined> {
  const { files, sockets } = permissionPaths(path, server);
  const descriptors: Deno.PermissionDescriptor[] = [
    ...files.flatMap((p) => [{ name: "read", path: p } as const, { name: "write", path: p } as const]),
    ...sockets.map((p) => ({ name: "net", host: `unix:${p}` } as const)),
  ];
  for (const descriptor of descriptors) {
    const { state } = await Deno.permissions.query(descriptor);
    if (state !== "granted") {
      return `Cannot use "${path}": Deno lacks permission; run with ${permissionFlags(path, { server })}`;
    }
  }
  return undefined;
}

/** The one stderr line of a non-zero exit; what a server sent cannot make it two. */
/**
 * Stop reacting to stop signals, but keep them from killing the process: the
 * wrappers (`npx`, `deno task`) forward a Ctrl-C the program has already seen,
 * and one arriving between here and `Deno.exit` would end it with 130 instead
 * of its own exit code.
 */
function settleSignals(listener: () => void): void {
  for (const signal of STOP_SIGNALS) {
    Deno.addSignalListener(signal, ignore);
    Deno.removeSignalListener(signal, listener);
  }
}

function ignore(): void {}

/** A line of the CLI's own on stderr: `healthsock: …` in text, a JSON record with --log-format json. */
function say(level: LogLevel, message: string, path: string): void {
  const sentence = message[0].toUpperCase() + message.slice(1);
  if (!logging?.notice(level, sentence, { path })) console.error(`healthsock: ${escapeText(message)}`);
}

function fatal(code: number, message: string): number {
  if (!logging?.notice("error", message, { exitCode: code })) console.error(`healthsock: ${escapeText(message)}`);
  return code;
}

function exitFor(error: ProbeError): number {
  return EXIT[error.kind];
}

/** One line for stderr when a probe's answer or failure exits non-zero. */
function statusLine(path: string, target: string, result: ProbeResult): string {
  const why = result.report?.output ? `: ${result.report.output}` : "";
  return `"${path}" answered ${target} with ${result.status}${why}`;
}

/**
 * A body from the server as safe lines for a terminal: it keeps its line
 * breaks, and every other control character is escaped (`escapeText`), so a
 * process answering on the path cannot send ESC, BEL or CR to the user's
 * terminal, as the server's own framings guarantee for what checks say.
 */
function safeLines(body: string): string {
  return body.replace(/\n$/, "").split("\n").map(escapeText).join("\n");
}

function renderText(result: ProbeResult, target: string, verbose: boolean): string {
  const endpoint = endpointOf(target);
  if (!result.report) return safeLines(result.body);
  if (verbose) return renderVerbose(result.report, endpoint).replace(/\n$/, "");
  const summary = `${endpoint} check ${result.status === "fail" ? "failed" : "passed"}`;
  return result.report.output ? `${summary} (${escapeText(result.report.output)})` : summary;
}

interface ProbeFlags {
  path: string;
  target: string;
  framing: Framing;
  timeout: number;
  format: "text" | "json";
}

function probeFlags(values: Record<string, string | boolean | undefined>, command: "check" | "watch"): ProbeFlags {
  const path = values.socket as string;
  const target = values.path as string;
  if (!target.startsWith("/") || /\s/.test(target)) {
    throw new UsageError(`Invalid --path "${target}": expected a path such as /readyz`);
  }
  if (asksToWatch(target)) {
    // A ?watch answer never ends, so check would wait out its timeout.
    const plain = target.replace(/([?&])watch(=[^&]*)?(&|$)/, (_, before, _value, after) => after ? before : "")
      .replace(/[?&]$/, "");
    throw new UsageError(
      `Invalid --path "${target}": ${command} does not take ?watch; ` +
        `to follow changes run 'healthsock watch --changes --path ${plain}'`,
    );
  }
  return {
    path,
    target,
    framing: values.http ? "http" : "line",
    timeout: positiveDuration(values.timeout as string, "--timeout"),
    format: choice(values.format as string, ["text", "json"] as const, "--format"),
  };
}

async function runCheck(values: Record<string, string | boolean | undefined>): Promise<number> {
  const flags = probeFlags(values, "check");
  const missing = await missingPermissions(flags.path, false);
  if (missing) return fatal(EXIT.unreachable, missing);
  let result: ProbeResult;
  try {
    result = await probe(flags.path, { target: flags.target, framing: flags.framing, timeout: flags.timeout });
    if (values["log-level"] !== undefined) {
      const { getLogger } = await import("@logtape/logtape");
      getLogger(["healthsock", "cli"]).debug("Probe of {path} {target}: {status} ({code})", {
        path: flags.path,
        target: flags.target,
        status: result.status,
        code: result.code,
      });
    }
  } catch (error) {
    if (error instanceof ProbeError) return fatal(exitFor(error), error.message);
    throw error;
  }
  if (!values.quiet) {
    console.log(
      flags.format === "json" ? safeLines(result.body) : renderText(result, flags.target, Boolean(values.verbose)),
    );
  }
  if (result.status === "fail") return fatal(EXIT.fail, statusLine(flags.path, flags.target, result));
  return EXIT.ok;
}

type Observation = { status: HealthStatus; result: ProbeResult } | { status: "error"; error: ProbeError };

/** Thrown when stdout is closed (`healthsock watch | head -2`): the reader is done, and so is watch. */
class OutputClosed extends Error {
  constructor(options?: ErrorOptions) {
    super("Standard output is closed", options);
    this.name = "OutputClosed";
  }
}

const stdoutEncoder = new TextEncoder();

/** Print a line; console.log would swallow a closed pipe and watch would poll on forever. */
function printLine(text: string): void {
  const bytes = stdoutEncoder.encode(text + "\n");
  try {
    let written = 0;
    while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
  } catch (error) {
    if (error instanceof Deno.errors.BrokenPipe) throw new OutputClosed({ cause: error });
    throw error;
  }
}

const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** Signals this close to the first are the same keypress, delivered several times. */
const SAME_SIGNAL_MS = 500;

async function runWatch(values: Record<string, string | boolean | undefined>): Promise<number> {
  const flags = probeFlags(values, "watch");
  const interval = positiveDuration(values.interval as string, "--interval");
  const count = values.count === undefined ? Infinity : Number(values.count);
  if (count !== Infinity && (!Number.isInteger(count) || count <= 0)) {
    throw new UsageError(`Invalid --count "${values.count}": expected a whole number above zero`);
  }
  const missing = await missingPermissions(flags.path, false);
  if (missing) return fatal(EXIT.unreachable, missing);

  const stop = new AbortController();
  // Any number of signals, however close together, just stop.
  const onSignal = () => stop.abort();
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, onSignal);
  let printed = 0;
  let last: Observation | undefined;
  let lastKey: string | undefined;
  const emit = (observation: Observation): boolean => {
    const key = observation.status === "error" ? `error:${observation.error.kind}` : observation.status;
    if (values.changes && key === lastKey) return printed < count;
    lastKey = key;
    last = observation;
    printed++;
    const time = new Date().toISOString();
    if (flags.format === "json") {
      printLine(JSON.stringify(
        observation.status === "error"
          ? { time, status: "error", kind: observation.error.kind, error: observation.error.message }
          : { time, status: observation.status, report: observation.result.report ?? observation.result.body },
      ));
    } else if (observation.status === "error") {
      printLine(`${time} ${observation.error.kind} ${escapeText(observation.error.message)}`);
    } else {
      // One line per answer, whatever the body holds (a ?verbose target answers several).
      printLine(`${time} ${observation.status} ${escapeText(renderText(observation.result, flags.target, false))}`);
    }
    return printed < count;
  };
  const observe = async (): Promise<Observation | undefined> => {
    try {
      const result = await probe(flags.path, {
        target: flags.target,
        framing: flags.framing,
        timeout: flags.timeout,
        signal: stop.signal,
      });
      return { status: result.status, result };
    } catch (error) {
      if (stop.signal.aborted) return undefined;
      if (error instanceof ProbeError) return { status: "error", error };
      throw error;
    }
  };
  try {
    let streaming = Boolean(values.changes);
    while (!stop.signal.aborted) {
      if (streaming) {
        // Follow the server's pushed changes; fall back to polling when it has none.
        try {
          for await (
            const report of watch(flags.path, { target: flags.target, timeout: flags.timeout, signal: stop.signal })
          ) {
            const body = JSON.stringify(report);
            const result: ProbeResult = { status: report.status, code: 0, body, report, framing: "line" };
            if (!emit({ status: report.status, result })) return finish(last);
          }
        } catch (error) {
          if (!(error instanceof ProbeError)) throw error;
          if (error.kind === "protocol") streaming = false;
          else if (!emit({ status: "error", error })) return finish(last);
        }
        if (streaming && !stop.signal.aborted) await delay(interval, stop.signal);
        continue;
      }
      const observation = await observe();
      if (!observation) break;
      if (!emit(observation)) return finish(last);
      await delay(interval, stop.signal);
    }
    return EXIT.ok;
  } catch (error) {
    if (error instanceof OutputClosed) return EXIT.ok;
    throw error;
  } finally {
    settleSignals(onSignal);
  }

  function finish(observation: Observation | undefined): number {
    if (!observation) return EXIT.ok;
    if (observation.status === "error") return fatal(exitFor(observation.error), observation.error.message);
    if (observation.status === "fail") {
      return fatal(EXIT.fail, statusLine(flags.path, flags.target, observation.result));
    }
    return EXIT.ok;
  }
}

async function runDemo(values: Record<string, string | boolean | undefined>): Promise<number> {
  const path = values.socket as string;
  const modeText = values.mode as string;
  if (!/^0?[0-7]{3}$/.test(modeText)) {
    throw new UsageError(`Invalid --mode "${modeText}": expected octal such as 0600 or 0660`);
  }
  const options = {
    mode: parseInt(modeText, 8),
    stallAfter: values["stall-after"] === undefined
      ? undefined
      : parseDuration(values["stall-after"] as string, "--stall-after"),
    unhealthyAfter: positiveDuration(values["unhealthy-after"] as string, "--unhealthy-after"),
    readyAfter: parseDuration(values["ready-after"] as string, "--ready-after"),
    pollInterval: parseDuration(values["poll-interval"] as string, "--poll-interval"),
    drainDelay: parseDuration(values["drain-delay"] as string, "--drain-delay"),
    notify: Boolean(values.notify),
    blockEvery: values["block-every"] === undefined
      ? undefined
      : positiveDuration(values["block-every"] as string, "--block-every"),
    blockFor: values["block-for"] === undefined
      ? undefined
      : positiveDuration(values["block-for"] as string, "--block-for"),
    wedgeAfter: values["wedge-after"] === undefined
      ? undefined
      : parseDuration(values["wedge-after"] as string, "--wedge-after"),
  };
  if ((options.blockEvery === undefined) !== (options.blockFor === undefined)) {
    const [given, missing] = options.blockEvery === undefined ? ["for", "every"] : ["every", "for"];
    throw new UsageError(
      `Invalid --block-${given} "${values[`block-${given}`]}": give --block-${missing} too, ` +
        "e.g. --block-every 2s --block-for 1.5s",
    );
  }
  if (options.blockFor! >= options.blockEvery!) {
    throw new UsageError(
      `Invalid --block-for "${values["block-for"]}": must be shorter than --block-every "${values["block-every"]}"`,
    );
  }
  const missing = await missingPermissions(path, true);
  if (missing) return fatal(EXIT.noPermission, missing);
  // Listen for signals before the socket exists, so a signal that arrives
  // during start-up still drains and removes it.
  let firstSignal: number | undefined;
  let stopNow = false;
  let demo: Demo | undefined;
  // The first signal drains, a later one stops at once.
  const obey = () => {
    if (stopNow) demo?.close();
    else if (firstSignal !== undefined) demo?.drain();
  };
  const onSignal = () => {
    const now = performance.now();
    if (firstSignal === undefined) {
      firstSignal = now;
      say("info", `draining "${path}" (signal again to stop now)`, path);
    } else if (now - firstSignal < SAME_SIGNAL_MS || stopNow) {
      // One Ctrl-C reaches npx, deno task and this program (the terminal
      // signals the whole process group) and each wrapper passes it on again.
      return;
    } else {
      stopNow = true;
      say("warning", `stopping "${path}" now`, path);
    }
    obey();
  };
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, onSignal);
  try {
    const [{ startDemo }, { SocketError }] = await Promise.all([import("./demo.ts"), import("./server.ts")]);
    try {
      demo = await startDemo(path, options);
    } catch (error) {
      if (error instanceof SocketError) {
        return fatal(error.reason === "not-capable" ? EXIT.noPermission : EXIT.fail, error.message);
      }
      throw error;
    }
    obey();
    try {
      await demo.finished;
    } catch (error) {
      // The health Worker died for good: a program must not run on believing it publishes health.
      return fatal(EXIT.fail, error instanceof Error ? error.message : String(error));
    }
  } finally {
    settleSignals(onSignal);
  }
  return EXIT.ok;
}

const HINT = "Run 'healthsock --help' for usage";

/** A usage error is one line saying what is wrong, and where the usage is: the text itself would bury the line. */
function usageError(command: Command, message: string): number {
  console.error(`healthsock ${command}: ${escapeText(message)}\nRun 'healthsock ${command} --help' for usage`);
  return EXIT.usage;
}

async function main(args: string[] = Deno.args): Promise<number> {
  const [first, ...rest] = args;
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    if (first === undefined) {
      console.error(GLOBAL_USAGE);
      return EXIT.usage;
    }
    console.log(GLOBAL_USAGE);
    return EXIT.ok;
  }
  if (!(first in OPTIONS)) {
    console.error(`healthsock: Unknown command "${escapeText(first)}": use check, watch or demo\n${HINT}`);
    return EXIT.usage;
  }
  const command = first as Command;
  let values: Record<string, string | boolean | undefined>;
  try {
    if (command === "demo") {
      const { parseArgs } = await import("node:util");
      const parsed = parseArgs({ args: rest, options: OPTIONS.demo, strict: true, allowPositionals: false });
      values = parsed.values as Record<string, string | boolean | undefined>;
    } else {
      // parseArgs's behaviour and messages, without loading node:util (tests/args_test.ts).
      values = parseFlags(rest, OPTIONS[command]);
    }
  } catch (error) {
    return usageError(command, (error as Error).message);
  }
  if (values.help) {
    console.log(usage(command, values.socket as string));
    return EXIT.ok;
  }
  try {
    const socket = values.socket as string;
    if (!socket.startsWith("/")) throw new UsageError(`Invalid --socket "${socket}": the path must be absolute`);
    const format = choice(values["log-format"] as string, ["text", "json"] as const, "--log-format");
    // check and watch log nothing of their own unless asked: they report on stdout and stderr, and a probe
    // loads no npm package (LogTape is one), so it runs on an empty cache with --cached-only.
    if (command === "demo" || values["log-level"] !== undefined || format === "json") {
      logging = await import("./logging.ts");
      const level = (values["log-level"] ?? "info") as string;
      await logging.setUpLogging(choice(level, logging.LOG_LEVELS, "--log-level"), format);
    }
    if (command === "check") return await runCheck(values);
    if (command === "watch") return await runWatch(values);
    return await runDemo(values);
  } catch (error) {
    if (error instanceof UsageError) return usageError(command, error.message);
    throw error;
  }
}

/**
 * An error nothing expected is a bug, not an answer: exit 70 (EX_SOFTWARE)
 * with one line, never Deno's 1, which check's callers read as "fail".
 */
function crashed(error: unknown): never {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  console.error(`healthsock: Internal error (please report it): ${escapeText(message)}`);
  Deno.exit(EXIT.internal);
}

if (import.meta.main) {
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    crashed(event.reason);
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    crashed(event.error);
  });
  Deno.exit(await main().catch(crashed));
}
