// `deno task compile`: the flags it bakes in, its entry point and embedded
// files are tested without Deno's denort runtime (a stand-in base binary takes
// its place); building and running the real probe needs denort, downloaded or
// given as DENORT_BIN.
import assert from "node:assert/strict";
import { permissionFlags } from "../paths.ts";
import { cliArgs, decoder, encoder, readUntil, ROOT, run, spawnDemo, tempSocket, untilReady } from "./_util.ts";
import type { Output } from "./_util.ts";

const DENORT_URL = `https://dl.deno.land/release/v${Deno.version.deno}/denort-${Deno.build.target}.zip`;

/** Where a real denort comes from here, if anywhere: DENORT_BIN, or the download deno compile would make. */
const denort = Deno.env.get("DENORT_BIN") ? "DENORT_BIN" : await fetch(DENORT_URL, {
  method: "HEAD",
  signal: AbortSignal.timeout(5000),
}).then(async (response) => {
  await response.body?.cancel();
  return response.ok ? "download" : undefined;
}, () => undefined);

/** A copy of the build's inputs (deno.json, deno.lock, the root modules), so the task's dist/ lands in it. */
async function buildDir(): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "healthsock-compile-" });
  for await (const entry of Deno.readDir(ROOT)) {
    if (entry.isFile && (/\.ts$/.test(entry.name) || entry.name === "deno.json" || entry.name === "deno.lock")) {
      await Deno.copyFile(`${ROOT}${entry.name}`, `${dir}/${entry.name}`);
    }
  }
  return {
    dir,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Run `deno task compile` in `dir`; HEALTHSOCK_SOCKET is always set (empty means the default). */
function compile(dir: string, env: { HEALTHSOCK_SOCKET?: string; DENORT_BIN?: string }): Promise<Output> {
  return run("deno", ["task", "compile"], {
    cwd: dir,
    env: { NO_COLOR: "1", HEALTHSOCK_SOCKET: "", ...env },
  });
}

/**
 * The metadata deno compile embeds in a binary, as JSON: `argv`, `permissions`,
 * `entrypoint_key` and the rest. Found by its first key and read to its closing brace.
 */
function embeddedMetadata(binary: Uint8Array): Record<string, unknown> {
  const marker = encoder.encode('{"argv":');
  let start = -1;
  for (let i = binary.indexOf(marker[0]); i >= 0; i = binary.indexOf(marker[0], i + 1)) {
    if (marker.every((byte, k) => binary[i + k] === byte)) {
      start = i;
      break;
    }
  }
  assert.ok(start >= 0, "the binary holds deno compile's metadata");
  let depth = 0;
  let inString = false;
  for (let i = start; i < binary.length; i++) {
    const c = binary[i];
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) return JSON.parse(decoder.decode(binary.subarray(start, i + 1)));
  }
  throw new Error("The metadata never closes");
}

/** The permissions the CLI tells users to grant for `path`, in the metadata's shape. */
function expectedPermissions(path: string, server: boolean): Record<string, string[]> {
  const granted: Record<string, string[]> = {};
  for (const flag of permissionFlags(path, { server }).split(" ")) {
    const [, name, list] = /^--allow-(\w+)=(.*)$/.exec(flag)!;
    granted[`allow_${name}`] = list.split(",");
  }
  return granted;
}

/** Assert a binary grants exactly the client permissions for `path`: nothing for .tmp, env, run, ffi or sys. */
function assertScopedTo(metadata: Record<string, unknown>, path: string): void {
  const permissions = metadata.permissions as Record<string, unknown>;
  for (const [key, list] of Object.entries(expectedPermissions(path, false))) {
    assert.deepEqual(permissions[key], list, key);
  }
  for (const key of ["allow_env", "allow_run", "allow_ffi", "allow_sys"]) assert.equal(permissions[key], null, key);
  assert.equal(permissions.prompt, false, "--no-prompt: a missing permission fails, it never asks");
  assert.deepEqual(metadata.argv, [], "no arguments are baked in: the binary is the whole CLI");
  assert.equal(metadata.entrypoint_key, "main.ts");
}

/** The names under "Embedded Files" in deno compile's report. */
function embeddedFiles(stdout: string): string[] {
  const section = stdout.slice(stdout.indexOf("Embedded Files"));
  return [...section.matchAll(/^[│ ]*[├└]── (\S+)/gm)].map((m) => m[1]);
}

Deno.test("compile task scopes the probe to /tmp/app.sock, the CLI's default socket, when HEALTHSOCK_SOCKET is unset", async () => {
  await using build = await buildDir();
  // Deno's own executable stands in for denort: the metadata written into it is the same.
  const out = await compile(build.dir, { DENORT_BIN: Deno.execPath() });
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr + out.stdout, /Compile main\.ts to dist\/healthsock/);
  assertScopedTo(embeddedMetadata(await Deno.readFile(`${build.dir}/dist/healthsock`)), "/tmp/app.sock");
  const help = await run("deno", cliArgs("/tmp/app.sock", false, ["check", "--help"]));
  assert.match(help.stdout, /--socket PATH +Socket path \(default \/tmp\/app\.sock\)/);
});

