// The CLI as users run it: a subprocess with the scoped permissions of the tasks.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { permissionFlags } from "../paths.ts";
import { serve } from "../serve.ts";
import {
  cli,
  cliArgs,
  exists,
  readUntil,
  ROOT,
  run,
  spawnCli,
  taskArgs,
  TASKS,
  tempSocket,
  untilReady,
  waitForPath,
} from "./_util.ts";

function healthy(): Health {
  return new Health({ ready: true }).add("db", () => "pass");
}

/** A socket that accepts and then does `answer` with each connection. */
function fakeServer(path: string, answer: (conn: Deno.UnixConn) => Promise<void>): AsyncDisposable {
  const listener = Deno.listen({ transport: "unix", path });
  const conns: Deno.UnixConn[] = [];
  const loop = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      answer(conn).catch(() => {});
    }
  })();
  return {
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      await loop.catch(() => {});
    },
  };
}

Deno.test("the check, watch and demo tasks grant exactly the socket path (and the demo its .tmp sibling)", () => {
  const socket = "$HEALTHSOCK_SOCKET";
  const client = permissionFlags(socket);
  const server = permissionFlags(socket, { server: true });
  const path = "sh -c 'case ${HEALTHSOCK_SOCKET:-/} in [!/]*|*[[:space:],]*) " +
    `echo "healthsock: Invalid HEALTHSOCK_SOCKET \\"$HEALTHSOCK_SOCKET\\": use an absolute path without spaces or commas" ` +
    ">&2; exit 64;; esac' && " +
    `export HEALTHSOCK_SOCKET=$(sh -c 'echo "\${HEALTHSOCK_SOCKET:-/tmp/app.sock}"') && `;
  assert.equal(TASKS.check, `${path}deno run --no-prompt ${client} main.ts check --socket ${socket}`);
  assert.equal(TASKS.watch, `${path}deno run --no-prompt ${client} main.ts watch --socket ${socket}`);
  // The demo also keeps V8's heap small (README, Memory): not a permission.
  assert.equal(
    TASKS.demo,
    `${path}deno run --no-prompt --v8-flags=--optimize-for-size ${server} main.ts demo --socket ${socket}`,
  );
  assert.ok(TASKS.compile.startsWith(path));
  for (const task of Object.values(TASKS)) {
    assert.doesNotMatch(task, /(^| )(-A|--allow-all)( |$)/);
  }
});

Deno.test("check with the task's flags exits 0 and prints the summary for a passing server", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy());
  const out = await run("deno", [...taskArgs("check", sock.path), "--socket", sock.path]);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout, "healthz check passed\n");
  assert.equal(out.stderr, "");
});

Deno.test("check prints per-check lines with --verbose and the body with --format json", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy().add("cache", () => "warn", { critical: false }));
  const verbose = await cli(sock.path, ["check", "--path", "/readyz", "--verbose"]);
  assert.equal(verbose.code, 0, verbose.stderr);
  assert.equal(
    verbose.stdout,
    "[+]db ok\n[+]cache warn: check warned\n[+]lifecycle ok\n[+]mainloop ok\nreadyz check passed with warnings\n",
  );
  const json = await cli(sock.path, ["check", "--format", "json", "--http"]);
  assert.equal(json.code, 0);
  assert.equal(JSON.parse(json.stdout).status, "warn");
  const quiet = await cli(sock.path, ["check", "--quiet"]);
  assert.equal(quiet.code, 0);
  assert.equal(quiet.stdout, "");
});

Deno.test("check exits 1 on fail with one stderr line naming the socket", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, new Health()); // starting: /readyz fails
  const out = await cli(sock.path, ["check", "--path", "/readyz"]);
  assert.equal(out.code, 1);
  assert.equal(out.stdout, "readyz check failed (failed: lifecycle)\n");
  const lines = out.stderr.trim().split("\n");
  assert.equal(lines.length, 1);
  assert.ok(lines[0].includes(sock.path), lines[0]);
  assert.match(lines[0], /with fail/);
  // /livez passes while starting.
  assert.equal((await cli(sock.path, ["check", "--path", "/livez"])).code, 0);
});

