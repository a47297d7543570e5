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
 *   stale socket atomically.
 *
 * Deno unlinks a listener's bound name when the listener is dropped (closed,
 * or its Worker or program ended), following whatever directory is at
 * `PATH.tmp` by then, a symbolic link included. So `PATH.tmp` is kept, empty,
 * for as long as the listener is open: nobody else can put anything at that
 * name meanwhile (in a directory others may write only if it is not sticky,
 * by renaming it away). {@linkcode closeListener} checks it is still the
 * directory this server made (device and inode) just before closing, and
 * puts a directory of its own back in place of a missing one or a symbolic
 * link; {@linkcode release} then removes it.
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
 * file; an empty directory of mode 0700, set-group-ID or not, or one holding
 * only the socket `s`). Nothing is removed recursively, and nothing is made
 * inside what is not this server's. Anything else is refused, named with
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
  /** The private directory the socket was bound in, kept while the listener is open (its device and inode). */
  directory: Deno.FileInfo;
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
  const made = makeDirectory(path, dir, lock);
  const uid = made.uid!;
  let served = false;
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
      served = true;
      const claimed = { listener, path, dev: mine.dev, ino: mine.ino, directory: made, lock, uid };
      watchForDeath(claimed);
      return claimed;
    } catch (error) {
      listener.close(); // Deno unlinks the temporary name, inside the directory just made
      throw error;
    }
  } finally {
    // Served: kept while the listener is open (see release). Not served: empty by now; never recursive.
    if (!served) removeOwnDirectory(dir, made);
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
 * @returns What was made; its owner is this process's user (`Deno.uid()` needs a permission a server does not ask for).
 */
function makeDirectory(path: string, dir: string, lock: HeldLock): Deno.FileInfo {
  let uid = lock.own ? lock.info.uid! : undefined;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const found = lstat(dir);
    if (found) uid = clearLeftover(path, dir, found, uid, lock);
    try {
      // mkdir applies the umask, which can only take bits away from 0700.
      Deno.mkdirSync(dir, { mode: 0o700 });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) continue; // something appeared there: look again
      throw error;
    }
    return Deno.lstatSync(dir);
  }
  throw new SocketError(
    path,
    "in-use",
    `Cannot listen on "${path}": "${dir}" keeps appearing while the server claims the path; something else is creating it; stop that and try again`,
  );
}

/** Remove `dir` if it is still the (empty) directory `made`; never recursive. */
function removeOwnDirectory(dir: string, made: Deno.FileInfo): boolean {
  try {
    const found = lstat(dir);
    if (found?.isDirectory && sameFile(found, made)) {
      Deno.removeSync(dir);
      return true;
    }
  } catch { /* not empty, or gone: left as it is */ }
  return false;
}

/**
 * Remove `dir` if it is provably a leftover of this user's server (an empty
 * directory of mode 0700, or one holding only the socket `s`, all this
 * user's), without recursing; otherwise refuse, untouched. When this user is
 * not known yet (the lock file was opened, not made), a directory whose owner
 * is not the lock's is refused before anything else is tried.
 *
 * @returns This process's user.
 */
function clearLeftover(
  path: string,
  dir: string,
  found: Deno.FileInfo,
  uid: number | undefined,
  lock: HeldLock,
): number {
  const refuse = (what: string): never => {
    throw new SocketError(
      path,
      "foreign",
      `Cannot listen on "${path}": "${dir}" is in the way (${what}, owner uid ${found.uid}) and is not a leftover of this server; remove it as its owner`,
    );
  };
  if (!found.isDirectory) return refuse(`a ${kindOf(found)}`);
  // The set-group-ID bit is what mkdir inherits in a directory that has it (a group's shared one).
  if ((found.mode! & 0o5077) !== 0) return refuse(`a directory of mode ${(found.mode! & 0o7777).toString(8)}`);
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
  // The lock was opened, not made (else uid is known): the lock and the directory of one run have one owner.
  if (uid === undefined && found.uid !== lock.info.uid) return refuse("a directory of another user than its lock's");
  uid ??= knownUid() ?? learnUid(dir, found, lock, refuse);
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
  logger.info("Removed {dir}, left by a server of {path} that ended without stopping", { dir, path });
  return uid;
}

/** This process's user, when Deno may tell (`--allow-sys=uid` or `-A`); never asked for. */
function knownUid(): number | undefined {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "uid" }).state !== "granted") return undefined;
    return Deno.uid() ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * This process's user, when `dir` (found) and the lock file (opened, not
 * made) have one owner. A lock of root's that only its owner may write was
 * opened for writing, so this is root. Otherwise the user is learned from a
 * directory made in `dir` and removed at once: only the directory's owner or
 * root gets that far, and only root (without `--allow-sys=uid`) can do it in
 * another user's directory, changing its time of modification.
 */
