/**
 * Bundle worker.ts, and what it imports, into worker_source.ts: the Worker
 * that serves health beside the app is started from that text as a `blob:`
 * module, so it needs no read permission and is in every package and binary.
 *
 * `deno task worker` writes it; `--check` exits 1 when it is out of date.
 *
 * @module
 */
const root = new URL("../", import.meta.url);
const target = new URL("worker_source.ts", root);

async function bundle(): Promise<string> {
  const out = await Deno.makeTempFile({ suffix: ".js" });
  // LogTape stays out of the Worker: log.ts reaches it only through the main thread's sink (see log.ts).
  const map = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const stub = new URL("tools/worker_logtape.ts", root).href;
    await Deno.writeTextFile(map, JSON.stringify({ imports: { "@logtape/logtape": stub } }));
    const { success, stderr } = await new Deno.Command("deno", {
      args: [
        "bundle",
        "--quiet",
        "--platform",
        "browser",
        "--format",
        "esm",
        "--import-map",
        map,
        "-o",
        out,
        "worker.ts",
      ],
      cwd: root,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!success) throw new Error(`Cannot bundle worker.ts: ${new TextDecoder().decode(stderr)}`);
    const code = await Deno.readTextFile(out);
    // The bundler names each module's path in a comment, and an npm module's path relative to this checkout in
    // its lazy initialiser's key: both depend on where the checkout and the npm cache are, so neither may stay.
    return code.split("\n").filter((line) => !/^\/\/ .*\.(js|ts|mjs)$/.test(line)).join("\n")
      .replace(/"[^"\n]*\/registry\.npmjs\.org\//g, '"npm:');
  } finally {
    await Deno.remove(out);
    await Deno.remove(map);
  }
}

export async function render(): Promise<string> {
  const code = await bundle();
  return [
    "// Generated from worker.ts by `deno task worker` (tools/build_worker.ts): do not edit.",
    "// deno-fmt-ignore-file",
    "// deno-lint-ignore-file",
    "",
    "/** The Worker that serves health beside the app: worker.ts and what it imports, in one module. */",
    `export const WORKER_SOURCE: string = ${JSON.stringify(code)};`,
    "",
  ].join("\n");
}

if (import.meta.main) {
  const text = await render();
  if (Deno.args.includes("--check")) {
    const current = await Deno.readTextFile(target).catch(() => "");
    if (current !== text) {
      console.error("worker_source.ts is out of date: run `deno task worker`");
      Deno.exit(1);
    }
  } else {
    await Deno.writeTextFile(target, text);
  }
}
