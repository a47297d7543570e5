/**
 * Delays: the longest a timer can wait, one way to check a number of
 * milliseconds against it, and a wait that a signal cuts short.
 *
 * @module
 */

/**
 * The longest delay, in milliseconds, a timer holds: a longer one is clamped
 * to 1 ms and fires at once, so every duration healthsock accepts is at most this.
 */
export const MAX_DELAY = 2 ** 31 - 1;

/**
 * Check a number of milliseconds that a timer will wait: above 0 (or from 0,
 * when `zero` is allowed) and at most {@linkcode MAX_DELAY}.
 *
 * @param value The number given.
 * @param name The option's name, for the message.
 * @param zero Whether 0 is allowed.
 * @returns The value.
 * @throws {RangeError} When the value is out of range or not a number.
 * @example
 * ```ts
 * import { milliseconds } from "./delay.ts";
 * milliseconds(500, "timeout"); // 500
 * ```
 */
export function milliseconds(value: number, name: string, zero = false): number {
  if (zero ? !(value >= 0 && value <= MAX_DELAY) : !(value > 0 && value <= MAX_DELAY)) {
    const range = zero ? `from 0 to ${MAX_DELAY}` : `above 0 and at most ${MAX_DELAY}`;
    throw new RangeError(`Cannot use ${name} ${value}: expected milliseconds ${range}`);
  }
  return value;
}

/**
 * Wait `ms` milliseconds, or less if `signal` aborts first: the pause between
 * polls of a client that asks again and again.
 *
 * @param ms How long to wait.
 * @param signal Ends the wait early.
 * @returns A promise that settles when the time is up or the signal aborts; never rejects.
 * @example
 * ```ts
 * import { delay } from "./delay.ts";
 * await delay(3000, AbortSignal.timeout(100)); // returns after 100 ms
 * ```
 */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Options of {@linkcode within}. */
export interface WithinOptions<U> {
  /** What to answer when time runs out (or `signal` aborts) first. @default {undefined} */
  otherwise?: U;
  /** Ends the wait early, answering `otherwise`. @default {undefined} */
  signal?: AbortSignal;
}

/**
 * Wait for `work` at most `ms` milliseconds: its value, or `otherwise` once the
 * time is up or `signal` aborts. A rejection of `work` passes through; the
 * timer never outlives the wait.
 *
 * @param work What to wait for.
 * @param ms The longest wait.
 * @param options The answer when time runs out, and a signal that ends the wait.
 * @returns The value of `work`, or `otherwise`.
 * @example
 * ```ts
 * import { within } from "./delay.ts";
 * await within(new Promise(() => {}), 100, { otherwise: "late" }); // "late"
 * ```
 */
export function within<T, U = undefined>(work: Promise<T>, ms: number, options: WithinOptions<U> = {}): Promise<T | U> {
  const { otherwise, signal } = options;
  let end = () => {};
  const late = new Promise<U>((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve(otherwise as U);
    }
    end = done;
    signal?.addEventListener("abort", done, { once: true });
    if (signal?.aborted) done();
  });
  return Promise.race([work, late]).finally(end);
}
