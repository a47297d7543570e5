/**
 * The socket path: claim it for one server (exclusive, with its mode in force
 * before any connection can be made) and release it (only if it is still the
 * socket this server made).
 *
 * Claiming takes three names beside the path, all derived from it:
 *
 * - `PATH.lock`: a lock file held with `flock` while the server runs, so two
 *   servers starting at once never both claim the path (the kernel drops the
 *   lock when a process dies, so a crash leaves nothing that blocks a restart);
 * - `PATH.tmp/`: a directory of mode 0700 in which the socket is bound as
 *   `PATH.tmp/s`, so nobody else can connect to it while it still has the
 *   mode the process umask gave it;
 * - the socket is then given its mode and renamed onto `PATH`, which replaces a
 *   stale socket atomically. Deno unlinks a listener's bound name when it
 *   closes, whatever file is there by then: that name is `PATH.tmp/s`, which no
 *   longer exists, never the public path.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { lockPath, permissionFlags, socketDirectory, temporaryPath } from "./protocol.ts";

const logger = getLogger(["healthsock", "server"]);

/** Why a socket path could not be served. */
export type SocketErrorReason =
  | "in-use"
  | "not-a-socket"
  | "foreign"
  | "missing-directory"
  | "path-too-long"
  | "permission"
  | "not-capable";

/**
 * The socket path cannot be served: in use, not a socket, another user's, or not permitted.
 *
 * @example Tell "already serving" from other failures
 * ```ts
 * import { Health } from "./health.ts";
 * import { serve, SocketError } from "./server.ts";
 * try {
 *   await serve("/tmp/app.sock", new Health());
 * } catch (error) {
 *   if (error instanceof SocketError && error.reason === "in-use") console.error(error.message);
 *   else throw error;
 * }
 * ```
 */
export class SocketError extends Error {
  /** The socket path. */
  readonly path: string;
  /** What stood in the way. */
  readonly reason: SocketErrorReason;

  /**
   * Create the error.
   *
   * @param path The socket path.
   * @param reason What stood in the way.
   * @param message The message.
   * @param options The underlying error.
   */
  constructor(path: string, reason: SocketErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SocketError";
    this.path = path;
    this.reason = reason;
  }
}

// sun_path holds 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH = 107;
const encoder = new TextEncoder();

/** A claimed socket path: the listener, and what {@linkcode release} needs to give it back. */
export interface ClaimedSocket {
  /** The listener, bound at the temporary name and renamed onto the path. */
  listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr>;
  /** The socket path. */
  path: string;
  /** The device and inode of the socket this server made, so release removes only it. */
  dev: number;
  ino: number | null;
  /** The lock file, held while the server runs. */
  lock: Deno.FsFile;
}

/**
 * Claim `path` for one server: take its lock, refuse a live socket or
 * anything that is not this user's socket, replace a stale one, and listen
 * with `mode` in force before any connection can be made.
 *
 * @param path The absolute socket path.
 * @param mode The socket file's mode.
 * @returns The claimed socket.
 * @throws {SocketError} When the path cannot be served; nothing at the path is touched then.
 */
export async function claim(path: string, mode: number): Promise<ClaimedSocket> {
  const bound = temporaryPath(path);
  if (encoder.encode(bound).length > MAX_SOCKET_PATH) {
    throw new SocketError(
      path,
      "path-too-long",
      `Cannot listen on "${path}": a Unix socket path may have at most ${
        MAX_SOCKET_PATH - (bound.length - path.length)
      } bytes here (the server first binds "${bound}"); choose a shorter path`,
    );
  }
  try {
    refuseNonSocket(path);
    const lock = await takeLock(path);
    try {
      return await listenAt(path, mode, lock);
    } catch (error) {
      dropLock(path, lock);
      throw error;
    }
  } catch (error) {
    throw toSocketError(error, path);
  }
}

/** With the lock held: nobody else is claiming, so whatever is here is a live foreign server or stale. */
async function listenAt(path: string, mode: number, lock: Deno.FsFile): Promise<ClaimedSocket> {
  const existing = refuseNonSocket(path);
  if (existing && await answers(path)) {
    throw new SocketError(path, "in-use", `Cannot listen on "${path}": another process is serving it`);
  }
  const dir = socketDirectory(path);
  // A server that died while claiming left it; with the lock held it is nobody's now.
  clearAway(path, dir);
  // mkdir applies the umask, which can only take bits away from 0700.
  Deno.mkdirSync(dir, { mode: 0o700 });
  try {
    const { uid } = Deno.lstatSync(dir); // this process's user, without asking for --allow-sys
    if (existing && existing.uid !== uid) {
      throw new SocketError(
        path,
        "foreign",
        `Cannot listen on "${path}": the stale socket there belongs to uid ${existing.uid}, not to this user; remove it as that user`,
      );
    }
    const bound = temporaryPath(path);
    const listener = Deno.listen({ transport: "unix", path: bound });
    try {
      Deno.chmodSync(bound, mode);
      const mine = Deno.lstatSync(bound);
      Deno.renameSync(bound, path);
      if (existing) logger.info("Replaced a stale socket at {path}", { path });
      return { listener, path, dev: mine.dev, ino: mine.ino, lock };
    } catch (error) {
      listener.close(); // Deno unlinks the temporary name
      throw error;
    }
  } finally {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* the socket is what matters */ }
  }
}

/** Refuse a path that holds anything but a socket, before anything is created beside it. */
function refuseNonSocket(path: string): Deno.FileInfo | null {
  const existing = lstat(path);
  if (existing && !existing.isSocket) {
    throw new SocketError(
      path,
      "not-a-socket",
      `Cannot listen on "${path}": a ${
        existing.isDirectory ? "directory" : "file"
      } that is not a socket is there; remove it or choose another path`,
    );
  }
  return existing;
}

