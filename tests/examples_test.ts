// The examples (Dockerfile, Kubernetes Pod, systemd units), parsed and held to
// the code: socket paths, permission flags, probe flags, timeouts, exit codes.
// Their probe commands are then run for real against the demo.
import assert from "node:assert/strict";
import { load as parseYaml } from "js-yaml";
import { probe } from "../client.ts";
import { notifyPermissionFlags } from "../notify.ts";
import { permissionFlags } from "../paths.ts";
import {
  cliArgs,
  figures,
  hasCommand,
  readUntil,
  receiver,
  restOf,
  ROOT,
  run,
  spawnDemo,
  spawnDeno,
  TASKS,
  tempSocket,
  untilReady,
  watchdogPings,
} from "./_util.ts";
import type { DemoProcess, TempSocket } from "./_util.ts";

const EXAMPLES = `${ROOT}examples`;

/** The probe's exit codes (README, "healthsock check exit codes"); 2 is never one of them. */
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

/** The V8 flag the container examples run the server with, as the demo task does (README, Memory): not a permission. */
const SMALL_HEAP = "--v8-flags=--optimize-for-size";

/**
 * A server's command line: `deno run` with exactly the server flags for `socket` (and `extra`), then
 * `main.ts demo --socket`.
 */
function assertServerCommand(words: string[], socket: string, extra = ""): void {
  assert.match(words[0], /(^|\/)deno$/);
  assert.equal(words[1], "run");
  const script = words.indexOf("main.ts");
  assert.ok(script > 1, `no main.ts in ${words.join(" ")}`);
  assert.deepEqual(
    words.slice(2, script).sort(),
    ["--no-prompt", ...permissionFlags(socket, { server: true }).split(" "), ...extra.split(" ").filter(Boolean)]
      .sort(),
    "a server gets read, write and net for the socket, its lock file and temporary names, nothing else",
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
};

/** Where systemd's service manager listens for a system service's notifications (its NOTIFY_SOCKET). */
const SYSTEMD_NOTIFY = "/run/systemd/notify";

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

/** Every probe command the examples run, by where it comes from. */
function allProbes(): Record<string, Probe> {
  const { words } = dockerHealthcheck();
  const probes: Record<string, Probe> = { "Dockerfile HEALTHCHECK": probeOf(words, dockerProbeBinary().binary) };
  for (const [kind, { probe }] of Object.entries(podProbes())) probes[`pod.yaml ${kind}`] = probe;
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
  assertServerCommand(JSON.parse(cmd.rest), socket, SMALL_HEAP);

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
  assertServerCommand(app.args as string[], socket, SMALL_HEAP);
  assert.equal(app.command, undefined, "args keep the image's entrypoint (tini), which forwards SIGTERM");
  // Deletion takes the Pod out of its endpoints as SIGTERM arrives; the drain answers while that spreads, and the
  // grace period covers the drain and the demo's 5 s shutdownTimeout for requests in progress.
  const drain = ms(flag(app.args as string[], "--drain-delay") ?? "1s");
  assert.ok(drain >= 5000, `--drain-delay ${drain} ms leaves no time for the endpoint removal to spread`);
  assert.ok(
    pod.spec.terminationGracePeriodSeconds * 1000 > drain + 5000,
    `terminationGracePeriodSeconds ${pod.spec.terminationGracePeriodSeconds} must exceed the drain and shutdown`,
  );
  // The image is the one the Dockerfile's build comment tags.
  const tag = /docker build -f examples\/Dockerfile -t (\S+) \./.exec(dockerText)?.[1];
  for (const container of Object.values(podContainers())) assert.equal(container.image, tag);
  // The optional sidecar watches the same socket with the same probe.
  const sidecar = probeOf(podContainers()["health-log"].args as string[], dockerProbeBinary().binary, "watch");
  assert.equal(sidecar.socket, socket);
  // The image's user owns what the app creates.
  assert.equal(pod.spec.securityContext.runAsNonRoot, true);
});

