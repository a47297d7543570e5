// worker_source.ts is worker.ts bundled: its header records a hash of what it is built from, and
// `tools/build_worker.ts --check` recomputes that hash without bundling, so it fails when a source
// changes and not when a new Deno bundles the same sources differently.
import assert from "node:assert/strict";
import { ROOT, run } from "./_util.ts";
import { WORKER_SOURCE } from "../worker_source.ts";
import { render } from "../tools/build_worker.ts";

const REBUILD = "rebuild it with `deno task worker` and commit it";

/** Run the staleness check of the checkout at `root` (this one unless told). */
function check(root = ROOT): ReturnType<typeof run> {
  return run("deno", [
    "run",
    "--no-prompt",
    `--allow-read=${root},/tmp`,
    "--allow-write=/tmp",
    "--allow-run=deno",
    `${root}tools/build_worker.ts`,
    "--check",
  ], { cwd: root });
}

/** A copy of what the bundle is built from (the modules worker.ts imports, the config, the builder and its LogTape stub) elsewhere. */
async function copyOfCheckout(): Promise<AsyncDisposable & { root: string }> {
  const root = `${await Deno.makeTempDir({ prefix: "healthsock-build-" })}/`;
  const info = await run("deno", ["info", "--json", "worker.ts"], { cwd: ROOT });
  assert.equal(info.code, 0, info.stderr);
  const local = (JSON.parse(info.stdout).modules as { specifier: string }[])
    .map(({ specifier }) => specifier)
    .filter((specifier) => specifier.startsWith(`file://${ROOT}`))
    .map((specifier) => specifier.slice(`file://${ROOT}`.length));
  for (
    const path of new Set([
      ...local,
      "worker_source.ts",
      "deno.json",
      "deno.lock",
      "tools/build_worker.ts",
      "tools/worker_logtape.ts",
    ])
  ) {
    const to = `${root}${path}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(`${ROOT}${path}`, to);
  }
  return { root, [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }) };
}

Deno.test("worker_source.ts is built from worker.ts and its imports as they are now", async () => {
  const out = await check();
  assert.equal(out.code, 0, `worker_source.ts is stale: ${REBUILD}\n${out.stderr}`);
});

Deno.test("the staleness check fails once a module the Worker imports changes, and says to run `deno task worker`", async () => {
  await using copy = await copyOfCheckout();
  assert.equal((await check(copy.root)).code, 0, "the copy starts up to date");
  await Deno.writeTextFile(`${copy.root}delay.ts`, "\n// changed\n", { append: true });
  const out = await check(copy.root);
  assert.equal(out.code, 1);
  assert.match(
    out.stderr,
    /^worker_source\.ts is stale: worker\.ts or a module it imports changed since it was bundled/,
  );
  assert.match(out.stderr, /Run `deno task worker` to rebuild it/);
});

Deno.test("the staleness check ignores how the bundle reads, so a Deno upgrade that bundles differently passes", async () => {
  await using copy = await copyOfCheckout();
  const path = `${copy.root}worker_source.ts`;
  const text = await Deno.readTextFile(path);
  assert.match(text, /^\/\/ Bundled by: Deno \d+\.\d+\.\d+/m);
  // Another bundler's output for the same sources: same header, different code.
  await Deno.writeTextFile(path, text.replace(/var /g, "let "));
  const out = await check(copy.root);
  assert.equal(out.code, 0, out.stderr);
});

Deno.test("the Worker's source imports nothing, so it needs no read permission", () => {
  assert.doesNotMatch(WORKER_SOURCE, /^\s*import\b|\bimport\s*\(|\brequire\(/m);
});

Deno.test("the Worker's bundle has no LogTape: its records go to the main thread as plain data", async () => {
  const source = await render();
  assert.ok(!source.includes("@logtape"), "no module of @logtape/logtape is bundled");
  assert.ok(source.includes("setLogSink"), "the Worker sets its own sink");
});
