// A guard against unhandled promise rejections: a rejection nobody handled
// fails the test it happened in, with its reason, instead of crashing the
// whole test module (Deno's default) or going unnoticed.

/** The rejections seen while a watch was active. */
export interface RejectionWatch extends Disposable {
  /** The reasons of the unhandled rejections seen so far. */
  readonly reasons: unknown[];
  /** Let pending rejection events fire, then throw if any rejection went unhandled. */
  check(): Promise<void>;
}

/** Record unhandled rejections until disposed; `check()` fails on any. */
export function watchRejections(): RejectionWatch {
  const reasons: unknown[] = [];
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    reasons.push(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  return {
    reasons,
    async check() {
      // Unhandled-rejection events are dispatched after the microtask queue
      // drains; one macrotask turn lets them arrive.
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (reasons.length > 0) {
        const list = reasons.map((reason) => reason instanceof Error ? reason.stack ?? reason.message : String(reason));
        throw new Error(`${reasons.length} unhandled rejection(s):\n${list.join("\n")}`);
      }
    },
    [Symbol.dispose]() {
      globalThis.removeEventListener("unhandledrejection", onRejection);
    },
  };
}

/** Wrap a test function so it fails on an unhandled rejection during it. */
export function guarded(fn: (t: Deno.TestContext) => Promise<void>): (t: Deno.TestContext) => Promise<void> {
  return async (t) => {
    using rejections = watchRejections();
    await fn(t);
    await rejections.check();
  };
}