Deno.test("check exits 3 when no socket is there, or it refuses", async () => {
  await using sock = await tempSocket();
  const none = await cli(sock.path, ["check"]);
  assert.equal(none.code, 3);
  assert.match(none.stderr, /no socket there/);
  assert.ok(none.stderr.includes(sock.path));
  const stale = Deno.listen({ transport: "unix", path: `${sock.path}.x` });
  await Deno.rename(`${sock.path}.x`, sock.path);
  stale.close();
  const refused = await cli(sock.path, ["check"]);
  assert.equal(refused.code, 3);
  assert.match(refused.stderr, /connection refused/);
  assert.equal(refused.stderr.trim().split("\n").length, 1);
});

Deno.test("check exits 4 when the server does not answer in time", async () => {
  await using sock = await tempSocket();
  await using _fake = fakeServer(sock.path, () => new Promise(() => {}));
  const out = await cli(sock.path, ["check", "--timeout", "300ms"]);
  assert.equal(out.code, 4);
  assert.match(out.stderr, /in time/);
  assert.ok(out.stderr.includes(sock.path));
});

Deno.test("check exits 5 for an answer that is not a health report, and for an unknown endpoint", async () => {
  await using sock = await tempSocket();
  {
    await using _fake = fakeServer(sock.path, async (conn) => {
      await conn.read(new Uint8Array(256));
      await conn.write(new TextEncoder().encode("220 smtp.example ESMTP\n"));
      conn.close();
    });
    const out = await cli(sock.path, ["check"]);
    assert.equal(out.code, 5);
    assert.match(out.stderr, /not a health report/);
  }
  await Deno.remove(sock.path).catch(() => {});
  await using _server = await serve(sock.path, healthy());
  const missing = await cli(sock.path, ["check", "--path", "/metrics"]);
  assert.equal(missing.code, 5);
  assert.match(missing.stderr, /404/);
});

Deno.test("bad flags print one line saying what is wrong and where the usage is, and exit 64", async () => {
  await using sock = await tempSocket();
  for (
    const args of [
      ["check", "--bogus"],
      ["check", "--timeout", "soon"],
      ["check", "--format", "xml"],
      ["check", "--path", "healthz"],
      ["watch", "--count", "0"],
      ["demo", "--mode", "999"],
      ["frobnicate"],
    ]
  ) {
    const out = await run("deno", [
      "run",
      "--no-prompt",
      ...permissionFlags(sock.path, { server: true }).split(" "),
      `${ROOT}main.ts`,
      ...args,
    ]);
    assert.equal(out.code, 64, args.join(" "));
    const lines = out.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, out.stderr);
    assert.match(lines[0], /^healthsock( \w+)?: [A-Z]/, args.join(" "));
    const command = args[0] === "frobnicate" ? "" : ` ${args[0]}`;
    assert.equal(lines[1], `Run 'healthsock${command} --help' for usage`);
  }
  const relative = await run("deno", ["run", "--no-prompt", `${ROOT}main.ts`, "check", "--socket", "app.sock"]);
  assert.equal(relative.code, 64);
  assert.match(relative.stderr, /must be absolute/);
});

Deno.test("--help prints the command's usage and exits 0", async () => {
  for (const command of ["check", "watch", "demo"]) {
    const out = await run("deno", ["run", "--no-prompt", `${ROOT}main.ts`, command, "--help"]);
    assert.equal(out.code, 0);
    assert.match(out.stdout, new RegExp(`^Usage: healthsock ${command}`));
  }
});

