/**
 * The names a socket path brings with it: the lock file and private bind
 * directory a server uses beside it, and the Deno permission flags a client
 * or a server of that path needs.
 *
 * @module
 */

/** Options of {@linkcode permissionFlags}. */
export interface PermissionFlagsOptions {
  /** Grant what a server needs as well: its lock file (`PATH.lock`) and the private directory it binds in (`PATH.tmp`). @default {false} */
  server?: boolean;
}

/**
 * The Deno permission flags a program needs to use a socket path: read, write
 * and `net=unix:` for the path; a server also needs its lock file
 * (`PATH.lock`) and the private directory it binds in (`PATH.tmp`, binding
 * `PATH.tmp/s` before renaming the socket onto the path).
 *
 * @param path The absolute socket path.
 * @param options Whether the flags are for a server (`{ server: true }`) or a client.
 * @returns The flags, space-separated.
 * @example
 * ```ts
 * import { permissionFlags } from "@healthsock/healthsock";
 * permissionFlags("/tmp/app.sock");
 * // "--allow-read=/tmp/app.sock --allow-write=/tmp/app.sock --allow-net=unix:/tmp/app.sock"
 * permissionFlags("/tmp/app.sock", { server: true });
 * // "--allow-read=/tmp/app.sock,/tmp/app.sock.tmp,/tmp/app.sock.lock --allow-write=… --allow-net=unix:/tmp/app.sock,unix:/tmp/app.sock.tmp/s"
 * ```
 */
export function permissionFlags(path: string, options: PermissionFlagsOptions = {}): string {
  const { files, sockets } = permissionPaths(path, options.server ?? false);
  return [
    `--allow-read=${files.join(",")}`,
    `--allow-write=${files.join(",")}`,
    `--allow-net=${sockets.map((p) => `unix:${p}`).join(",")}`,
  ].join(" ");
}

/** The names a program needs permission for; see {@linkcode permissionPaths}. */
export interface PermissionPaths {
  /** Read and write. */
  files: string[];
  /** `net=unix:`. */
  sockets: string[];
}

/**
 * The names behind {@linkcode permissionFlags}: the files to read and write
 * and the sockets to reach, for a client or a server of `path`.
 *
 * @param path The absolute socket path.
 * @param server Include the server's lock file and temporary names.
 * @returns The files and the sockets.
 * @example
 * ```ts
 * import { permissionPaths } from "./paths.ts";
 * permissionPaths("/tmp/app.sock", true).sockets; // ["/tmp/app.sock", "/tmp/app.sock.tmp/s"]
 * ```
 */
export function permissionPaths(path: string, server: boolean): PermissionPaths {
  return server
    ? { files: [path, socketDirectory(path), lockPath(path)], sockets: [path, temporaryPath(path)] }
    : { files: [path], sockets: [path] };
}

/**
 * The name a server binds its socket at before renaming it onto `path`:
 * `PATH.tmp/s`, inside a directory only the server's user can enter, so no
 * one else can connect before the socket has its mode.
 *
 * @param path The socket path.
 * @returns The temporary socket name.
 * @example
 * ```ts
 * import { temporaryPath } from "./paths.ts";
 * temporaryPath("/tmp/app.sock"); // "/tmp/app.sock.tmp/s"
 * ```
 */
export function temporaryPath(path: string): string {
  return `${socketDirectory(path)}/s`;
}

/**
 * The private directory a server binds its socket in; it is kept, empty,
 * while the server's listener is open.
 *
 * @param path The socket path.
 * @returns `path` with `.tmp` appended.
 * @example
 * ```ts
 * import { socketDirectory } from "./paths.ts";
 * socketDirectory("/tmp/app.sock"); // "/tmp/app.sock.tmp"
 * ```
 */
export function socketDirectory(path: string): string {
  return `${path}.tmp`;
}

/**
 * The lock file a server holds while it serves `path`, so that two servers
 * never both claim it.
 *
 * @param path The socket path.
 * @returns `path` with `.lock` appended.
 * @example
 * ```ts
 * import { lockPath } from "./paths.ts";
 * lockPath("/tmp/app.sock"); // "/tmp/app.sock.lock"
 * ```
 */
export function lockPath(path: string): string {
  return `${path}.lock`;
}
