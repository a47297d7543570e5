// The client library, probe() and watch(), against real sockets in this process.
import assert from "node:assert/strict";
import { probe, ProbeError } from "../client.ts";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { tempSocket } from "./_util.ts";

Deno.test("probe refuses a ?watch target at once: its answer never ends", async () => {
  await using sock = await tempSocket();
  await using _server = await serve(sock.path, new Health({ ready: true }));
  for (const target of ["/livez?watch", "/readyz?verbose&watch", "/healthz?watch=1&timeout=5"]) {
    await assert.rejects(probe(sock.path, { target, timeout: 20_000 }), (error: unknown) => {
      assert.ok(error instanceof TypeError, String(error));
      assert.equal(error.message, `Cannot probe "${target}": a ?watch target streams; follow it with watch() instead`);
      return true;
    });
  }
  assert.equal((await probe(sock.path, { target: "/livez?watch=0" })).status, "pass");
});

Deno.test("probe says what is at the path when it is not a socket, and when its directory is missing", async () => {
  await using sock = await tempSocket();
  const cases: [string, () => Promise<void>, string][] = [
    ["file", () => Deno.writeTextFile(sock.path, ""), "a regular file is there, not a socket; check the path"],
    ["directory", () => Deno.mkdir(sock.path), "a directory is there, not a socket; check the path"],
  ];
  for (const [what, make, why] of cases) {
    await Deno.remove(sock.path, { recursive: true }).catch(() => {});
    await make();
    await assert.rejects(probe(sock.path), (error: unknown) => {
      assert.ok(error instanceof ProbeError, `${what}: ${error}`);
      assert.equal(error.kind, "unreachable");
      assert.equal(error.message, `Cannot connect to "${sock.path}": ${why}`);
      return true;
    });
  }
  // The tests may read /tmp, so the client can tell that the directory is missing.
  const path = `${sock.dir}/gone/app.sock`;
  await assert.rejects(probe(path), (error: unknown) => {
    assert.ok(error instanceof ProbeError);
    assert.equal(
      error.message,
      `Cannot connect to "${path}": the directory "${sock.dir}/gone" does not exist; ` +
        "check the path, or start the server that creates it",
    );
    return true;
  });
  const existing = `${sock.dir}/none.sock`;
  await assert.rejects(probe(existing), /Cannot connect to ".*none\.sock": no socket there; is the server running\?/);
});