Deno.test("a missing permission prints the exact flags to add, with the path filled in", async () => {
  await using sock = await tempSocket();
  const check = await run("deno", ["run", "--no-prompt", `${ROOT}main.ts`, "check", "--socket", sock.path]);
  assert.equal(check.code, 3);
  assert.ok(check.stderr.includes(permissionFlags(sock.path)), check.stderr);
  // The task's flags are for /tmp/app.sock only: another socket needs its own.
  const other = await run("deno", [...taskArgs("check", "/tmp/app.sock"), "--socket", sock.path]);
  assert.equal(other.code, 3);
  assert.ok(other.stderr.includes(`--allow-net=unix:${sock.path}`), other.stderr);
  const demo = await run("deno", [
    "run",
    "--no-prompt",
    `--allow-read=${sock.path}`,
    `${ROOT}main.ts`,
    "demo",
    "--socket",
    sock.path,
  ]);
  assert.equal(demo.code, 77);
  assert.ok(demo.stderr.includes(permissionFlags(sock.path, { server: true })), demo.stderr);
});

Deno.test("watch --count prints one line per answer and exits as check would", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy());
  const out = await cli(sock.path, ["watch", "--interval", "50ms", "--count", "3"]);
  assert.equal(out.code, 0, out.stderr);
  const lines = out.stdout.trim().split("\n");
  assert.equal(lines.length, 3);
  for (const line of lines) assert.match(line, /^\d{4}-\d\d-\d\dT\S+Z pass healthz check passed$/);
  const json = await cli(sock.path, [
    "watch",
    "--interval",
    "50ms",
    "--count",
    "1",
    "--format",
    "json",
    "--path",
    "/readyz",
  ]);
  const record = JSON.parse(json.stdout);
  assert.equal(record.status, "pass");
  assert.equal(record.report.status, "pass");
});

Deno.test("watch keeps going while the server is unreachable, and its last answer sets the exit code", async () => {
  await using sock = await tempSocket();
  const out = await cli(sock.path, ["watch", "--interval", "50ms", "--count", "2"]);
  assert.equal(out.code, 3);
  assert.equal(out.stdout.trim().split("\n").length, 2);
  assert.match(out.stdout, /unreachable Cannot connect/);
});

Deno.test("watch --changes prints only status changes, following the server's stream", async () => {
  await using sock = await tempSocket();
  const health = new Health().add("db", () => "pass"); // starting: /readyz fails
  await using _server = await serve(sock.path, health, { watchInterval: 50 });
  const child = spawnCli(sock.path, ["watch", "--changes", "--path", "/readyz", "--count", "2"]);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const first = await readUntil(reader, /fail/);
    assert.match(first.line, /fail readyz check failed \(failed: lifecycle\)/);
    health.markReady();
    const second = await readUntil(reader, /pass/);
    assert.match(second.line, /pass readyz check passed/);
  } finally {
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    const status = await child.status;
    await child.stderr.cancel().catch(() => {});
    assert.equal(status.code, 0);
  }
});

Deno.test("watch stops on SIGINT with exit 0", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy());
  const child = spawnCli(sock.path, ["watch", "--interval", "50ms"]);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  await readUntil(reader, /pass/);
  child.kill("SIGINT");
  reader.releaseLock();
  await child.stdout.cancel().catch(() => {});
  await child.stderr.cancel().catch(() => {});
  assert.equal((await child.status).code, 0);
});

Deno.test("--log-format json writes one JSON object a line on stderr", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy());
  const out = await cli(sock.path, ["check", "--log-level", "debug", "--log-format", "json"]);
  assert.equal(out.code, 0);
  const lines = out.stderr.trim().split("\n");
  assert.ok(lines.length >= 1);
  for (const line of lines) {
    const record = JSON.parse(line);
    assert.equal(typeof record.message, "string");
    assert.ok(String(record.logger).startsWith("healthsock"));
  }
});

/** The child's status, or a failure (and a kill) when it has not exited within `ms`. */
async function exitWithin(child: Deno.ChildProcess, ms: number, what: string): Promise<Deno.CommandStatus> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), ms));
  const status = await Promise.race([child.status, late]);
  clearTimeout(timer);
  if (status === "late") {
    child.kill("SIGKILL");
    await child.status;
    assert.fail(`${what} did not exit within ${ms} ms`);
  }
  return status;
}

