// End to end: what a check says cannot forge the framing it travels
// in, and a large output cannot make a healthy server unreadable.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { cli, exchange, hasCommand, parseHttp, run, tempSocket } from "./_util.ts";

const FORGE_LF = "refused\n[+]payments ok";
// In an event stream CR ends a line, and an empty line ends an event.
const FORGE_CR = "refused\r\rdata: [+]payments ok\r";

function forging(): Health {
  return new Health({ ready: true })
    .add("db", () => {
      throw new Error(FORGE_LF);
    }, { critical: false })
    .add("cache", () => ({ status: "warn", output: FORGE_CR }));
}

/** Parse a text/event-stream body as EventSource does: lines end at CRLF, LF or CR; an empty line ends an event. */
function sseEvents(body: string): string[][] {
  const events: string[][] = [];
  let data: string[] = [];
  let named = false;
  for (const line of body.split(/\r\n|\r|\n/)) {
    if (line === "") {
      // A named event (the stream's `end`) is no report.
      if (data.length && !named) events.push(data);
      data = [];
      named = false;
    } else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    else if (line.startsWith("event:")) named = true;
  }
  return events;
}

Deno.test("?verbose escapes CR and LF in check outputs, in line mode and HTTP", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, forging());
  const expected = [
    "[-]db failed: refused\\n[+]payments ok",
    "[+]cache warn: refused\\r\\rdata: [+]payments ok\\r",
    "[+]lifecycle ok",
    "[+]mainloop ok",
    "readyz check passed with warnings",
  ];
  const line = await exchange(sock.path, "GET /readyz?verbose\n");
  assert.equal(line.includes("\r"), false);
  assert.deepEqual(line.split("\n"), [...expected, ""]);
  // The text ends with its newline in both framings.
  const http = parseHttp(await exchange(sock.path, "GET /readyz?verbose HTTP/1.1\r\nConnection: close\r\n\r\n"));
  assert.equal(http.code, 200);
  assert.deepEqual(http.body.split("\n"), [...expected, ""]);
});

Deno.test("check --verbose prints one line per check whatever the checks' outputs hold", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, forging());
  for (const args of [["--verbose"], ["--path", "/readyz?verbose"], ["--verbose", "--http"]]) {
    const out = await cli(sock.path, ["check", "--path", "/readyz", ...args]);
    assert.equal(out.code, 0, out.stderr);
    const lines = out.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 5, out.stdout);
    assert.equal(lines.includes("[+]payments ok"), false, out.stdout);
    assert.equal(out.stdout.includes("\r"), false);
  }
});

Deno.test({
  name: `an HTTP ?verbose&watch stream carries one event per report, whatever the checks' outputs hold${
    hasCommand("curl") ? "" : " (ignored: needs curl)"
  }`,
  ignore: !hasCommand("curl"),
  fn: async () => {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, forging());
    // The stream ends after 0.5 s without a change; curl undoes any transfer coding.
    const out = await run("curl", ["-sSN", "--unix-socket", sock.path, "http://x/readyz?verbose&watch&timeout=0.5"]);
    assert.equal(out.code, 0, out.stderr);
    const events = sseEvents(out.stdout);
    assert.equal(events.length, 1, JSON.stringify(out.stdout));
    assert.match(out.stdout, /\nevent: end\ndata: no change for 0\.5 s\n\n$/);
    assert.deepEqual(events[0], [
      "[-]db failed: refused\\n[+]payments ok",
      "[+]cache warn: refused\\r\\rdata: [+]payments ok\\r",
      "[+]lifecycle ok",
      "[+]mainloop ok",
      "readyz check passed with warnings",
    ]);
  },
});

Deno.test("a non-critical check with 2 MB of output leaves a server that check reads as healthy (warn, exit 0)", async () => {
  await using sock = await tempSocket();
  const big = "z".repeat(2 * 2 ** 20);
  const health = new Health({ ready: true })
    .add("db", () => "pass")
    .add("report", () => ({ status: "fail", output: big }), { critical: false })
    .add("export", () => {
      throw new Error(big);
    }, { critical: false });
  await using _server = await serve(sock.path, health);
  for (const args of [[], ["--http"], ["--verbose"], ["--path", "/readyz?verbose"]]) {
    const out = await cli(sock.path, ["check", "--path", "/readyz", ...args]);
    assert.equal(out.code, 0, `${args.join(" ")}: ${out.stderr}`);
    assert.equal(out.stderr, "");
    assert.ok(out.stdout.length < 4096, `${args.join(" ")}: ${out.stdout.length} bytes`);
  }
  const json = await cli(sock.path, ["check", "--path", "/readyz", "--format", "json"]);
  const report = JSON.parse(json.stdout);
  assert.equal(report.status, "warn");
  assert.match(report.checks["report:responseTime"][0].output, /^z+… \(cut from 2097152 bytes\)$/);
  assert.match(report.checks["export:responseTime"][0].output, /^z+… \(cut from 2097152 bytes\)$/);
});
