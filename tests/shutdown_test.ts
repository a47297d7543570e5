// Shutdown is bounded whatever the checks do. A request is in
// progress on a check that takes 30 s (honouring its abort signal, or ignoring
// it); drain() ends within drainDelay + shutdownTimeout and a moment, close()
// within a moment, and the CLI host exits that soon after SIGTERM. The bounds
// are the contract's, with seconds of slack for a noisy machine.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { permissionFlags } from "../paths.ts";
import { exists, figures, readUntil, ROOT, tempSocket } from "./_util.ts";
import { readAnswer, waitUntil } from "./fixtures/hardening.ts";

const DRAIN_DELAY = 200;
const SHUTDOWN_TIMEOUT = 1000;
const SLACK = 2000;
const CHECK_TIMEOUT = 30_000;

type Behaviour = "honours" | "ignores";

/** A health whose one check takes 30 s, honouring or ignoring its signal; `started` counts its runs. */
function slowHealth(behaviour: Behaviour): { health: Health; started: () => number } {
  let runs = 0;
  const health = new Health({ ready: true }).add("slow", (signal) => {
    runs++;
    return new Promise<"pass">((resolve, reject) => {
      if (behaviour === "ignores") return; // never settles
      const timer = setTimeout(() => resolve("pass"), CHECK_TIMEOUT);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      }, { once: true });
    });
  }, { timeout: CHECK_TIMEOUT });
  return { health, started: () => runs };
}

/** Wait for `work` at most `ms`; say how long it took, or fail (without waiting the 30 s out). */
async function timed(work: Promise<unknown>, ms: number, what: string): Promise<number> {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not end within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
  return performance.now() - started;
}

for (const behaviour of ["honours", "ignores"] as const) {
  for (const stop of ["drain", "close"] as const) {
    const bound = stop === "drain" ? DRAIN_DELAY + SHUTDOWN_TIMEOUT + SLACK : SLACK;
    Deno.test(`${stop}() with a request on a 30 s check that ${behaviour} its signal ends within ${bound} ms`, async () => {
      await using sock = await tempSocket();
      const { health, started } = slowHealth(behaviour);
      const server = await serve(sock.path, health, { drainDelay: DRAIN_DELAY, shutdownTimeout: SHUTDOWN_TIMEOUT });
      const conn = await Deno.connect({ transport: "unix", path: sock.path });
      try {
        await conn.write(new TextEncoder().encode("GET /healthz\n"));
        const answer = readAnswer(conn);
        await waitUntil(() => started() === 1, "the check is running");
        const ms = await timed(stop === "drain" ? server.drain() : server.close(), bound, `${stop}()`);
        figures("shutdown", `${stop}() with a 30 s check that ${behaviour} its signal`, {
          "ended in ms": ms.toFixed(0),
          "bound ms": bound,
        });
        // The request in progress ends too: with an answer or a close, not a hang.
        await timed(answer, SLACK, "the request in progress");
        assert.equal(await exists(sock.path), false, "the socket is removed");
        await timed(server.finished, SLACK, "finished");
      } finally {
        conn.close();
      }
    });
  }
}

for (const behaviour of ["honours", "ignores"] as const) {
  const bound = SHUTDOWN_TIMEOUT + SLACK;
  Deno.test(`the CLI host exits within ${bound} ms of SIGTERM while a 30 s check that ${behaviour} its signal runs`, async () => {
    await using sock = await tempSocket();
    const child = new Deno.Command("deno", {
      args: [
        "run",
        "--no-prompt",
        ...permissionFlags(sock.path, true).split(" "),
        `${ROOT}tests/fixtures/hung_host.ts`,
        sock.path,
        behaviour,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    // Never wait the 30 s out: a host still running after the bound is killed and the test fails.
    const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    let conn: Deno.UnixConn | undefined;
    try {
      await readUntil(lines, /^serving \d+$/);
      conn = await Deno.connect({ transport: "unix", path: sock.path });
      await conn.write(new TextEncoder().encode("GET /healthz\n"));
      await readUntil(lines, /^check started$/);
      child.kill("SIGTERM");
      const ms = await timed(child.status, bound, "the host");
      figures("shutdown", `CLI host after SIGTERM with a 30 s check that ${behaviour} its signal`, {
        "exited in ms": ms.toFixed(0),
        "bound ms": bound,
      });
      assert.equal((await child.status).code, 0);
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
