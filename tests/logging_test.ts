// The CLI's log on stderr: one line a record, whatever a request or a check
// puts in it, as text (control characters escaped) or as JSON objects.
import assert from "node:assert/strict";
import { configure, getLogger, reset } from "@logtape/logtape";
import { messageParts } from "../log.ts";
import { probe } from "../client.ts";
import { delay } from "../delay.ts";
import { permissionFlags } from "../paths.ts";
import { cli, readUntil, ROOT, spawnDemo, spawnDeno, tempSocket, untilReady, writeAll } from "./_util.ts";
import type { DemoProcess } from "./_util.ts";

// deno-lint-ignore no-control-regex -- finding control characters is the point
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/;
const TEXT_LINE = /^\d\d:\d\d:\d\d\.\d{3} \[(TRC|DBG|INF|WRN|ERR|FTL)\] healthsock·\w+: /;
const HOSTILE = "GET /healthz\x1b[31m\x07\r?x=\x1b]0;owned\x07 HTTP/1.1\r\n\r\n";

/** Send raw bytes and read until the server closes or answers. */
async function send(path: string, request: string): Promise<void> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await writeAll(conn, new TextEncoder().encode(request));
    await conn.read(new Uint8Array(4096));
  } finally {
    conn.close();
  }
}

/** Everything left on the log once the process has exited. */
async function rest(demo: DemoProcess): Promise<string> {
  let text = "";
  for (;;) {
    const { value, done } = await demo.log.read();
    if (done) return text;
    text += value;
  }
}

function spawnLogHost(path: string, format: "text" | "json"): DemoProcess {
  return spawnDeno([
    "run",
    "--no-prompt",
    ...permissionFlags(path, { server: true }).split(" "),
    `${ROOT}tests/fixtures/log_host.ts`,
    path,
    format,
  ]);
}

Deno.test("requests logged at debug level reach stderr with ESC, BEL and CR escaped", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, ["--poll-interval", "0", "--ready-after", "0", "--log-level", "debug"]);
  await readUntil(demo.log, /Serving health on/);
  await send(sock.path, HOSTILE);
  const { line } = await readUntil(demo.log, /Server got/);
  assert.doesNotMatch(line, CONTROL);
  assert.match(
    line,
    /^\d\d:\d\d:\d\d\.\d{3} \[DBG\] healthsock·server: Server got: GET \/healthz\\u001b\[31m\\u0007\\r/,
  );
  demo.child.kill("SIGTERM");
  const after = await rest(demo);
  assert.doesNotMatch(after.replaceAll("\n", ""), CONTROL);
});

Deno.test("a check's output with a newline cannot forge a text log line", async () => {
  await using sock = await tempSocket();
  await using host = spawnLogHost(sock.path, "text");
  await readUntil(host.log, /Serving health on/);
  await send(sock.path, "GET /healthz\n");
  const { line } = await readUntil(host.log, /Check \W*forger\W* is/);
  assert.equal(
    line.replace(TEXT_LINE, ""),
    'Check forger is fail: no\\n00:00:00.000 [INF] healthsock·server: Serving health on "/forged"\\r\\u001b[2J\\u0007' +
      "\\u009b31m\\u2028end",
  );
  host.child.kill("SIGTERM");
  const lines = (await rest(host)).split("\n").filter(Boolean);
  for (const each of lines) {
    assert.match(each, TEXT_LINE);
    assert.doesNotMatch(each, CONTROL);
  }
  assert.equal(lines.filter((each) => each.includes("/forged")).length, 0);
});

Deno.test("JSON log lines carry a check's hostile output as a value, one object a line", async () => {
  await using sock = await tempSocket();
  await using host = spawnLogHost(sock.path, "json");
  await readUntil(host.log, /Serving health on/);
  await send(sock.path, HOSTILE);
  await send(sock.path, "GET /healthz\n");
  const { line, seen } = await readUntil(host.log, /Check \W*forger\W* is/);
  assert.doesNotMatch(line, CONTROL);
  const record = JSON.parse(line);
  assert.match(record.message, /^Check forger is fail: no\n00:00:00.000 \[INF\]/);
  assert.equal(record.properties.name, "forger");
  host.child.kill("SIGTERM");
  const lines = [...seen, ...(await rest(host)).split("\n")].filter(Boolean);
  const got = lines.map((each) => JSON.parse(each)).find((each) => String(each.message).startsWith("Server got"));
  assert.equal(got?.properties.request, "GET /healthz\x1b[31m\x07\r?x=\x1b]0;owned\x07 HTTP/1.1");
  for (const each of lines) assert.doesNotMatch(each, CONTROL);
});

