// The server as real clients see it: socat, curl, nc and Node's http module.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { hasCommand, run, tempSocket } from "./_util.ts";

const HAS = {
  socat: hasCommand("socat"),
  curl: hasCommand("curl"),
  nc: hasCommand("nc"),
  node: hasCommand("node"),
};

function demoHealth(): Health {
  return new Health({ ready: true })
    .add("ticker", () => ({ status: "pass", observedValue: 49, observedUnit: "ticks" }), {
      kinds: ["live"],
      measurement: "ticks",
    })
    .add("db", () => "pass");
}

Deno.test({
  name: `socat gets the report in line mode, as the README shows${
    HAS.socat ? "" : " (ignored: socat is not installed)"
  }`,
  ignore: !HAS.socat,
  async fn() {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, demoHealth());
    // What `socat - UNIX-CONNECT:/tmp/app.sock <<< "GET /healthz"` sends.
    const out = await run("socat", ["-", `UNIX-CONNECT:${sock.path}`], { stdin: "GET /healthz\n" });
    assert.equal(out.code, 0, out.stderr);
    const report = JSON.parse(out.stdout);
    assert.equal(report.status, "pass");
    assert.equal(report.checks["ticker:ticks"][0].observedValue, 49);
    const verbose = await run("socat", ["-", `UNIX-CONNECT:${sock.path}`], { stdin: "GET /livez?verbose\n" });
    assert.equal(verbose.stdout, "[+]ticker ok\n[+]lifecycle ok\n[+]mainloop ok\nlivez check passed\n");
  },
});

Deno.test({
  name: `socat sending the seed's unterminated line still gets an answer${
    HAS.socat ? "" : " (ignored: socat is not installed)"
  }`,
  ignore: !HAS.socat,
  async fn() {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, demoHealth());
    // -t 5: after stdin's EOF socat half-closes and waits up to 5 s for the answer.
    const out = await run("socat", ["-t", "5", "-", `UNIX-CONNECT:${sock.path}`], { stdin: "GET /healthz" });
    assert.equal(JSON.parse(out.stdout).status, "pass");
  },
});

Deno.test({
  name: `curl --unix-socket gets the report over HTTP with its headers${
    HAS.curl ? "" : " (ignored: curl is not installed)"
  }`,
  ignore: !HAS.curl,
  async fn() {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, demoHealth());
    const out = await run("curl", ["-sS", "-i", "--unix-socket", sock.path, "http://localhost/healthz"]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(out.stdout, /\r\nContent-Type: application\/health\+json\r\n/);
    assert.match(out.stdout, /\r\nCache-Control: no-store\r\n/);
    const body = out.stdout.slice(out.stdout.indexOf("\r\n\r\n") + 4);
    assert.equal(JSON.parse(body).status, "pass");
  },
});

Deno.test({
  name: `curl sees 503 and --fail exits 22 when a check fails${HAS.curl ? "" : " (ignored: curl is not installed)"}`,
  ignore: !HAS.curl,
  async fn() {
    await using sock = await tempSocket();
    const health = demoHealth().add("broken", () => "fail");
    await using _server = await serve(sock.path, health);
    const out = await run("curl", [
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "--unix-socket",
      sock.path,
      "http://localhost/readyz",
    ]);
    assert.equal(out.stdout, "503");
    const failing = await run("curl", ["-sf", "--unix-socket", sock.path, "http://localhost/readyz"]);
    assert.equal(failing.code, 22);
  },
});

Deno.test({
  name: `curl HEAD gets the headers of GET and no body${HAS.curl ? "" : " (ignored: curl is not installed)"}`,
  ignore: !HAS.curl,
  async fn() {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, demoHealth());
    const head = await run("curl", ["-sS", "-I", "--unix-socket", sock.path, "http://localhost/livez"]);
    assert.equal(head.code, 0, head.stderr);
    assert.match(head.stdout, /^HTTP\/1\.1 200 OK\r\n/);
    // A report's figures (run times, tick counts) change between two requests: compare shapes, not one length.
    const headers = (text: string) =>
      text.split("\r\n\r\n")[0].split("\r\n").slice(1).map((line) => line.split(":")[0]).sort();
    const get = await run("curl", ["-sS", "-i", "--unix-socket", sock.path, "http://localhost/livez"]);
    const [getHead, getBody] = [
      get.stdout.split("\r\n\r\n")[0],
      get.stdout.split("\r\n\r\n").slice(1).join("\r\n\r\n"),
    ];
    assert.deepEqual(headers(head.stdout), headers(get.stdout));
    assert.equal(Number(/Content-Length: (\d+)/.exec(getHead)?.[1]), new TextEncoder().encode(getBody).length);
    assert.ok(Number(/Content-Length: (\d+)/.exec(head.stdout)?.[1]) > 0);
    // No body after HEAD's headers.
    assert.ok(head.stdout.endsWith("\r\n\r\n"));
  },
});

Deno.test({
  name: `curl reuses one kept-alive connection for two requests${HAS.curl ? "" : " (ignored: curl is not installed)"}`,
  ignore: !HAS.curl,
  async fn() {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, demoHealth());
    const out = await run("curl", [
      "-sS",
      "-v",
      "--unix-socket",
      sock.path,
      "http://localhost/livez",
      "http://localhost/readyz?verbose",
    ]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /Re-using existing connection/);
    assert.match(out.stdout, /^\{"status":"pass"/);
    assert.ok(out.stdout.endsWith("readyz check passed\n"));
  },
});

Deno.test({
  name: `nc -U gets the report in line mode${HAS.nc ? "" : " (ignored: nc is not installed)"}`,
  ignore: !HAS.nc,
  async fn() {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, demoHealth());
    const out = await run("nc", ["-U", sock.path], { stdin: "GET /readyz\n" });
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).status, "pass");
    const missing = await run("nc", ["-U", sock.path], { stdin: "GET /readyz/nothing\n" });
    assert.deepEqual(JSON.parse(missing.stdout), { error: 'No check named "nothing" on /readyz', code: 404 });
  },
});

const NODE_CLIENT = `
const http = require("node:http");
const [socketPath, path, method] = process.argv.slice(1);
const agent = new http.Agent({ keepAlive: true });
function ask() {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path, method, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => body += c);
      res.on("end", () => resolve({ status: res.statusCode, type: res.headers["content-type"], body, reused: req.reusedSocket }));
    });
    req.on("error", reject);
    req.end();
  });
}
(async () => {
  const first = await ask();
  const second = await ask();
  agent.destroy();
  console.log(JSON.stringify([first, second]));
})().catch((e) => { console.error(e); process.exit(1); });
`;

Deno.test({
  name: `Node's http.request({socketPath}) gets the report, twice on one kept-alive socket${
    HAS.node ? "" : " (ignored: node is not installed)"
  }`,
  ignore: !HAS.node,
  async fn() {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, demoHealth().add("flaky", () => "fail", { critical: false }));
    const out = await run("node", ["-e", NODE_CLIENT, sock.path, "/healthz", "GET"]);
    assert.equal(out.code, 0, out.stderr);
    const [first, second] = JSON.parse(out.stdout);
    assert.equal(first.status, 200);
    assert.equal(first.type, "application/health+json");
    assert.equal(JSON.parse(first.body).status, "warn");
    assert.equal(second.reused, true);
    assert.equal(JSON.parse(second.body).status, "warn");
    const head = await run("node", ["-e", NODE_CLIENT, sock.path, "/livez", "HEAD"]);
    const [headAnswer] = JSON.parse(head.stdout);
    assert.equal(headAnswer.status, 200);
    assert.equal(headAnswer.body, "");
  },
});