Deno.test("watch ends with exit 0 when its output is closed, as under | head -2", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy());
  for (const format of ["text", "json"]) {
    const child = spawnCli(sock.path, ["watch", "--interval", "20ms", "--format", format]);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { seen } = await readUntil(reader, /pass/);
    await readUntil(reader, /pass/);
    assert.ok(seen.length >= 1);
    // Close our end of its stdout: its next write fails with BrokenPipe.
    await reader.cancel();
    const status = await exitWithin(child, 20_000, `watch --format ${format} with its output closed`);
    const stderr = new TextDecoder().decode((await child.stderr.getReader().read()).value ?? new Uint8Array());
    assert.equal(status.code, 0, stderr);
  }
  // And through a shell pipe, as users type it: the pipeline ends only when watch does.
  const pipeline = new Deno.Command("sh", {
    args: [
      "-c",
      '"$@" | head -2',
      "sh",
      "deno",
      ...cliArgs(sock.path, false, ["watch", "--interval", "20ms", "--socket", sock.path]),
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = pipeline.output();
  await exitWithin(pipeline, 20_000, "healthsock watch | head -2");
  const out = await output;
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout).trim().split("\n").length, 2);
});

Deno.test("a duration over 2^31-1 ms is a usage error (64) for every duration flag", async () => {
  await using sock = await tempSocket();
  for (
    const args of [
      ["check", "--timeout", "600h"],
      ["watch", "--timeout", "600h"],
      ["watch", "--interval", "600h"],
      ["watch", "--interval", "2147483648ms"],
      ["demo", "--drain-delay", "600h"],
      ["demo", "--stall-after", "600h"],
      ["demo", "--unhealthy-after", "600h"],
      ["demo", "--ready-after", "600h"],
      ["demo", "--poll-interval", "600h"],
      ["demo", "--drain-delay", `${"9".repeat(400)}s`],
    ]
  ) {
    const out = await run("deno", cliArgs(sock.path, true, [...args, "--socket", sock.path]));
    assert.equal(out.code, 64, `${args.join(" ")}: ${out.stderr}`);
    assert.match(out.stderr, new RegExp(`Invalid ${args[1]} "${args[2]}": at most 2147483647 ms`), args.join(" "));
    assert.match(out.stderr, /Run 'healthsock \w+ --help' for usage/, args.join(" "));
    assert.equal(await exists(sock.path), false);
  }
  // The largest duration a timer holds is accepted: nothing listens, so the probe is unreachable.
  const largest = await cli(sock.path, ["check", "--timeout", "2147483647ms"]);
  assert.equal(largest.code, 3, largest.stderr);
});

Deno.test("check exits 4 and says the server is not accepting when its accept backlog is full", async () => {
  await using sock = await tempSocket();
  // A stalled server: it listens but never accepts; fill its backlog.
  const listener = Deno.listen({ transport: "unix", path: sock.path });
  const held: Deno.UnixConn[] = [];
  try {
    for (;;) {
      try {
        held.push(await Deno.connect({ transport: "unix", path: sock.path }));
      } catch (error) {
        assert.ok(error instanceof Deno.errors.WouldBlock, String(error));
        break;
      }
      assert.ok(held.length < 100_000, "the backlog never filled");
    }
    const out = await cli(sock.path, ["check", "--timeout", "300ms"]);
    assert.equal(out.code, 4, out.stderr);
    assert.match(out.stderr, /not accepting connections/);
    assert.ok(out.stderr.includes(sock.path));
    assert.equal(out.stderr.trim().split("\n").length, 1);
  } finally {
    for (const conn of held) conn.close();
    listener.close();
  }
});

