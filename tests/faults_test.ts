// Faults: checks that throw, hang or return garbage; the
// socket file deleted or replaced under a running server; the server killed
// with SIGKILL and restarted; two servers on one path; listen errors turned
// into clear messages.
import assert from "node:assert/strict";
import { probe, ProbeError } from "../client.ts";
import { Health } from "../health.ts";
import type { CheckFunction } from "../check.ts";
import { serve } from "../serve.ts";
import { SocketError } from "../server.ts";
import { cli, cliArgs, exists, hasCommand, readUntil, run, spawnHost, tempSocket } from "./_util.ts";
import { guarded } from "./_guard.ts";
import { isRoot, sendWithin } from "./fixtures/hardening.ts";

/** A normal probe that does not involve the faulty checks: `/livez`. */
async function assertAlive(path: string): Promise<void> {
  const answer = await sendWithin(path, "GET /livez\n", 5000);
  assert.equal(JSON.parse(answer).status, "pass", answer);
}

/** The result of one check, asked for alone. */
async function checkResult(path: string, name: string): Promise<{ status: string; output?: string }> {
  const answer = await sendWithin(path, `GET /healthz/${name}\n`, 5000);
  assert.ok(answer.endsWith("\n"), `no answer for ${name}: ${JSON.stringify(answer)}`);
  const report = JSON.parse(answer);
  assert.ok(report.checks, `not a report: ${answer}`);
  return Object.values(report.checks as Record<string, { status: string; output?: string }[]>)[0][0];
}

Deno.test(
  "a check that throws fails with its message, and the server keeps answering",
  guarded(async (t) => {
    await using sock = await tempSocket();
    const throwers: Record<string, [CheckFunction, RegExp]> = {
      "error": [() => {
        throw new Error("database unreachable");
      }, /database unreachable/],
      "async-error": [() => Promise.reject(new TypeError("bad config")), /bad config/],
      "string": [() => {
        throw "plain string";
      }, /plain string/],
      "undefined": [() => {
        throw undefined;
      }, /./],
      "object": [() => Promise.reject({ code: 42 }), /42/],
      "empty-error": [() => {
        throw new Error("");
      }, /Error/],
    };
    const health = new Health({ ready: true });
    for (const [name, [fn]] of Object.entries(throwers)) health.add(name, fn);
    await using server = await serve(sock.path, health);
    for (const [name, [, reason]] of Object.entries(throwers)) {
      await t.step(`a check that throws ${name}`, async () => {
        const result = await checkResult(server.path, name);
        assert.equal(result.status, "fail");
        assert.match(result.output ?? "", reason);
        await assertAlive(server.path);
      });
    }
  }),
);

Deno.test(
  "a check that hangs fails at its timeout, and closing the server does not wait for it",
  guarded(async () => {
    await using sock = await tempSocket();
    let aborted = false;
    const health = new Health({ ready: true })
      // Ignores its signal: never settles.
      .add("stuck", () => new Promise<void>(() => {}), { timeout: 200 })
      // Honours its signal.
      .add("slow", (signal) =>
        new Promise<void>((_, reject) =>
          signal.addEventListener("abort", () => {
            aborted = true;
            reject(signal.reason);
          }, { once: true })
        ), { timeout: 200 });
    const server = await serve(sock.path, health);
    try {
      for (const name of ["stuck", "slow"]) {
        const result = await checkResult(server.path, name);
        assert.equal(result.status, "fail");
        assert.match(result.output ?? "", /timed out after 200 ms/);
      }
      assert.ok(aborted, "the check's signal was aborted at its timeout");
      await assertAlive(server.path);
      // A background check that hangs, too.
      health.add("bg", () => new Promise<void>(() => {}), { interval: 50, timeout: 100 });
    } finally {
      await server.close();
    }
    assert.equal(await exists(sock.path), false);
  }),
);

