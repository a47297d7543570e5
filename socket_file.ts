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
 * The kernel keeps the name a socket was bound at: `ss -xlp`, `lsof` and
 * `curl -v` show the listening socket as `PATH.tmp/s`, not `PATH`, and no
 * rename changes that. Binding at `PATH` itself would avoid it, but would
 * either serve with the umask's mode for a moment or need the caller's umask
 * changed for the whole process, and could not replace a stale socket
 * atomically; so the temporary name stays, and is what to look for.
 *
 * Touch nothing this server did not create. A leftover beside the path is
 * removed only when it is provably a previous run's: owned by this server's
 * user (checked for root too) and exactly what a run leaves (an empty lock
 * file; an empty directory of mode 0700, or one holding only the socket
 * `s`). Nothing is removed recursively. Anything else is refused, named with
 * its owner, untouched. The lock file is never opened through a symbolic
 * link: it is created with `O_EXCL`, or opened and compared (device and
 * inode) with what `lstat` found, and refused when they differ.
 *
 * @module
 */
import { getLogger } from "./log.ts";
import { within } from "./delay.ts";
import { lockPath, permissionFlags, socketDirectory, temporaryPath } from "./paths.ts";

const logger = getLogger(["healthsock", "server"]);

/**
 * Why a socket path could not be served:
 * - `in-use`: another server serves it, or holds its lock;
 * - `not-a-socket`: something that is not a socket is at the path;
 * - `bad-lock`: the lock file beside the path is not a plain file a server made;
 * - `foreign`: what is at the path or beside it is another user's, or this user's own data: left untouched;
 * - `missing-directory`, `path-too-long`, `permission`, `not-capable`: the path cannot be bound as given.
 */
export type SocketErrorReason =
  | "in-use"
  | "not-a-socket"
  | "bad-lock"
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
 * import { Health } from "@healthsock/healthsock";
 * import { serve, SocketError } from "@healthsock/healthsock";
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
// How often a name beside the path may change under a claim before it gives up.
const ATTEMPTS = 5;
const encoder = new TextEncoder();

