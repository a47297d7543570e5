// ARCHITECTURE.md's code map against the real module graph: every root module is listed, and each row's imports are
// exactly what `deno info` finds (runtime, type-only and dynamic imports told apart), so the map cannot drift.
import assert from "node:assert/strict";
import { ROOT } from "./_util.ts";

/** How a module reaches another: a runtime import, a type-only one, or a dynamic one. */
type Edge = "code" | "type" | "dynamic";

/** For each root module (by name without `.ts`), the root modules it imports and how. */
type Graph = Map<string, Map<string, Edge>>;

/** The module graph as the map needs it: root modules' imports, and which root modules load an npm package statically. */
interface Info {
  graph: Graph;
  npm: Map<string, string[]>;
}

const SUFFIX: Record<Edge, string> = { code: "", type: " (type)", dynamic: " (dynamic)" };

async function rootModules(): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(ROOT)) {
    if (entry.isFile && entry.name.endsWith(".ts")) names.push(entry.name.slice(0, -3));
  }
  return names.sort();
}

/** The graph `deno info --json` finds from an entry that imports every root module. */
async function realGraph(modules: string[]): Promise<Info> {
  const dir = await Deno.makeTempDir({ prefix: "healthsock-map-" });
  try {
    const entry = `${dir}/entry.ts`;
    await Deno.writeTextFile(entry, modules.map((m) => `import "${new URL(`${m}.ts`, `file://${ROOT}`)}";\n`).join(""));
    const { success, stdout, stderr } = await new Deno.Command("deno", {
      args: ["info", "--json", `--config=${ROOT}deno.json`, entry],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(success, new TextDecoder().decode(stderr));
    const info = JSON.parse(new TextDecoder().decode(stdout)) as {
      modules: {
        specifier: string;
        dependencies?: { code?: { specifier: string }; type?: { specifier: string }; isDynamic?: boolean }[];
      }[];
    };
    const rootUrl = `file://${ROOT}`;
    const nameOf = (specifier: string | undefined) => {
      if (!specifier?.startsWith(rootUrl)) return undefined;
      const rest = specifier.slice(rootUrl.length);
      return rest.includes("/") || !rest.endsWith(".ts") ? undefined : rest.slice(0, -3);
    };
    const graph: Graph = new Map();
    const npm = new Map<string, string[]>();
    for (const module of info.modules) {
      const from = nameOf(module.specifier);
      if (from === undefined) continue;
      const edges = new Map<string, Edge>();
      for (const dep of module.dependencies ?? []) {
        if (dep.code?.specifier.startsWith("npm:") && !dep.isDynamic) {
          npm.set(from, [...npm.get(from) ?? [], dep.code.specifier]);
        }
        const to = nameOf(dep.code?.specifier ?? dep.type?.specifier);
        if (to === undefined) continue;
        edges.set(to, dep.isDynamic ? "dynamic" : dep.code ? "code" : "type");
      }
      graph.set(from, edges);
    }
    return { graph, npm };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The code map's rows: module name → its "imports" cell, as written. */
async function mappedImports(): Promise<Map<string, string>> {
  const text = await Deno.readTextFile(`${ROOT}ARCHITECTURE.md`);
  const section = text.split("## Code map")[1]?.split("\n## ")[0];
  assert.ok(section, "ARCHITECTURE.md has a '## Code map' section");
  const rows = new Map<string, string>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim());
    const name = cells[1]?.match(/^`(\w+)\.ts`$/)?.[1];
    if (name) rows.set(name, cells[3]);
  }
  return rows;
}

/** A row's cell as the map writes it: `a`, `b` (type), `c` (dynamic), sorted by name; "none" when empty. */
function cellOf(edges: Map<string, Edge>): string {
  const names = [...edges.keys()].sort();
  return names.length ? names.map((name) => `\`${name}\`${SUFFIX[edges.get(name)!]}`).join(", ") : "none";
}

Deno.test("ARCHITECTURE.md's code map lists every root module and exactly what each imports", async () => {
  const modules = await rootModules();
  const [{ graph }, rows] = await Promise.all([realGraph(modules), mappedImports()]);
  assert.deepEqual([...rows.keys()].sort(), modules, "the code map lists every root module, and no other");
  const wrong: string[] = [];
  for (const name of modules) {
    const expected = cellOf(graph.get(name) ?? new Map());
    if (rows.get(name) !== expected) wrong.push(`${name}.ts: the map says "${rows.get(name)}", the code "${expected}"`);
  }
  assert.deepEqual(wrong, [], "each row's imports match the code (write them as shown)");
});

Deno.test("the root modules import each other without cycles, dynamic and type-only imports included", async () => {
  const { graph } = await realGraph(await rootModules());
  const cycles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const visit = (name: string, path: string[]) => {
    if (state.get(name) === "done") return;
    if (state.get(name) === "open") {
      cycles.push([...path.slice(path.indexOf(name)), name].join(" → "));
      return;
    }
    state.set(name, "open");
    for (const to of graph.get(name)?.keys() ?? []) visit(to, [...path, name]);
    state.set(name, "done");
  };
  for (const name of graph.keys()) visit(name, []);
  assert.deepEqual(cycles, []);
});

Deno.test("the probe path (main.ts's static imports) loads no npm package", async () => {
  const { graph, npm } = await realGraph(await rootModules());
  const loaded: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    for (const specifier of npm.get(name) ?? []) loaded.push(`${name}.ts loads ${specifier}`);
    for (const [to, edge] of graph.get(name) ?? []) if (edge === "code") visit(to);
  };
  visit("main");
  assert.deepEqual(loaded, []);
});