/** Remove what a crashed claim left at `dir`; refuse clearly when it is another user's. */
function clearAway(path: string, dir: string): void {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    if (error instanceof Deno.errors.PermissionDenied) {
      let owner = "";
      try {
        owner = ` (uid ${lstat(dir)?.uid})`;
      } catch { /* no owner to name */ }
      throw new SocketError(
        path,
        "foreign",
        `Cannot listen on "${path}": "${dir}" is in the way and this user cannot remove it${owner}; remove it as its owner`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** Take `PATH.lock`, or refuse: another server holds it while it claims or serves the path. */
async function takeLock(path: string): Promise<Deno.FsFile> {
  const name = lockPath(path);
  for (let attempt = 0;; attempt++) {
    const found = lstat(name);
    if (found && !found.isFile) {
      throw new SocketError(
        path,
        "not-a-socket",
        `Cannot listen on "${path}": "${name}", its lock file, is not a regular file; remove it`,
      );
    }
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(name, { read: true, write: true, create: true, mode: 0o600 });
    } catch (error) {
      if (!(error instanceof Deno.errors.PermissionDenied) || !found) throw error;
      throw new SocketError(
        path,
        "foreign",
        `Cannot listen on "${path}": its lock file "${name}" belongs to uid ${found.uid} and this user cannot open it; remove it as that user`,
        { cause: error },
      );
    }
    let locked = false;
    try {
      if (!file.tryLockSync(true)) {
        const why = await answers(path)
          ? "another process is serving it"
          : `another server holds "${name}": it is starting, or serving with its socket file removed; stop it first`;
        throw new SocketError(path, "in-use", `Cannot listen on "${path}": ${why}`);
      }
      locked = true;
      // A server stopping removes the lock file: the file locked must still be the one at the name.
      const held = file.statSync();
      const current = lstat(name);
      if (current && current.ino === held.ino && current.dev === held.dev) return file;
      if (attempt >= 3) {
        throw new SocketError(path, "in-use", `Cannot listen on "${path}": "${name}" keeps changing; try again`);
      }
    } catch (error) {
      if (locked) unlock(file);
      file.close();
      throw error;
    }
    unlock(file);
    file.close();
  }
}

/** Give the lock back and remove its file. */
function dropLock(path: string, lock: Deno.FsFile): void {
  // Remove before unlocking: whoever opens the name after this makes a new file, and
  // whoever opened the old one finds, once it has the lock, that it is no longer at the name.
  try {
    Deno.removeSync(lockPath(path));
  } catch { /* gone already */ }
  try {
    lock.close(); // closing the last descriptor releases the flock
  } catch { /* already closed */ }
}

/**
 * Give the path back: remove the socket only if it is still the one this
 * server made (same device and inode), then the lock.
 *
 * @param claimed What {@linkcode claim} returned; its listener must be closed.
 */
export function release(claimed: ClaimedSocket): void {
  const { path } = claimed;
  let current: Deno.FileInfo | null = null;
  try {
    current = lstat(path);
  } catch { /* nothing to remove */ }
  if (current && current.dev === claimed.dev && current.ino === claimed.ino) {
    try {
      Deno.removeSync(path);
    } catch (error) {
      logger.warn("Cannot remove {path}: {error}", { path, error: String(error) });
    }
  } else if (current) {
    logger.warn("Left {path} alone: it is no longer the socket this server created", { path });
  }
  dropLock(path, claimed.lock);
}

function unlock(file: Deno.FsFile): void {
  try {
    file.unlockSync();
  } catch { /* closing releases it anyway */ }
}

function toSocketError(error: unknown, path: string): unknown {
  if (error instanceof SocketError) return error;
  if (error instanceof Deno.errors.NotCapable) {
    return new SocketError(
      path,
      "not-capable",
      `Cannot listen on "${path}": Deno lacks permission; run with ${permissionFlags(path, true)}`,
      { cause: error },
    );
  }
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  if (error instanceof Deno.errors.NotFound) {
    return new SocketError(
      path,
      "missing-directory",
      `Cannot listen on "${path}": directory "${dir}" does not exist; create it first`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new SocketError(
      path,
      "permission",
      `Cannot listen on "${path}": permission denied; this user must be able to write directory "${dir}"`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.AddrInUse) {
    return new SocketError(path, "in-use", `Cannot listen on "${path}": "${temporaryPath(path)}" is in use`, {
      cause: error,
    });
  }
  return error;
}

// Claiming uses the synchronous file system calls: each takes microseconds,
// and the asynchronous ones, run on Deno's blocking thread pool, cost an idle
// server about 0.5 MiB of resident memory (the pool's code paged in).
function lstat(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Whether a socket accepts connections; one that takes over a second to accept counts as live. */
async function answers(path: string): Promise<boolean> {
  const attempt = Deno.connect({ transport: "unix", path });
  const { promise: late, resolve } = Promise.withResolvers<null>();
  const timer = setTimeout(resolve, 1000, null);
  try {
    const conn = await Promise.race([attempt, late]);
    if (conn === null) attempt.then((conn) => conn.close(), () => {});
    else conn.close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused || error instanceof Deno.errors.NotFound) return false;
    if (error instanceof Deno.errors.PermissionDenied) return false; // not ours: the owner check refuses it
    return true; // a full backlog and the like: someone is there; never replace it
  } finally {
    clearTimeout(timer);
  }
}
