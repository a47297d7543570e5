// Signals as users send them: a terminal's Ctrl-C reaches the whole
// foreground process group (the deno task wrapper and the program), and the
// wrapper passes it on again, so one keypress arrives several times.
import assert from "node:assert/strict";
import { probe } from "../client.ts";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { exists, readUntil, ROOT, run, spawnDemo, TASKS, tempSocket, untilReady } from "./_util.ts";

/** `deno task NAME` run from a copy of deno.json whose task uses `path` instead of /tmp/app.sock. */
interface Task extends AsyncDisposable {
  child: Deno.ChildProcess;
  /** stderr (for watch, stdout). */
  log: ReadableStreamDefaultReader<string>;
  /** Everything left to read of `log`, once the processes have exited. */
  rest(): Promise<string>;
}

async function spawnTask(name: "demo" | "watch", dir: string, path: string, args: string[]): Promise<Task> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const task = TASKS[name].replaceAll("/tmp/app.sock", path).replace(/ main\.ts /, ` ${ROOT}main.ts `);
  assert.notEqual(task, TASKS[name]);
  await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify({ imports: config.imports, tasks: { [name]: task } }));
  await Deno.copyFile(`${ROOT}deno.lock`, `${dir}/deno.lock`);
  const child = new Deno.Command("deno", {
    args: ["task", "--config", `${dir}/deno.json`, name, "--socket", path, ...args],
    cwd: dir,
    // Its own process group (setsid), led by the wrapper, as a terminal's foreground job is.
    detached: true,
    stdin: "null",
    stdout: name === "watch" ? "piped" : "null",
    stderr: name === "watch" ? "null" : "piped",
  }).spawn();
  const log = (name === "watch" ? child.stdout : child.stderr).pipeThrough(new TextDecoderStream()).getReader();
  const seen: string[] = [];
  return {
    child,
    log,
    async rest() {
      for (;;) {
        const { value, done } = await log.read();
        if (done) return seen.join("");
        seen.push(value);
      }
    },
    async [Symbol.asyncDispose]() {
      // The whole group, so no demo outlives a failed test; a group already gone fails quietly.
      await run("sh", ["-c", `kill -s KILL -- -${child.pid} 2>/dev/null`]);
      await log.cancel().catch(() => {});
      await child.status;
    },
  };
}

/** Signal every process of the group `pid` leads, as a terminal does. */
async function signalGroup(pid: number, signal: "INT" | "TERM" | "HUP" | "KILL"): Promise<void> {
  const out = await run("sh", ["-c", `kill -s ${signal} -- -${pid}`]);
  assert.equal(out.code, 0, out.stderr);
}

/** The demo drains: /readyz answers "shutting down" (a stop at once would have removed the socket). */
async function assertDraining(path: string): Promise<void> {
  const ready = await probe(path, { target: "/readyz" });
  assert.equal(ready.status, "fail");
  assert.equal(ready.report?.checks["lifecycle:state"][0].output, "shutting down");
  assert.equal((await probe(path, { target: "/livez" })).status, "pass");
}

const START = ["--poll-interval", "0", "--ready-after", "0"];

for (const signal of ["INT", "TERM", "HUP"] as const) {
  Deno.test(`SIG${signal} to deno task demo's process group drains once, then removes the socket`, async () => {
    await using sock = await tempSocket();
    await using demo = await spawnTask("demo", sock.dir, sock.path, [...START, "--drain-delay", "4s"]);
    await readUntil(demo.log, /Serving health on/);
    await untilReady(sock.path);
    await signalGroup(demo.child.pid, signal);
    await readUntil(demo.log, /healthsock: draining/);
    await assertDraining(sock.path);
    const rest = await demo.rest();
    const status = await demo.child.status;
    assert.doesNotMatch(rest, /stopping .* now/);
    assert.equal(await exists(sock.path), false);
    assert.equal(await exists(`${sock.path}.tmp`), false);
    // The wrapper may die of SIGHUP itself; the demo behind it still drained and cleaned up.
    if (signal !== "HUP") assert.equal(status.code, 0, rest);
  });
}

Deno.test("a second Ctrl-C more than 500 ms after the first stops deno task demo at once", async () => {
  await using sock = await tempSocket();
  await using demo = await spawnTask("demo", sock.dir, sock.path, [...START, "--drain-delay", "60s"]);
  await readUntil(demo.log, /Serving health on/);
  await signalGroup(demo.child.pid, "INT");
  await readUntil(demo.log, /healthsock: draining/);
  await assertDraining(sock.path);
  await new Promise((resolve) => setTimeout(resolve, 700));
  await assertDraining(sock.path);
  await signalGroup(demo.child.pid, "INT");
  await readUntil(demo.log, /healthsock: stopping ".*" now/);
  // Long before the 60 s drain would end.
  const status = await demo.child.status;
  await demo.rest();
  assert.equal(status.code, 0);
  assert.equal(await exists(sock.path), false);
});

Deno.test("signals within 500 ms of the first count as one: the demo still drains", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, [...START, "--drain-delay", "4s"]);
  await readUntil(demo.log, /Serving health on/);
  for (const signal of ["SIGINT", "SIGINT", "SIGTERM", "SIGHUP"] as const) demo.child.kill(signal);
  await readUntil(demo.log, /healthsock: draining/);
  await assertDraining(sock.path);
  let rest = "";
  for (;;) {
    const { value, done } = await demo.log.read();
    if (done) break;
    rest += value;
  }
  assert.equal((await demo.child.status).code, 0);
  assert.doesNotMatch(rest, /stopping .* now/);
  assert.equal(await exists(sock.path), false);
});

for (const signal of ["INT", "TERM", "HUP"] as const) {
  Deno.test(`SIG${signal} to deno task watch's process group ends it with exit 0`, async () => {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, new Health({ ready: true }));
    await using watch = await spawnTask("watch", sock.dir, sock.path, ["--interval", "50ms"]);
    await readUntil(watch.log, /pass/);
    await signalGroup(watch.child.pid, signal);
    await watch.rest();
    const status = await watch.child.status;
    if (signal !== "HUP") assert.equal(status.code, 0);
  });
}
