// Unit tests of paths.ts: the names and permission flags a socket path brings with it.
import assert from "node:assert/strict";
import { permissionFlags } from "../paths.ts";

Deno.test("permissionFlags grants exactly the socket path, and a server its lock file and temporary names", () => {
  assert.equal(
    permissionFlags("/tmp/app.sock"),
    "--allow-read=/tmp/app.sock --allow-write=/tmp/app.sock --allow-net=unix:/tmp/app.sock",
  );
  assert.equal(
    permissionFlags("/run/app/health.sock", { server: true }),
    "--allow-read=/run/app/health.sock,/run/app/health.sock.tmp,/run/app/health.sock.lock " +
      "--allow-write=/run/app/health.sock,/run/app/health.sock.tmp,/run/app/health.sock.lock " +
      "--allow-net=unix:/run/app/health.sock,unix:/run/app/health.sock.tmp/s",
  );
});

Deno.test("permissionFlags takes its server choice as an option, a client's flags by default", () => {
  const client = permissionFlags("/tmp/app.sock");
  assert.equal(permissionFlags("/tmp/app.sock", {}), client);
  assert.equal(permissionFlags("/tmp/app.sock", { server: false }), client);
  assert.notEqual(permissionFlags("/tmp/app.sock", { server: true }), client);
});
