/**
 * The demo application, after the seed: a worker that ticks at random 0–500 ms
 * intervals, its health server, and a client polling it, in one process. The
 * worker can be made busy (blocking the main thread now and then) or wedged
 * (blocking it for good), to watch busy and dead told apart.
 *
 * @module
 */
import { getLogger } from "./log.ts";
import { probe, ProbeError } from "./client.ts";
import { delay } from "./delay.ts";
import { eventLoopLag, progress } from "./builtin_checks.ts";
import { Health } from "./health.ts";
import { serve } from "./serve.ts";
import type { HealthServer } from "./server.ts";
import type { SystemdNotifier } from "./notify.ts";

const logger = getLogger(["healthsock", "demo"]);

/** Options of {@linkcode startDemo}. */
export interface DemoOptions {
  /** The socket file's mode. @default {0o600} */
  mode?: number;
  /** Stop the worker this many milliseconds after start, to watch `/livez` turn to fail. @default {undefined} */
  stallAfter?: number;
  /** Every this many milliseconds the worker blocks the main thread for `blockFor`, as an app's synchronous work does. @default {undefined} */
  blockEvery?: number;
  /** Milliseconds each block holds the main thread; less than `blockEvery`. @default {undefined} */
  blockFor?: number;
  /** The worker blocks the main thread for good this many milliseconds after serving starts. @default {undefined} */
  wedgeAfter?: number;
  /** Milliseconds between the demo client's polls; 0 turns the client off. @default {3000} */
  pollInterval?: number;
  /** The ticker check fails when the worker has not ticked for this many milliseconds. @default {2000} */
  unhealthyAfter?: number;
  /** Milliseconds of start-up before the demo calls `markReady()`. @default {1000} */
  readyAfter?: number;
  /** Milliseconds a drain keeps answering with `/readyz` failing. @default {1000} */
  drainDelay?: number;
  /**
   * Tell systemd readiness, watchdog pings and stopping when `NOTIFY_SOCKET` is set (see `notifySystemd`), sending
   * from a socket bound at `PATH.notify`. @default {false}
   */
  notify?: boolean;
}

/** The running demo. */
export interface Demo extends AsyncDisposable {
  /** The health server. */
  readonly server: HealthServer;
  /** The demo's checks and lifecycle. */
  readonly health: Health;
  /** How many times the worker has ticked. */
  readonly ticks: number;
  /** Settles once the server has stopped and the worker and client are stopped. */
  readonly finished: Promise<void>;
  /** Drain the server (see `HealthServer.drain`), then stop the worker and the client. */
  drain(): Promise<void>;
  /** Stop everything now. */
  close(): Promise<void>;
}

/**
 * Start the demo on a socket path.
 *
 * Its checks: `ticker` (`live`: fails when the worker has not ticked for
 * `unhealthyAfter`; reports the tick count and the time of the last tick),
 * `started` (`ready` and `startup`: passes once the worker has ticked) and
 * `eventloop` (`ready`, built in, not critical: a recent stall makes `/readyz`
 * warn). It calls `markReady()` after `readyAfter`.
 *
 * @param path The absolute socket path.
 * @param options Timing, mode, stall, blocks and wedge.
 * @returns The running demo.
 * @throws {RangeError} When one of `blockEvery` and `blockFor` is given alone, or `blockFor` is not less than it.
 * @throws {SocketError} When the path cannot be served.
 * @example
 * ```ts
 * import { startDemo } from "./demo.ts";
 * await using demo = await startDemo("/tmp/app.sock", { stallAfter: 10_000 });
 * await demo.finished;
 * ```
 */
