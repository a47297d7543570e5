// HTTP watch streams as long-lived server-sent events: a reconnection hint, keep-alive comments for clients with read
// timeouts, and a last `end` event however the stream ends; line-mode streams carry reports alone. Both thread modes.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import {
  decoder,
  encoder,
  exchange,
  hasCommand,
  readToEnd,
  readUntilMatch,
  ROOT,
  tempSocket,
  writeAll,
} from "./_util.ts";

const THREADS = ["worker", "main"] as const;

for (const thread of THREADS) {
  Deno.test(`[${thread}] an HTTP watch stream's first event has a retry hint, and a quiet stream gets keep-alive comments`, async () => {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, new Health({ ready: true }), {
      thread,
      watchInterval: 20,
      keepAlive: 60,
    });
    const conn = await Deno.connect({ transport: "unix", path: sock.path });
    try {
      await writeAll(conn, encoder.encode("GET /livez?watch HTTP/1.0\r\n\r\n"));
      const text = await readUntilMatch(conn, /\n\n: keep-alive\n\n: keep-alive\n\n/);
      const body = text.slice(text.indexOf("\r\n\r\n") + 4);
      assert.match(body, /^retry: \d+\ndata: \{"status":"pass"/);
      // One report, then comments only: the status never changed.
      assert.equal(body.match(/^data: /gm)?.length, 1);
    } finally {
      conn.close();
    }
  });

  Deno.test(`[${thread}] keepAlive 0 sends no comment lines`, async () => {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, new Health({ ready: true }), {
      thread,
      watchInterval: 20,
      keepAlive: 0,
    });
    const text = await exchange(sock.path, "GET /livez?watch&timeout=0.3 HTTP/1.0\r\n\r\n");
    assert.doesNotMatch(text, /^:/m);
    assert.match(text, /event: end\n/);
  });

  Deno.test(`[${thread}] an HTTP watch stream ended by its timeout sends a last end event saying why`, async () => {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, new Health({ ready: true }), { thread, watchInterval: 20 });
    const conn = await Deno.connect({ transport: "unix", path: sock.path });
    try {
      await writeAll(conn, encoder.encode("GET /livez?watch&timeout=0.1 HTTP/1.1\r\nHost: x\r\n\r\n"));
      const text = decoder.decode(await readToEnd(conn));
      assert.match(text, /\r\nevent: end\ndata: no change for 0\.1 s\n\n\r\n0\r\n\r\n$/);
    } finally {
      conn.close();
    }
  });

  Deno.test(`[${thread}] a line-mode watch stream carries reports alone: no hint, no comment, no end event`, async () => {
    await using sock = await tempSocket();
    await using _server = await serve(sock.path, new Health({ ready: true }), {
      thread,
      watchInterval: 20,
      keepAlive: 20,
    });
    const text = await exchange(sock.path, "GET /livez?watch&timeout=0.3\n");
    const lines = text.split("\n").filter((line) => line !== "");
    assert.equal(lines.length, 1, text);
    assert.equal(JSON.parse(lines[0]).status, "pass");
  });
}

const PYTHON = hasCommand("/usr/bin/python3") && new Deno.Command("/usr/bin/python3", {
  args: ["-c", "import requests_unixsocket"],
  stdout: "null",
  stderr: "null",
}).outputSync().success;

/** Follow `/livez?watch` with Python requests' read timeout of 0.4 s for 1.5 s; what the fixture printed. */
async function followWithReadTimeout(path: string): Promise<string> {
  const { stdout } = await new Deno.Command("/usr/bin/python3", {
    args: [`${ROOT}tests/fixtures/read_timeout.py`, path, "/livez?watch", "0.4", "1.5"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return decoder.decode(stdout).trim();
}

for (const thread of THREADS) {
  Deno.test({
    name: `[${thread}] Python requests with a read timeout keeps following a quiet stream thanks to keep-alive${
      PYTHON ? "" : " (ignored: python3-requests-unixsocket is not installed)"
    }`,
    ignore: !PYTHON,
    async fn() {
      await using sock = await tempSocket();
      {
        await using _server = await serve(sock.path, new Health({ ready: true }), {
          thread,
          watchInterval: 20,
          keepAlive: 100,
        });
        assert.match(await followWithReadTimeout(sock.path), /^followed \d+ lines$/);
      }
      // The same client, without keep-alive: its read timeout ends the quiet stream (what the comments prevent).
      await using _server = await serve(sock.path, new Health({ ready: true }), {
        thread,
        watchInterval: 20,
        keepAlive: 0,
      });
      assert.equal(await followWithReadTimeout(sock.path), "read timeout");
    },
  });
}