Deno.test("check exits 4 with a message saying the server is busy when it answers 503, in either framing", async () => {
  await using sock = await tempSocket();
  const error = JSON.stringify({ error: "Server busy: every slot is answering a request", code: 503 });
  // What a server that cannot answer sends, after reading the request line.
  await using _fake = fakeServer(sock.path, async (conn) => {
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const answer = /^\S+ \S+ HTTP\/1\.[01]\r?\n/.test(text)
      ? `HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: ${error.length}\r\n` +
        `Cache-Control: no-store\r\nConnection: close\r\n\r\n${error}`
      : `${error}\n`;
    await conn.write(new TextEncoder().encode(answer));
    conn.close();
  });
  for (const args of [[], ["--http"]]) {
    const out = await cli(sock.path, ["check", ...args]);
    assert.equal(out.code, 4, `${args.join(" ")}: ${out.stderr}`);
    assert.match(out.stderr, /too busy to answer: Server busy: every slot is answering a request/);
    assert.ok(out.stderr.includes(sock.path));
    assert.equal(out.stderr.trim().split("\n").length, 1);
  }
  const watched = await cli(sock.path, ["watch", "--count", "1", "--changes"]);
  assert.equal(watched.code, 4, watched.stderr);
  assert.match(watched.stdout, /busy .*too busy to answer/);
});

Deno.test("check says what is at the path when it is a regular file or a directory, not a socket", async () => {
  await using sock = await tempSocket();
  await Deno.writeTextFile(sock.path, "not a socket\n");
  const file = await cli(sock.path, ["check"]);
  assert.equal(file.code, 3, file.stderr);
  assert.equal(
    file.stderr,
    `healthsock: Cannot connect to "${sock.path}": a regular file is there, not a socket; check the path\n`,
  );
  await Deno.remove(sock.path);
  await Deno.mkdir(sock.path);
  const directory = await cli(sock.path, ["check"]);
  assert.equal(directory.code, 3, directory.stderr);
  assert.match(directory.stderr, /: a directory is there, not a socket; check the path\n$/);
});

Deno.test("check names the socket's directory when nothing is at the path", async () => {
  await using sock = await tempSocket();
  const path = `${sock.dir}/gone/app.sock`;
  const out = await cli(path, ["check"]);
  assert.equal(out.code, 3, out.stderr);
  // Granted only the socket path, Deno may not look at the directory: the message names it as a possible cause.
  assert.equal(
    out.stderr,
    `healthsock: Cannot connect to "${path}": no socket there, or no directory "${sock.dir}/gone"; ` +
      "is the server running, and is the path right?\n",
  );
  // Allowed to read the directory's parent, the CLI can tell.
  const told = await run("deno", [
    "run",
    "--no-prompt",
    `--allow-read=${sock.dir}`,
    `--allow-write=${path}`,
    `--allow-net=unix:${path}`,
    `${ROOT}main.ts`,
    "check",
    "--socket",
    path,
  ]);
  assert.equal(told.code, 3, told.stderr);
  assert.match(told.stderr, new RegExp(`the directory "${sock.dir}/gone" does not exist`));
});

Deno.test("check and watch refuse a ?watch path at once as a usage error, naming the command that follows changes", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy());
  for (const command of ["check", "watch"]) {
    for (const target of ["/livez?watch", "/livez?verbose&watch=1"]) {
      const out = await cli(sock.path, [command, "--path", target, "--timeout", "20s"]);
      assert.equal(out.code, 64, `${command} ${target}: ${out.stderr}`);
      assert.match(
        out.stderr,
        new RegExp(
          `Invalid --path "${target.replace("?", "\\?")}": ${command} does not take \\?watch; ` +
            "to follow changes run 'healthsock watch --changes --path /livez",
        ),
      );
    }
  }
  // ?watch=0 does not ask for a stream, as the server reads it.
  const off = await cli(sock.path, ["check", "--path", "/livez?watch=0"]);
  assert.equal(off.code, 0, off.stderr);
});

/** `deno task NAME ARGS` from the repository with HEALTHSOCK_SOCKET set, in its own process group. */
function task(name: string, path: string, args: string[], piped = true): Deno.ChildProcess {
  return new Deno.Command("deno", {
    args: ["task", "--quiet", "--config", `${ROOT}deno.json`, name, ...args],
    env: { HEALTHSOCK_SOCKET: path, NO_COLOR: "1" },
    detached: true,
    stdin: "null",
    stdout: piped ? "piped" : "null",
    stderr: piped ? "piped" : "null",
  }).spawn();
}