Deno.test("systemd unit is Type=notify from the main process with a watchdog that fits the demo's checks", () => {
  const runtime = setting(units.demo, "Service", "RuntimeDirectory");
  const socket = `/run/${runtime}/app.sock`;
  const start = commandWords(setting(units.demo, "Service", "ExecStart"), environment(units.demo));
  // The server's flags, and the notifier's: --unstable-net, its bind path beside the socket, systemd's socket, env.
  assertServerCommand(start, socket, notifyPermissionFlags(`${socket}.notify`, SYSTEMD_NOTIFY));
  assert.ok(start.includes("--notify"), "the demo is told to notify");

  assert.equal(setting(units.demo, "Service", "Type"), "notify");
  assert.equal(setting(units.demo, "Service", "NotifyAccess"), "main", "Deno is the main process: no other may notify");
  assert.equal(units.demo.get("Service")?.get("ExecStartPost"), undefined, "READY=1 replaces the polling wait");
  const unitFiles = [...Deno.readDirSync(`${EXAMPLES}/systemd`)].map((entry) => entry.name);
  assert.deepEqual(unitFiles, ["healthsock-demo.service"], "the watchdog replaces the timer and its check");

  // Pings go every half WatchdogSec=; they must come rarely enough to be cheap and the watchdog must outlast
  // the ticker check's own grace (--unhealthy-after), which is what /livez is allowed before it fails.
  const watchdog = ms(setting(units.demo, "Service", "WatchdogSec"));
  const unhealthyAfter = ms(flag(start, "--unhealthy-after") ?? "2s");
  assert.ok(watchdog / 2 >= 1000, `WatchdogSec= ${watchdog} ms pings more than once a second`);
  assert.ok(watchdog > unhealthyAfter, `WatchdogSec= ${watchdog} ms is shorter than --unhealthy-after`);
  // Started means READY=1: Deno's start-up plus the demo's --ready-after fit in TimeoutStartSec=.
  const readyAfter = ms(flag(start, "--ready-after") ?? "1s");
  assert.ok(ms(setting(units.demo, "Service", "TimeoutStartSec")) >= readyAfter + 10_000);
  // SIGTERM drains for --drain-delay, within TimeoutStopSec=.
  assert.equal(setting(units.demo, "Service", "KillSignal"), "SIGTERM");
  assert.ok(ms(setting(units.demo, "Service", "TimeoutStopSec")) > ms(flag(start, "--drain-delay") ?? "1s"));
  assert.equal(setting(units.demo, "Service", "Restart"), "on-failure", "a watchdog timeout or trigger restarts");
});

