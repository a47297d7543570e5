import assert from "node:assert/strict";
import { ROOT, run } from "./_util.ts";
import { WORKER_SOURCE } from "../worker_source.ts";
import { render } from "../tools/build_worker.ts";

Deno.test("worker_source.ts is worker.ts bundled as it is now (run `deno task worker` after a change)", async () => {
  const out = await run("deno", [
    "run",
    "--no-prompt",
    `--allow-read=${ROOT},/tmp`,
    "--allow-write=/tmp",
    "--allow-run=deno",
    `${ROOT}tools/build_worker.ts`,
    "--check",
  ], { cwd: ROOT });
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
