// The examples (Dockerfile, Kubernetes Pod, systemd units), parsed and held to
// the code: socket paths, permission flags, probe flags, timeouts, exit codes.
// Their probe commands are then run for real against the demo.
import assert from "node:assert/strict";
import { load as parseYaml } from "js-yaml";
import { permissionFlags } from "../protocol.ts";
import { cliArgs, hasCommand, readUntil, ROOT, run, spawnDemo, TASKS, tempSocket, untilReady } from "./_util.ts";

const EXAMPLES = `${ROOT}examples`;

/** The probe's exit codes (design.md); 2 is never one of them. */
const PROBE_EXITS = new Set([0, 1, 3, 4, 5, 64]);
const TARGETS: Record<string, string> = {
  startupProbe: "/startupz",
  livenessProbe: "/livez",
  readinessProbe: "/readyz",
};

// ---- parsers ---------------------------------------------------------------

/** Milliseconds of `500ms`, `2s`, `1m`, or a bare number of seconds (Docker, systemd and the CLI agree on these). */
function ms(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|min|h)?$/.exec(text.trim());
  assert.ok(match, `"${text}" is not a duration`);
  return Number(match[1]) * { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 }[match[2] ?? "s"]!;
}

/** The value of `--name VALUE` or `--name=VALUE` in an argument list. */
function flag(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i].startsWith(`${name}=`)) return args[i].slice(name.length + 1);
  }
  return undefined;
}

interface Instruction {
  keyword: string;
  rest: string;
  stage: string;
}

/** Dockerfile instructions, continuation lines joined and comments dropped, each with the stage it is in. */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let stage = "";
  let pending = "";
  for (const line of text.split("\n")) {
    if (/^\s*#/.test(line)) continue;
    pending += line.replace(/\\\s*$/, "");
    if (/\\\s*$/.test(line)) continue;
    const match = /^\s*(\w+)\s+(.*)$/.exec(pending);
    pending = "";
    if (!match) continue;
    const keyword = match[1].toUpperCase();
    if (keyword === "FROM") stage = / AS (\S+)$/i.exec(match[2])?.[1] ?? `stage${instructions.length}`;
    instructions.push({ keyword, rest: match[2].trim(), stage });
  }
  return instructions;
}

/** A unit file: section → key → values in order (keys such as ExecStartPost= may repeat). */
type Unit = Map<string, Map<string, string[]>>;

function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  // systemd joins a line ending in a backslash with the next, with a space.
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1], section);
      continue;
    }
    const eq = line.indexOf("=");
    assert.ok(section && eq > 0, `Not a unit file line: "${line}"`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

function setting(unit: Unit, section: string, key: string): string {
  const values = unit.get(section)?.get(key);
  assert.ok(values?.length, `[${section}] has no ${key}=`);
  return values.at(-1)!;
}

/**
 * Split a unit's command line into words as systemd does for these examples:
 * quotes group; `${NAME}` anywhere and `$NAME` as a whole word take the unit's
 * Environment= value (empty when unset); `$$` is a literal `$`.
 */
function commandWords(line: string, env: Record<string, string> = {}): string[] {
  const words: string[] = [];
  for (const match of line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)) {
    const word = match[1] ?? match[2] ?? match[3];
    const whole = /^\$(\w+)$/.exec(word);
    if (whole) {
      words.push(...(env[whole[1]] ?? "").split(/\s+/).filter(Boolean));
      continue;
    }
    words.push(word.replace(/\$\$|\$\{(\w+)\}/g, (all, name) => all === "$$" ? "$" : env[name] ?? ""));
  }
  return words;
}

/** The variables a unit's Environment= lines set. */
function environment(unit: Unit): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of unit.get("Service")?.get("Environment") ?? []) {
    for (const [, name, value] of line.matchAll(/(\w+)=(\S*)/g)) env[name] = value;
  }
  return env;
}

// ---- shared checks ---------------------------------------------------------

/** A probe command: the compiled probe with `check`, an endpoint, the socket, a timeout. */
interface Probe {
  binary: string;
  args: string[];
  socket: string;
  target: string;
  timeout: number;
}

function probeOf(words: string[], binary: string, command = "check"): Probe {
  assert.equal(words[0], binary, `the probe is ${binary}`);
  assert.equal(words[1], command);
  const socket = flag(words, "--socket");
  assert.ok(socket, `no --socket in ${words.join(" ")}`);
  return {
    binary,
    args: words.slice(1),
    socket,
    target: flag(words, "--path") ?? "/healthz",
    timeout: ms(flag(words, "--timeout") ?? "2s"),
  };
}

