// The README's examples, run as written: a newcomer copies them first, into an app of their own beside a clone.
import assert from "node:assert/strict";
import { probe, watch } from "../client.ts";
import { permissionFlags } from "../paths.ts";
import { exists, ROOT, tempSocket, waitForPath } from "./_util.ts";
import type { TempSocket } from "./_util.ts";

const README = await Deno.readTextFile(`${ROOT}README.md`);

/** The first ```LANG block after `heading` in README.md. */
function block(heading: string, lang = "ts"): string {
  const at = README.indexOf(heading);
  assert.ok(at >= 0, `README has "${heading}"`);
  const code = new RegExp("```" + lang + "\\n([\\s\\S]*?)```").exec(README.slice(at))?.[1];
  assert.ok(code, `README has a ${lang} block after "${heading}"`);
  return code;
}

/** The server flags the README gives after the ten lines, for `path`. */
function readmeFlags(path: string): string[] {
  const flags = /^`(--allow-read=\S+ --allow-write=\S+ --allow-net=\S+)`\.$/m.exec(README)?.[1];
  assert.ok(flags, "README gives the server's flags on a line of their own");
  assert.equal(flags, permissionFlags("/tmp/app.sock", { server: true }));
  return flags.replaceAll("/tmp/app.sock", path).split(" ");
}

/**
 * An app in a directory of its own outside the repository, with the deno.json README's "From a clone" gives
 * (pointing at this checkout), running `code` with exactly the README's flags and no --config.
 */
