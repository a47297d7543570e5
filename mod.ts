/**
 * healthsock: publish a program's health on a Unix domain socket instead of an
 * HTTP port.
 *
 * The program registers checks on a {@linkcode Health} and serves them with
 * {@linkcode serve}; probes ask over the socket, in line mode
 * (`socat - UNIX-CONNECT:/tmp/app.sock <<< "GET /healthz"`) or HTTP/1.1
 * (`curl --unix-socket /tmp/app.sock http://localhost/healthz`), or with
 * {@linkcode probe}. Who may ask is decided by the socket file's owner and mode.
 *
 * `serve()` answers from a Worker beside the app, so probes are answered at
 * once whatever the main thread does; every report then says how long the
 * main thread's event loop has been blocked (the `mainloop` entry).
 *
 * Run a server with `--allow-read=P,P.tmp,P.lock --allow-write=P,P.tmp,P.lock
 * --allow-net=unix:P,unix:P.tmp/s` for a socket path `P`, a client with
 * `--allow-read=P --allow-write=P --allow-net=unix:P` (see {@linkcode permissionFlags}).
 *
 * @example Serve health, probe it, drain
 * ```ts
 * import { Health, probe, serve } from "@healthsock/healthsock";
 *
 * const health = new Health();
 * health.add("db", async (signal) => {
 *   // throw, or return "fail", when the database does not answer
 * }, { timeout: 500 });
 * await using server = await serve("/tmp/app.sock", health);
 * health.markReady();
 *
 * const result = await probe("/tmp/app.sock", { target: "/readyz" });
 * console.log(result.status); // "pass"
 * await server.drain();
 * ```
 *
 * @module
 */
export { serve } from "./serve.ts";
export { SocketError } from "./server.ts";
export type { HealthServer, ServeOptions, SocketErrorReason } from "./server.ts";
export { Health } from "./health.ts";
export type { HealthEventMap, HealthOptions } from "./health.ts";
export { eventLoopLag, heapUsage, progress } from "./builtin_checks.ts";
export type { EventLoopLagOptions, HeapUsageOptions, ProgressCheck, ProgressOptions } from "./builtin_checks.ts";
export type { CheckDefinition, CheckFunction, CheckOptions, CheckOutcome } from "./check.ts";
export { LIFECYCLE_CHECK, MAIN_LOOP_CHECK } from "./model.ts";
export type { CheckKind, HealthChange, Lifecycle, ReportOptions, ServiceFields } from "./model.ts";
export { probe, ProbeError, watch } from "./client.ts";
export type { ProbeErrorKind, ProbeOptions, ProbeResult, WatchOptions } from "./client.ts";
export { permissionFlags } from "./paths.ts";
export type { PermissionFlagsOptions } from "./paths.ts";
export { renderVerbose } from "./report.ts";
export type { CheckResult, Endpoint, HealthReport, HealthStatus, VerboseOptions } from "./report.ts";
export type { Framing } from "./protocol.ts";
export { NOTIFY_VARIABLES, notifyPermissionFlags, notifySystemd } from "./notify.ts";
export type { NotifyEnvironment, NotifyOptions, SystemdNotifier } from "./notify.ts";
