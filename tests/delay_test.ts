// Unit tests of delay.ts: the millisecond check, delay() and within().
import assert from "node:assert/strict";
import { delay, MAX_DELAY, milliseconds, within } from "../delay.ts";

/**
 * Whether `work` settles before a timer of 0 ms fires: what an abort settles, it settles at once (in the same
 * turn), so a wait that ignored its signal is seen pending rather than waited out.
 */
async function settlesAtOnce<T>(work: Promise<T>): Promise<{ value: T } | "pending"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const turn = new Promise<"pending">((resolve) => timer = setTimeout(() => resolve("pending"), 0));
  try {
    return await Promise.race([work.then((value) => ({ value })), turn]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("within answers the work's value when it settles in time, and leaves no timer behind", async () => {
  assert.equal(await within(Promise.resolve(7), 60_000, { otherwise: "late" }), 7);
});

Deno.test("within answers otherwise once the time is up", async () => {
  assert.equal(await within(new Promise(() => {}), 10, { otherwise: "late" }), "late");
  assert.equal(await within(new Promise(() => {}), 10), undefined);
});

Deno.test("within answers otherwise as soon as its signal aborts, or at once when it already has", async () => {
  const stop = new AbortController();
  const waiting = within(new Promise(() => {}), MAX_DELAY, { otherwise: "stopped", signal: stop.signal });
  stop.abort();
  assert.deepEqual(await settlesAtOnce(waiting), { value: "stopped" });
  const already = within(new Promise(() => {}), MAX_DELAY, { otherwise: 1, signal: stop.signal });
  assert.deepEqual(await settlesAtOnce(already), { value: 1 });
});

Deno.test("within passes the work's rejection through", async () => {
  await assert.rejects(within(Promise.reject(new Error("refused")), 60_000), /refused/);
});

Deno.test("delay ends as soon as its signal aborts, or at once when it already has", async () => {
  const stop = new AbortController();
  const waiting = delay(MAX_DELAY, stop.signal);
  stop.abort();
  assert.deepEqual(await settlesAtOnce(waiting), { value: undefined });
  assert.deepEqual(await settlesAtOnce(delay(MAX_DELAY, stop.signal)), { value: undefined }, "already aborted");
});

Deno.test("milliseconds refuses what a timer cannot hold", () => {
  assert.equal(milliseconds(MAX_DELAY, "timeout"), MAX_DELAY);
  assert.equal(milliseconds(0, "cacheTtl", true), 0);
  assert.throws(() => milliseconds(0, "timeout"), /^RangeError: Cannot use timeout 0: expected milliseconds above 0/);
  assert.throws(() => milliseconds(MAX_DELAY + 1, "timeout"), RangeError);
  assert.throws(() => milliseconds(Number.NaN, "cacheTtl", true), RangeError);
});