async function cloneApp(sock: TempSocket, code: string): Promise<Deno.ChildProcess> {
  const config = JSON.parse(block("### From a clone", "json"));
  assert.equal(config.imports["@healthsock/healthsock"], "../healthsock/mod.ts");
  config.imports["@healthsock/healthsock"] = `${ROOT}mod.ts`;
  await Deno.writeTextFile(`${sock.dir}/deno.json`, JSON.stringify(config));
  // What the examples leave to the reader: a database whose ping resolves to something, and a start-up.
  const stubs = "const db = { ping: (_: { signal: AbortSignal }) => Promise.resolve({ ok: 1, ms: 0.4 }) };\n" +
    "const startUp = () => Promise.resolve();\n";
  await Deno.writeTextFile(`${sock.dir}/app.ts`, stubs + code.replaceAll("/tmp/app.sock", sock.path));
  return new Deno.Command("deno", {
    args: ["run", "--no-prompt", ...readmeFlags(sock.path), "app.ts"],
    cwd: sock.dir,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Wait until the app's server answers /startupz with pass (markReady has run). */
async function started(path: string): Promise<void> {
  await waitForPath(path);
  const stop = AbortSignal.timeout(20_000);
  for await (const report of watch(path, { target: "/startupz", signal: stop, timeout: 20_000 })) {
    if (report.status === "pass") break;
  }
  assert.ok(!stop.aborted, "the example did not start within 20 s");
}

Deno.test("the README's library in ten lines, in an app beside a clone, serves with exactly the README's flags, and Ctrl-C removes its socket and lock", async () => {
  await using sock = await tempSocket();
  const app = await cloneApp(sock, block("## The library in ten lines"));
  const output = app.output();
  try {
    await started(sock.path);
    const result = await probe(sock.path);
    assert.equal(result.status, "pass", result.body);
    assert.equal(result.report?.checks["db:responseTime"]?.[0].status, "pass", result.body);
  } finally {
    app.kill("SIGINT");
  }
  const { code, stdout, stderr } = await output;
  const log = new TextDecoder().decode(stderr);
  assert.equal(code, 0, log);
  assert.equal(await exists(sock.path), false, "the socket is removed");
  assert.equal(await exists(`${sock.path}.lock`), false, "the lock file is removed");
  // Until the app configures LogTape, the library says nothing.
  assert.equal(log, "");
  assert.equal(new TextDecoder().decode(stdout), "");
});

Deno.test("the README's logging block shows the library's lines under the healthsock category", async () => {
  await using sock = await tempSocket();
  const app = await cloneApp(sock, block("## The library's logs") + block("## The library in ten lines"));
  const output = app.output();
  try {
    await started(sock.path);
  } finally {
    app.kill("SIGTERM");
  }
  const { code, stdout, stderr } = await output;
  const log = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  assert.equal(code, 0, log);
  assert.match(log, /Serving health on "?\/.*app\.sock/);
  assert.match(log, /Stopped serving/);
});

Deno.test("the README's serve() options table lists every option of ServeOptions with its documented default", async () => {
  const source = await Deno.readTextFile(`${ROOT}server.ts`);
  const body = /export interface ServeOptions \{([\s\S]*?)\n\}/.exec(source)?.[1];
  assert.ok(body, "server.ts has ServeOptions");
  const documented = new Map<string, string>();
  for (const [, doc, name] of body.matchAll(/\/\*\*([\s\S]*?)\*\/\s*(\w+)\?:/g)) {
    const value = /@default \{(.*?)\}\s*(?:\*\/|$)/m.exec(doc.replace(/\n\s*\*/g, " "))?.[1] ??
      /@default \{(.*)\}/.exec(doc)?.[1];
    assert.ok(value, `${name} has a @default`);
    documented.set(name, value);
  }
  const section = README.slice(README.indexOf("## `serve()` options"));
  const rows = new Map<string, string>();
  for (const [, name, value] of section.slice(0, section.indexOf("\n## ")).matchAll(/^\| `(\w+)` +\| ([^|]+?) +\|/gm)) {
    rows.set(name, value.replaceAll("`", ""));
  }
  assert.deepEqual([...rows.keys()].sort(), [...documented.keys()].sort());
  for (const [name, value] of documented) {
    assert.equal(rows.get(name), value === "undefined" ? "none" : value, `${name}'s default`);
  }
});

/** Run a README block of "The health model" as a program: its stdout, after it exits 0. */
async function runModelSnippet(heading: string, flags: string[] = [], env?: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/example.ts`;
    const code = block(heading).replaceAll('"@healthsock/healthsock"', JSON.stringify(`${ROOT}mod.ts`));
    await Deno.writeTextFile(file, code);
    const out = await new Deno.Command("deno", {
      args: ["run", "--no-prompt", "--config", `${ROOT}deno.json`, `--allow-read=${file}`, ...flags, file],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    return new TextDecoder().decode(out.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the README's thresholds example prints two warnings, then the failure, as written", async () => {
  assert.equal(
    await runModelSnippet("### Thresholds: one failed run is a blip"),
    "warn: failed 1 of 3 runs in a row: check returned false\n" +
      "warn: failed 2 of 3 runs in a row: check returned false\n" +
      "fail: check returned false\n",
  );
});

Deno.test("the README's change events example pushes each change to a webhook, as written", async () => {
  const received: unknown[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    received.push(await request.json());
    return new Response(null, { status: 204 });
  });
  const address = `127.0.0.1:${server.addr.port}`;
  await runModelSnippet("### Pushing changes somewhere", [`--allow-net=${address}`, "--allow-env=HEALTH_WEBHOOK"], {
    HEALTH_WEBHOOK: `http://${address}/health-events`,
  });
  assert.deepEqual(received, [
    { name: "lifecycle", previous: "starting", current: "ready" },
    { name: "db", current: "fail", output: "check returned false" },
  ]);
});

Deno.test("the README's markNotReady example prints the reason, then pass, as written", async () => {
  assert.equal(
    await runModelSnippet("### Not ready for a while"),
    "not ready: database connection lost\npass\n",
  );
});

Deno.test("the README's tags and service fields example prints what it says, as written", async () => {
  assert.equal(
    await runModelSnippet("### Tags and service fields"),
    "1 1.4.2 s3:responseTime mail:responseTime lifecycle:state\n",
  );
});

Deno.test("the README's progress example passes while it beats, as written", async () => {
  assert.equal(await runModelSnippet("### A progress check"), "pass number ms\n");
});

Deno.test("the README's quiet-stream example gets the retry hint, a keep-alive comment and the end event, as written", async () => {
  await using sock = await tempSocket();
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/example.ts`;
    const code = block("### A quiet stream stays open")
      .replaceAll('"@healthsock/healthsock"', JSON.stringify(`${ROOT}mod.ts`))
      .replaceAll("/tmp/app.sock", sock.path);
    await Deno.writeTextFile(file, code);
    const server = permissionFlags(sock.path, { server: true }).replace(
      /--allow-net=(\S+)/,
      "--allow-net=$1,localhost:80",
    );
    const out = await new Deno.Command("deno", {
      args: ["run", "--no-prompt", "--config", `${ROOT}deno.json`, `--allow-read=${file}`, ...server.split(" "), file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(new TextDecoder().decode(out.stdout), "retry: 1000 true data: no change for 1 s\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
