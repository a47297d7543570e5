/**
 * `serve()`: picks the thread a server runs on, so it sits above both: the
 * same-thread server (server.ts) and the Worker's host (worker_host.ts, loaded
 * only when asked for).
 *
 * @module
 */
import type { Health } from "./health.ts";
import { resolveOptions, startServer } from "./server.ts";
import type { HealthServer, ServeOptions } from "./server.ts";
import { claim } from "./socket_file.ts";

/**
 * Serve a {@linkcode Health} on a Unix socket.
 *
 * The socket is served from a Worker by default (`thread: "worker"`), beside
 * the app: checks still run on the thread that added them, and the Worker
 * answers from their latest results, running an on-request check on the main
 * thread while that thread turns. Every report then carries a `mainloop`
 * entry saying how long the main thread's event loop has been blocked.
 *
 * The path is claimed for this server alone (a lock file `PATH.lock` is held
 * while it serves), and the socket is bound inside a private directory
 * (`PATH.tmp/`), given its mode, then renamed onto `path`: it never exists
 * at `path` with the wrong mode, nobody can connect before the mode is set,
 * and a stale socket is replaced atomically. A live socket, a file that is not
 * a socket, or another user's socket at `path` is refused untouched. On
 * shutdown the socket is removed only if it is still the one this server
 * created (same device and inode).
 *
 * @param path The absolute socket path.
 * @param health The checks and lifecycle to serve.
 * @param options Mode, limits, drain timing and cancellation.
 * @returns The running server.
 * @throws {TypeError} When `path` is not absolute.
 * @throws {RangeError} When an option is out of range.
 * @throws {SocketError} When the path cannot be served.
 * @example Serve until SIGTERM
 * ```ts
 * import { Health } from "@healthsock/healthsock";
 * import { serve } from "@healthsock/healthsock";
 * const health = new Health({ ready: true }).add("db", () => "pass");
 * await using server = await serve("/tmp/app.sock", health, { mode: 0o660 });
 * Deno.addSignalListener("SIGTERM", () => server.drain());
 * await server.finished;
 * ```
 */
export async function serve(
  path: string,
  health: Health,
  options: ServeOptions = {},
): Promise<HealthServer> {
  if (!path.startsWith("/")) {
    throw new TypeError(`Cannot serve on "${path}": the socket path must be absolute`);
  }
  const settings = resolveOptions(options);
  const server = settings.thread === "worker"
    // Loaded only for the Worker: it carries the Worker's whole source, which same-thread servers need not hold.
    ? await (await import("./worker_host.ts")).serveBeside(path, health, settings)
    : startServer(health, await claim(path, settings.mode), settings);
  options.signal?.addEventListener("abort", () => server.drain(), { once: true });
  if (options.signal?.aborted) server.drain();
  return server;
}
