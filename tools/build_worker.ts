/**
 * Bundle worker.ts, and what it imports, into worker_source.ts: the Worker
 * that serves health beside the app is started from that text as a `blob:`
 * module, so it needs no read permission and is in every package and binary.
 *
 * `deno task worker` writes it; `--check` exits 1 when it is out of date.
 *
 * The bundle's header records a hash of what it is built from: the text of
 * every local module worker.ts imports (as `deno info --json worker.ts` lists
 * them), the npm packages they resolve to, this builder and the stub it
 * bundles in LogTape's place. `--check`
 * recomputes that hash without bundling, so a Deno upgrade that bundles the
 * same sources into different text does not make the bundle stale, while any
 * change to those sources does. The header names the Deno that bundled it.
 *
 * @module
 */
const root = new URL("../", import.meta.url);
const target = new URL("worker_source.ts", root);
const builder = new URL(import.meta.url);

/** The header line that records the inputs' hash; `--check` reads it back. */
const INPUTS = /^\/\/ Inputs: sha256 ([0-9a-f]{64})\b/m;

async function deno(args: string[]): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command("deno", {
    args,
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!success) throw new Error(`Cannot run "deno ${args.join(" ")}": ${decoder.decode(stderr)}`);
  return decoder.decode(stdout);
}

interface ModuleGraph {
  modules: { specifier: string; error?: string }[];
  npmPackages?: Record<string, unknown>;
}

/**
 * The hash of what the bundle is built from: each local module in worker.ts's graph (by its path and text), each
 * module from elsewhere and each npm package (by specifier and version), and this builder. worker_source.ts itself
 * is left out: it is the output, in the graph only through a dynamic import.
 */
export async function inputHash(): Promise<string> {
  const graph: ModuleGraph = JSON.parse(await deno(["info", "--json", "worker.ts"]));
  const parts: string[] = [];
  for (const module of graph.modules) {
    if (module.error) throw new Error(`Cannot read the Worker's module graph: ${module.error}`);
    if (module.specifier === target.href || module.specifier === builder.href) continue;
    if (module.specifier.startsWith(root.href)) {
      const path = module.specifier.slice(root.href.length);
      parts.push(`${path}\n${await Deno.readTextFile(new URL(module.specifier))}`);
    } else {
      parts.push(module.specifier);
    }
  }
  parts.push(...Object.keys(graph.npmPackages ?? {}).map((name) => `npm:${name}`));
  parts.sort();
  parts.push(`tools/build_worker.ts\n${await Deno.readTextFile(builder)}`);
  // What the bundle has instead of LogTape (see bundle()).
  parts.push(`tools/worker_logtape.ts\n${await Deno.readTextFile(new URL("tools/worker_logtape.ts", root))}`);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts.join("\0")));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function bundle(): Promise<string> {
  const out = await Deno.makeTempFile({ suffix: ".js" });
  // LogTape stays out of the Worker: log.ts reaches it only through the main thread's sink (see log.ts).
  const map = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const stub = new URL("tools/worker_logtape.ts", root).href;
    await Deno.writeTextFile(map, JSON.stringify({ imports: { "@logtape/logtape": stub } }));
    await deno([
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
    ]);
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

/** worker_source.ts as it is written now: a header with the inputs' hash and the bundler's version, and the bundle. */
export async function render(): Promise<string> {
  const inputs = await inputHash();
  const code = await bundle();
  const version = (await deno(["--version"])).match(/^deno (\S+)/)?.[1] ?? "unknown";
  return [
    "// Generated from worker.ts by `deno task worker` (tools/build_worker.ts): do not edit.",
    `// Inputs: sha256 ${inputs} (the local modules worker.ts imports, their npm packages, the builder)`,
    `// Bundled by: Deno ${version}`,
    "// deno-fmt-ignore-file",
    "// deno-lint-ignore-file",
    "",
    "/** The Worker that serves health beside the app: worker.ts and what it imports, in one module. */",
    `export const WORKER_SOURCE: string = ${JSON.stringify(code)};`,
    "",
  ].join("\n");
}

/** Why worker_source.ts is out of date, or `undefined` when it is built from the sources as they are. */
export async function staleness(): Promise<string | undefined> {
  const current = await Deno.readTextFile(target).catch(() => "");
  const recorded = current.match(INPUTS)?.[1];
  if (recorded === undefined) return "it records no hash of its inputs";
  const inputs = await inputHash();
  if (recorded !== inputs) {
    return `worker.ts or a module it imports changed since it was bundled (inputs sha256 ${inputs}, recorded ${recorded})`;
  }
  return undefined;
}

if (import.meta.main) {
  if (Deno.args.includes("--check")) {
    const reason = await staleness();
    if (reason !== undefined) {
      console.error(`worker_source.ts is stale: ${reason}. Run \`deno task worker\` to rebuild it, and commit it`);
      Deno.exit(1);
    }
  } else {
    await Deno.writeTextFile(target, await render());
  }
}
