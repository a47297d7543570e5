// Claiming the socket path. Two servers starting at once never both serve; the
// socket's mode is in force from the first connection, whatever the umask;
// nothing beside the path is removed or used unless it is provably a previous
// run's (another user's leftovers, and this user's own data, are refused by
// name, untouched); names that change under a claim (a symbolic link that comes
// and goes) are refused, never followed, never a crash. Figures are printed for
// the record.
import assert from "node:assert/strict";
import { permissionFlags } from "../paths.ts";
import { exists, figures, hasCommand, readUntil, ROOT, run, tempSocket } from "./_util.ts";
import { asNobody, isRoot, NOBODY, NOGROUP } from "./fixtures/hardening.ts";

const DAEMON = 1;
const ROUNDS = 30;
const RACERS = 2;
const STARTS = 30;
const canSwitchUser = isRoot() && hasCommand("setpriv");
// Root without the capabilities that override file modes and ownership: held to file modes like any other user.
const UNPRIVILEGED = "--bounding-set=-dac_override,-dac_read_search,-fowner";
// perl is not among the commands the tests may run directly: it runs under setpriv.
const hasPerl = (await run("sh", ["-c", "command -v perl"])).code === 0;

/** A claimer fixture process (tests/fixtures/claimer.ts), driven a line at a time. */
class Claimer implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  #lines: ReadableStreamDefaultReader<string>;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;

  /**
   * @param options `umask` to start with; `allowAll` for `-A` instead of the
   * scoped flags; `unprivileged` for root without the capabilities that
   * override file modes and ownership (a non-root server, as far as files go);
   * `main` to serve on the claimer's main thread (the same claim, without a
   * Worker to start each time: for tests that start hundreds of times).
   */
  constructor(
    path: string,
    options: { umask?: string; allowAll?: boolean; unprivileged?: boolean; main?: boolean } = {},
  ) {
    const flags = options.allowAll ? ["-A"] : permissionFlags(path, { server: true }).split(" ");
    const args = [
      ...(options.unprivileged ? ["setpriv", UNPRIVILEGED, "--"] : []),
      ...["deno", "run", "--no-prompt", ...flags, `${ROOT}tests/fixtures/claimer.ts`, path],
      ...(options.main ? ["main"] : []),
    ];
    const command = options.umask ? ["sh", "-c", `umask ${options.umask}; exec "$@"`, "sh", ...args] : args;
    this.child = new Deno.Command(command[0], {
      args: command.slice(1),
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
  const claimers = Array.from({ length: RACERS }, () => new Claimer(sock.path, { main: true }));
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
    figures("claim", `${RACERS} servers starting at once on a stale socket`, {
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
    figures("claim", "starts with umask 000 while another user connects in a loop", {
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
function hostWithoutPrivilege(path: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return host(path, true);
}

/** The fault host as root (with `unprivileged`, as {@linkcode hostWithoutPrivilege}); see there. */
async function host(path: string, unprivileged: boolean): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(unprivileged ? "setpriv" : "deno", {
    args: [
      ...(unprivileged ? [UNPRIVILEGED, "--", "deno"] : []),
      "run",
      "--no-prompt",
      ...permissionFlags(path, { server: true }).split(" "),
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

/**
 * What is at `path` and below it: kind, owner, inode and mode of each entry,
 * and the time each directory below `path` was last changed (nothing made and
 * removed in it), to show nothing was touched.
 */
async function snapshot(path: string, top = true): Promise<string[]> {
  const info = await Deno.lstat(path);
  const kind = info.isSocket ? "socket" : info.isSymlink ? "link" : info.isDirectory ? "directory" : "file";
  const changed = info.isDirectory && !top ? ` mtime ${info.mtime?.getTime()} ctime ${info.ctime?.getTime()}` : "";
  const lines = [
    `${path}: ${kind} uid ${info.uid} ino ${info.ino} mode ${(info.mode! & 0o7777).toString(8)}${changed}`,
  ];
  if (info.isDirectory) {
    const names = [...Deno.readDirSync(path)].map((entry) => entry.name).sort();
    for (const name of names) lines.push(...await snapshot(`${path}/${name}`, false));
  }
  return lines;
}

/** Give `path` and everything below it to `nobody`. */
async function giveToNobody(path: string): Promise<void> {
  const info = await Deno.lstat(path);
  if (info.isDirectory) { for (const entry of Deno.readDirSync(path)) await giveToNobody(`${path}/${entry.name}`); }
  if (!info.isSymlink) await Deno.chown(path, NOBODY, NOGROUP);
}

/** Run `command` as `nobody`; it must succeed. */
async function asNobodyRun(command: string[]): Promise<void> {
  const { code, stderr } = await run("setpriv", asNobody(command));
  assert.equal(code, 0, `${command.join(" ")}: ${stderr}`);
}

/** A stale socket at `path` of `nobody`, as a crashed server of that user leaves it. */
async function makeStaleOfNobody(path: string): Promise<void> {
  await makeStale(path);
  await Deno.chown(path, NOBODY, NOGROUP);
}

/**
 * What may be beside a socket path that is not a previous run's: name, the
 * user it belongs to, and how to make it (the directory is a sticky 1777 one
 * of a third user, as /tmp is, so `nobody` can make its own entries there).
 */
function leftovers(path: string): Record<string, { name: string; uid: number; make: () => Promise<void> }> {
  const tmp = `${path}.tmp`;
  const lock = `${path}.lock`;
  const elsewhere = `${path}.data`;
  const tree = async (dir: string, mode: number) => {
    await Deno.mkdir(`${dir}/nested`, { recursive: true });
    await Deno.writeTextFile(`${dir}/nested/notes`, "keep me");
    await Deno.writeTextFile(`${dir}/s`, "not a socket");
    await Deno.chmod(`${dir}/nested`, mode);
    await Deno.chmod(dir, mode);
  };
  return {
    "another user's file at PATH.tmp": {
      name: tmp,
      uid: NOBODY,
      make: async () => {
        await Deno.writeTextFile(tmp, "nobody's", { mode: 0o644 });
        await giveToNobody(tmp);
      },
    },
    "another user's socket at PATH.tmp": { name: tmp, uid: NOBODY, make: () => makeStaleOfNobody(tmp) },
    "another user's directory of mode 0755 holding a file s at PATH.tmp": {
      name: tmp,
      uid: NOBODY,
      make: async () => {
        await Deno.mkdir(tmp, { mode: 0o755 });
        await Deno.writeTextFile(`${tmp}/s`, "nobody's");
        await giveToNobody(tmp);
      },
    },
    "another user's directory of mode 0777 holding a tree at PATH.tmp": {
      name: tmp,
      uid: NOBODY,
      make: async () => {
        await tree(tmp, 0o777);
        await giveToNobody(tmp);
      },
    },
    "another user's empty directory of mode 0700 at PATH.tmp": {
      name: tmp,
      uid: NOBODY,
      make: async () => {
        await Deno.mkdir(tmp, { mode: 0o700 });
        await giveToNobody(tmp);
      },
    },
    "another user's empty directory of mode 0700 at PATH.tmp, beside this user's empty lock file": {
      name: tmp,
      uid: NOBODY,
      make: async () => {
        await Deno.writeTextFile(lock, "", { mode: 0o600 });
        await Deno.mkdir(tmp, { mode: 0o700 });
        await giveToNobody(tmp);
      },
    },
    "another user's directory of mode 0700 holding only a socket s at PATH.tmp": {
      name: tmp,
      uid: NOBODY,
      make: async () => {
        await Deno.mkdir(tmp, { mode: 0o700 });
        await makeStale(`${tmp}/s`);
        await giveToNobody(tmp);
      },
    },
    "another user's symbolic link at PATH.tmp to a directory of theirs": {
      name: tmp,
      uid: NOBODY,
      make: async () => {
        await tree(elsewhere, 0o777);
        await giveToNobody(elsewhere);
        await asNobodyRun(["ln", "-s", elsewhere, tmp]);
      },
    },
    "this user's data directory (mode 0750, with files) renamed to PATH.tmp": {
      name: tmp,
      uid: 0,
      make: () => tree(tmp, 0o750),
    },
    "this user's directory of mode 0700 holding files at PATH.tmp": {
      name: tmp,
      uid: 0,
      make: () => tree(tmp, 0o700),
    },
    "another user's empty lock file of mode 0600 at PATH.lock": {
      name: lock,
      uid: NOBODY,
      make: async () => {
        await Deno.writeTextFile(lock, "", { mode: 0o600 });
        await giveToNobody(lock);
      },
    },
    "this user's file holding data at PATH.lock": {
      name: lock,
      uid: 0,
      make: () => Deno.writeTextFile(lock, "data", { mode: 0o600 }),
    },
    "another user's lock file of mode 0666 at PATH.lock": {
      name: lock,
      uid: NOBODY,
      make: async () => {
        await Deno.writeTextFile(lock, "", { mode: 0o666 });
        await Deno.chmod(lock, 0o666);
        await giveToNobody(lock);
      },
    },
  };
}

for (const unprivileged of [true, false]) {
  const server = unprivileged ? "a server without privilege over files (a non-root server)" : "a root server";
  Deno.test({
    name: `${server} refuses what is beside the path and not a previous run's, by name and owner, untouched${
      canSwitchUser ? "" : " (ignored: needs root and setpriv)"
    }`,
    ignore: !canSwitchUser,
    fn: async (t) => {
      for (const [label, { name, uid }] of Object.entries(leftovers("PATH"))) {
        await t.step(label, async () => {
          await using sock = await tempSocket();
          // A sticky world-writable directory of a third user (as /tmp is): only owners may remove what is in it.
          await Deno.chown(sock.dir, DAEMON, DAEMON);
          await Deno.chmod(sock.dir, 0o1777);
          const { make: makeHere, name: nameHere } = leftovers(sock.path)[label];
          await makeHere();
          const before = await snapshot(sock.dir);
          const { code, stdout, stderr } = await host(sock.path, unprivileged);
          assert.equal(code, 1, `the host should be refused; stdout ${stdout}; stderr ${stderr}`);
          assert.match(stderr, /^host: (foreign|not-a-socket|bad-lock): /, stderr);
          assert.ok(stderr.includes(`Cannot listen on "${sock.path}"`), stderr);
          assert.ok(stderr.includes(`"${nameHere}"`), `the message names ${name}: ${stderr}`);
          assert.ok(stderr.includes(`uid ${uid}`), `the message names its owner, uid ${uid}: ${stderr}`);
          assert.match(stderr, /remove it as (its owner|that user)/, stderr);
          assert.deepEqual(await snapshot(sock.dir), before, "something beside the path was touched or left");
        });
      }
    },
  });
}

Deno.test("what a previous run of this user leaves beside the path is cleared, and the path served", async (t) => {
  const cases: Record<string, (path: string) => Promise<void>> = {
    "an empty directory of mode 0700 at PATH.tmp": (path) => Deno.mkdir(`${path}.tmp`, { mode: 0o700 }),
    "a directory of mode 0700 holding only the socket s at PATH.tmp": async (path) => {
      await Deno.mkdir(`${path}.tmp`, { mode: 0o700 });
      await makeStale(`${path}.tmp/s`);
    },
    "an empty lock file at PATH.lock, a stale socket at PATH": async (path) => {
      await Deno.writeTextFile(`${path}.lock`, "", { mode: 0o600 });
      await makeStale(path);
    },
  };
  for (const [label, make] of Object.entries(cases)) {
    await t.step(label, async () => {
      await using sock = await tempSocket();
      await make(sock.path);
      await using claimer = new Claimer(sock.path);
      assert.equal(await claimer.reply(), "ready");
      await claimer.send("serve");
      assert.equal(await claimer.reply(), "served");
      assert.deepEqual([...Deno.readDirSync(sock.dir)].map((entry) => entry.name).sort(), [
        "app.sock",
        "app.sock.lock",
        "app.sock.tmp",
      ]);
      // Kept, empty and private, while the listener bound in it is open.
      assert.deepEqual([...Deno.readDirSync(`${sock.path}.tmp`)], []);
      assert.equal((await Deno.lstat(`${sock.path}.tmp`)).mode! & 0o7777, 0o700);
      await claimer.send("close");
      assert.equal(await claimer.reply(), "closed");
      assert.deepEqual([...Deno.readDirSync(sock.dir)], [], "the server left something behind");
    });
  }
});

/** Another user beside the path (tests/fixtures/neighbour.py as `nobody`); see there for the modes. */
class Neighbour implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  #lines: ReadableStreamDefaultReader<string>;

  private constructor(args: string[], script: string) {
    this.child = new Deno.Command("setpriv", {
      args: asNobody(["/usr/bin/python3", "-c", script, ...args]),
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = this.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  static async start(...args: string[]): Promise<Neighbour> {
    const neighbour = new Neighbour(args, await Deno.readTextFile(`${ROOT}tests/fixtures/neighbour.py`));
    await readUntil(neighbour.#lines, /^ready$/);
    return neighbour;
  }

  /** Stop it; the count it printed (links made, or connections accepted). */
  async stop(): Promise<number> {
    await this.child.stdin.close().catch(() => {});
    const { line } = await readUntil(this.#lines, /^done \d+$/);
    await this.#lines.cancel();
    await this.child.status;
    return Number(line.slice(5));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.child.stdin.close();
    } catch { /* closed by stop() */ }
    await this.child.status;
    await this.#lines.cancel().catch(() => {});
  }
}

/** Start and stop a claimer `starts` times; the replies to "serve", counted by their first words. */
async function startRepeatedly(
  claimer: Claimer,
  starts: number,
): Promise<{ tally: Map<string, number>; lines: string[] }> {
  const tally = new Map<string, number>();
  const lines: string[] = [];
  for (let start = 0; start < starts; start++) {
    await claimer.send("serve");
    const line = await claimer.reply();
    lines.push(line);
    const key = line.split(" ").slice(0, line.startsWith("served") ? 1 : 2).join(" ");
    tally.set(key, (tally.get(key) ?? 0) + 1);
    await claimer.send("close");
    assert.equal(await claimer.reply(), "closed");
  }
  return { tally, lines };
}

const RACING_STARTS = 200;

for (const unprivileged of [false, true]) {
  const server = unprivileged ? "a server without privilege over files" : "a root server";
  Deno.test({
    name:
      `a symbolic link that comes and goes at PATH.tmp (${server}): every start serves or is refused by name, nothing is followed${
        canSwitchUser ? "" : " (ignored: needs root and setpriv)"
      }`,
    ignore: !canSwitchUser,
    fn: async () => {
      await using sock = await tempSocket();
      await Deno.chmod(sock.dir, 0o1777);
      const target = `${sock.dir}/nobody's`;
      await Deno.mkdir(target, { mode: 0o777 });
      await Deno.writeTextFile(`${target}/keep`, "keep me");
      await giveToNobody(target);
      const before = await snapshot(target);
      await using claimer = new Claimer(sock.path, { unprivileged, main: true });
      assert.equal(await claimer.reply(), "ready");
      const flipper = await Neighbour.start("flip", `${sock.path}.tmp`, target);
      let result;
      try {
        result = await startRepeatedly(claimer, RACING_STARTS);
      } finally {
        figures("claim", `starts (${server}) while another user flips a symbolic link at PATH.tmp`, {
          "links made": await flipper.stop(),
          starts: RACING_STARTS,
          ...Object.fromEntries(result?.tally ?? []),
        });
      }
      for (const line of result.lines) {
        if (line === "served") continue;
        assert.match(line, /^refused (foreign|in-use) /, line);
        assert.ok(line.includes(`Cannot listen on "${sock.path}": "${sock.path}.tmp"`), line);
      }
      assert.deepEqual(await snapshot(target), before, "the link's target was touched");
    },
  });
}

for (const allowAll of [false, true]) {
  Deno.test({
    name: `a symbolic link that comes and goes at PATH.lock is never followed (${
      allowAll ? "-A" : "the scoped flags"
    }): nothing is created at its target, every refusal says what is wrong${
      canSwitchUser ? "" : " (ignored: needs root and setpriv)"
    }`,
    ignore: !canSwitchUser,
    fn: async () => {
      await using sock = await tempSocket();
      await Deno.chmod(sock.dir, 0o1777);
      const target = `${sock.dir}/victim`;
      await using claimer = new Claimer(sock.path, { allowAll, main: true });
      assert.equal(await claimer.reply(), "ready");
      const flipper = await Neighbour.start("flip", `${sock.path}.lock`, target);
      let result;
      try {
        result = await startRepeatedly(claimer, RACING_STARTS / 2);
      } finally {
        figures(
          "claim",
          `starts (${allowAll ? "-A" : "scoped flags"}) while another user flips a symbolic link at PATH.lock`,
          {
            "links made": await flipper.stop(),
            starts: RACING_STARTS / 2,
            ...Object.fromEntries(result?.tally ?? []),
          },
        );
      }
      assert.equal(await exists(target), false, "a file was created at the link's target");
      for (const line of result.lines) {
        if (line === "served") continue;
        assert.match(line, /^refused (bad-lock|in-use) /, line);
        assert.ok(line.includes(`"${sock.path}.lock"`), line);
        assert.doesNotMatch(line, /permission denied/, line);
      }
    },
  });
}

Deno.test({
  name: `a lock another user holds is refused as in use, naming its owner${
    canSwitchUser ? "" : " (ignored: needs root and setpriv)"
  }`,
  ignore: !canSwitchUser,
  fn: async () => {
    await using sock = await tempSocket();
    await Deno.chmod(sock.dir, 0o1777);
    await using holder = await Neighbour.start("hold-lock", `${sock.path}.lock`);
    const before = await snapshot(sock.dir);
    const { code, stderr } = await host(sock.path, false);
    assert.equal(code, 1, stderr);
    assert.match(stderr, /^host: in-use: /, stderr);
    assert.ok(stderr.includes(`"${sock.path}.lock"`), stderr);
    assert.ok(stderr.includes("uid 65534"), `the message names the lock's owner: ${stderr}`);
    assert.deepEqual(await snapshot(sock.dir), before);
    await holder.stop();
  },
});

Deno.test({
  name: `another user's socket this user cannot connect to is refused as theirs, not called stale, untouched${
    canSwitchUser ? "" : " (ignored: needs root and setpriv)"
  }`,
  ignore: !canSwitchUser,
  fn: async () => {
    await using sock = await tempSocket();
    await Deno.chmod(sock.dir, 0o1777);
    await using listener = await Neighbour.start("listen", sock.path);
    const before = await snapshot(sock.dir);
    const { code, stderr } = await hostWithoutPrivilege(sock.path);
    assert.equal(code, 1, stderr);
    assert.match(stderr, /^host: foreign: /, stderr);
    assert.ok(stderr.includes("belongs to uid 65534 and this user cannot connect to it"), stderr);
    assert.doesNotMatch(stderr, /stale socket there/, stderr);
    assert.deepEqual(await snapshot(sock.dir), before);
    await listener.stop();
  },
});

Deno.test({
  name:
    `a data directory a group member renames to PATH.tmp is refused and kept, by a root server and without privilege${
      canSwitchUser ? "" : " (ignored: needs root and setpriv)"
    }`,
  ignore: !canSwitchUser,
  fn: async () => {
    await using sock = await tempSocket();
    // A directory its group may write (not sticky): a member may rename what is in it.
    await Deno.chown(sock.dir, 0, NOGROUP);
    await Deno.chmod(sock.dir, 0o770);
    const data = `${sock.dir}/data`;
    await Deno.mkdir(`${data}/state`, { recursive: true, mode: 0o750 });
    await Deno.writeTextFile(`${data}/state/db`, "the app's data");
    await asNobodyRun(["mv", data, `${sock.path}.tmp`]);
    const before = await snapshot(sock.dir);
    for (const unprivileged of [false, true]) {
      const { code, stderr } = await host(sock.path, unprivileged);
      assert.equal(code, 1, stderr);
      assert.match(stderr, /^host: foreign: /, stderr);
      assert.ok(stderr.includes(`"${sock.path}.tmp" is in the way`), stderr);
      assert.deepEqual(await snapshot(sock.dir), before, "the data directory was touched");
    }
  },
});
