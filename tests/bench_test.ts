// The benchmark harness: its /proc parsing and statistics, and a very short
// run of `deno task bench` with the task's own permissions. No timing is asserted.
import assert from "node:assert/strict";
import { median, parseCpuList, parseStat, parseStatus, percentile } from "../bench/proc.ts";
import { BEGIN, END } from "../bench/markers.ts";
import { hasCommand, ROOT, run, TASKS } from "./_util.ts";

// A stat line whose command name holds a space and a parenthesis, as `comm` may.
const STAT = "4242 (deno (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 " +
  "1500 320 0 0 20 0 7 0 123456 987654321 11264 18446744073709551615 1 1 0 0 0 0 0 4096 17925 0 0 0 17 1 0 0 0 0 0";

const STATUS = `Name:\tdeno
Umask:\t0022
State:\tS (sleeping)
Pid:\t4242
VmPeak:\t 3361468 kB
VmHWM:\t   52224 kB
VmRSS:\t   45056 kB
Threads:\t7
Cpus_allowed:\t3
Cpus_allowed_list:\t0-1,4,6-7
`;

Deno.test("parseStat reads the fields after a command name with spaces and parentheses", () => {
  const stat = parseStat(STAT);
  assert.equal(stat.pid, 4242);
  assert.equal(stat.comm, "deno (x) y");
  assert.equal(stat.state, "S");
  assert.equal(stat.utime, 1500);
  assert.equal(stat.stime, 320);
  assert.equal(stat.threads, 7);
  assert.equal(stat.rssPages, 11264);
});

Deno.test("parseStat refuses text that is not a stat line", () => {
  assert.throws(() => parseStat("Name:\tdeno\n"), SyntaxError);
  assert.throws(() => parseStat("12 (short) S 1 2 3"), SyntaxError);
  assert.throws(() => parseStat(STAT.replace(" 1500 ", " x ")), SyntaxError);
});

Deno.test("parseStatus reads resident memory, its peak and the allowed CPUs", () => {
  const status = parseStatus(STATUS);
  assert.equal(status.rss, 45056 * 1024);
  assert.equal(status.peakRss, 52224 * 1024);
  assert.deepEqual(status.cpus, [0, 1, 4, 6, 7]);
  assert.throws(() => parseStatus("Name:\tzombie\nState:\tZ (zombie)\n"), SyntaxError);
});

Deno.test("parseCpuList expands ranges and single CPUs in order", () => {
  assert.deepEqual(parseCpuList("0"), [0]);
  assert.deepEqual(parseCpuList("8,0-2\n"), [0, 1, 2, 8]);
  assert.throws(() => parseCpuList("0-a"), SyntaxError);
});

Deno.test("percentile interpolates between ranks and median takes any order", () => {
  assert.equal(percentile([1, 2, 3, 4], 50), 2.5);
  assert.equal(percentile([10, 20, 30, 40, 50], 0), 10);
  assert.equal(percentile([10, 20, 30, 40, 50], 100), 50);
  assert.equal(percentile([10, 20, 30, 40, 50], 90), 46);
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.equal(median([5, 1, 3]), 3);
});

Deno.test({
  name: "parseStat and parseStatus read a live process's own /proc files",
  ignore: !hasCommand("node"),
  async fn() {
    // Deno reads /proc only with --allow-all, so a Node child prints its own files.
    const script = "const fs = require('fs');" +
      "process.stdout.write(fs.readFileSync('/proc/self/stat') + '\\0' + fs.readFileSync('/proc/self/status') + '\\0' + process.pid)";
    const { code, stdout } = await run("node", ["-e", script]);
    assert.equal(code, 0);
    const [statText, statusText, pid] = stdout.split("\0");
    const stat = parseStat(statText);
    const status = parseStatus(statusText);
    assert.equal(stat.pid, Number(pid));
    assert.equal(stat.comm, "node");
    assert.ok(stat.threads >= 1);
    assert.ok(stat.utime + stat.stime >= 0);
    assert.ok(status.rss > 1 << 20, `VmRSS ${status.rss} is implausibly small`);
    assert.ok(status.peakRss >= status.rss);
    assert.ok(status.cpus.length >= 1);
    // stat's RSS (pages) and status's VmRSS describe the same memory, read a moment apart.
    const pages = status.rss / 4096;
    assert.ok(Math.abs(stat.rssPages - pages) / pages < 0.5, `${stat.rssPages} pages vs ${pages}`);
  },
});

