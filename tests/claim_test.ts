// Issue 9, items 3, 4 and part of 9: claiming the socket path. Two servers
// starting at once never both serve; the socket's mode is in force from the
// first connection, whatever the umask; another user's leftovers beside the
// path are refused by name, untouched. Figures are printed for the record.
import assert from "node:assert/strict";
import { permissionFlags } from "../protocol.ts";
import { exists, hasCommand, readUntil, ROOT, run, tempSocket } from "./_util.ts";
import { asNobody, isRoot, NOBODY, NOGROUP } from "./fixtures/hardening.ts";

const DAEMON = 1;
const ROUNDS = 30;
const RACERS = 2;
const STARTS = 30;
const canSwitchUser = isRoot() && hasCommand("setpriv");
// perl is not among the commands the tests may run directly: it runs under setpriv.
const hasPerl = (await run("sh", ["-c", "command -v perl"])).code === 0;

function figures(label: string, values: Record<string, string | number>): void {
  console.log(`claim: ${label}: ${Object.entries(values).map(([k, v]) => `${k} ${v}`).join(", ")}`);
}

/** A claimer fixture process (tests/fixtures/claimer.ts), driven a line at a time. */
class Claimer implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  #lines: ReadableStreamDefaultReader<string>;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;

  constructor(path: string, options: { umask?: string } = {}) {
    const deno = ["deno", "run", "--no-prompt", ...permissionFlags(path, true).split(" ")];
    const args = [...deno, `${ROOT}tests/fixtures/claimer.ts`, path];
    this.child = new Deno.Command(options.umask ? "sh" : "deno", {
      args: options.umask ? ["-c", `umask ${options.umask}; exec "$@"`, "sh", ...args] : args.slice(1),
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = this.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#stdin = this.child.stdin.getWriter();
  }

  /** The next reply line. */
  async reply(): Promise<string> {
    return (await readUntil(this.#lines, /./)).line;
  }

  send(command: string): Promise<void> {
    return this.#stdin.write(new TextEncoder().encode(`${command}\n`));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#stdin.close().catch(() => {});
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await this.child.status;
    clearTimeout(timer);
    await this.#lines.cancel().catch(() => {});
  }
}

/** A socket file nobody listens on, as a crashed server leaves it. */
async function makeStale(path: string): Promise<void> {
  // Deno unlinks a listener's bound name when it closes: bind elsewhere, rename, close.
  const bound = `${path}.stale`;
  const listener = Deno.listen({ transport: "unix", path: bound });
  await Deno.rename(bound, path);
  listener.close();
}

Deno.test("servers starting together on a stale socket: exactly one serves, the others are refused as in use", async () => {
  await using sock = await tempSocket();
  const claimers = Array.from({ length: RACERS }, () => new Claimer(sock.path));
  try {
    for (const claimer of claimers) assert.equal(await claimer.reply(), "ready");
    const outcomes: string[][] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await makeStale(sock.path);
      await Promise.all(claimers.map((claimer) => claimer.send("serve")));
      outcomes.push(await Promise.all(claimers.map((claimer) => claimer.reply())));
      await Promise.all(claimers.map((claimer) => claimer.send("close")));
      for (const claimer of claimers) assert.equal(await claimer.reply(), "closed");
      await Deno.remove(sock.path).catch(() => {});
    }
    const bothServed = outcomes.filter((round) => round.filter((line) => line === "served").length > 1).length;
    figures(`${RACERS} servers starting at once on a stale socket`, {
      rounds: ROUNDS,
      "more than one served": bothServed,
      "none served": outcomes.filter((round) => !round.includes("served")).length,
    });
    for (const [i, round] of outcomes.entries()) {
      assert.equal(round.filter((line) => line === "served").length, 1, `round ${i}: ${round.join(" | ")}`);
      for (const line of round.filter((line) => line !== "served")) {
        assert.match(line, /^refused in-use /, `round ${i}: ${line}`);
      }
    }
  } finally {
    for (const claimer of claimers) await claimer[Symbol.asyncDispose]();
  }
  assert.equal(await exists(`${sock.path}.tmp`), false);
});

/** Another user's connect loop (tests/fixtures/peek.pl) on `paths`: every report it gets is printed. */
async function peekAs(
  paths: string[],
): Promise<{ child: Deno.ChildProcess; lines: ReadableStreamDefaultReader<string> }> {
  const script = await Deno.readTextFile(`${ROOT}tests/fixtures/peek.pl`);
  const child = new Deno.Command("setpriv", {
    args: asNobody(["perl", "-e", script, ...paths]),
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  await readUntil(lines, /^started$/);
  return { child, lines };
}

Deno.test({
  name: `with umask 000 another user is never served during start-up${
    canSwitchUser && hasPerl ? "" : " (ignored: needs root, setpriv and perl)"
  }`,
  ignore: !(canSwitchUser && hasPerl),
  fn: async () => {
    await using sock = await tempSocket();
    // Let nobody reach the directory: only the socket's own mode (and the server's private directory) decide.
    await Deno.chmod(sock.dir, 0o755);
    // The umask is the process's: one process started with umask 000 claims the path STARTS times.
    await using claimer = new Claimer(sock.path, { umask: "000" });
    assert.equal(await claimer.reply(), "ready");
    const peek = await peekAs([sock.path, `${sock.path}.tmp`, `${sock.path}.tmp/s`]);
    let seen: string[] = [];
    try {
      for (let start = 0; start < STARTS; start++) {
        await claimer.send("serve");
        assert.equal(await claimer.reply(), "served");
        assert.equal((await Deno.lstat(sock.path)).mode! & 0o777, 0o600);
        await claimer.send("close");
        assert.equal(await claimer.reply(), "closed");
      }
    } finally {
      peek.child.kill("SIGTERM");
      seen = (await readUntil(peek.lines, /^tries /)).seen;
      await peek.lines.cancel();
      await peek.child.status;
    }
    const reports = seen.filter((line) => line.startsWith("report "));
    const [, tries, connected] = seen.at(-1)!.match(/^tries (\d+) connected (\d+)$/)!;
    figures("starts with umask 000 while another user connects in a loop", {
      starts: STARTS,
      "connection attempts": tries,
      "connections made": connected,
      "reports read by the other user": reports.length,
    });
    assert.deepEqual(reports, [], "another user read a health report during start-up");
  },
});

/**
 * The fault host (tests/fixtures/host.ts) as root without the capabilities that
 * override file ownership. A host that serves (instead of being refused) is
 * stopped after a few seconds, so the test fails rather than hangs.
 */
async function hostWithoutPrivilege(path: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command("setpriv", {
    args: [
      "--bounding-set=-dac_override,-dac_read_search,-fowner",
      "--",
      "deno",
      "run",
      "--no-prompt",
      ...permissionFlags(path, true).split(" "),
      `${ROOT}tests/fixtures/host.ts`,
      path,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGTERM"), 10_000);
  try {
    const { code, stdout, stderr } = await child.output();
    return { code, stdout: new TextDecoder().decode(stdout), stderr: new TextDecoder().decode(stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** What is at `path`: kind, owner, inode and mode, to show it was not touched. */
async function snapshot(path: string): Promise<string> {
  const info = await Deno.lstat(path);
  const kind = info.isSocket ? "socket" : info.isDirectory ? "directory" : "file";
  return `${kind} uid ${info.uid} ino ${info.ino} mode ${(info.mode! & 0o7777).toString(8)}`;
}

Deno.test({
  name: `another user's leftovers beside the path are refused as foreign, by name, untouched${
    canSwitchUser ? "" : " (ignored: needs root and setpriv)"
  }`,
  ignore: !canSwitchUser,
  fn: async (t) => {
    await using sock = await tempSocket();
    // A sticky world-writable directory of a third user (as /tmp is): only owners may remove what is in it.
    await Deno.chown(sock.dir, DAEMON, DAEMON);
    await Deno.chmod(sock.dir, 0o1777);
    const path = sock.path;
    const tmp = `${path}.tmp`;
    const lock = `${path}.lock`;
    const leftovers: Record<string, [string, () => Promise<void>]> = {
      "a file at PATH.tmp": [tmp, () => Deno.writeTextFile(tmp, "nobody's", { mode: 0o644 })],
      "a socket at PATH.tmp": [tmp, () => makeStale(tmp)],
      "a directory at PATH.tmp": [tmp, async () => {
        await Deno.mkdir(tmp, { mode: 0o755 });
        await Deno.writeTextFile(`${tmp}/s`, "nobody's");
        await Deno.chown(`${tmp}/s`, NOBODY, NOGROUP);
      }],
      "a lock file of mode 0600 at PATH.lock": [lock, () => Deno.writeTextFile(lock, "", { mode: 0o600 })],
    };
    for (const [label, [name, make]] of Object.entries(leftovers)) {
      await t.step(label, async () => {
        await make();
        await Deno.chown(name, NOBODY, NOGROUP);
        await Deno.chmod(name, name === lock ? 0o600 : (await Deno.lstat(name)).isDirectory ? 0o755 : 0o644);
        const before = await snapshot(name);
        try {
          const { code, stdout, stderr } = await hostWithoutPrivilege(path);
          assert.equal(code, 1, `the host should be refused; stdout ${stdout}; stderr ${stderr}`);
          assert.match(stderr, /^host: foreign: /, stderr);
          assert.ok(stderr.includes(`Cannot listen on "${path}"`), stderr);
          assert.ok(stderr.includes(`"${name}"`), `the message names ${name}: ${stderr}`);
          assert.match(stderr, /uid 65534/, stderr);
          assert.match(stderr, /remove it as (its owner|that user)/, stderr);
          assert.equal(await snapshot(name), before, `${name} was touched`);
          const left = [...Deno.readDirSync(sock.dir)].map((entry) => entry.name).sort();
          assert.deepEqual(left, [name.slice(sock.dir.length + 1)], "nothing else was created or left");
        } finally {
          await Deno.remove(name, { recursive: true });
        }
      });
    }
  },
});
