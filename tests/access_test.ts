// Access control is the socket file's owner, group and mode.
// The tests switch user with setpriv when they run as root (as here and in
// CI); otherwise they are ignored, with the reason in their names.
import assert from "node:assert/strict";
import { probe, ProbeError } from "../client.ts";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { cliArgs, hasCommand, run, tempSocket } from "./_util.ts";
import type { Output } from "./_util.ts";
import { asNobody, assertServes, isRoot, NOBODY, NOGROUP } from "./fixtures/hardening.ts";

const DAEMON_GROUP = 1;
const canSwitchUser = isRoot() && hasCommand("setpriv") && hasCommand("socat");
const needsRoot = "needs root, setpriv and socat to run a client as another user";

function health(): Health {
  return new Health({ ready: true }).add("db", () => "pass");
}

/** socat as `nobody` with the given primary group and supplementary groups, asking for /healthz. */
function socatAs(path: string, gid: number, groups: number[] = []): Promise<Output> {
  return run("setpriv", [
    "--reuid",
    String(NOBODY),
    "--regid",
    String(gid),
    ...(groups.length ? ["--groups", groups.join(",")] : ["--clear-groups"]),
    "--",
    "socat",
    "-T",
    "5",
    "-",
    `UNIX-CONNECT:${path}`,
  ], { stdin: "GET /healthz\n" });
}

async function modeOf(path: string): Promise<number> {
  return (await Deno.lstat(path)).mode! & 0o7777;
}

Deno.test({
  name: `a socket at mode 0600 refuses another user${canSwitchUser ? "" : ` (ignored: ${needsRoot})`}`,
  ignore: !canSwitchUser,
  fn: async () => {
    await using sock = await tempSocket();
    // The directory must be searchable by nobody, so only the socket's own mode decides.
    await Deno.chmod(sock.dir, 0o755);
    await using server = await serve(sock.path, health());
    assert.equal(await modeOf(sock.path), 0o600, "the default mode is 0600");
    const refused = await socatAs(sock.path, NOGROUP);
    assert.notEqual(refused.code, 0, refused.stdout);
    assert.match(refused.stderr, /Permission denied/);
    assert.equal(refused.stdout, "", "no health data leaks to another user");
    // The owner is still served.
    await assertServes(server.path);
  },
});

Deno.test({
  name: `a socket at mode 0660 admits its group and refuses others${canSwitchUser ? "" : ` (ignored: ${needsRoot})`}`,
  ignore: !canSwitchUser,
  fn: async () => {
    await using sock = await tempSocket();
    // A set-group-ID directory of group nogroup: the socket created in it takes that group.
    await Deno.chown(sock.dir, 0, NOGROUP);
    await Deno.chmod(sock.dir, 0o2755);
    await using server = await serve(sock.path, health(), { mode: 0o660 });
    const info = await Deno.lstat(sock.path);
    assert.equal(info.gid, NOGROUP, "the socket has the directory's group");
    assert.equal(await modeOf(sock.path), 0o660);

    const member = await socatAs(sock.path, NOGROUP);
    assert.equal(member.code, 0, member.stderr);
    assert.equal(JSON.parse(member.stdout).status, "pass");

    const supplementary = await socatAs(sock.path, DAEMON_GROUP, [NOGROUP]);
    assert.equal(supplementary.code, 0, supplementary.stderr);
    assert.equal(JSON.parse(supplementary.stdout).status, "pass");

    const outsider = await socatAs(sock.path, DAEMON_GROUP);
    assert.notEqual(outsider.code, 0, outsider.stdout);
    assert.match(outsider.stderr, /Permission denied/);
    await assertServes(server.path);
  },
});

Deno.test({
  name: `nc as another user is refused by a 0600 socket${
    canSwitchUser && hasCommand("nc") ? "" : " (ignored: needs root, setpriv and nc)"
  }`,
  ignore: !(canSwitchUser && hasCommand("nc")),
  fn: async () => {
    await using sock = await tempSocket();
    await Deno.chmod(sock.dir, 0o755);
    await using server = await serve(sock.path, health());
    const { code, stdout, stderr } = await run("setpriv", asNobody(["nc", "-U", "-N", sock.path]), {
      stdin: "GET /healthz\n",
    });
    assert.notEqual(code, 0, stdout);
    assert.match(stderr, /Permission denied/);
    await assertServes(server.path);
  },
});

/**
 * Run `healthsock check` as a user the socket does not admit. As root: root
 * without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped by setpriv) is
 * held to file modes like anyone else, and can still run deno from root's
 * own directories, which `nobody` cannot.
 */
function checkWithoutPrivilege(path: string): Promise<Output> {
  return run("setpriv", [
    "--bounding-set=-dac_override,-dac_read_search",
    "--",
    "deno",
    ...cliArgs(path, false, ["check", "--socket", path]),
  ]);
}

Deno.test({
  name: `check's permission error names the socket and says what to check${
    isRoot() && !hasCommand("setpriv") ? " (ignored: needs setpriv when run as root)" : ""
  }`,
  ignore: isRoot() && !hasCommand("setpriv"),
  fn: async () => {
    await using sock = await tempSocket();
    await using server = await serve(sock.path, health());
    const expected =
      `Cannot connect to "${sock.path}": permission denied; check that this user may write the socket (its owner, group and mode) and search its directory`;
    if (!isRoot()) {
      // Not root: the owner is refused too once the mode grants nothing.
      await Deno.chmod(sock.path, 0o000);
      const error = await probe(sock.path, { timeout: 2000 }).then(() => undefined, (e) => e);
      assert.ok(error instanceof ProbeError, String(error));
      assert.equal(error.kind, "unreachable");
      assert.equal(error.message, expected);
      await Deno.chmod(sock.path, 0o600);
      return;
    }
    // The socket belongs to another user (nobody) at 0600.
    await Deno.chown(sock.path, NOBODY, NOGROUP);
    const { code, stdout, stderr } = await checkWithoutPrivilege(sock.path);
    assert.equal(code, 3, `exit 3 (unreachable) expected; stdout ${stdout}; stderr ${stderr}`);
    assert.equal(stderr.trim(), `healthsock: ${expected}`);
    await assertServes(server.path);
  },
});

Deno.test({
  name: `check's permission error also covers a directory it cannot search${
    isRoot() && hasCommand("setpriv") ? "" : " (ignored: needs root and setpriv)"
  }`,
  ignore: !(isRoot() && hasCommand("setpriv")),
  fn: async () => {
    await using sock = await tempSocket();
    await using server = await serve(sock.path, health(), { mode: 0o666 });
    // The socket admits everyone, but its directory (nobody's, 0700) cannot be searched.
    await Deno.chown(sock.dir, NOBODY, NOGROUP);
    const { code, stderr } = await checkWithoutPrivilege(sock.path);
    assert.equal(code, 3, stderr);
    assert.ok(stderr.includes(`"${sock.path}": permission denied`), stderr);
    assert.match(stderr, /search its directory/);
    await Deno.chown(sock.dir, 0, 0);
    await assertServes(server.path);
  },
});
