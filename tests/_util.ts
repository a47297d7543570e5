// Helpers shared by the tests: temporary socket paths, raw exchanges, real
// clients and the CLI as a subprocess.
import { watch } from "../client.ts";
import { isDisconnect } from "../connection.ts";
import { permissionFlags } from "../paths.ts";

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

/** The repository root, where main.ts is. */
export const ROOT = new URL("..", import.meta.url).pathname;

/** A socket path in a fresh temporary directory, removed with the directory on dispose. */
export interface TempSocket extends AsyncDisposable {
  dir: string;
  path: string;
}

export async function tempSocket(name = "app.sock"): Promise<TempSocket> {
  const dir = await Deno.makeTempDir({ prefix: "healthsock-" });
  return {
    dir,
    path: `${dir}/${name}`,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Whether a command exists on this machine (tests that need it are ignored otherwise; CI installs them all). */
export function hasCommand(name: string): boolean {
  try {
    new Deno.Command(name, { args: ["-h"], stdout: "null", stderr: "null", stdin: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
}

/**
 * Send `request` (bytes or text) on a fresh connection and read the answer until the server closes; optionally
 * half-close once it is written. The write runs beside the read, so an answer that comes (and a close) before the
 * server has read everything is still collected.
 */
export async function exchange(
  path: string,
  request: string | Uint8Array,
  options: { closeWrite?: boolean } = {},
): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    const writing = writeQuietly(conn, request).then(async () => {
      if (options.closeWrite) await conn.closeWrite().catch(() => {});
    });
    const answer = await readAnswer(conn);
    await writing;
    return answer;
  } finally {
    conn.close();
  }
}

/** Write bytes and ignore a peer that closes first (the server may answer and close before reading them all). */
export async function writeQuietly(conn: Deno.Conn, bytes: Uint8Array | string): Promise<void> {
  try {
    await writeAll(conn, typeof bytes === "string" ? encoder.encode(bytes) : bytes);
  } catch (error) {
    if (!isDisconnect(error)) throw error;
  }
}

/** Read until the server closes; a reset (our bytes left unread) also ends the answer. */
export async function readAnswer(conn: Deno.Conn): Promise<string> {
  try {
    return decoder.decode(await readToEnd(conn));
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset) return "";
    throw error;
  }
}

export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

/**
 * Read until EOF; a reset after data (the server closed with our bytes unread) ends the read too, and with
 * `untilError`, any error does (what was read is kept: a connection the server closes at shutdown).
 */
export async function readToEnd(conn: Deno.Conn, options: { untilError?: boolean } = {}): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(16384);
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buf);
    } catch (error) {
      if (options.untilError || (error instanceof Deno.errors.ConnectionReset && chunks.length > 0)) break;
      throw error;
    }
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  const out = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/** The status code and body of an HTTP/1.1 response text. */
export function parseHttp(text: string): { code: number; headers: Record<string, string>; body: string } {
  const end = text.indexOf("\r\n\r\n");
  const head = text.slice(0, end).split("\r\n");
  const code = Number(head[0].split(" ")[1]);
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { code, headers, body: text.slice(end + 4) };
}

export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a command to completion with its output. */
export async function run(
  command: string,
  args: string[],
  options: { stdin?: string; cwd?: string; env?: Record<string, string> } = {},
): Promise<Output> {
  const child = new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(encoder.encode(options.stdin));
      await writer.close();
    } catch (error) {
      // A program that exits before reading its input (nc refused a connection) is judged by its exit and output.
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    }
  }
  const { code, stdout, stderr } = await child.output();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** `deno run` arguments for main.ts with exactly the flags users get for `path`. */
export function cliArgs(path: string, server: boolean, args: string[]): string[] {
  return ["run", "--no-prompt", ...permissionFlags(path, { server }).split(" "), `${ROOT}main.ts`, ...args];
}

/** Run the CLI as users do, with the scoped permissions for `path`. */
export function cli(path: string, args: string[], options: { server?: boolean } = {}): Promise<Output> {
  return run("deno", cliArgs(path, options.server ?? false, [...args, "--socket", path]));
}