/** A server's command line: `deno run` with exactly the server flags for `socket`, then `main.ts demo --socket`. */
function assertServerCommand(words: string[], socket: string): void {
  assert.match(words[0], /(^|\/)deno$/);
  assert.equal(words[1], "run");
  const script = words.indexOf("main.ts");
  assert.ok(script > 1, `no main.ts in ${words.join(" ")}`);
  assert.deepEqual(
    words.slice(2, script).sort(),
    ["--no-prompt", ...permissionFlags(socket, true).split(" ")].sort(),
    "a server gets read, write and net for the socket and its .tmp sibling, nothing else",
  );
  assert.equal(words[script + 1], "demo");
  assert.equal(flag(words, "--socket"), socket);
}

/** The compile task's output path, relative to the build directory. */
function compileOutput(): string {
  const output = /--output (\S+)/.exec(TASKS.compile)?.[1];
  assert.ok(output, "the compile task names its --output");
  return output;
}

// ---- the examples, parsed --------------------------------------------------

const dockerText = await Deno.readTextFile(`${EXAMPLES}/Dockerfile`);
const docker = parseDockerfile(dockerText);
const pod = parseYaml(await Deno.readTextFile(`${EXAMPLES}/pod.yaml`));
const units = {
  demo: parseUnit(await Deno.readTextFile(`${EXAMPLES}/systemd/healthsock-demo.service`)),
  check: parseUnit(await Deno.readTextFile(`${EXAMPLES}/systemd/healthsock-check.service`)),
  timer: parseUnit(await Deno.readTextFile(`${EXAMPLES}/systemd/healthsock-check.timer`)),
};

function dockerHealthcheck(): { options: Record<string, string>; words: string[] } {
  const healthcheck = docker.filter((i) => i.keyword === "HEALTHCHECK");
  assert.equal(healthcheck.length, 1, "one HEALTHCHECK");
  const match = /^((?:--\S+\s+)*)CMD\s+(\[.*\])$/.exec(healthcheck[0].rest);
  assert.ok(match, "HEALTHCHECK uses the exec form, CMD [...], so no shell sits between Docker and the exit code");
  const options = Object.fromEntries(
    match[1].trim().split(/\s+/).filter(Boolean).map((option) => option.slice(2).split("=") as [string, string]),
  );
  return { options, words: JSON.parse(match[2]) };
}

/** Where the Dockerfile puts the compiled probe (the destination of COPY --from=<probe stage>). */
function dockerProbeBinary(): { binary: string; source: string; stage: string } {
  const copy = docker.find((i) => i.keyword === "COPY" && i.rest.startsWith("--from="));
  assert.ok(copy, "a COPY --from= brings the compiled probe into the final image");
  const [from, source, binary] = copy.rest.split(/\s+/);
  return { binary, source, stage: from.slice("--from=".length) };
}

function podContainers(): Record<string, Record<string, unknown>> {
  const containers = pod.spec.containers as Record<string, unknown>[];
  return Object.fromEntries(containers.map((c) => [c.name as string, c]));
}

function podProbes(): Record<string, { probe: Probe; timeoutSeconds: number }> {
  const app = podContainers().app;
  const binary = dockerProbeBinary().binary;
  const probes: Record<string, { probe: Probe; timeoutSeconds: number }> = {};
  for (const kind of Object.keys(TARGETS)) {
    const spec = app[kind] as { exec?: { command: string[] }; timeoutSeconds?: number };
    assert.ok(spec?.exec, `the app container has an exec ${kind}`);
    probes[kind] = { probe: probeOf(spec.exec.command, binary), timeoutSeconds: spec.timeoutSeconds ?? 1 };
  }
  return probes;
}

/** The ExecStartPost= wait: its shell script, the probe inside it, and its bounds. */
function systemdWait(): { script: string; probe: Probe; attempts: number; pause: number } {
  const [shell, dashC, script] = commandWords(setting(units.demo, "Service", "ExecStartPost"), environment(units.demo));
  assert.equal(shell, "/bin/sh");
  assert.equal(dashC, "-c");
  const call = /(\/\S+\/healthsock [^&;]*?)\s*&&/.exec(script);
  assert.ok(call, "the wait runs the probe and stops when it exits 0");
  const attempts = Number(/\$\(seq (\d+)\)/.exec(script)?.[1]);
  const pause = ms(/sleep (\S+?);/.exec(script)?.[1] ?? "");
  assert.ok(attempts > 0, "the wait is bounded: for i in $(seq N)");
  const words = commandWords(call[1]);
  return { script, probe: probeOf(words, words[0]), attempts, pause };
}