function learnUid(dir: string, found: Deno.FileInfo, lock: HeldLock, refuse: (what: string) => never): number {
  if (found.uid === 0 && lock.info.uid === 0 && (lock.info.mode! & 0o077) === 0) return 0;
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

/** The claimed sockets whose listeners may be open in this isolate. */
const open = new Set<ClaimedSocket>();

/**
 * An uncaught error ends a Worker (or the program), and Deno then drops the
 * listener, unlinking its bound name, as the main thread hears of it or
 * before: the directory is looked at here, while the error is dispatched.
 */
function onFatal(): void {
  for (const claimed of open) {
    const directory = keepDirectory(claimed.path, claimed.directory);
    if (directory) claimed.directory = directory;
  }
}

function watchForDeath(claimed: ClaimedSocket): void {
  if (open.size === 0) {
    globalThis.addEventListener("error", onFatal);
    globalThis.addEventListener("unhandledrejection", onFatal);
  }
  open.add(claimed);
}

function forget(claimed: ClaimedSocket): void {
  if (!open.delete(claimed) || open.size > 0) return;
  globalThis.removeEventListener("error", onFatal);
  globalThis.removeEventListener("unhandledrejection", onFatal);
}

/**
 * Close the listener so that Deno's unlink of its bound name (`PATH.tmp/s`)
 * reaches only into the directory this server made: see
 * {@linkcode keepDirectory}. When something that is not this server's to
 * move is at `PATH.tmp`, the listener is left open, unreferenced, and the
 * error logged.
 *
 * @param claimed What {@linkcode claim} returned.
 * @returns Whether the listener was closed.
 */
export function closeListener(claimed: ClaimedSocket): boolean {
  const directory = keepDirectory(claimed.path, claimed.directory);
  if (directory) {
    claimed.directory = directory;
    forget(claimed);
    try {
      claimed.listener.close();
    } catch { /* already closed */ }
    return true;
  }
  logger.error("Left the listener of {path} open, so that it is dropped only when the program ends", {
    path: claimed.path,
  });
  try {
    claimed.listener.unref();
  } catch { /* already closed */ }
  return false;
}

/**
 * Make sure `PATH.tmp` is a directory of this server's, just before a
 * listener bound in it is dropped (closed, or its Worker ended): Deno then
 * unlinks `PATH.tmp/s`, following whatever is at `PATH.tmp`. It should still
 * be `made` (same device and inode): nobody else can put anything at that
 * name while it is there. Someone who may rename entries in the socket's
 * directory (one others may write that is not sticky) can have replaced it:
 * a missing directory, or a symbolic link in its place, is replaced by a new
 * empty directory of this server's (the link itself is removed, never
 * followed). Anything else there (a file, another directory) is not this
 * server's to move: logged as an error.
 *
 * @param path The socket path.
 * @param made The directory the server made (as `lstat` found it).
 * @returns The directory of this server's now at `PATH.tmp`, or null when something else is there.
 */
export function keepDirectory(path: string, made: Deno.FileInfo): Deno.FileInfo | null {
  const dir = socketDirectory(path);
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    try {
      const found = lstat(dir);
      if (found?.isDirectory && sameFile(found, made)) return found;
      if (found?.isSymlink) {
        logger.warn("Removed a symbolic link at {dir} to {target}, put there while {path} was served", {
          dir,
          target: readLink(dir),
          path,
        });
        Deno.removeSync(dir); // the link itself
      } else if (found) {
        break;
      } else {
        logger.warn("Made {dir} again before the listener closes: it was removed while {path} was served", {
          dir,
          path,
        });
      }
      Deno.mkdirSync(dir, { mode: 0o700 });
      made = Deno.lstatSync(dir);
    } catch { /* changed meanwhile: look again */ }
  }
  let found: Deno.FileInfo | null = null;
  try {
    found = lstat(dir);
  } catch { /* reported as nothing */ }
  logger.error(
    "The server of {path} finds at {dir} what it did not make ({what}, owner uid {uid}); Deno removes {bound} inside it when the listener is dropped",
    { path, dir, what: found ? kindOf(found) : "nothing", uid: found?.uid, bound: temporaryPath(path) },
  );
  return null;
}

/**
 * Give the path back, once the listener is closed and Deno has unlinked its
 * bound name: remove the socket only if it is still the one this server made
 * (same device and inode), then its private directory likewise, then the lock.
 *
 * @param claimed What {@linkcode claim} returned; its listener must be closed ({@linkcode closeListener}).
 * @param unbound Whether Deno has unlinked the bound name (the listener's pending accept has ended): until then
 *   the directory stays, so that nobody else can put anything at its name.
 */
export function release(claimed: ClaimedSocket, unbound: boolean): void {
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
  if (unbound) removeOwnDirectory(socketDirectory(path), claimed.directory);
  else logger.warn("Left {dir} in place: the listener of {path} is still open", { dir: socketDirectory(path), path });
  dropLock(path, claimed.lock);
}

function readLink(path: string): string {
  try {
    return Deno.readLinkSync(path);
  } catch {
    return "?";
  }
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
      `Cannot listen on "${path}": Deno lacks permission; run with ${permissionFlags(path, { server: true })}`,
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