Deno.test("HEALTHSOCK_SOCKET moves the demo, check and watch tasks to another socket, with its permissions", async () => {
  await using sock = await tempSocket();
  const demo = task("demo", sock.path, ["--poll-interval", "0", "--ready-after", "0"], false);
  try {
    await waitForPath(sock.path);
    await untilReady(sock.path);
    const check = await task("check", sock.path, ["--path", "/readyz"]).output();
    assert.equal(check.code, 0, new TextDecoder().decode(check.stderr));
    assert.equal(new TextDecoder().decode(check.stdout), "readyz check passed\n");
    const watched = await task("watch", sock.path, ["--count", "1", "--changes", "--path", "/livez"]).output();
    assert.equal(watched.code, 0, new TextDecoder().decode(watched.stderr));
    assert.match(new TextDecoder().decode(watched.stdout), / pass livez check passed\n$/);
  } finally {
    await run("sh", ["-c", `kill -s TERM -- -${demo.pid} 2>/dev/null`]);
    await demo.status;
  }
  assert.equal(await exists(sock.path), false, "the demo removed its socket");
});

/** `deno install -g` ARGS into a temporary root, from the repository; the path of the script it writes. */
async function install(root: string, args: string[]): Promise<string> {
  const out = await run("deno", ["install", "-g", "--root", root, ...args], { cwd: ROOT, env: { NO_COLOR: "1" } });
  assert.equal(out.code, 0, out.stderr);
  return `${root}/bin/healthsock`;
}

Deno.test("README's deno install -g line for a checkout gives a probe whose demo and --log-level work", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const line = /^deno install -g .+ main\.ts$/m.exec(readme)?.[0];
  assert.ok(line, "README shows a deno install -g line for a checkout");
  const words = line.split(" ");
  assert.deepEqual(
    words.filter((word) => word.startsWith("--allow-")),
    permissionFlags("/tmp/app.sock").split(" "),
    "the flags a probe needs for /tmp/app.sock, nothing else",
  );
  await using sock = await tempSocket();
  const script = await install(
    `${sock.dir}/root`,
    words.slice(3).map((word) => word.replaceAll("/tmp/app.sock", sock.path)),
  );
  const check = await run("sh", [script, "check", "--socket", sock.path, "--log-level", "debug"]);
  assert.equal(check.code, 3, check.stderr);
  assert.match(check.stderr, /no socket there/);
  // A probe's permissions cannot serve: the demo says which flags it lacks (77), rather than failing to load.
  const demo = await run("sh", [script, "demo", "--socket", sock.path]);
  assert.equal(demo.code, 77, demo.stderr);
  assert.match(demo.stderr, /Deno lacks permission; run with --allow-read=/);
});

Deno.test("an unexpected error exits 70 with one line, never 1, which says the health is fail", async () => {
  await using sock = await tempSocket();
  // Installed from a checkout without its config, the logging package cannot be imported: a crash, not an answer.
  const script = await install(`${sock.dir}/root`, [
    "--name",
    "healthsock",
    "--no-prompt",
    ...permissionFlags(sock.path).split(" "),
    "main.ts",
  ]);
  const out = await run("sh", [script, "check", "--socket", sock.path, "--log-level", "debug"]);
  assert.equal(out.code, 70, out.stderr);
  assert.match(out.stderr, /^healthsock: Internal error \(please report it\): .*@logtape\/logtape/);
  assert.equal(out.stderr.trimEnd().split("\n").length, 1, out.stderr);
});

Deno.test("check and watch run on an empty Deno cache with --cached-only: the probe path loads no npm package", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, healthy());
  const denoDir = await Deno.makeTempDir({ prefix: "healthsock-deno-dir-" });
  try {
    const env = { DENO_DIR: denoDir, NO_COLOR: "1" };
    const offline = (args: string[]) =>
      run("deno", ["run", "--cached-only", ...cliArgs(sock.path, false, [...args, "--socket", sock.path]).slice(1)], {
        cwd: ROOT,
        env,
      });
    const check = await offline(["check"]);
    assert.equal(check.code, 0, check.stderr);
    assert.equal(check.stdout, "healthz check passed\n");
    const watch = await offline(["watch", "--count", "1"]);
    assert.equal(watch.code, 0, watch.stderr);
    assert.match(watch.stdout, /^\S+ pass healthz check passed\n$/);
    // Asking for logging is asking for LogTape, which this cache does not hold.
    const logged = await offline(["watch", "--count", "1", "--log-level", "debug"]);
    assert.notEqual(logged.code, 0, "LogTape was loaded from an empty cache");
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});