Deno.test(
  `systemd-analyze verifies the unit, with Deno at a path that exists here${
    hasCommand("systemd-analyze") ? "" : " (ignored: systemd-analyze is not installed)"
  }`,
  { ignore: !hasCommand("systemd-analyze") },
  async () => {
    // verify fails on an ExecStart= binary that does not exist; Deno may live
    // elsewhere, so the copy points at Deno's own executable. Nothing else changes.
    const dir = await Deno.makeTempDir({ prefix: "healthsock-units-" });
    try {
      const name = "healthsock-demo.service";
      const text = (await Deno.readTextFile(`${EXAMPLES}/systemd/${name}`))
        .replaceAll("/usr/local/bin/deno", Deno.execPath());
      await Deno.writeTextFile(`${dir}/${name}`, text);
      const out = await run("systemd-analyze", ["verify", "--man=no", `${dir}/${name}`]);
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

/**
 * healthsock-demo.service's ExecStart=, word for word, with the unit's paths moved into a temporary directory:
 * the socket (and so its siblings) to `sock.path`, systemd's notify socket to `notify`. systemd's side is the
 * environment it would set (`env`) and a datagram socket at `notify`.
 */
function spawnUnit(sock: TempSocket, env: Record<string, string>, args: string[] = []): DemoProcess {
  const words = commandWords(setting(units.demo, "Service", "ExecStart"), environment(units.demo))
    .map((word) =>
      word.replaceAll("/run/app/app.sock", sock.path).replaceAll(SYSTEMD_NOTIFY, `${sock.dir}/notify`)
        .replace(/^main\.ts$/, `${ROOT}main.ts`)
    );
  assert.match(words[0], /(^|\/)deno$/);
  return spawnDeno([...words.slice(1), ...args], env);
}

Deno.test("healthsock-demo.service tells NOTIFY_SOCKET READY=1 once /readyz passes, pings, and STOPPING=1 on SIGTERM", async () => {
  await using sock = await tempSocket();
  using systemd = receiver(`${sock.dir}/notify`);
  // systemd sets WATCHDOG_USEC from WatchdogSec=; a shorter one here keeps the test short.
  await using demo = spawnUnit(sock, { NOTIFY_SOCKET: systemd.path, WATCHDOG_USEC: "1000000" }, [
    "--ready-after",
    "2s",
  ]);
  assert.equal((await systemd.next(30_000)).text, "STATUS=starting");
  const early = await probe(sock.path, { target: "/readyz" });
  assert.equal(early.status, "fail", "not ready yet, and no READY=1 said");

  const { message: ready, skipped } = await systemd.until(/^READY=1/);
  assert.equal(ready.text, "READY=1\nSTATUS=ready: 3 checks pass");
  assert.ok(skipped.every((m) => m.text === "WATCHDOG=1"), skipped.map((m) => m.text).join(" | "));
  assert.equal((await probe(sock.path, { target: "/readyz" })).status, "pass");

  // Pings keep coming while /livez passes (their period is a figure; notify_test compares periods).
  const { period } = await watchdogPings(systemd, 4);
  figures("examples", "healthsock-demo.service watchdog pings", { "period ms": period.toFixed(0) });

  demo.child.kill("SIGTERM");
  const { message: stopping } = await systemd.until(/^STOPPING=1/);
  assert.equal(stopping.text, "STOPPING=1\nSTATUS=draining");
  assert.equal((await demo.child.status).code, 0);
  assert.equal(await Deno.lstat(`${sock.path}.notify`).then(() => true, () => false), false);
});

Deno.test("healthsock-demo.service sends WATCHDOG=trigger naming the ticker and stops pinging once /livez fails", async () => {
  await using sock = await tempSocket();
  using systemd = receiver(`${sock.dir}/notify`);
  await using _demo = spawnUnit(sock, { NOTIFY_SOCKET: systemd.path, WATCHDOG_USEC: "1000000" }, [
    "--stall-after",
    "500ms",
  ]);
  const { message, skipped } = await systemd.until(/^WATCHDOG=trigger/, 30_000);
  assert.match(message.text, /^WATCHDOG=trigger\nSTATUS=live check failed: ticker \(no tick for \d+\.\d s\)$/);
  assert.ok(skipped.some((m) => m.text === "WATCHDOG=1"), "pings went out while /livez passed");
  // Five periods: no ping may cancel the trigger.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  assert.deepEqual(systemd.pending().map((m) => m.text), []);
});

Deno.test("healthsock-demo.service without NOTIFY_SOCKET serves as usual and binds nothing", async () => {
  await using sock = await tempSocket();
  await using demo = spawnUnit(sock, {}, ["--ready-after", "0"]);
  await readUntil(demo.log, /Serving health on/);
  await untilReady(sock.path);
  demo.child.kill("SIGTERM");
  const rest = await restOf(demo.log);
  assert.equal((await demo.child.status).code, 0);
  assert.doesNotMatch(rest, /systemd|notify/i);
  assert.equal(await Deno.lstat(`${sock.path}.notify`).then(() => true, () => false), false);
});

Deno.test("healthsock-demo.service warns once and keeps serving when NOTIFY_SOCKET points nowhere", async () => {
  await using sock = await tempSocket();
  const nowhere = `${sock.dir}/notify`;
  await using demo = spawnUnit(sock, { NOTIFY_SOCKET: nowhere, WATCHDOG_USEC: "200000" }, ["--ready-after", "0"]);
  const { line } = await readUntil(demo.log, /Cannot notify systemd/);
  assert.ok(line.includes(nowhere), line);
  assert.match(line, /check NOTIFY_SOCKET/);
  await untilReady(sock.path);
  assert.equal((await probe(sock.path, { target: "/livez" })).status, "pass");
  demo.child.kill("SIGTERM");
  const rest = await restOf(demo.log);
  assert.equal((await demo.child.status).code, 0);
  assert.doesNotMatch(rest, /Cannot notify systemd/, "one warning, not one per message");
});

Deno.test("README's systemd block is the unit's [Service] section, setting for setting, so it runs as copied", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const section = readme.slice(readme.indexOf("### systemd: `examples/systemd/`"));
  const block = /```ini\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block, "README has an ini block under its systemd heading");
  const shown = parseUnit(block).get("Service");
  const service = units.demo.get("Service");
  assert.ok(shown && service);
  assert.deepEqual(
    Object.fromEntries([...shown].map(([key, values]) => [key, values.map((v) => v.replace(/\s+/g, " "))])),
    Object.fromEntries([...service].map(([key, values]) => [key, values.map((v) => v.replace(/\s+/g, " "))])),
  );
  // What running main.ts needs: where it is, and a cache the dynamic user may write.
  for (const key of ["WorkingDirectory", "CacheDirectory", "Environment"]) assert.ok(shown.has(key), key);
  assert.match(environment(units.demo).DENO_DIR ?? "", /^%C\//);
});
