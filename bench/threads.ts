/**
 * The bridge between the threads under native load: each thread's CPU (the
 * main thread, the Worker, the rest) of bench/host.ts serving an on-request
 * check (`onrequest`, `cacheTtl: 0`) or a cached one (`trivial`), while
 * bench/clients.c (compiled with `cc`, one thread per client, as fast as the
 * kernel allows) loops well-behaved clients or floods complete requests it
 * never reads, from its own process.
 *
 * Usage:
 * ```sh
 * deno run --no-prompt --allow-run=deno,cc,sh --allow-read=. --allow-write=/tmp bench/threads.ts \
 *   [--seconds S] [--rounds N] [ROOT/ ...]
 * ```
 * Each ROOT is a checkout whose bench/host.ts is run (default: this one), so
 * two checkouts (before and after a change) are compared in one run,
 * interleaved, every other round in reverse. Prints a markdown table: answers
 * a second, each thread's CPU in percent of a core, and the main thread's CPU
 * per answer.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { cpuSeconds, parseStat } from "./proc.ts";
import { permissionFlags } from "../paths.ts";

const HERE = new URL(".", import.meta.url).pathname;
const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { seconds: { type: "string", default: "5" }, rounds: { type: "string", default: "1" } },
});
const seconds = Number(values.seconds);
const roots = positionals.length ? positionals : [new URL("..", import.meta.url).pathname];

interface Load {
  name: string;
  /** Client threads reading their answers. */
  loop: number;
  /** Client threads sending complete requests they never read. */
  flood: number;
}

const LOADS: Load[] = [
  { name: "idle", loop: 0, flood: 0 },
  { name: "64 looping clients", loop: 64, flood: 0 },
  { name: "1,000 looping clients", loop: 1000, flood: 0 },
  { name: "2,000 never-read flooders + 1 looping client", loop: 1, flood: 2000 },
];

const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "healthsock-threads-" });
const clients = `${dir}/clients`;
const built = await new Deno.Command("cc", { args: ["-O2", "-pthread", "-o", clients, `${HERE}clients.c`] }).output();
if (!built.success) throw new Error(`Cannot compile bench/clients.c: ${new TextDecoder().decode(built.stderr)}`);

/** Each thread's CPU seconds, by thread id and name (through `sh` and `cat`: Deno reads /proc only with -A). */
async function threads(pid: number): Promise<Map<number, { name: string; cpu: number }>> {
  const out = new Map<number, { name: string; cpu: number }>();
  const read = await new Deno.Command("sh", { args: ["-c", `cat /proc/${pid}/task/*/stat 2>/dev/null`] }).output();
  for (const line of new TextDecoder().decode(read.stdout).split("\n")) {
    if (line === "") continue;
    const stat = parseStat(line);
    out.set(stat.pid, { name: stat.comm, cpu: cpuSeconds(stat) });
  }
  return out;
}

async function host(root: string, path: string, variant: string, thread: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--no-prompt",
      ...permissionFlags(path, { server: true }).split(" "),
      `${root}bench/host.ts`,
      path,
      variant,
      thread,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${root}bench/host.ts did not start`);
    text += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return child;
}

function run(path: string, count: number, read: boolean): Promise<number> {
  if (count === 0) return Promise.resolve(0);
  // Through sh: the compiled clients' path is a temporary one, which --allow-run cannot name in advance.
  return new Deno.Command("sh", {
    args: [
      "-c",
      'exec "$@"',
      "sh",
      clients,
      path,
      String(count),
      String(seconds),
      read ? "read" : "noread",
      "GET /readyz\n",
    ],
    stderr: "null",
  }).output().then((out) => Number(new TextDecoder().decode(out.stdout).trim()));
}

interface Row {
  root: string;
  variant: string;
  load: string;
  answered: number;
  main: number;
  worker: number;
  rest: number;
}
const rows: Row[] = [];
let n = 0;
for (let round = 0; round < Number(values.rounds); round++) {
  for (const load of LOADS) {
    for (const variant of ["onrequest", "trivial"]) {
      for (const root of round % 2 ? [...roots].reverse() : roots) {
        const path = `${dir}/${++n}.sock`;
        const child = await host(root, path, variant, "worker");
        try {
          await new Promise((resolve) => setTimeout(resolve, 300));
          const before = await threads(child.pid);
          const t0 = performance.now();
          const [answered] = await Promise.all([run(path, load.loop, true), run(path, load.flood, false)]);
          if (load.loop === 0 && load.flood === 0) await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
          const after = await threads(child.pid);
          const wall = (performance.now() - t0) / 1000;
          let main = 0, worker = 0, rest = 0;
          for (const [tid, { name, cpu }] of after) {
            const used = (cpu - (before.get(tid)?.cpu ?? 0)) / wall;
            if (tid === child.pid) main += used;
            else if (name.startsWith("worker-")) worker += used;
            else rest += used;
          }
          rows.push({ root, variant, load: load.name, answered: answered / wall, main, worker, rest });
        } finally {
          await child.stdin.close().catch(() => {});
          await child.status;
        }
      }
    }
  }
}
await Deno.remove(dir, { recursive: true });

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
console.log("| checkout | check | load | answers/s | main thread | Worker | other threads | main µs/answer |");
console.log("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
for (const row of rows) {
  // Under a flood the main thread's CPU is mostly the flood's, not the few answers': no figure per answer.
  const per = row.answered > 0 && !row.load.includes("flood") ? (row.main * 1e6 / row.answered).toFixed(1) : "–";
  console.log(
    `| ${row.root} | ${row.variant} | ${row.load} | ${row.answered.toFixed(0)} | ${pct(row.main)} | ${
      pct(row.worker)
    } | ${pct(row.rest)} | ${per} |`,
  );
}