Deno.test(
  "a check returning garbage fails with a reason, and the server keeps answering",
  guarded(async (t) => {
    await using sock = await tempSocket();
    const circular: Record<string, unknown> = { status: "pass" };
    circular.self = circular;
    const garbage: Record<string, () => unknown> = {
      "a number": () => 42,
      "an unknown status string": () => "ok",
      "null": () => null,
      "an unknown status field": () => ({ status: "ok" }),
      "an array": () => ["pass"],
      "a promise of garbage": () => Promise.resolve(Symbol("x")),
      "a status getter that throws": () => ({
        get status(): string {
          throw new Error("getter exploded");
        },
      }),
      "an output whose toString throws": () => ({
        status: "fail",
        output: {
          toString() {
            throw new Error("toString exploded");
          },
        },
      }),
      "a BigInt observedValue": () => ({ status: "pass", observedValue: 10n }),
      "a circular observedValue": () => ({ status: "pass", observedValue: circular }),
      "a thenable that never settles": () => ({ then() {} }),
    };
    const health = new Health({ ready: true }).add("ok", () => "pass", { kinds: ["live"] });
    const names = Object.keys(garbage).map((label, i) => [label, `garbage-${i}`] as const);
    for (const [label, name] of names) {
      health.add(name, garbage[label] as CheckFunction, { timeout: 300, kinds: ["ready"] });
    }
    await using server = await serve(sock.path, health);
    for (const [label, name] of names) {
      await t.step(`a check returning ${label}`, async () => {
        const result = await checkResult(server.path, name);
        // "a BigInt observedValue" and the circular one may pass with the value replaced; the rest fail.
        if (result.status !== "pass") assert.equal(result.status, "fail");
        if (result.status === "fail") assert.ok(result.output, "a failing result says why");
        await assertAlive(server.path);
      });
    }
    await t.step("the whole report is still answered", async () => {
      const answer = await sendWithin(server.path, "GET /readyz\n", 5000);
      assert.equal(JSON.parse(answer).status, "fail");
    });
  }),
);

Deno.test("a socket file deleted under a running server: check fails clearly, close removes nothing", async () => {
  await using sock = await tempSocket();
  await using server = await serve(sock.path, new Health({ ready: true }));
  await Deno.remove(sock.path);
  const { code, stderr } = await cli(sock.path, ["check"]);
  assert.equal(code, 3, stderr);
  assert.match(stderr, new RegExp(`"${sock.path}".*no socket there`));
  assert.equal(stderr.trim().split("\n").length, 1, "one line on stderr");
  const error = await probe(sock.path, { timeout: 2000 }).then(() => undefined, (e) => e);
  assert.ok(error instanceof ProbeError && error.kind === "unreachable", String(error));
  await server.close();
  assert.equal(await exists(sock.path), false);
});

Deno.test("a socket file removed under a running server: the path stays its own until it stops", async () => {
  await using sock = await tempSocket();
  const first = await serve(sock.path, new Health({ ready: true }).add("first", () => "pass"));
  try {
    await Deno.remove(sock.path);
    // The first server still holds the path's lock: a second healthsock server is refused.
    await assert.rejects(
      serve(sock.path, new Health({ ready: true })),
      (e) => e instanceof SocketError && e.reason === "in-use" && e.message.includes(`${sock.path}.lock`),
    );
    // Another program binds the path: closing the first leaves it alone.
    const other = Deno.listen({ transport: "unix", path: sock.path });
    try {
      await first.close();
      assert.equal(await exists(sock.path), true, "the newcomer's socket is still there");
    } finally {
      other.close();
    }
  } finally {
    await first.close();
  }
  await using _second = await serve(sock.path, new Health({ ready: true }).add("second", () => "pass"));
  const { code, stdout } = await cli(sock.path, ["check"]);
  assert.equal(code, 0, stdout);
});

Deno.test("a socket file replaced by a regular file: close leaves it, and check fails clearly", async () => {
  await using sock = await tempSocket();
  const server = await serve(sock.path, new Health({ ready: true }));
  try {
    await Deno.remove(sock.path);
    await Deno.writeTextFile(sock.path, "not a socket");
    const { code, stderr } = await cli(sock.path, ["check"]);
    assert.equal(code, 3, stderr);
    assert.ok(stderr.includes(`"${sock.path}"`), stderr);
  } finally {
    await server.close();
  }
  assert.equal(await Deno.readTextFile(sock.path), "not a socket");
});

async function startHost(
  path: string,
): Promise<{ child: Deno.ChildProcess; lines: ReadableStreamDefaultReader<string> }> {
  const child = spawnHost(path);
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    await readUntil(lines, /^serving \d+$/);
  } catch (error) {
    const stderr = await new Response(child.stderr).text();
    await child.status;
    throw new Error(`The host did not start: ${stderr}`, { cause: error });
  }
  return { child, lines };
}

Deno.test("a server killed with SIGKILL leaves a stale socket that a restart replaces", async () => {
  await using sock = await tempSocket();
  const first = await startHost(sock.path);
  try {
    assert.equal((await probe(sock.path)).status, "pass");
    first.child.kill("SIGKILL");
    assert.equal((await first.child.status).signal, "SIGKILL");
  } finally {
    await first.lines.cancel();
    await first.child.stderr.cancel();
    await first.child.status;
  }
  assert.equal(await exists(sock.path), true, "SIGKILL leaves the socket file behind");
  const stale = await cli(sock.path, ["check"]);
  assert.equal(stale.code, 3, stale.stderr);
  assert.match(stale.stderr, /refused/);
  // The private directory the socket was bound in is kept while serving, so a kill leaves it too (empty); as a
  // kill between bind and rename strands it (holding the socket s), it is cleaned up.
  assert.deepEqual([...Deno.readDirSync(`${sock.path}.tmp`)], []);
  await Deno.link(sock.path, `${sock.path}.tmp/s`);

  const second = await startHost(sock.path);
  try {
    assert.equal((await probe(sock.path)).status, "pass");
    assert.deepEqual([...Deno.readDirSync(`${sock.path}.tmp`)], [], "the stranded socket was cleared");
    second.child.kill("SIGTERM");
    await readUntil(second.lines, /^stopped$/);
    assert.equal((await second.child.status).code, 0);
  } finally {
    await second.lines.cancel();
    await second.child.stderr.cancel();
    await second.child.status;
  }
  assert.equal(await exists(sock.path), false, "a graceful stop removes the socket");
  assert.equal(await exists(`${sock.path}.tmp`), false, "a graceful stop removes the private directory");
});