Deno.test("with --log-format json every line the demo writes to stderr is a JSON object", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, [
    "--log-format",
    "json",
    "--poll-interval",
    "0",
    "--ready-after",
    "0",
    "--stall-after",
    "0",
    "--unhealthy-after",
    "100ms",
    "--drain-delay",
    "60s",
  ]);
  await readUntil(demo.log, /Serving health on/);
  await untilReady(sock.path);
  await send(sock.path, HOSTILE);
  // The stalled worker's ticker fails with a reason once 100 ms have passed without a tick: ask until it does
  // (a first answer may come sooner, and is then cached for a second).
  for (let i = 0; i < 100; i++) {
    if ((await probe(sock.path, { target: "/livez" })).status === "fail") break;
    await delay(100, AbortSignal.timeout(1000));
  }
  const { seen } = await readUntil(demo.log, /Check \W*ticker\W* is \W*fail/);
  demo.child.kill("SIGTERM");
  seen.push(...(await readUntil(demo.log, /draining/i)).seen);
  // A second signal more than 500 ms after the first stops at once.
  await new Promise((resolve) => setTimeout(resolve, 700));
  demo.child.kill("SIGTERM");
  const lines = [...seen, ...(await rest(demo)).split("\n")].filter(Boolean);
  const records = lines.map((line) => {
    assert.doesNotMatch(line, CONTROL);
    return JSON.parse(line);
  });
  for (const record of records) {
    assert.equal(typeof record.message, "string");
    assert.ok(String(record.logger).startsWith("healthsock"), record.logger);
    // Values read as text: no quotes of their own, no empty reason.
    assert.doesNotMatch(record.message, /""|"pass"|"fail"|"ticker"/, record.message);
  }
  const messages = records.map((record) => record.message as string);
  assert.ok(messages.some((m) => /^Check ticker is fail: no tick for [\d.]+ (ms|s)$/.test(m)), messages.join("\n"));
  assert.ok(messages.some((m) => /^Check \w+ is pass$/.test(m)), messages.join("\n"));
  assert.ok(messages.includes(`Draining "${sock.path}" (signal again to stop now)`), messages.join("\n"));
  assert.ok(messages.includes(`Stopping "${sock.path}" now`), messages.join("\n"));
  assert.equal((await demo.child.status).code, 0);
});

Deno.test("with --log-format json, check's exit line is one JSON object", async () => {
  await using sock = await tempSocket();
  const out = await cli(sock.path, ["check", "--log-format", "json"]);
  assert.equal(out.code, 3);
  const lines = out.stderr.trim().split("\n");
  assert.equal(lines.length, 1, out.stderr);
  const record = JSON.parse(lines[0]);
  assert.equal(record.level, "ERROR");
  assert.equal(record.logger, "healthsock.cli");
  assert.equal(record.properties.exitCode, 3);
  assert.match(record.message, new RegExp(`"${sock.path}"`));
});

function spawnBusyApp(path: string, args: string[]): DemoProcess {
  return spawnDeno([
    "run",
    "--no-prompt",
    ...permissionFlags(path, { server: true }).split(" "),
    `${ROOT}tests/fixtures/busy_app.ts`,
    path,
    ...args,
  ]);
}

Deno.test("with --log-format json, a wedged main thread's Worker writes its own lines as JSON objects", async () => {
  await using sock = await tempSocket();
  await using app = spawnBusyApp(sock.path, ["--wedge", "--live-limit", "2000", "--log", "json"]);
  // Nothing the main thread could relay: it never turns again once wedged.
  const { line, seen } = await readUntil(app.log, /\/livez fails/, 20_000);
  const records = seen.map((each) => {
    assert.doesNotMatch(each, CONTROL);
    return JSON.parse(each);
  });
  const last = JSON.parse(line);
  assert.equal(last.level, "ERROR");
  assert.equal(last.logger, "healthsock.server");
  assert.match(last.message, /^The main thread's event loop is blocked \(\d+ ms so far\): \/livez fails on /);
  assert.equal(last.properties.path, sock.path);
  assert.equal(last.properties.limit, 2000);
  const ready = records.filter((record) => /\/readyz fails/.test(record.message));
  assert.equal(ready.length, 1, seen.join("\n"));
  assert.equal(ready[0].level, "WARN");
});

Deno.test("the Worker renders a message template as LogTape does", async () => {
  const templates: [string, Record<string, unknown>][] = [
    ["Serving health on {path} (mode {mode})", { path: "/tmp/a b.sock", mode: "0600" }],
    ["{{literal}} and {name}}} at {n} {missing} { spaced }", { name: "x", n: 3, spaced: [1, 2] }],
    ["no braces }} here", {}],
    ["unclosed {brace", { brace: 1 }],
    ["", {}],
  ];
  const got: unknown[][] = [];
  await configure({
    sinks: { memory: (record) => got.push([...record.message]) },
    loggers: [
      { category: ["healthsock"], lowestLevel: "trace", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  try {
    for (const [template, properties] of templates) getLogger(["healthsock", "test"]).info(template, properties);
  } finally {
    await reset();
  }
  assert.deepEqual(templates.map(([template, properties]) => messageParts(template, properties)), got);
});

Deno.test("records the Worker logs while the main thread is blocked are written once each", async () => {
  await using sock = await tempSocket();
  await using app = spawnBusyApp(sock.path, ["--block", "1500", "--every", "3000", "--log", "text", "--debug"]);
  // Ask while a block is under way: the Worker says so, by itself.
  await readUntil(app.log, /event loop is blocked/, 20_000);
  const targets = ["/livez", "/readyz/app", "/healthz", "/healthz/app", "/startupz"];
  for (const target of targets) await probe(sock.path, { target });
  const seen = (await readUntil(app.log, /event loop turns again/, 20_000)).seen;
  // Records of the next block come after every record of this one is written.
  seen.push(...(await readUntil(app.log, /event loop is blocked/, 20_000)).seen);
  for (const target of targets) {
    const lines = seen.filter((each) => each.endsWith(`Server got: GET ${target}`));
    assert.equal(lines.length, 1, seen.join("\n"));
    assert.match(lines[0], TEXT_LINE);
  }
});
