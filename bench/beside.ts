/**
 * Serving beside the app, what it gains and costs, both modes side by side:
 * probe latency (curl, p50/p99/max) against an app whose main thread blocks
 * 1.5 s of every 2 s, and the idle resident memory and start-up of the same
 * app not blocking. The app is tests/fixtures/busy_app.ts.
 *
 * `deno run --allow-run=deno,curl,cat --allow-read=/tmp --allow-write=/tmp bench/beside.ts [--seconds S]`
 *
 * @module
 */
import { permissionFlags } from "../paths.ts";

const APP = new URL("../tests/fixtures/busy_app.ts", import.meta.url).pathname;
const seconds = Number(Deno.args[Deno.args.indexOf("--seconds") + 1] || 20);
const decoder = new TextDecoder();

interface App {
  child: Deno.ChildProcess;
  path: string;
  startMs: number;
  stop(): Promise<void>;
}

async function startApp(thread: string, args: string[]): Promise<App> {
  const dir = await Deno.makeTempDir({ prefix: "healthsock-beside-" });
  const path = `${dir}/app.sock`;
  const started = performance.now();
  const child = new Deno.Command("deno", {
    args: ["run", "--no-prompt", ...permissionFlags(path, true).split(" "), APP, path, "--thread", thread, ...args],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  await lines.read();
  const startMs = performance.now() - started;
  return {
    child,
    path,
    startMs,
    async stop() {
      child.kill("SIGKILL");
      await child.status;
      await lines.cancel();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function curl(path: string, target: string): Promise<{ code: string; ms: number }> {
  const { stdout } = await new Deno.Command("curl", {
    args: [
      "-s",
      "--max-time",
      "5",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code} %{time_total}",
      "--unix-socket",
      path,
      `http://x${target}`,
    ],
    stdout: "piped",
  }).output();
  const [code, total] = decoder.decode(stdout).split(" ");
  return { code, ms: Number(total) * 1000 };
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

console.log("| mode | probes | /livez codes | /readyz codes | p50 ms | p99 ms | max ms | idle RSS MiB | start ms |");
console.log("|---|---|---|---|---|---|---|---|---|");
for (const thread of ["worker", "main"]) {
  const idle = await startApp(thread, []);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  // Deno asks for --allow-all to read /proc; cat needs only --allow-run=cat.
  const { stdout } = await new Deno.Command("cat", { args: [`/proc/${idle.child.pid}/status`], stdout: "piped" })
    .output();
  const status = decoder.decode(stdout);
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024;
  await idle.stop();
  const app = await startApp(thread, ["--block", "1500", "--every", "2000"]);
  const times: number[] = [];
  const codes: Record<string, Record<string, number>> = { "/livez": {}, "/readyz": {} };
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (const target of ["/livez", "/readyz"]) {
      const { code, ms } = await curl(app.path, target);
      times.push(ms);
      codes[target][code] = (codes[target][code] ?? 0) + 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await app.stop();
  const show = (counts: Record<string, number>) => Object.entries(counts).map(([c, n]) => `${c}×${n}`).join(" ");
  console.log(
    `| ${thread} | ${times.length} | ${show(codes["/livez"])} | ${show(codes["/readyz"])} | ${
      quantile(times, 0.5).toFixed(1)
    } | ${quantile(times, 0.99).toFixed(1)} | ${Math.max(...times).toFixed(1)} | ${rss.toFixed(1)} | ${
      idle.startMs.toFixed(0)
    } |`,
  );
}
