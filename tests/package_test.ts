// What the package holds and what using it fetches: the demo and the library
// resolve on an empty Deno cache to one npm package, and `deno publish` would
// upload the library, the CLI, README.md and LICENSE, nothing else.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { permissionFlags } from "../paths.ts";
import { serve } from "../serve.ts";
import { ROOT, run, tempSocket } from "./_util.ts";

/** The npm packages in a Deno cache directory, as "name" or "@scope/name". */
async function cachedPackages(denoDir: string): Promise<string[]> {
  const registry = `${denoDir}/npm/registry.npmjs.org`;
  const names: string[] = [];
  if (!(await Deno.lstat(registry).then(() => true, () => false))) return names;
  for await (const entry of Deno.readDir(registry)) {
    if (!entry.name.startsWith("@")) names.push(entry.name);
    else for await (const inner of Deno.readDir(`${registry}/${entry.name}`)) names.push(`${entry.name}/${inner.name}`);
  }
  return names.sort();
}

Deno.test("the demo and the library fetch @logtape/logtape from npm and no other package, on an empty cache", async () => {
  const denoDir = await Deno.makeTempDir({ prefix: "healthsock-deno-dir-" });
  try {
    const lock = await Deno.readTextFile(`${ROOT}deno.lock`);
    const env = { DENO_DIR: denoDir, NO_COLOR: "1" };
    // The demo task as users start it (deno task installs what deno.json imports first), and the module graphs
    // of the CLI and of the library's entry point.
    const demo = await run("deno", ["task", "demo", "--help"], { cwd: ROOT, env });
    assert.equal(demo.code, 0, demo.stderr);
    for (const entry of ["main.ts", "mod.ts"]) {
      const info = await run("deno", ["info", "--json", entry], { cwd: ROOT, env });
      assert.equal(info.code, 0, info.stderr);
      const npm = Object.keys(JSON.parse(info.stdout).npmPackages ?? {}).map((id) => id.replace(/(.)@.*$/, "$1"));
      assert.deepEqual(npm, ["@logtape/logtape"], `${entry}'s module graph`);
    }
    assert.deepEqual(await cachedPackages(denoDir), ["@logtape/logtape"], "what was downloaded into DENO_DIR");
    // Test-only and bench-only packages live in tests/deno.lock and bench/deno.lock: a package in deno.lock
    // would be downloaded with the others whatever imports it.
    assert.equal(await Deno.readTextFile(`${ROOT}deno.lock`), lock, "deno.lock already held what they resolved");
    const locked = Object.keys(JSON.parse(lock).npm ?? {}).map((id) => id.replace(/(.)@.*$/, "$1"));
    assert.deepEqual(locked, ["@logtape/logtape"], "deno.lock holds no bench or test package");
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});

Deno.test("the published package holds the library, the CLI, README.md and LICENSE, and no tests, bench or examples", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  assert.equal(config.license, "MIT");
  assert.deepEqual(config.exports, { ".": "./mod.ts", "./cli": "./main.ts" });
  const out = await run("deno", ["publish", "--dry-run", "--allow-dirty"], { cwd: ROOT, env: { NO_COLOR: "1" } });
  assert.equal(out.code, 0, out.stderr);
  const files = [...(out.stdout + out.stderr).matchAll(/^\s+file:\/\/(\S+) \(/gm)].map((m) => m[1].slice(ROOT.length));
  assert.ok(files.length > 0, out.stderr);
  for (const file of files) {
    assert.match(file, /^(?:[a-z_]+\.ts|README\.md|LICENSE|deno\.json)$/, `${file} is published`);
  }
  for (const file of ["mod.ts", "main.ts", "README.md", "LICENSE", "deno.json"]) assert.ok(files.includes(file), file);

  // Every module the two entry points load is in it.
  for (const entry of ["main.ts", "mod.ts"]) {
    const graph = JSON.parse((await run("deno", ["info", "--json", entry], { cwd: ROOT })).stdout);
    for (const { specifier } of graph.modules as { specifier: string }[]) {
      if (specifier.startsWith("file://")) {
        const file = specifier.slice(`file://${ROOT}`.length);
        assert.ok(files.includes(file), `${entry} loads ${file}, which is not published`);
      }
    }
  }
});

Deno.test("README's deno install -g line installs a probe with exactly the check task's flags, and it answers", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const line = /^deno install -g .+$/m.exec(readme)?.[0];
  assert.ok(line, "README shows a deno install -g line");
  const words = line.split(" ");
  assert.equal(words.at(-1), "jsr:@healthsock/healthsock/cli");
  assert.deepEqual(
    words.filter((word) => word.startsWith("--allow-")),
    permissionFlags("/tmp/app.sock").split(" "),
    "the flags a probe needs for /tmp/app.sock, nothing else",
  );
  assert.ok(words.includes("--no-prompt"));

  // The same command for a temporary socket, installing this checkout's main.ts (what ./cli exports) into a
  // temporary root; the script it writes runs deno with the flags baked in.
  await using sock = await tempSocket();
  const args = words.slice(1, -1).map((word) => word.replaceAll("/tmp/app.sock", sock.path));
  const installed = await run("deno", [...args, "--root", sock.dir, `${ROOT}main.ts`], { env: { NO_COLOR: "1" } });
  assert.equal(installed.code, 0, installed.stderr);
  const script = `${sock.dir}/bin/healthsock`;
  assert.match(await Deno.readTextFile(script), new RegExp(permissionFlags(sock.path).split(" ")[0]));

  const none = await run("sh", [script, "check", "--socket", sock.path]);
  assert.equal(none.code, 3, none.stderr);
  const health = new Health();
  await using _server = await serve(sock.path, health);
  health.markReady();
  const ready = await run("sh", [script, "check", "--socket", sock.path, "--path", "/readyz"]);
  assert.equal(ready.code, 0, ready.stderr);
  assert.match(ready.stdout, /readyz check passed/);
});

Deno.test("the public API leaves out what only the server and its Worker use, or marks it @internal", async () => {
  const out = await run("deno", ["doc", "--json", "mod.ts"], { cwd: ROOT, env: { NO_COLOR: "1" } });
  assert.equal(out.code, 0, out.stderr);
  type Tag = { kind: string };
  type Method = { name: string; jsDoc?: { tags?: Tag[] } };
  type DocSymbol = { name: string; declarations: { def?: { methods?: Method[] } }[] };
  const nodes = JSON.parse(out.stdout).nodes as Record<string, { symbols: DocSymbol[] }>;
  const symbols = nodes[`file://${ROOT}mod.ts`].symbols;
  const names = symbols.map((symbol) => symbol.name);
  for (const internal of ["HealthSource", "HealthSnapshot", "CheckSnapshot"]) {
    assert.ok(!names.includes(internal), `mod.ts exports ${internal}`);
  }
  const methods = symbols.find((symbol) => symbol.name === "Health")!.declarations[0].def?.methods ?? [];
  const internal = methods.filter((method) => method.jsDoc?.tags?.some((tag) => tag.kind === "internal"));
  assert.deepEqual(
    internal.map((method) => method.name).sort(),
    ["evaluate", "snapshot", "startChecks", "stopChecks"],
    "Health's methods for the server are marked internal, and no other",
  );
});