Deno.test("a second server on the same path is refused and the first keeps serving", async () => {
  await using sock = await tempSocket();
  await using first = await serve(sock.path, new Health({ ready: true }));
  const directory = await Deno.lstat(`${sock.path}.tmp`);
  await assert.rejects(
    () => serve(sock.path, new Health()),
    (error: unknown) => {
      assert.ok(error instanceof SocketError);
      assert.equal(error.reason, "in-use");
      assert.equal(error.message, `Cannot listen on "${sock.path}": another process is serving it`);
      return true;
    },
  );
  assert.equal((await probe(first.path)).status, "pass");
  // The same from another process, through the CLI.
  const { code, stderr } = await cli(sock.path, ["demo", "--poll-interval", "0"], { server: true });
  assert.equal(code, 1, stderr);
  assert.match(stderr, /another process is serving it/);
  assert.ok(stderr.includes(`"${sock.path}"`));
  assert.equal((await probe(first.path)).status, "pass");
  // The first server's private directory is its own still, and the refused servers left nothing in it.
  assert.equal((await Deno.lstat(`${sock.path}.tmp`)).ino, directory.ino);
  assert.deepEqual([...Deno.readDirSync(`${sock.path}.tmp`)], [], "a refused server left a temporary socket");
});

Deno.test("listening in a missing directory is a clear SocketError", async () => {
  await using sock = await tempSocket();
  const path = `${sock.dir}/missing/app.sock`;
  await assert.rejects(() => serve(path, new Health()), (error: unknown) => {
    assert.ok(error instanceof SocketError);
    assert.equal(error.reason, "missing-directory");
    assert.equal(error.path, path);
    assert.match(error.message, new RegExp(`directory "${sock.dir}/missing" does not exist`));
    return true;
  });
  const { code, stderr } = await cli(path, ["demo", "--poll-interval", "0"], { server: true });
  assert.equal(code, 1, stderr);
  assert.match(stderr, /does not exist; create it first/);
});

Deno.test("a path too long for a Unix socket is a clear SocketError", async () => {
  await using sock = await tempSocket();
  const path = `${sock.dir}/${"s".repeat(120)}.sock`;
  await assert.rejects(() => serve(path, new Health()), (error: unknown) => {
    assert.ok(error instanceof SocketError);
    assert.equal(error.reason, "path-too-long");
    assert.match(error.message, /choose a shorter path/);
    assert.ok(error.message.includes(`"${path}"`));
    return true;
  });
  assert.deepEqual([...Deno.readDirSync(sock.dir)], [], "nothing was created");
});

Deno.test({
  name: "listening where this user may not write is a clear SocketError (root: capabilities dropped with setpriv)",
  ignore: isRoot() && !hasCommand("setpriv"),
  fn: async () => {
    await using sock = await tempSocket();
    const dir = `${sock.dir}/locked`;
    await Deno.mkdir(dir);
    const path = `${dir}/app.sock`;
    if (!isRoot()) {
      await Deno.chmod(dir, 0o555);
      await assert.rejects(() => serve(path, new Health()), (error: unknown) => {
        assert.ok(error instanceof SocketError);
        assert.equal(error.reason, "permission");
        assert.match(error.message, /permission denied; this user must be able to write directory/);
        return true;
      });
      return;
    }
    // Root ignores file modes; without CAP_DAC_OVERRIDE it is an ordinary user
    // to a directory it does not own.
    await Deno.chown(dir, 65534, 65534);
    await Deno.chmod(dir, 0o755);
    const { code, stderr } = await run("setpriv", [
      "--bounding-set=-dac_override,-dac_read_search",
      "--",
      "deno",
      ...cliArgs(path, true, ["demo", "--poll-interval", "0", "--socket", path]),
    ]);
    assert.equal(code, 1, stderr);
    assert.ok(stderr.includes(`Cannot listen on "${path}": permission denied`), stderr);
    assert.ok(stderr.includes(`this user must be able to write directory "${dir}"`), stderr);
    assert.equal(await exists(path), false);
  },
});
