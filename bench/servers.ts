/**
 * The processes of a run: where they are placed (one core for servers, one
 * for the load generator), starting each server and peer until it answers,
 * and running the load generator against it.
 *
 * @module
 */
import { permissionFlags } from "../paths.ts";
import type { Captured, LoadResult } from "./load.ts";
import type { ProbeRun } from "./probes.ts";
import { lines } from "./lines.ts";
import { readStatus } from "./proc.ts";
import { BENCH, serverName } from "./scenarios.ts";
import type { Framing, HostVariant, LoadMode, ServerKind, Settings, Thread } from "./scenarios.ts";

export const decoder = new TextDecoder();
export const encoder = new TextEncoder();

/** Where servers and the generator run: one core each, when taskset and two cores are there. */
export interface Placement {
  server?: number;
  load?: number;
  note: string;
}

async function hasCommand(name: string, args: string[]): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(name, { args, stdout: "null", stderr: "null", stdin: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

export async function placement(settings: Settings): Promise<Placement> {
  if (!settings.pin) return { note: "not pinned (--no-pin)" };
  if (!await hasCommand("taskset", ["-V"])) return { note: "not pinned: taskset is not installed" };
  const { cpus } = await readStatus("self");
  if (cpus.length < 2) return { note: `not pinned: only CPU ${cpus.join(",")} is available` };
  return {
    server: cpus[0],
    load: cpus[1],
    note: `server on CPU ${cpus[0]}, load generator on CPU ${cpus[1]} (taskset)`,
  };
}

function pinned(cpu: number | undefined, command: string, args: string[]): [string, string[]] {
  return cpu === undefined ? [command, args] : ["taskset", ["-c", String(cpu), command, ...args]];
}

/** A line reader over a child's stdout that keeps draining it. */
class Lines {
  #lines: string[] = [];
  #waiters: (() => void)[] = [];
  #done = false;
  readonly finished: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.finished = (async () => {
      for await (const line of stream.pipeThrough(new TextDecoderStream()).pipeThrough(lines())) {
        this.#lines.push(line);
        this.#wake();
      }
      this.#done = true;
      this.#wake();
    })();
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  get text(): string {
    return this.#lines.join("\n");
  }

  /** The first line not yet taken that starts with `prefix`, taking it; undefined after `ms` or at the end. */
  async take(prefix: string, ms: number): Promise<string | undefined> {
    const deadline = performance.now() + ms;
    for (;;) {
      const i = this.#lines.findIndex((line) => line.startsWith(prefix));
      if (i >= 0) return this.#lines.splice(i, 1)[0];
      if (this.#done || performance.now() >= deadline) return undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, Math.max(1, deadline - performance.now()));
      });
      clearTimeout(timer);
    }
  }

  async waitFor(line: string, ms: number): Promise<boolean> {
    const deadline = performance.now() + ms;
    while (!this.#lines.includes(line)) {
      if (this.#done) return false;
      const left = deadline - performance.now();
      if (left <= 0) return false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
    return true;
  }
}

/** A server process, up and answering. */
export interface Running {
  pid: number;
  /** Milliseconds from spawning the process to its `ready` line. */
  startMs: number;
  stop(): Promise<void>;
  /** Take the first line of its output not yet taken that starts with `prefix`. */
  take(prefix: string): Promise<string | undefined>;
  /** Send a line to the process's stdin. */
  send(line: string): Promise<void>;
  /** Send a line to the process's stdin and take the first answer line starting with `prefix`. */
  ask(line: string, prefix: string): Promise<string | undefined>;
}

async function startProcess(command: string, args: string[], what: string): Promise<Running> {
  const started = performance.now();
  const child = new Deno.Command(command, { args, stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
  const stdout = new Lines(child.stdout);
  const stderr = new Lines(child.stderr);
  const stdin = child.stdin.getWriter();
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      await stdin.close().catch(() => {});
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await child.status;
      clearTimeout(timer);
      await Promise.all([stdout.finished, stderr.finished]);
    })();
  if (!await stdout.waitFor("ready", 30_000)) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await stop();
    throw new Error(`${what} did not start: ${stderr.text || stdout.text || "no output"}`);
  }
  const startMs = performance.now() - started;
  const send = (line: string) => stdin.write(encoder.encode(line + "\n"));
  const ask = async (line: string, prefix: string) => {
    await send(line);
    return await stdout.take(prefix, 30_000);
  };
  return { pid: child.pid, startMs, stop, send, ask, take: (prefix) => stdout.take(prefix, 1000) };
}

function socketFlags(path: string): string[] {
  return [`--allow-read=${path}`, `--allow-write=${path}`, `--allow-net=unix:${path}`];
}

export class Harness {
  readonly settings: Settings;
  readonly place: Placement;
  readonly dir: string;
  #sockets = 0;
  captured?: Captured;

  constructor(settings: Settings, place: Placement, dir: string) {
    this.settings = settings;
    this.place = place;
    this.dir = dir;
  }

  socket(name: string): string {
    return `${this.dir}/${++this.#sockets}-${name}.sock`;
  }

  /**
   * The host (bench/host.ts) serving with `thread`; `block` makes its main
   * thread spin `block[0]` ms of every `block[1]` ms.
   */
  host(
    path: string,
    variant: HostVariant,
    options: { thread?: Thread; exposeGc?: boolean; block?: [number, number]; v8Flags?: string[] } = {},
  ): Promise<Running> {
    const { thread = "worker", exposeGc = false, block = [], v8Flags = [] } = options;
    const flags = [...(exposeGc ? ["--expose-gc"] : []), ...v8Flags];
    const gc = flags.length > 0 ? [`--v8-flags=${flags.join(",")}`] : [];
    const args = [
      "run",
      "--no-prompt",
      ...gc,
      ...permissionFlags(path, { server: true }).split(" "),
      `${BENCH}host.ts`,
      path,
      variant,
      thread,
      ...block.map(String),
    ];
    return startProcess(...pinned(this.place.server, "deno", args), `host.ts (${variant}, ${thread})`);
  }

  /**
   * The floor of an idle server's memory and start-up: a bare listener that
   * imports @logtape/logtape and runs one timer; with `worker`, the listener in
   * an empty `blob:` Worker.
   */
  memoryFloor(path: string, thread: Thread = "main"): Promise<Running> {
    const args = ["run", "--no-prompt", ...socketFlags(path), `${BENCH}memory_floor.ts`, path, thread];
    return startProcess(...pinned(this.place.server, "deno", args), `memory_floor.ts (${thread})`);
  }

  /** The floor of the memory figures under churn: a bare `Deno.listen` server (`churn_floor.ts`). */
  churnFloor(path: string): Promise<Running> {
    const args = ["run", "--no-prompt", ...socketFlags(path), `${BENCH}churn_floor.ts`, path];
    return startProcess(...pinned(this.place.server, "deno", args), "churn_floor.ts");
  }

  /**
   * Churn from bench/churn.py on the generator's core: COUNT clients in MODE
   * (`watch`, `complete` or `hold`) for `seconds`. Resolves once it prints
   * `ready`, with its figures once it ends, and a way to end it early.
   */
  async churn(path: string, mode: "watch" | "complete" | "hold", count: number, seconds: number): Promise<{
    figures: Promise<{ opened: number; cycles: number; errors: number; seconds: number }>;
    end(): void;
  }> {
    const [command, args] = pinned(this.place.load, "python3", [
      `${BENCH}churn.py`,
      path,
      mode,
      String(count),
      String(seconds),
    ]);
    const child = new Deno.Command(command, { args, stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
    const stdout = new Lines(child.stdout);
    const stderr = new Lines(child.stderr);
    const stop = async () => {
      await child.stdin.close().catch(() => {});
      await child.status;
      await Promise.all([stdout.finished, stderr.finished]);
    };
    if (!await stdout.waitFor("ready", (seconds + 30) * 1000)) {
      await stop();
      throw new Error(`churn.py did not start: ${stderr.text || stdout.text || "no output"}`);
    }
    const figures = (async () => {
      const line = await stdout.take("{", (seconds + 30) * 1000);
      await stop();
      if (line === undefined) throw new Error(`churn.py gave no figures: ${stderr.text}`);
      return JSON.parse(line);
    })();
    return { figures, end: () => void child.stdin.close().catch(() => {}) };
  }

  /** Probe `path` at `rate` a second for `seconds`, from bench/probes.ts on the generator's core. */
  async probes(path: string, rate: number, seconds: number, targets: string[], timeout = 5000): Promise<ProbeRun> {
    const args = [
      "run",
      "--no-prompt",
      ...socketFlags(path),
      `${BENCH}probes.ts`,
      "--socket",
      path,
      "--rate",
      String(rate),
      "--seconds",
      String(seconds),
      "--targets",
      targets.join(","),
      "--timeout",
      String(timeout),
    ];
    const [command, full] = pinned(this.place.load, "deno", args);
    const { code, stdout, stderr } = await new Deno.Command(command, { args: full, stdin: "null" }).output();
    if (code !== 0) throw new Error(`The probe generator failed: ${decoder.decode(stderr)}`);
    return JSON.parse(decoder.decode(stdout));
  }

  server(kind: ServerKind, framing: Framing, path: string): Promise<Running> {
    if (kind === "healthsock") return this.host(path, "trivial");
    if (kind === "healthsock-main") return this.host(path, "trivial", { thread: "main" });
    const captured = this.captured!;
    const body = btoa(atob(captured.line).replace(/\n$/, ""));
    let command = "deno";
    let args: string[];
    if (kind === "floor") {
      args = ["run", "--no-prompt", ...socketFlags(path), `${BENCH}floor.ts`, path, captured.line, captured.http];
      args.push(captured.httpClose);
    } else if (kind === "deno-serve") {
      args = ["run", "--no-prompt", ...socketFlags(path), `${BENCH}deno_serve.ts`, path, body];
    } else {
      command = "node";
      args = [`${BENCH}node_peer.mjs`, framing === "line" ? "net" : "http", path, captured.line, body];
    }
    return startProcess(...pinned(this.place.server, command, args), serverName(kind, framing));
  }

  loadArgs(path: string, extra: string[]): string[] {
    return [
      "run",
      "--no-prompt",
      "--allow-run=cat",
      ...socketFlags(path),
      `${BENCH}load.ts`,
      "--socket",
      path,
      ...extra,
    ];
  }

  async load(path: string, pid: number, mode: LoadMode, clients: number, duration: number): Promise<LoadResult> {
    const args = this.loadArgs(path, [
      "--mode",
      mode,
      "--clients",
      String(clients),
      "--warmup",
      String(this.settings.warmup),
      "--duration",
      String(duration),
      "--server-pid",
      String(pid),
    ]);
    const [command, full] = pinned(this.place.load, "deno", args);
    const { code, stdout, stderr } = await new Deno.Command(command, { args: full, stdin: "null" }).output();
    if (code !== 0) throw new Error(`The load generator failed: ${decoder.decode(stderr)}`);
    return JSON.parse(decoder.decode(stdout));
  }

  async capture(path: string): Promise<Captured> {
    const { code, stdout, stderr } = await new Deno.Command("deno", {
      args: this.loadArgs(path, ["--capture"]),
      stdin: "null",
    }).output();
    if (code !== 0) throw new Error(`Cannot capture the answers: ${decoder.decode(stderr)}`);
    return JSON.parse(decoder.decode(stdout));
  }
}
