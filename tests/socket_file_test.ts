// What a server does with the names beside its socket when it stops: nothing
// outside the directory it made. Deno unlinks a listener's bound name
// (PATH.tmp/s) when the listener is dropped, following whatever is at PATH.tmp
// by then. Another user who may write the socket's directory (a sticky shared
// one, as /tmp is, or one its group may write) tries to put a symbolic link to
// a private directory of root's at PATH.tmp while a root server runs; the
// server is then stopped each way it can be (close, drain, SIGTERM, its Worker
// dying), in both thread modes. The file `s` in that directory survives, and
// the server stops leaving nothing of its own, or serves again after its
// Worker died. Needs root and setpriv: the other user is real.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { permissionFlags } from "../paths.ts";
import { probe } from "../client.ts";
import { serve } from "../server.ts";
import type { HealthServer } from "../server.ts";
import { hasCommand, readUntil, ROOT, run, spawnDemo, tempSocket, waitForPath } from "./_util.ts";
import type { TempSocket } from "./_util.ts";
import { asNobody, isRoot, NOGROUP, waitUntil } from "./fixtures/hardening.ts";

const DAEMON = 1;
const canSwitchUser = isRoot() && hasCommand("setpriv");
const ignored = canSwitchUser ? "" : " (ignored: needs root and setpriv)";

/** The socket's directory: sticky and world-writable (as /tmp), or one `nobody`'s group may write (2770). */
type Shared = "sticky" | "group";

/** A socket path in a directory `nobody` may write, and a private directory of root's holding a file `s`. */
async function setUp(shared: Shared): Promise<{ sock: TempSocket; victim: string }> {
  const sock = await tempSocket();
  if (shared === "sticky") {
    await Deno.chown(sock.dir, DAEMON, DAEMON);
    await Deno.chmod(sock.dir, 0o1777);
  } else {
    await Deno.chown(sock.dir, 0, NOGROUP);
    await Deno.chmod(sock.dir, 0o2770);
  }
  const victim = await Deno.makeTempDir({ prefix: "healthsock-victim-" }); // mode 0700
  await Deno.writeTextFile(`${victim}/s`, "root's");
  return { sock, victim };
}

/**
 * As `nobody`: move PATH.tmp out of the way if it may (only in the group's
 * directory), and put a link to `victim` there. Whether it could is reported.
 */
async function plantLink(path: string, victim: string): Promise<boolean> {
  const tmp = `${path}.tmp`;
  const { code } = await run(
    "setpriv",
    asNobody(["sh", "-c", 'mv -T "$1" "$1.moved" 2>/dev/null; ln -s "$2" "$1"', "sh", tmp, victim]),
  );
  return code === 0;
}

/** The victim's file is there, and nothing of the server's is left beside the path (what `nobody` moved aside may be). */
async function assertUnharmed(sock: TempSocket, victim: string): Promise<void> {
  assert.equal(await Deno.readTextFile(`${victim}/s`).catch(() => "deleted"), "root's", "the server deleted s");
  const left = [...Deno.readDirSync(sock.dir)].map((entry) => entry.name).filter((name) => !name.endsWith(".moved"));
  assert.deepEqual(left, [], "the server left something beside the path");
}

function socketAt(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket === true;
  } catch {
    return false;
  }
}

/** The Worker serving `server`, to make it fail as a bug in it would. */
function workerOf(server: HealthServer): Worker | undefined {
  return (server as unknown as { worker?: Worker }).worker;
}

const stops: Record<string, (server: HealthServer) => Promise<void>> = {
  close: (server) => server.close(),
  drain: (server) => server.drain(),
};

for (const shared of ["sticky", "group"] as const) {
  for (const thread of ["worker", "main"] as const) {
    for (const [how, stop] of Object.entries(stops)) {
      Deno.test({
        name: `${how}() (${thread} thread, ${shared} directory) after another user links PATH.tmp elsewhere: ` +
          `nothing outside the server's own directory is removed${ignored}`,
        ignore: !canSwitchUser,
        fn: async () => {
          const { sock, victim } = await setUp(shared);
          await using _sock = sock;
          try {
            const server = await serve(sock.path, new Health({ ready: true }), { thread });
            try {
              await plantLink(sock.path, victim);
            } finally {
              await stop(server);
            }
            await server.finished;
            await assertUnharmed(sock, victim);
          } finally {
            await Deno.remove(victim, { recursive: true });
          }
        },
      });
    }

    Deno.test({
      name: `SIGTERM to a host (${thread} thread, ${shared} directory) after another user links PATH.tmp elsewhere: ` +
        `it exits 0 and nothing outside the server's own directory is removed${ignored}`,
      ignore: !canSwitchUser,
      fn: async () => {
        const { sock, victim } = await setUp(shared);
        await using _sock = sock;
        try {
          // Worker mode: the CLI (the demo, as `deno task demo` runs it); main thread: the fault host.
          if (thread === "worker") {
            await using demo = spawnDemo(sock.path, []);
            await waitForPath(sock.path);
            await plantLink(sock.path, victim);
            demo.child.kill("SIGTERM");
            assert.equal((await demo.child.status).code, 0);
          } else {
            const child = new Deno.Command("deno", {
              args: [
                "run",
                "--no-prompt",
                ...permissionFlags(sock.path, true).split(" "),
                `${ROOT}tests/fixtures/host.ts`,
                sock.path,
                "main",
              ],
              stdin: "null",
              stdout: "piped",
              stderr: "inherit",
            }).spawn();
            const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
            try {
              await readUntil(lines, /^serving /);
              await plantLink(sock.path, victim);
              child.kill("SIGTERM");
              await readUntil(lines, /^stopped$/);
            } finally {
              await lines.cancel();
              assert.equal((await child.status).code, 0);
            }
          }
          await assertUnharmed(sock, victim);
        } finally {
          await Deno.remove(victim, { recursive: true });
        }
      },
    });
  }

  Deno.test({
    name: `a Worker that dies (${shared} directory) after another user links PATH.tmp elsewhere: ` +
      `nothing outside the server's own directory is removed, and the next Worker serves the path${ignored}`,
    ignore: !canSwitchUser,
    fn: async () => {
      const { sock, victim } = await setUp(shared);
      await using _sock = sock;
      try {
        const server = await serve(sock.path, new Health({ ready: true }));
        let finished = "running";
        server.finished.then(() => finished = "resolved", (error) => finished = String(error));
        try {
          await plantLink(sock.path, victim);
          const first = workerOf(server);
          first?.postMessage({ type: "crash" });
          await waitUntil(() => workerOf(server) !== first && server.connections === 0, "a new Worker runs");
          await waitUntil(() => finished !== "running" || socketAt(sock.path), "the path is served");
          // The first Worker's listener is dropped a moment after its death: give it that moment.
          await new Promise((resolve) => setTimeout(resolve, 300));
          assert.equal(await Deno.readTextFile(`${victim}/s`).catch(() => "deleted"), "root's", "the server deleted s");
          assert.equal(finished, "running");
          assert.equal((await probe(sock.path, { target: "/readyz" })).status, "pass");
        } finally {
          await server.close();
        }
        await server.finished;
        await assertUnharmed(sock, victim);
      } finally {
        await Deno.remove(victim, { recursive: true });
      }
    },
  });
}
