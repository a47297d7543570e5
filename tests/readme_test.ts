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
    ...permissionFlags(sock.path, true).split(" "),
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

/** Run a README block of "The health model" as a program: its stdout, after it exits 0. */
async function runModelSnippet(heading: string, flags: string[] = [], env?: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/example.ts`;
    const code = (await snippet(heading)).replaceAll('"@healthsock/healthsock"', JSON.stringify(`${ROOT}mod.ts`));
    await Deno.writeTextFile(file, code);
    const out = await new Deno.Command("deno", {
      args: ["run", "--no-prompt", "--config", `${ROOT}deno.json`, `--allow-read=${file}`, ...flags, file],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    return new TextDecoder().decode(out.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the README's thresholds example prints two warnings, then the failure, as written", async () => {
  assert.equal(
    await runModelSnippet("### Thresholds: one failed run is a blip"),
    "warn: failed 1 of 3 runs in a row: check returned false\n" +
      "warn: failed 2 of 3 runs in a row: check returned false\n" +
      "fail: check returned false\n",
  );
});

Deno.test("the README's change events example pushes each change to a webhook, as written", async () => {
  const received: unknown[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    received.push(await request.json());
    return new Response(null, { status: 204 });
  });
  const address = `127.0.0.1:${server.addr.port}`;
  await runModelSnippet("### Pushing changes somewhere", [`--allow-net=${address}`, "--allow-env=HEALTH_WEBHOOK"], {
    HEALTH_WEBHOOK: `http://${address}/health-events`,
  });
  assert.deepEqual(received, [
    { name: "lifecycle", previous: "starting", current: "ready" },
    { name: "db", current: "fail", output: "check returned false" },
  ]);
});

Deno.test("the README's markNotReady example prints the reason, then pass, as written", async () => {
  assert.equal(
    await runModelSnippet("### Not ready for a while"),
    "not ready: database connection lost\npass\n",
  );
});

Deno.test("the README's tags and service fields example prints what it says, as written", async () => {
  assert.equal(
    await runModelSnippet("### Tags and service fields"),
    "1 1.4.2 s3:responseTime mail:responseTime lifecycle:state\n",
  );
});

Deno.test("the README's progress example passes while it beats, as written", async () => {
  assert.equal(await runModelSnippet("### A progress check"), "pass number ms\n");
});