Deno.test("HEALTHSOCK_SOCKET sets the compiled probe's socket at build time", async () => {
  await using build = await buildDir();
  const out = await compile(build.dir, { DENORT_BIN: Deno.execPath(), HEALTHSOCK_SOCKET: "/run/app/app.sock" });
  assert.equal(out.code, 0, out.stderr);
  const metadata = embeddedMetadata(await Deno.readFile(`${build.dir}/dist/healthsock`));
  assertScopedTo(metadata, "/run/app/app.sock");
  const permissions = metadata.permissions as Record<string, string[]>;
  assert.ok(!permissions.allow_write.includes("/run/app/app.sock.tmp"), "a probe cannot bind: no .tmp sibling");
});

Deno.test("compile task refuses a relative HEALTHSOCK_SOCKET rather than widen the grant", async () => {
  await using build = await buildDir();
  const out = await compile(build.dir, { DENORT_BIN: Deno.execPath(), HEALTHSOCK_SOCKET: "app.sock" });
  assert.equal(out.code, 64, out.stderr);
  assert.match(out.stderr, /Invalid HEALTHSOCK_SOCKET "app\.sock": use an absolute path/);
  await assert.rejects(Deno.lstat(`${build.dir}/dist/healthsock`));
});

Deno.test("compile task embeds main.ts and its modules, and no npm package it does not import", async () => {
  await using build = await buildDir();
  // A base that is not an executable: deno compile reports what it embeds, then fails to write the binary,
  // before any download.
  const fake = `${build.dir}/not-denort`;
  await Deno.writeTextFile(fake, "not an executable\n");
  const out = await compile(build.dir, { DENORT_BIN: fake });
  assert.notEqual(out.code, 0);
  assert.match(out.stderr, /Not an ELF file|not a Mach-O|Invalid object/i);
  assert.doesNotMatch(out.stderr, /dl\.deno\.land/, "DENORT_BIN is used: nothing is downloaded");

  const graph = JSON.parse((await run("deno", ["info", "--json", "main.ts"], { cwd: build.dir })).stdout);
  const modules = (graph.modules as { specifier: string }[])
    .map((m) => m.specifier)
    .filter((s) => s.startsWith("file://"))
    .map((s) => s.slice(s.lastIndexOf("/") + 1));
  // Graph specifiers such as "npm:/@logtape/logtape@2.4.2": the packages main.ts imports.
  const npm = (graph.modules as { specifier: string }[])
    .map((m) => /^npm:\/?(@?[^@]+)@/.exec(m.specifier)?.[1])
    .filter((name) => name !== undefined);
  assert.ok(npm.includes("@logtape/logtape"), "the graph names the npm packages main.ts imports");

  const files = embeddedFiles(out.stdout + out.stderr);
  assert.deepEqual(files.filter((f) => f.endsWith(".ts")).sort(), modules.sort(), "exactly main.ts's module graph");
  assert.ok(files.includes("worker_source.ts"), "the Worker that serves beside the app is in the binary");
  // A package shows as ".deno_compile_node_modules/HOST/NAME/*" when alone, as "NAME/VERSION/*" under that folder otherwise.
  const packages = files.filter((f) => f.endsWith("/*")).map((f) =>
    f.replace(/^\.deno_compile_node_modules\/[^/]+\//, "").replace(/\/\*$/, "").replace(/\/\d+\.\d+\.\d+[^/]*$/, "")
  );
  assert.deepEqual(packages, npm, "--exclude-unused-npm: test-only packages in deno.lock stay out");
});

Deno.test(
  `the compiled probe answers for its socket, and names the flags to rebuild with for another${
    denort ? "" : ` (ignored: needs denort, from DENORT_BIN or ${DENORT_URL}, which cannot be reached)`
  }`,
  { ignore: !denort },
  async () => {
    await using build = await buildDir();
    await using sock = await tempSocket();
    // DENORT_BIN, when set, passes through to deno compile; otherwise it downloads denort once.
    const built = await compile(build.dir, { HEALTHSOCK_SOCKET: sock.path });
    assert.equal(built.code, 0, built.stderr);
    // The binary's path is only known now and --allow-run takes no directories,
    // so deno task (which the tests may run) runs it.
    const probe = (args: string) =>
      run("deno", ["task", "-q", "--eval", `./dist/healthsock ${args}`], { cwd: build.dir });

    const none = await probe(`check --socket ${sock.path}`);
    assert.equal(none.code, 3, none.stderr);
    assert.match(none.stderr, new RegExp(sock.path.replaceAll(".", "\\.")));

    const elsewhere = await probe("check");
    assert.equal(elsewhere.code, 3);
    assert.ok(elsewhere.stderr.includes(permissionFlags("/tmp/app.sock")), elsewhere.stderr);

    const demo = await probe(`demo --socket ${sock.path}`);
    assert.equal(demo.code, 77, "the probe cannot serve: no .tmp sibling");
    assert.ok(demo.stderr.includes(permissionFlags(sock.path, { server: true })), demo.stderr);

    await using server = spawnDemo(sock.path, ["--poll-interval", "0", "--ready-after", "0"]);
    await readUntil(server.log, /Serving health on/);
    await untilReady(sock.path);
    const ready = await probe(`check --socket ${sock.path} --path /readyz`);
    assert.equal(ready.code, 0, ready.stderr);
    assert.match(ready.stdout, /readyz check passed/);
    const json = await probe(`check --socket ${sock.path} --format json`);
    assert.equal(JSON.parse(json.stdout).status, "pass");
  },
);