function systemdCheck(): Probe {
  const words = commandWords(setting(units.check, "Service", "ExecStart"), environment(units.check));
  return probeOf(words, words[0]);
}

/** Every probe command the examples run, by where it comes from. */
function allProbes(): Record<string, Probe> {
  const { words } = dockerHealthcheck();
  const probes: Record<string, Probe> = { "Dockerfile HEALTHCHECK": probeOf(words, dockerProbeBinary().binary) };
  for (const [kind, { probe }] of Object.entries(podProbes())) probes[`pod.yaml ${kind}`] = probe;
  probes["healthsock-check.service"] = systemdCheck();
  probes["healthsock-demo.service ExecStartPost"] = systemdWait().probe;
  return probes;
}

/** The probe's arguments with the socket swapped for `path`, run as the CLI with the probe's scoped flags. */
function probeArgs(probe: Probe, path: string): string[] {
  const args = probe.args.map((arg) => arg === probe.socket ? path : arg);
  return cliArgs(path, false, args);
}

// ---- tests -------------------------------------------------------------------

Deno.test("Dockerfile compiles the probe for the socket its app serves and HEALTHCHECK asks", async () => {
  const version = docker.find((i) => i.keyword === "ARG" && i.rest.startsWith("DENO_VERSION="))?.rest.split("=")[1];
  assert.ok(version, "ARG DENO_VERSION pins the Deno image");
  assert.equal(version.split(".").slice(0, 2).join("."), Deno.version.deno.split(".").slice(0, 2).join("."));
  for (const from of docker.filter((i) => i.keyword === "FROM")) {
    assert.match(from.rest, /^denoland\/deno:\$\{DENO_VERSION\}( AS \S+)?$/);
  }

  const { words } = dockerHealthcheck();
  const { binary, source, stage } = dockerProbeBinary();
  const probe = probeOf(words, binary);
  const socket = probe.socket;
  assert.match(socket, /^\/run\/app\//);

  // The probe stage builds with `deno task compile`, the socket given at build time.
  const build = docker.find((i) => i.stage === stage && i.keyword === "RUN" && i.rest.includes("deno task compile"));
  assert.equal(build?.rest, `HEALTHSOCK_SOCKET=${socket} deno task compile`);
  const workdir = docker.find((i) => i.stage === stage && i.keyword === "WORKDIR")?.rest;
  assert.equal(source, `${workdir}/${compileOutput()}`, "COPY takes the file the compile task writes");

  // The final stage runs the app as an unprivileged user who owns the socket's directory.
  const final = docker.filter((i) => i.stage === docker.at(-1)!.stage);
  const user = final.find((i) => i.keyword === "USER")?.rest;
  assert.ok(user && user !== "root", "the app does not run as root");
  const dir = socket.slice(0, socket.lastIndexOf("/"));
  assert.ok(
    final.some((i) => i.keyword === "RUN" && i.rest === `mkdir -p ${dir} && chown ${user}:${user} ${dir}`),
    `${dir} is made and given to ${user}`,
  );
  const cmd = final.find((i) => i.keyword === "CMD");
  assert.ok(cmd && cmd.rest.startsWith("["), "CMD uses the exec form, so the app gets SIGTERM itself");
  assertServerCommand(JSON.parse(cmd.rest), socket);

  // Both stages copy the files the build and main.ts need.
  const graph = JSON.parse((await run("deno", ["info", "--json", `${ROOT}main.ts`])).stdout);
  const local = (graph.modules as { specifier: string }[])
    .map((m) => m.specifier)
    .filter((s) => s.startsWith("file://"))
    .map((s) => s.slice(`file://${ROOT}`.length));
  assert.ok(local.includes("main.ts"));
  for (const copy of docker.filter((i) => i.keyword === "COPY" && !i.rest.startsWith("--from="))) {
    const sources = copy.rest.split(/\s+/).slice(0, -1);
    const globs = sources.map((s) => new RegExp(`^${s.replaceAll(".", "\\.").replaceAll("*", "[^/]*")}$`));
    for (const file of ["deno.json", "deno.lock", ...local]) {
      assert.ok(globs.some((glob) => glob.test(file)), `${copy.stage}: COPY ${copy.rest} leaves out ${file}`);
    }
  }
});

Deno.test("Dockerfile HEALTHCHECK gives the probe more time than its own --timeout", () => {
  const { options, words } = dockerHealthcheck();
  const probe = probeOf(words, dockerProbeBinary().binary);
  assert.ok(options.timeout, "HEALTHCHECK sets --timeout");
  assert.ok(
    ms(options.timeout) > probe.timeout,
    `Docker's --timeout=${options.timeout} must exceed the probe's --timeout, so the probe reports exit 4 itself`,
  );
  assert.ok(Number(options.retries) >= 1);
  assert.ok(["/healthz", "/livez", "/readyz", "/startupz"].includes(probe.target));
  assert.ok(words.includes("--quiet"), "Docker keeps stderr, the one line saying why; stdout is noise");
  assert.doesNotMatch(dockerText, /exit 2\b/, "nothing in the Dockerfile exits 2, which Docker reserves");
});

Deno.test("pod.yaml probes /startupz, /livez and /readyz through the shared emptyDir with room for --timeout", () => {
  assert.equal(pod.apiVersion, "v1");
  assert.equal(pod.kind, "Pod");
  const volume = (pod.spec.volumes as { name: string; emptyDir?: unknown }[]).find((v) => "emptyDir" in v);
  assert.ok(volume, "the socket's directory is an emptyDir");

  const probes = podProbes();
  const socket = probes.livenessProbe.probe.socket;
  const mountPath = socket.slice(0, socket.lastIndexOf("/"));
  assert.equal(mountPath, "/run/app");
  for (const container of Object.values(podContainers())) {
    const mounts = container.volumeMounts as { name: string; mountPath: string }[];
    assert.ok(
      mounts.some((m) => m.name === volume.name && m.mountPath === mountPath),
      `${container.name} mounts ${volume.name} at ${mountPath}`,
    );
  }
  for (const [kind, { probe, timeoutSeconds }] of Object.entries(probes)) {
    assert.equal(probe.target, TARGETS[kind], `${kind} asks ${TARGETS[kind]}`);
    assert.equal(probe.socket, socket, `${kind} asks the app's socket`);
    assert.ok(
      timeoutSeconds * 1000 > probe.timeout,
      `${kind}: timeoutSeconds ${timeoutSeconds} must exceed the probe's --timeout ${probe.timeout} ms`,
    );
  }

  const app = podContainers().app;
  assertServerCommand(app.args as string[], socket);
  assert.equal(app.command, undefined, "args keep the image's entrypoint (tini), which forwards SIGTERM");
  // The image is the one the Dockerfile's build comment tags.
  const tag = /docker build -f examples\/Dockerfile -t (\S+) \./.exec(dockerText)?.[1];
  for (const container of Object.values(podContainers())) assert.equal(container.image, tag);
  // The optional sidecar watches the same socket with the same probe.
  const sidecar = probeOf(podContainers()["health-log"].args as string[], dockerProbeBinary().binary, "watch");
  assert.equal(sidecar.socket, socket);
  // The image's user owns what the app creates.
  assert.equal(pod.spec.securityContext.runAsNonRoot, true);
});

Deno.test("systemd units keep the socket in RuntimeDirectory= and bound the probe's waits", () => {
  const runtime = setting(units.demo, "Service", "RuntimeDirectory");
  const socket = `/run/${runtime}/app.sock`;
  const start = commandWords(setting(units.demo, "Service", "ExecStart"), environment(units.demo));
  assertServerCommand(start, socket);

  // ExecStartPost= waits for /readyz, at most N tries, within TimeoutStartSec=.
  const wait = systemdWait();
  assert.equal(wait.probe.socket, socket);
  assert.equal(wait.probe.target, "/readyz");
  const budget = wait.attempts * (wait.probe.timeout + wait.pause);
  const timeoutStart = ms(setting(units.demo, "Service", "TimeoutStartSec"));
  assert.ok(timeoutStart > budget, `TimeoutStartSec= (${timeoutStart} ms) must exceed the wait (${budget} ms)`);
  assert.match(wait.script, /exit \$code'?$/, "after the last try the wait exits with the probe's own code");
  assert.doesNotMatch(wait.script, /exit 2\b/);

  // The timer's oneshot asks /livez as the same user, only while the app runs.
  const check = systemdCheck();
  assert.equal(check.socket, socket);
  assert.equal(check.target, "/livez");
  assert.equal(check.binary, wait.probe.binary);
  assert.equal(setting(units.check, "Service", "Type"), "oneshot");
  assert.ok(ms(setting(units.check, "Service", "TimeoutStartSec")) > check.timeout);
  for (const key of ["User", "DynamicUser"]) {
    assert.equal(setting(units.check, "Service", key), setting(units.demo, "Service", key), `the same ${key}=`);
  }
  assert.equal(setting(units.check, "Unit", "Requisite"), "healthsock-demo.service");
  assert.equal(setting(units.timer, "Unit", "BindsTo"), "healthsock-demo.service");
  assert.ok(units.timer.get("Timer")?.get("OnUnitActiveSec"), "the timer repeats");
  assert.equal(units.timer.get("Timer")?.get("Unit"), undefined, "the timer starts its namesake, the check");
});

Deno.test(
  `systemd-analyze verifies the units, the two binaries at paths that exist here${
    hasCommand("systemd-analyze") ? "" : " (ignored: systemd-analyze is not installed)"
  }`,
  { ignore: !hasCommand("systemd-analyze") },
  async () => {
    // verify fails on an ExecStart= binary that does not exist; the compiled
    // probe cannot be built here and Deno may live elsewhere, so the copies
    // point at Deno's own executable and a stand-in script. Nothing else changes.
    const dir = await Deno.makeTempDir({ prefix: "healthsock-units-" });
    try {
      const stub = `${dir}/healthsock`;
      await Deno.writeTextFile(stub, "#!/bin/sh\nexit 0\n");
      await Deno.chmod(stub, 0o755);
      const paths: string[] = [];
      for (const name of ["healthsock-demo.service", "healthsock-check.service", "healthsock-check.timer"]) {
        const text = (await Deno.readTextFile(`${EXAMPLES}/systemd/${name}`))
          .replaceAll("/usr/local/bin/healthsock", stub)
          .replaceAll("/usr/local/bin/deno", Deno.execPath());
        await Deno.writeTextFile(`${dir}/${name}`, text);
        paths.push(`${dir}/${name}`);
      }
      const out = await run("systemd-analyze", ["verify", "--man=no", ...paths]);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stderr.trim(), "", "no warnings");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("every example's probe command exits 3 naming the socket when nothing serves it", async () => {
  await using sock = await tempSocket();
  for (const [where, probe] of Object.entries(allProbes())) {
    const out = await run("deno", probeArgs(probe, sock.path));
    assert.equal(out.code, 3, `${where}: ${out.stderr}`);
    assert.ok(PROBE_EXITS.has(out.code));
    const lines = out.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `${where}: one line on stderr`);
    assert.ok(lines[0].includes(sock.path), `${where}: the line names the socket: ${lines[0]}`);
  }
});

Deno.test("every example's probe command exits 0 against the demo once it is ready", async () => {
  await using sock = await tempSocket();
  await using demo = spawnDemo(sock.path, ["--poll-interval", "0", "--ready-after", "0"]);
  await readUntil(demo.log, /Serving health on/);
  await untilReady(sock.path);
  for (const [where, probe] of Object.entries(allProbes())) {
    const out = await run("deno", probeArgs(probe, sock.path));
    assert.equal(out.code, 0, `${where}: ${out.stderr}`);
  }
});

Deno.test("healthsock-demo.service's ExecStartPost= wait passes on a ready app and keeps the probe's code otherwise", async () => {
  await using sock = await tempSocket();
  const wait = systemdWait();
  // The script as systemd hands it to /bin/sh, with the probe run through the
  // CLI (scoped to the temporary socket) and two tries instead of many.
  const probe = `${sock.dir}/healthsock`;
  await Deno.writeTextFile(
    probe,
    `#!/bin/sh\nexec ${["deno", ...cliArgs(sock.path, false, [])].join(" ")} "$@"\n`,
  );
  await Deno.chmod(probe, 0o755);
  const script = wait.script
    .replaceAll(wait.probe.binary, probe)
    .replaceAll(wait.probe.socket, sock.path)
    .replace(/\$\(seq \d+\)/, "$(seq 2)");

  const none = await run("sh", ["-c", script]);
  assert.equal(none.code, 3, `no server: the last try's exit 3 fails the start\n${none.stderr}`);
  assert.equal(none.stderr.trim().split("\n").length, 2, "one line per try");

  const usage = await run("sh", ["-c", script.replace("--path /readyz", "--path readyz")]);
  assert.equal(usage.code, 64, "a usage error stops at once");

  await using demo = spawnDemo(sock.path, ["--poll-interval", "0", "--ready-after", "0"]);
  await readUntil(demo.log, /Serving health on/);
  const ready = await run("sh", ["-c", script.replace("$(seq 2)", "$(seq 20)")]);
  assert.equal(ready.code, 0, ready.stderr);
});
