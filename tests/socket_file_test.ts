// What a server does with the names beside its socket when it stops: nothing
// outside the directory it made. Deno unlinks a listener's bound name
// (PATH.tmp/s) when the listener is dropped, following whatever is at PATH.tmp
// by then. Another user who may write the socket's directory (a sticky shared
// one, as /tmp is, or one its group may write) tries to put a symbolic link to
// a private directory of root's at PATH.tmp while a root server runs; the
// server is then stopped each way it can be (close, drain, SIGTERM, its Worker
// dying, the program dying of an uncaught error), in both thread modes. The
// file `s` in that directory survives, and the server stops leaving nothing of
// its own, or serves again after its Worker (or the program) died. Needs root
// and setpriv: the other user is real.
import assert from "node:assert/strict";
import { Health } from "../health.ts";
import { probe } from "../client.ts";
import { serve } from "../serve.ts";
import type { HealthServer } from "../server.ts";
import { hasCommand, readUntil, run, spawnDemo, spawnHost, tempSocket, waitForPath } from "./_util.ts";
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

/** The fault host (tests/fixtures/host.ts) serving `path` on its main thread, with the scoped flags. */
function startHost(path: string): { child: Deno.ChildProcess; lines: ReadableStreamDefaultReader<string> } {
  const child = spawnHost(path, "main");
  return { child, lines: child.stdout.pipeThrough(new TextDecoderStream()).getReader() };
}

/** A child's exit code and what it wrote to stderr. */
async function ended(child: Deno.ChildProcess): Promise<{ code: number; stderr: string }> {
  const [{ code }, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  return { code, stderr };
}

/** Stop a host started by {@linkcode startHost} with SIGTERM; it must exit 0. */
async function stopHost(host: { child: Deno.ChildProcess; lines: ReadableStreamDefaultReader<string> }): Promise<void> {
  try {
    host.child.kill("SIGTERM");
    await readUntil(host.lines, /^stopped$/);
  } finally {
    await host.lines.cancel();
    const { code, stderr } = await ended(host.child);
    assert.equal(code, 0, stderr);
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
            const { child, lines } = startHost(sock.path);
            try {
              await readUntil(lines, /^serving /);
              await plantLink(sock.path, victim);
            } finally {
              await stopHost({ child, lines });
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
    name: `a program serving on its main thread that dies of an uncaught error (${shared} directory) after another ` +
      `user links PATH.tmp elsewhere: nothing outside the server's own directory is removed, and a restart serves${ignored}`,
    ignore: !canSwitchUser,
    fn: async () => {
      const { sock, victim } = await setUp(shared);
      await using _sock = sock;
      try {
        const host = startHost(sock.path);
        try {
          await readUntil(host.lines, /^serving /);
          await plantLink(sock.path, victim);
          host.child.kill("SIGUSR2");
        } finally {
          await host.lines.cancel();
          const { code, stderr } = await ended(host.child);
          assert.equal(code, 1, stderr);
        }
        assert.equal(await Deno.readTextFile(`${victim}/s`).catch(() => "deleted"), "root's", "the server deleted s");
        // What the dead program left (its socket, lock and own directory) is cleared by the next one.
        const again = startHost(sock.path);
        try {
          await readUntil(again.lines, /^serving /);
          assert.equal((await probe(sock.path, { target: "/readyz" })).status, "pass");
        } finally {
          await stopHost(again);
        }
        await assertUnharmed(sock, victim);
      } finally {
        await Deno.remove(victim, { recursive: true });
      }
    },
  });

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