Deno.test({
  name: "bench --quick runs every part with the task's permissions and writes its report, chart and figures",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "healthsock-bench-test-" });
    try {
      // The bench task's own flags, writing into the temporary directory instead of bench/.
      const task = TASKS.bench;
      const [deno, subcommand, ...rest] = task.split(" ");
      assert.deepEqual([deno, subcommand], ["deno", "run"]);
      assert.ok(!rest.includes("-A") && !rest.includes("--allow-all"), "the bench task must not use -A");
      // Its own lockfile (bench/deno.lock) keeps echarts out of the one the demo and the library use.
      assert.ok(rest.includes("--lock=bench/deno.lock"), "the bench task uses bench/deno.lock");
      const flags = rest.filter((arg) => arg.startsWith("--")).map((arg) =>
        arg.startsWith("--allow-write=")
          ? "--allow-write=/tmp"
          : arg.startsWith("--allow-read=")
          ? `--allow-read=${dir}/RESULTS.md`
          : arg.replace(/^--lock=/, `--lock=${ROOT}`)
      );
      const json = `${dir}/results.json`;
      // A report written by hand around the generated part, which the run must keep.
      const handWritten = "## Notes written by hand\n\nKept as they are.\n";
      await Deno.writeTextFile(`${dir}/RESULTS.md`, `# Results\n\n${BEGIN}\n\nold figures\n\n${END}\n\n${handWritten}`);
      const { code, stdout, stderr } = await run(
        "deno",
        ["run", ...flags, `${ROOT}bench/run.ts`, "--quick", "--out", dir, "--json", json],
        { env: { NO_COLOR: "1" } },
      );
      assert.equal(code, 0, stderr);
      assert.match(stderr, /^\[ ?1\/\d+\] .+ · about \S+ left$/m, "progress lines");
      assert.match(stdout, /^## Targets$/m);
      const report = await Deno.readTextFile(`${dir}/RESULTS.md`);
      assert.ok(report.startsWith(`# Results\n\n${BEGIN}\n\n`), "what precedes the markers is kept");
      assert.ok(report.endsWith(`${END}\n\n${handWritten}`), "what follows the markers is kept");
      assert.ok(!report.includes("old figures"), "the generated part is replaced");
      assert.ok(report.includes(stdout.trimEnd()), "the file holds the report printed");
      assert.match(report, /Deno \d+\.\d+\.\d+/);
      const svg = await Deno.readTextFile(`${dir}/chart.svg`);
      assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      assert.match(svg, /healthsock serve\(\)/);

      const results = JSON.parse(await Deno.readTextFile(json));
      assert.equal(results.load.length, 18);
      // Both modes were measured: the Worker (the default) and the main thread.
      for (const kind of ["healthsock", "healthsock-main"]) {
        assert.ok(results.load.some((row: { kind: string }) => row.kind === kind), kind);
      }
      for (const row of results.load) {
        assert.ok(row.requests > 0, `${row.label} · ${row.server}: no requests`);
        assert.equal(row.errors, 0, `${row.label} · ${row.server}: errors`);
        // CPU time came from /proc/PID/stat of the server: positive, and at most a few cores' worth.
        assert.ok(row.cpuPerRequestUs > 0, `${row.label} · ${row.server}: no server CPU read`);
        assert.ok(row.serverUtil > 0 && row.serverUtil < 4, `${row.label} · ${row.server}: CPU ${row.serverUtil}`);
      }
      for (const idle of results.idle) assert.ok(idle.rssMiB > 5, `${idle.variant}: VmRSS ${idle.rssMiB} MiB`);
      assert.ok(results.growth.samplesMiB.length > 0);
      assert.ok(results.growth.requests > 0);
      for (const probe of results.probes) {
        const tool = probe.command.split(" ")[0];
        if (tool === "deno" || hasCommand(tool)) assert.equal(probe.failures, 0, `${probe.name} failed`);
      }
      assert.equal(results.isolation.length, 4);
      // Beside the app: probes of a blocking app, event-loop delay and start-up, in both modes.
      assert.deepEqual(results.blocked.map((b: { thread: string }) => b.thread), ["worker", "main"]);
      for (const b of results.blocked) assert.ok(b.sent > 0 && b.livez && b.readyz, `${b.thread}: probes`);
      assert.equal(results.lag.length, 4);
      for (const lag of results.lag) assert.ok(Number.isFinite(lag.p99), `${lag.thread}: event-loop delay`);
      assert.deepEqual(
        results.startup.map((s: { id: string }) => s.id),
        ["imported", "worker", "main", "floor", "floor-worker"],
        "start-up of the host and of the floor, in both modes",
      );
      for (const s of results.startup) assert.ok(s.spawnMs > 0 && s.serveMs > 0, `${s.id}: start-up`);
      // Memory under churn: healthsock in both modes (and with the Memory section's V8 flag) and the Deno.listen floor.
      assert.deepEqual(results.churn.map((row: { id: string }) => row.id), ["worker", "main", "worker-small", "floor"]);
      for (const row of results.churn) {
        for (const kind of ["watch", "complete"]) {
          const run = row[kind];
          assert.ok(run.cycles > 0 && run.idleMiB > 5 && run.peakMiB >= run.idleMiB, `${row.id} · ${kind}`);
        }
        assert.ok(row.hold.held > 0 && row.hold.heldMiB > 5, `${row.id} · idle connections held`);
      }
      assert.equal(results.targets.length, 27);
      for (const mode of ["Worker", "main thread"]) {
        assert.ok(
          results.targets.some((t: { target: string }) =>
            t.target.startsWith(`${mode}: serve() over the floor's start`)
          ),
          `${mode}: serve() against its floor`,
        );
      }

      // The four floors the goals compare with were measured in the same run.
      assert.ok(results.load.some((row: { kind: string }) => row.kind === "floor"), "the Deno.listen floor");
      assert.ok(results.load.some((row: { kind: string }) => row.kind === "deno-serve"), "Deno.serve");
      assert.ok(results.probes.some((probe: { name: string }) => probe.name === "Deno probe floor"));
      assert.ok(results.idle.some((idle: { id: string }) => idle.id === "floor"), "the memory floor");
      assert.ok(results.idle.some((idle: { id: string }) => idle.id === "floor-worker"), "the Worker's memory floor");
      for (const target of results.targets) {
        assert.match(target.goal, /^≤ /, `${target.target}: a goal`);
        assert.equal(typeof target.met, "boolean");
        // deno fmt pads the table's cells: goal and verdict sit side by side in the report.
        const cells = [target.goal, target.met ? "met" : "**missed**"].map((cell) =>
          cell.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
        );
        assert.match(report, new RegExp(`\\| ${cells[0]} +\\| ${cells[1]} +\\|`), target.target);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
