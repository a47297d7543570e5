// Shutdown is bounded whatever the checks do. A request is in
// progress on a check that takes 30 s (honouring its abort signal, or ignoring
// it); drain() and close() end, and the CLI host exits after SIGTERM, before
// that check does: an order, not a duration (the durations are printed).
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { permissionFlags } from "../paths.ts";
import { exists, figures, readUntil, ROOT, tempSocket } from "./_util.ts";
import { readAnswer, waitUntil } from "./fixtures/hardening.ts";

const DRAIN_DELAY = 200;
const SHUTDOWN_TIMEOUT = 1000;
const CHECK_TIMEOUT = 30_000;

type Behaviour = "honours" | "ignores";

/** The slow check of {@linkcode slowHealth}: how often it started, when it ends by itself, and its timers' end. */
interface SlowHealth extends Disposable {
  health: Health;
  started: () => number;
  /** Settles when a run ends by itself, 30 s after it started: a shutdown that waited for the check comes after. */
  ended: Promise<"the 30 s check">;
}

/** A health whose one check takes 30 s, honouring or ignoring its signal (then it ends after 30 s all the same). */
function slowHealth(behaviour: Behaviour): SlowHealth {
  let runs = 0;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const ended = Promise.withResolvers<"the 30 s check">();
  const health = new Health({ ready: true }).add("slow", (signal) => {
    runs++;
    return new Promise<"pass">((resolve, reject) => {
      const timer = setTimeout(() => {
        ended.resolve("the 30 s check");
        resolve("pass");
      }, CHECK_TIMEOUT);
      timers.add(timer);
      if (behaviour === "ignores") return;
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      }, { once: true });
    });
  }, { timeout: CHECK_TIMEOUT });
  return {
    health,
    started: () => runs,
    ended: ended.promise,
    [Symbol.dispose]: () => timers.forEach((timer) => clearTimeout(timer)),
  };
}

/** Which comes first, `work` (as `what`) or the check's own end; `ms` says how long it took, for the record. */
async function first(
  work: Promise<unknown>,
  what: string,
  check: SlowHealth,
): Promise<{ first: string; ms: number }> {
  const started = performance.now();
  const winner = await Promise.race([work.then(() => what), check.ended]);
  return { first: winner, ms: performance.now() - started };
}

for (const behaviour of ["honours", "ignores"] as const) {
  for (const stop of ["drain", "close"] as const) {
    Deno.test(`${stop}() with a request on a 30 s check that ${behaviour} its signal ends before the check`, async () => {
      await using sock = await tempSocket();
      using slow = slowHealth(behaviour);
      const server = await serve(sock.path, slow.health, {
        drainDelay: DRAIN_DELAY,
        shutdownTimeout: SHUTDOWN_TIMEOUT,
      });
      const conn = await Deno.connect({ transport: "unix", path: sock.path });
      try {
        await conn.write(new TextEncoder().encode("GET /healthz\n"));
        const answer = readAnswer(conn);
        await waitUntil(() => slow.started() === 1, "the check is running");
        const stopped = await first(stop === "drain" ? server.drain() : server.close(), `${stop}()`, slow);
        figures("shutdown", `${stop}() with a 30 s check that ${behaviour} its signal`, {
          "ended in ms": stopped.ms.toFixed(0),
          "drainDelay + shutdownTimeout ms": stop === "drain" ? DRAIN_DELAY + SHUTDOWN_TIMEOUT : 0,
        });
        assert.equal(stopped.first, `${stop}()`, `${stop}() waited for the check`);
        // The request in progress ends too: with an answer or a close, not a hang.
        assert.equal((await first(answer, "the request", slow)).first, "the request");
        assert.equal(await exists(sock.path), false, "the socket is removed");
        assert.equal((await first(server.finished, "finished", slow)).first, "finished");
      } finally {
        conn.close();
        await server.close();
      }
    });
  }
}

for (const behaviour of ["honours", "ignores"] as const) {
  Deno.test(`the CLI host exits after SIGTERM before a running 30 s check that ${behaviour} its signal ends`, async () => {
    await using sock = await tempSocket();
    const child = new Deno.Command("deno", {
      args: [
        "run",
        "--no-prompt",
        ...permissionFlags(sock.path, { server: true }).split(" "),
        `${ROOT}tests/fixtures/hung_host.ts`,
        sock.path,
        behaviour,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    // A host that waited for the check would exit when it ends, 30 s on: by then it is killed, and the test fails.
    const killer = setTimeout(() => child.kill("SIGKILL"), CHECK_TIMEOUT);
    let conn: Deno.UnixConn | undefined;
    try {
      await readUntil(lines, /^serving \d+$/);
      conn = await Deno.connect({ transport: "unix", path: sock.path });
      await conn.write(new TextEncoder().encode("GET /healthz\n"));
      await readUntil(lines, /^check started$/);
      const started = performance.now();
      child.kill("SIGTERM");
      await readUntil(lines, /^stopped$/);
      const status = await child.status;
      figures("shutdown", `CLI host after SIGTERM with a 30 s check that ${behaviour} its signal`, {
        "exited in ms": (performance.now() - started).toFixed(0),
        "shutdownTimeout ms": SHUTDOWN_TIMEOUT,
      });
      assert.deepEqual({ code: status.code, signal: status.signal }, { code: 0, signal: null }, "it exited by itself");
      assert.equal(await exists(sock.path), false, "the socket is removed");
    } finally {
      clearTimeout(killer);
      conn?.close();
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await lines.cancel().catch(() => {});
    }
  });
}
