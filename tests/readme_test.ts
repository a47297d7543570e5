// The README's examples, run as written: a newcomer copies them first.
import assert from "node:assert/strict";
import { probe, watch } from "../client.ts";
import { permissionFlags } from "../paths.ts";
import { ROOT, spawnDeno, tempSocket, waitForPath } from "./_util.ts";

/** The first ```ts block after `heading` in README.md. */
async function snippet(heading: string): Promise<string> {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const section = readme.slice(readme.indexOf(heading));
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(code, `README has a ts block after "${heading}"`);
  return code;
}

Deno.test("the README's library in ten lines serves a passing report as written", async () => {
  await using sock = await tempSocket();
  const code = (await snippet("## The library in ten lines"))
    .replaceAll('"@healthsock/healthsock"', JSON.stringify(`${ROOT}mod.ts`))
    .replaceAll("/tmp/app.sock", sock.path);
  // What the example leaves to the reader: a database whose ping resolves to something, and a start-up.
  const stubs = "const db = { ping: (_: { signal: AbortSignal }) => Promise.resolve({ ok: 1, ms: 0.4 }) };\n" +
    "const startUp = () => Promise.resolve();\n";
  const file = `${sock.dir}/app.ts`;
  await Deno.writeTextFile(file, stubs + code);
  await using app = spawnDeno([
    "run",
    "--no-prompt",
    "--config",
    `${ROOT}deno.json`,
    `--allow-read=${file}`,
    ...permissionFlags(sock.path, { server: true }).split(" "),
    file,
  ]);
  await waitForPath(sock.path);
  // Started (markReady has run) whatever the db check says: then its answer is the example's own.
  const stop = AbortSignal.timeout(20_000);
  for await (const report of watch(sock.path, { target: "/startupz", signal: stop, timeout: 20_000 })) {
    if (report.status === "pass") break;
  }
  assert.ok(!stop.aborted, "the example did not start within 20 s");
  const result = await probe(sock.path);
  assert.equal(result.status, "pass", result.body);
  assert.equal(result.report?.checks["db:responseTime"]?.[0].status, "pass", result.body);
  assert.ok(app.child.pid > 0);
});
