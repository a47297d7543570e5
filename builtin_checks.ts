/**
 * The built-in checks: {@linkcode eventLoopLag}, {@linkcode heapUsage} and {@linkcode progress}.
 *
 * @module
 */
import { WATCH } from "./check.ts";
import type { CheckDefinition, CheckFunction, CheckOutcome, WatchingDefinition } from "./check.ts";
import { milliseconds } from "./delay.ts";

/** Options of {@linkcode eventLoopLag}. */
export interface EventLoopLagOptions {
  /** Warn (or, when `critical`, fail) when the loop was held this many milliseconds past a timer's time within `window`. @default {100} */
  threshold?: number;
  /**
   * Fail past `threshold`, and readiness with it, for `window` after a stall; by default a stall that has passed
   * warns, as `mainloop` (in Worker mode) already fails readiness while the loop is blocked. `critical: true` given
   * to `Health.add()` does the same. @default {false}
   */
  critical?: boolean;
  /** Milliseconds between the watching timer's firings: stalls shorter than this may go unseen. @default {20} */
  sample?: number;
  /** Report the worst lag of this many most recent milliseconds; at least `sample`. @default {5000} */
  window?: number;
}

/**
 * A built-in check of how long the event loop is held. From when it is
 * served (`serve()` calls `Health.startChecks()`) until the server stops, a timer
 * fires every `sample` ms and records how late it fired; the check reports the
 * worst lag of the last `window` ms, so a stall between two probes is not
 * missed. The timer does not keep the process alive. On a Health that is not
 * started it times one `sample` ms timer when asked. A `ready` check (a
 * lagging loop is saturated, not dead: pass `kinds: ["live"]` to change that)
 * reporting `lag` in ms.
 *
 * A lag above `threshold` is a `warn` with the worst value, and the check is
 * not critical: a stall that has passed says nothing about whether the app
 * can take traffic now, so it does not keep `/readyz` failing for the next
 * `window` (an app with a one-second job every five seconds would never be
 * ready). In Worker mode, `mainloop` fails `/readyz` while the loop is
 * blocked past `readyBlockLimit`. Mark the check critical (`critical: true`,
 * here or in `Health.add()`'s options) to fail it, and readiness, above
 * `threshold` for the whole window, as a same-thread server that wants
 * readiness to follow its stalls may.
 *
 * @param options The threshold, the timer's period and the window.
 * @returns A check definition for {@linkcode Health.prototype.add}.
 * @throws {RangeError} When an option is not a number of milliseconds from 1 to 2^31-1, or `window` is under `sample`.
 * @example
 * ```ts
 * import { eventLoopLag, Health } from "@healthsock/healthsock";
 * new Health().add("eventloop", eventLoopLag({ threshold: 200, window: 10_000 }));
 * ```
 */
export function eventLoopLag(options: EventLoopLagOptions = {}): CheckDefinition {
  const { threshold = 100, sample = 20, window = 5000, critical = false } = options;
  milliseconds(threshold, "threshold");
  milliseconds(sample, "sample");
  milliseconds(window, "window");
  if (window < sample) {
    throw new RangeError(`Cannot use window ${window}: expected milliseconds at least sample (${sample})`);
  }
  milliseconds(threshold * 2 + sample, "threshold * 2 + sample");
  const watcher = new LagWatcher(sample, window);
  // As registered: Health.add()'s options may override the definition's; a watch is told them when served.
  let failing = critical;
  const outcome = (lag: number, within: string): CheckOutcome => {
    lag = Math.round(lag * 10) / 10;
    return {
      status: lag > threshold ? (failing ? "fail" : "warn") : "pass",
      observedValue: lag,
      observedUnit: "ms",
      output: lag > threshold ? `event loop lag ${lag} ms${within} exceeds ${threshold} ms` : undefined,
    };
  };
  const check: CheckFunction = (signal) => {
    const worst = watcher.worst();
    if (worst !== undefined) return outcome(worst, ` in the last ${window} ms`);
    return lagOnce(sample, signal).then((lag) => outcome(lag, ""));
  };
  const definition: WatchingDefinition = {
    kinds: ["ready"],
    critical,
    measurement: "lag",
    componentType: "system",
    timeout: Math.max(1000, threshold * 2 + sample),
    check,
    [WATCH]: (signal, registered) => {
      failing = registered.critical;
      watcher.watch(signal);
    },
  };
  return definition;
}

/** How late one timer of `sample` ms fires, in ms. */
function lagOnce(sample: number, signal: AbortSignal): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const started = performance.now();
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(Math.max(0, performance.now() - started - sample));
    }, sample);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A timer that fires every `sample` ms while anyone watches, keeping the worst
 * lateness of the last `window` ms. Probes come when the loop is free, so a
 * lag measured only when asked misses the stalls between them.
 */
class LagWatcher {
  #sample: number;
  #window: number;
  #watchers = 0;
  #timer?: ReturnType<typeof setTimeout>;
  /** When the pending firing is due (`performance.now()`). */
  #due = 0;
  /** Lags with when they were seen: times rise, lags fall, so the first one in the window is the worst. */
  #worst: { at: number; lag: number }[] = [];