/** Spawn the CLI in the background (for demo and watch), stdout and stderr piped. */
export function spawnCli(path: string, args: string[], options: { server?: boolean } = {}): Deno.ChildProcess {
  return new Deno.Command("deno", {
    args: cliArgs(path, options.server ?? false, [...args, "--socket", path]),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Resolve once `path` exists (polling lstat; a new socket file has no event to await). */
export async function waitForPath(path: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await Deno.lstat(path);
      return;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (Date.now() > deadline) throw new Error(`"${path}" did not appear within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Read lines from a stream until one matches, returning it (and everything read so far); fail after `timeoutMs`. */
export async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  pattern: RegExp,
  timeoutMs = 60_000,
): Promise<{ line: string; seen: string[] }> {
  const seen: string[] = [];
  let buffered = "";
  // A line that never comes fails the test instead of holding the whole suite.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`No line matched ${pattern} within ${timeoutMs} ms:\n${seen.join("\n")}`)),
      timeoutMs,
    );
  });
  try {
    for (;;) {
      const { value, done } = await Promise.race([reader.read(), late]);
      if (done) throw new Error(`Stream ended before a line matched ${pattern}:\n${seen.join("\n")}`);
      buffered += value;
      let lf: number;
      while ((lf = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, lf);
        buffered = buffered.slice(lf + 1);
        seen.push(line);
        if (pattern.test(line)) return { line, seen };
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

export function exists(path: string): Promise<boolean> {
  return Deno.lstat(path).then(() => true, () => false);
}

/** deno.json's tasks, as users run them. */
export const TASKS: Record<string, string> = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks;

/**
 * A task's `deno` arguments with its socket (`$HEALTHSOCK_SOCKET`, default /tmp/app.sock) replaced by `path` and
 * main.ts made absolute.
 */
export function taskArgs(task: string, path: string): string[] {
  const [command, ...words] = TASKS[task].replace(/^sh -c '[^']*' && export HEALTHSOCK_SOCKET=.*? && /, "")
    .replaceAll("$HEALTHSOCK_SOCKET", path).split(" ");
  if (command !== "deno") throw new Error(`Task "${task}" does not start with deno: ${TASKS[task]}`);
  return words.map((word) => word.replaceAll("/tmp/app.sock", path).replace(/^main\.ts$/, `${ROOT}main.ts`));
}

/** A demo started with the demo task's exact command line; its log (stderr) is readable, and it is killed on dispose. */
export interface DemoProcess extends AsyncDisposable {
  child: Deno.ChildProcess;
  log: ReadableStreamDefaultReader<string>;
}

export function spawnDemo(path: string, args: string[]): DemoProcess {
  return spawnDeno([...taskArgs("demo", path), "--socket", path, ...args]);
}

/** `deno ARGS` with its log (stderr) readable, killed on dispose. */
export function spawnDeno(args: string[], env?: Record<string, string>): DemoProcess {
  const child = new Deno.Command("deno", {
    args,
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  return {
    child,
    log,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await log.cancel().catch(() => {});
      await child.status;
    },
  };
}

/** Follow `/readyz` on a ?watch stream until it passes: start-up has an event, no need to poll. */
export async function untilReady(path: string): Promise<string[]> {
  const statuses: string[] = [];
  const stop = new AbortController();
  for await (const report of watch(path, { target: "/readyz", signal: stop.signal })) {
    statuses.push(report.status);
    if (report.status === "pass") stop.abort();
  }
  return statuses;
}

/** One datagram as systemd would read it, and when it came (performance.now()). */
export interface Message {
  text: string;
  at: number;
}

/** systemd's side of sd_notify(3): a Unix datagram socket at `path` that queues what arrives (needs --unstable-net). */
export interface Receiver extends Disposable {
  path: string;
  /** The next message, or an error after `timeout` ms. */
  next(timeout?: number): Promise<Message>;
  /** The next message whose text matches, skipping (and returning) those before it. */
  until(pattern: RegExp, timeout?: number): Promise<{ message: Message; skipped: Message[] }>;
  /** Messages that arrived and were not read yet. */
  pending(): Message[];
}

export function receiver(path: string): Receiver {
  const conn = Deno.listenDatagram({ transport: "unixpacket", path });
  const queue: Message[] = [];
  let wake = Promise.withResolvers<void>();
  const loop = (async () => {
    try {
      for (;;) {
        const [data] = await conn.receive();
        queue.push({ text: decoder.decode(data), at: performance.now() });
        wake.resolve();
      }
    } catch { /* closed */ }
  })();
  const next = async (timeout = 10_000): Promise<Message> => {
    const deadline = performance.now() + timeout;
    while (queue.length === 0) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`No message within ${timeout} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([wake.promise, new Promise((resolve) => timer = setTimeout(resolve, left))]);
      clearTimeout(timer);
      wake = Promise.withResolvers<void>();
    }
    return queue.shift()!;
  };
  return {
    path,
    next,
    async until(pattern, timeout = 10_000) {
      const skipped: Message[] = [];
      const deadline = performance.now() + timeout;
      for (;;) {
        const message = await next(Math.max(1, deadline - performance.now()));
        if (pattern.test(message.text)) return { message, skipped };
        skipped.push(message);
      }
    },
    pending: () => queue.splice(0),
    [Symbol.dispose]() {
      conn.close();
      void loop;
    },
  };
}

/**
 * Read the next `count` messages from systemd's side, each of which must be a watchdog ping (`WATCHDOG=1`), and
 * the mean time between them: a figure to print, never to assert.
 */
export async function watchdogPings(systemd: Receiver, count: number): Promise<{ pings: Message[]; period: number }> {
  const pings: Message[] = [];
  while (pings.length < count) {
    const message = await systemd.next();
    if (message.text !== "WATCHDOG=1") throw new Error(`Expected "WATCHDOG=1", got ${JSON.stringify(message.text)}`);
    pings.push(message);
  }
  return { pings, period: meanPeriod(pings) };
}

/** The mean time between messages, in ms: a figure to print, never to assert. */
export function meanPeriod(messages: Message[]): number {
  return (messages.at(-1)!.at - messages[0].at) / (messages.length - 1);
}

/** Everything a reader still yields, to its end: what a process printed after the lines a test waited for. */
export async function restOf(reader: ReadableStreamDefaultReader<string>): Promise<string> {
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    text += value;
  }
}

/** Print measured figures for the record, one line a measurement: `SUITE: LABEL: name value, …`. */
export function figures(suite: string, label: string, values: Record<string, string | number>): void {
  console.log(`${suite}: ${label}: ${Object.entries(values).map(([k, v]) => `${k} ${v}`).join(", ")}`);
}

/**
 * Read from `conn` until the text read holds `pattern`; returns all of it (after `text`, what was read before). A
 * pattern that never comes fails the test after 20 s instead of holding the suite: the connection is closed.
 */
export async function readUntilMatch(conn: Deno.Conn, pattern: RegExp, text = ""): Promise<string> {
  const buf = new Uint8Array(65536);
  let late = false;
  const bound = setTimeout(() => {
    late = true;
    conn.close();
  }, 20_000);
  try {
    while (!pattern.test(text)) {
      const n = await conn.read(buf).catch((error) => {
        if (late) return null;
        throw error;
      });
      if (n === null) {
        throw new Error(
          `${late ? "No" : "Closed before"} ${pattern}${late ? " in 20 s" : ""}: ${JSON.stringify(text)}`,
        );
      }
      text += decoder.decode(buf.subarray(0, n));
    }
    return text;
  } finally {
    clearTimeout(bound);
  }
}

/**
 * The host program of the fault tests (tests/fixtures/host.ts) serving `path`, with the scoped flags of a server;
 * `options` is its second argument ("main", or serve() options as JSON). Its stdout and stderr are piped.
 */
export function spawnHost(path: string, options?: string): Deno.ChildProcess {
  return new Deno.Command("deno", {
    args: [
      "run",
      "--no-prompt",
      ...permissionFlags(path, { server: true }).split(" "),
      `${ROOT}tests/fixtures/host.ts`,
      path,
      ...(options === undefined ? [] : [options]),
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}