Deno.test("check and watch escape a text body's control characters, so the answer cannot drive the terminal", async () => {
  await using sock = await tempSocket();
  // A process answering on the path with a ?verbose-like text holding ESC, BEL and CR.
  const hostile = "[+]db ok\x1b]0;owned\x07\r[+]x\x1b[2J\nhealthz check passed\n";
  await using _fake = fakeServer(sock.path, async (conn) => {
    await conn.read(new Uint8Array(1024));
    await conn.write(new TextEncoder().encode(hostile));
    conn.close();
  });
  const check = await cli(sock.path, ["check", "--path", "/healthz?verbose"]);
  assert.equal(check.code, 0, check.stderr);
  assert.equal(check.stdout, "[+]db ok\\u001b]0;owned\\u0007\\r[+]x\\u001b[2J\nhealthz check passed\n");
  const json = await cli(sock.path, ["check", "--path", "/healthz?verbose", "--format", "json"]);
  assert.equal(json.stdout, check.stdout);
  const watch = await cli(sock.path, ["watch", "--count", "1", "--path", "/healthz?verbose"]);
  assert.equal(watch.code, 0, watch.stderr);
  assert.match(
    watch.stdout,
    /^\S+ pass \[\+\]db ok\\u001b\]0;owned\\u0007\\r\[\+\]x\\u001b\[2J\\nhealthz check passed\n$/,
  );
});

Deno.test("a relative HEALTHSOCK_SOCKET, or one with a space or comma, stops every task with one line and exit 64", async () => {
  for (const name of ["demo", "check", "watch", "compile"]) {
    for (const bad of ["app.sock", "/tmp/my app.sock", "/tmp/a,b.sock"]) {
      const out = await task(name, bad, ["--help"]).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 64, `${name} with "${bad}": ${stderr}`);
      assert.equal(
        stderr,
        `healthsock: Invalid HEALTHSOCK_SOCKET "${bad}": use an absolute path without spaces or commas\n`,
        name,
      );
      assert.equal(out.stdout.length, 0);
    }
  }
});

Deno.test("demo --help names the socket in use in its examples, through the task too", async () => {
  await using sock = await tempSocket();
  const direct = await cli(sock.path, ["demo", "--help"], { server: true });
  assert.equal(direct.code, 0, direct.stderr);
  assert.ok(direct.stdout.includes(`socat - UNIX-CONNECT:${sock.path} <<< "GET /healthz"\n`), direct.stdout);
  assert.ok(direct.stdout.includes(`curl --unix-socket ${sock.path} http://localhost/healthz`), direct.stdout);
  assert.doesNotMatch(direct.stdout, /UNIX-CONNECT:\/tmp\/app\.sock|--unix-socket \/tmp\/app\.sock/);
  const viaTask = await task("demo", sock.path, ["--help"]).output();
  assert.equal(viaTask.code, 0);
  assert.equal(new TextDecoder().decode(viaTask.stdout), direct.stdout);
});

Deno.test("through deno task -q, as the README says, --log-format json leaves only JSON lines on stderr", async () => {
  await using sock = await tempSocket();
  const out = await task("check", sock.path, ["--log-format", "json"]).output();
  assert.equal(out.code, 3);
  const lines = new TextDecoder().decode(out.stderr).trimEnd().split("\n");
  assert.equal(lines.length, 1, lines.join("\n"));
  for (const line of lines) assert.equal(JSON.parse(line).properties.exitCode, 3, line);
  assert.match(await Deno.readTextFile(`${ROOT}README.md`), /`deno task -q demo --log-format json`/);
});