  constructor(sample: number, window: number) {
    this.#sample = sample;
    this.#window = window;
  }

  /** Watch until `signal` aborts; one timer serves every watcher. */
  watch(signal: AbortSignal): void {
    if (signal.aborted) return;
    if (this.#watchers++ === 0) this.#arm(performance.now());
    signal.addEventListener("abort", () => {
      if (--this.#watchers > 0) return;
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#worst = [];
    }, { once: true });
  }

  /** The worst lag in the window, the firing overdue now included; undefined when nobody watches. */
  worst(): number | undefined {
    if (this.#watchers === 0) return undefined;
    const now = performance.now();
    const worst = this.#worst;
    while (worst.length > 0 && worst[0].at <= now - this.#window) worst.shift();
    return Math.max(0, now - this.#due, worst[0]?.lag ?? 0);
  }

  #arm(now: number): void {
    this.#due = now + this.#sample;
    const timer = this.#timer = setTimeout(this.#fire, this.#sample);
    Deno.unrefTimer(timer);
  }

  #fire = (): void => {
    const now = performance.now();
    const lag = Math.max(0, now - this.#due);
    const worst = this.#worst;
    while (worst.length > 0 && worst[worst.length - 1].lag <= lag) worst.pop();
    worst.push({ at: now, lag });
    this.#arm(now);
  };
}

/** Options of {@linkcode heapUsage}. */
export interface HeapUsageOptions {
  /** Fail when the V8 heap in use exceeds this many bytes. */
  limit: number;
  /** Warn above this many bytes. @default {undefined} */
  warn?: number;
}

/**
 * A built-in check of the V8 heap in use against a limit. A `live` check
 * reporting `heapUsed` in bytes.
 *
 * @param options The limit, and an optional warning level.
 * @returns A check definition for {@linkcode Health.prototype.add}.
 * @throws {RangeError} When the limit is not a positive number.
 * @example
 * ```ts
 * import { Health, heapUsage } from "@healthsock/healthsock";
 * new Health().add("heap", heapUsage({ limit: 512 * 2 ** 20 }));
 * ```
 */
export function heapUsage(options: HeapUsageOptions): CheckDefinition {
  const { limit, warn } = options;
  for (const [name, bytes] of [["limit", limit], ["warn", warn ?? 1]] as const) {
    if (!(bytes > 0) || !Number.isFinite(bytes)) {
      throw new RangeError(`Cannot use ${name} ${bytes}: expected a positive number of bytes`);
    }
  }
  return {
    kinds: ["live"],
    measurement: "heapUsed",
    componentType: "system",
    check: () => {
      const used = Deno.memoryUsage().heapUsed;
      const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
      if (used > limit) {
        return {
          status: "fail",
          observedValue: used,
          observedUnit: "bytes",
          output: `heap ${mib(used)} exceeds ${mib(limit)}`,
        };
      }
      if (warn !== undefined && used > warn) {
        return {
          status: "warn",
          observedValue: used,
          observedUnit: "bytes",
          output: `heap ${mib(used)} above ${mib(warn)}`,
        };
      }
      return { status: "pass", observedValue: used, observedUnit: "bytes" };
    },
  };
}

/** Options of {@linkcode progress}. */
export interface ProgressOptions {
  /** Fail when the last `beat()` is this many milliseconds old or older. */
  within: number;
}

/** A check definition that passes while `beat()` is called often enough; see {@linkcode progress}. */
export interface ProgressCheck extends CheckDefinition {
  /** The check: its outcome at once, `observedValue` the milliseconds since the last beat. */
  check: (signal?: AbortSignal) => CheckOutcome;
  /** Record progress now. */
  beat(): void;
}

/**
 * A built-in check that work goes on: call `beat()` whenever the work moves
 * (a tick, a job done, a message handled); the check passes while the last
 * beat is younger than `within` ms, and fails after. Its `observedValue` is
 * the milliseconds since the last beat; the check's making counts as the
 * first beat. A `live` check (work that stopped moving is stuck: restart it),
 * measured as `sinceLastBeat`, run afresh on every request (`cacheTtl: 0`).
 *
 * @param options How young the last beat must be.
 * @returns A check definition with a `beat()` method, for {@linkcode Health.prototype.add}.
 * @throws {RangeError} When `within` is not a number of milliseconds from 1 to 2^31-1.
 * @example
 * ```ts
 * import { Health, progress } from "@healthsock/healthsock";
 * const ticker = progress({ within: 2000 });
 * const health = new Health().add("ticker", ticker);
 * setTimeout(() => ticker.beat(), 100); // in the loop that does the work
 * ```
 */
export function progress(options: ProgressOptions): ProgressCheck {
  const within = milliseconds(options?.within, "within");
  let last = performance.now();
  return {
    kinds: ["live"],
    measurement: "sinceLastBeat",
    cacheTtl: 0,
    check: () => {
      const quiet = Math.round(performance.now() - last);
      if (quiet < within) return { status: "pass", observedValue: quiet, observedUnit: "ms" };
      return {
        status: "fail",
        observedValue: quiet,
        observedUnit: "ms",
        output: `no progress for ${quiet} ms (expected within ${within} ms)`,
      };
    },
    beat() {
      last = performance.now();
    },
  };
}