/** The lock file, as {@linkcode claim} holds it. */
interface HeldLock {
  file: Deno.FsFile;
  /** What the open descriptor refers to. */
  info: Deno.FileInfo;
  /** Made by this claim, or proven to be a previous run's: then, and only then, it is removed at the end. */
  own: boolean;
}

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
  lock: HeldLock;
  /** This process's user, as the files it made show it (`Deno.uid()` needs `--allow-sys`), for {@linkcode isOwnLeftover}. */
  uid: number;
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
async function listenAt(path: string, mode: number, lock: HeldLock): Promise<ClaimedSocket> {
  const existing = refuseNonSocket(path);
  if (existing) {
    const state = await answers(path);
    if (state === "live") {
      throw new SocketError(path, "in-use", `Cannot listen on "${path}": another process is serving it`);
    }
    if (state === "denied") {
      throw new SocketError(
        path,
        "foreign",
        `Cannot listen on "${path}": the socket there belongs to uid ${existing.uid} and this user cannot connect to it, so it may be serving; remove it as that user if it is stale`,
      );
    }
  }
  const dir = socketDirectory(path);
  const uid = makeDirectory(path, dir, lock.own ? lock.info.uid! : undefined);
  try {
    if (!lock.own) {
      // Opened, not made: use it only if it is what a previous run of this user leaves.
      if (!isOwnLeftover(lock.info, uid, "lock")) {
        const name = lockPath(path);
        throw new SocketError(
          path,
          "foreign",
          lock.info.uid === uid
            ? `Cannot listen on "${path}": its lock file "${name}" (owner uid ${uid}) is not empty, so no server made it; remove it as its owner`
            : `Cannot listen on "${path}": its lock file "${name}" belongs to uid ${lock.info.uid}, not to this server's user; remove it as its owner`,
        );
      }
      lock.own = true;
    }
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
      return { listener, path, dev: mine.dev, ino: mine.ino, lock, uid };
    } catch (error) {
      listener.close(); // Deno unlinks the temporary name
      throw error;
    }
  } finally {
    try {
      Deno.removeSync(dir); // empty by now: never recursive
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
        kindOf(existing)
      } that is not a socket is there; remove it or choose another path`,
    );
  }
  return existing;
}

/**
 * Make `dir`, the private directory the socket is bound in, after removing
 * what a crashed claim of this user left there; refuse anything else.
 *
 * @returns This process's user, learned from what it made (`Deno.uid()` needs a permission a server does not ask for).
 */
function makeDirectory(path: string, dir: string, uid: number | undefined): number {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const found = lstat(dir);
    if (found) uid = clearLeftover(path, dir, found, uid);
    try {
      // mkdir applies the umask, which can only take bits away from 0700.
      Deno.mkdirSync(dir, { mode: 0o700 });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) continue; // something appeared there: look again
      throw error;
    }
    return Deno.lstatSync(dir).uid!;
  }
  throw new SocketError(
    path,
    "in-use",
    `Cannot listen on "${path}": "${dir}" keeps appearing while the server claims the path; something else is creating it; stop that and try again`,
  );
}

/**
 * Remove `dir` if it is provably a leftover of this user's server (an empty
 * directory of mode 0700, or one holding only the socket `s`, all this
 * user's), without recursing; otherwise refuse, untouched.
 *
 * @returns This process's user.
 */
function clearLeftover(path: string, dir: string, found: Deno.FileInfo, uid: number | undefined): number {
  const refuse = (what: string): never => {
    throw new SocketError(
      path,
      "foreign",
      `Cannot listen on "${path}": "${dir}" is in the way (${what}, owner uid ${found.uid}) and is not a leftover of this server; remove it as its owner`,
    );
  };
  if (!found.isDirectory) return refuse(`a ${kindOf(found)}`);
  if ((found.mode! & 0o7077) !== 0) return refuse(`a directory of mode ${(found.mode! & 0o7777).toString(8)}`);
  let entries: string[];
  try {
    entries = [...Deno.readDirSync(dir)].map((entry) => entry.name);
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) {
      return refuse("a directory this user cannot read");
    }
    throw error;
  }
  const socket = entries.length === 1 && entries[0] === "s" ? lstat(`${dir}/s`) : null;
  if (entries.length > 0 && !(socket?.isSocket && socket.uid === found.uid)) {
    return refuse(`a directory holding ${entries.length === 1 ? `"${entries[0]}"` : `${entries.length} entries`}`);
  }
  uid ??= learnUid(dir, refuse);
  if (found.uid !== uid) return refuse("a directory of another user");
  try {
    if (socket) Deno.removeSync(`${dir}/s`);
    Deno.removeSync(dir);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return uid; // gone already
    throw new SocketError(
      path,
      "in-use",
      `Cannot listen on "${path}": "${dir}" changed while the server removed it as a leftover; try again`,
      { cause: error },
    );
  }
  logger.info("Removed {dir}, left by a server that stopped while claiming {path}", { dir, path });
  return uid;
}

/**
 * This process's user, from a directory it makes in `dir` and removes at
 * once. Only a user who may write `dir` (its owner, or root) gets that far.
 */
function learnUid(dir: string, refuse: (what: string) => never): number {
  const probe = `${dir}/uid`;
  try {
    Deno.mkdirSync(probe, { mode: 0o700 });
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) return refuse("a directory this user cannot write");
    throw error;
  }
  try {
    return Deno.lstatSync(probe).uid!;
  } finally {
    Deno.removeSync(probe);
  }
}

/**
 * Whether `info` is provably what a previous run of this program left: owned
 * by `uid` (the server's user, root included) and of the shape a run leaves.
 * Nothing that fails this may be removed or used.
 *
 * - `"lock"`: an empty regular file (a server's `PATH.lock`);
 * - `"socket"`: a socket (a stale `PATH`, or a bound name a crash left).
 *
 * @param info What `lstat` (or `fstat` of an open file) found.
 * @param uid This process's user.
 * @param kind What the name is for.
 * @returns True only when it is this user's leftover.
 */
export function isOwnLeftover(info: Deno.FileInfo, uid: number, kind: "lock" | "socket"): boolean {
  if (info.uid !== uid) return false;
  return kind === "lock" ? info.isFile && info.size === 0 : info.isSocket === true;
}

/**
 * Take `PATH.lock`, or refuse: another server holds it while it claims or
 * serves the path. Never follows a symbolic link: a new file is made with
 * `createNew` (`O_EXCL`, which does not follow one), and an existing one is
 * used only if the descriptor opened is the file `lstat` found.
 */
async function takeLock(path: string): Promise<HeldLock> {
  const name = lockPath(path);
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const opened = openLock(path, name);
    if (!opened) continue;
    const { file, info, own } = opened;
    let locked = false;
    try {
      if (!file.tryLockSync(true)) {
        const why = await answers(path) === "live"
          ? "another process is serving it"
          : `another server (uid ${info.uid}) holds "${name}": it is starting, or serving with its socket file removed; stop it first`;
        throw new SocketError(path, "in-use", `Cannot listen on "${path}": ${why}`);
      }
      locked = true;
      // A server stopping removes the lock file: the file locked must still be the one at the name.
      if (sameFile(lstat(name), info)) return { file, info, own };
    } catch (error) {
      if (locked) unlock(file);
      file.close();
      throw error;
    }
    unlock(file);
    file.close();
  }
  throw new SocketError(
    path,
    "in-use",
    `Cannot listen on "${path}": "${name}" keeps changing while the server opens it; something else is using that name; stop that and try again`,
  );
}

/** Open the lock file without following a link, or null when the name changed meanwhile (look again). */
function openLock(path: string, name: string): { file: Deno.FsFile; info: Deno.FileInfo; own: boolean } | null {
  try {
    const file = Deno.openSync(name, { read: true, write: true, createNew: true, mode: 0o600 });
    return { file, info: file.statSync(), own: true };
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  const found = lstat(name);
  if (!found) return null;
  if (!found.isFile) {
    throw new SocketError(
      path,
      "bad-lock",
      `Cannot listen on "${path}": "${name}", its lock file, is not a regular file (a ${
        kindOf(found)
      }, owner uid ${found.uid}); remove it as its owner`,
    );
  }
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(name, { read: true, write: true });
  } catch (error) {
    if (!sameFile(lstat(name), found)) return null; // replaced meanwhile, by a link perhaps
    if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
    throw new SocketError(
      path,
      "foreign",
      `Cannot listen on "${path}": its lock file "${name}" belongs to uid ${found.uid} and this user cannot open it; remove it as that user`,
      { cause: error },
    );
  }
  const info = file.statSync();
  if (sameFile(info, found)) return { file, info, own: false };
  file.close(); // a link swapped in between lstat and open: what was opened is not the lock file
  return null;
}

function sameFile(a: Deno.FileInfo | null, b: Deno.FileInfo): boolean {
  return a !== null && a.dev === b.dev && a.ino === b.ino;
}

/** Give the lock back, and remove its file if it is this server's and still at the name. */
function dropLock(path: string, lock: HeldLock): void {
  // Remove before unlocking: whoever opens the name after this makes a new file, and
  // whoever opened the old one finds, once it has the lock, that it is no longer at the name.
  if (lock.own) {
    const name = lockPath(path);
    try {
      if (sameFile(lstat(name), lock.info)) Deno.removeSync(name);
    } catch { /* gone already */ }
  }
  try {
    lock.file.close(); // closing the last descriptor releases the flock
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

function kindOf(info: Deno.FileInfo): string {
  if (info.isSymlink) return "symbolic link";
  if (info.isDirectory) return "directory";
  if (info.isSocket) return "socket";
  return info.isFile ? "file" : "special file";
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
  if (error instanceof Deno.errors.AlreadyExists) {
    return new SocketError(
      path,
      "in-use",
      `Cannot listen on "${path}": a name beside it appeared while the server claimed it (${
        String(error.message)
      }); something else is using it; try again`,
      { cause: error },
    );
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

/**
 * Whether a socket accepts connections: "live" (one that takes over a second
 * to accept counts as live), "dead" (refused: stale), or "denied" (this user
 * may not connect, so it cannot tell).
 */
async function answers(path: string): Promise<"live" | "dead" | "denied"> {
  const attempt = Deno.connect({ transport: "unix", path });
  try {
    const conn = await within(attempt, 1000, { otherwise: null });
    if (conn === null) attempt.then((conn) => conn.close(), () => {});
    else conn.close();
    return "live";
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused || error instanceof Deno.errors.NotFound) return "dead";
    if (error instanceof Deno.errors.PermissionDenied) return "denied";
    return "live"; // a full backlog and the like: someone is there; never replace it
  }
}