export async function startDemo(path: string, options: DemoOptions = {}): Promise<Demo> {
  const {
    mode,
    stallAfter,
    pollInterval = 3000,
    unhealthyAfter = 2000,
    readyAfter = 1000,
    drainDelay = 1000,
    notify = false,
    blockEvery,
    blockFor,
    wedgeAfter,
  } = options;
  if ((blockEvery !== undefined || blockFor !== undefined) && !(blockFor! > 0 && blockFor! < blockEvery!)) {
    throw new RangeError(
      `Cannot block the main thread for ${blockFor} ms every ${blockEvery} ms: give both, blockFor above 0 and less than blockEvery`,
    );
  }
  let ticks = 0;
  let lastTick = Date.now();
  // The seed's pattern: the worker beats at each tick, the ticker check fails when the beats stop.
  const ticking = progress({ within: unhealthyAfter });
  let tickTimer: ReturnType<typeof setTimeout> | undefined;
  const started = Date.now();
  const tick = () => {
    ticks++;
    lastTick = Date.now();
    ticking.beat();
    if (stallAfter !== undefined && lastTick - started >= stallAfter) {
      tickTimer = undefined;
      logger.warn("Worker stalled on purpose after {ms} ms: /livez fails in {after} ms", {
        ms: lastTick - started,
        after: unhealthyAfter,
      });
      return;
    }
    tickTimer = setTimeout(tick, Math.random() * 500);
  };
  tickTimer = setTimeout(tick, Math.random() * 500);

  const health = new Health()
    // Reported as the seed did: the tick count, the time of the last tick.
    .add("ticker", () => {
      const { status, observedValue: quiet } = ticking.check();
      return {
        status,
        observedValue: ticks,
        observedUnit: "ticks",
        time: new Date(lastTick),
        output: status === "fail" ? `no tick for ${(Number(quiet) / 1000).toFixed(1)} s` : undefined,
      };
    }, { kinds: ["live"], measurement: "ticks", cacheTtl: 0 })
    .add("started", () => ticks > 0 ? "pass" : { status: "fail", output: "waiting for the first tick" }, {
      kinds: ["ready", "startup"],
      cacheTtl: 0,
    })
    .add("eventloop", eventLoopLag({ threshold: 250 }), { critical: false });

  let server: HealthServer;
  try {
    server = await serve(path, health, { mode, drainDelay });
  } catch (error) {
    clearTimeout(tickTimer);
    throw error;
  }
  let notifier: SystemdNotifier | undefined;
  if (notify) {
    try {
      // Loaded only when asked for: without --notify the demo runs none of it.
      const { notifySystemd } = await import("./notify.ts");
      notifier = await notifySystemd(health, `${path}.notify`);
    } catch (error) {
      clearTimeout(tickTimer);
      await server.close();
      throw error;
    }
  }
  // A drain may come first: a draining health is not made ready again.
  const readyTimer = setTimeout(() => health.state === "starting" && health.markReady(), readyAfter);
  // The worker's synchronous work: it counts as a tick once done (busy is not dead).
  const block = () => {
    logger.info("Worker busy for {ms} ms: the main thread is blocked", { ms: blockFor });
    spin(blockFor!);
    ticks++;
    lastTick = Date.now();
    ticking.beat();
    blockTimer = setTimeout(block, blockEvery! - blockFor!);
  };
  let blockTimer = blockEvery === undefined ? undefined : setTimeout(block, blockEvery - blockFor!);
  const wedgeTimer = wedgeAfter === undefined ? undefined : setTimeout(() => {
    logger.warn("Worker wedged on purpose after {ms} ms: the main thread never turns again; only SIGKILL stops it", {
      ms: wedgeAfter,
    });
    for (;;) spin(1000);
  }, wedgeAfter);

  const polling = new AbortController();
  const poller = pollInterval > 0 ? poll(path, pollInterval, polling.signal) : Promise.resolve();
  // However the server ends (a drain, or its Worker dying for good), the demo's own timers stop with it.
  const finished = server.finished.finally(async () => {
    clearTimeout(tickTimer);
    clearTimeout(readyTimer);
    clearTimeout(blockTimer);
    clearTimeout(wedgeTimer);
    polling.abort();
    await Promise.all([poller, notifier?.close()]);
  });
  const demo: Demo = {
    server,
    health,
    get ticks() {
      return ticks;
    },
    finished,
    async drain() {
      await server.drain();
      await finished;
    },
    async close() {
      await server.close();
      await finished;
    },
    [Symbol.asyncDispose]() {
      return demo.close();
    },
  };
  return demo;
}

/** Hold the main thread for `ms`, as a big `JSON.parse`, a sort or a render does. */
function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // Busy: no timer, no I/O, no signal handler runs meanwhile.
  }
}

/** The demo's client: ask every `interval` and log what came back. */
async function poll(path: string, interval: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    await delay(interval, signal);
    if (signal.aborted) return;
    try {
      const result = await probe(path, { timeout: 2000, signal });
      logger.info("Client got: {body}", { body: result.body });
    } catch (error) {
      if (signal.aborted) return;
      logger.warn("Client got no answer: {error}", {
        error: error instanceof ProbeError ? error.message : String(error),
      });
    }
  }
}
