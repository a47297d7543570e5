/**
 * Reading processes through /proc, and the statistics of the harness.
 *
 * The parsers are pure (text in, values out) so the tests check them on
 * fixed samples; the readers are thin wrappers that read the files.
 *
 * @module
 */

/**
 * Clock ticks per second of the CPU times in /proc/PID/stat. Linux fixes this
 * user-visible `USER_HZ` at 100 on every architecture Deno runs on, whatever
 * the kernel's internal HZ (see proc(5), `sysconf(_SC_CLK_TCK)`).
 */
export const CLOCK_TICKS = 100;

/** The fields of /proc/PID/stat the harness uses. */
export interface ProcStat {
  /** The process id. */
  pid: number;
  /** The command name, without its parentheses (may contain spaces and parentheses). */
  comm: string;
  /** The state letter (`R`, `S`, ...). */
  state: string;
  /** User-mode CPU time of all its threads, in clock ticks. */
  utime: number;
  /** Kernel-mode CPU time of all its threads, in clock ticks. */
  stime: number;
  /** The number of threads. */
  threads: number;
  /** Resident set size, in pages. */
  rssPages: number;
}

/**
 * Parse the text of /proc/PID/stat.
 *
 * The second field is the command name in parentheses, and the name itself
 * may hold spaces and `)`; so the fields after it are split from the last
 * `)`, as proc(5) advises.
 *
 * @param text The file's contents.
 * @returns The fields used here.
 * @throws {SyntaxError} When the text is not in the stat format.
 */
export function parseStat(text: string): ProcStat {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) throw new SyntaxError(`Not a /proc/PID/stat line: "${text.slice(0, 60)}"`);
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 1).trim().split(/\s+/);
  // rest[0] is field 3 (state); field N is rest[N - 3].
  const field = (n: number): number => {
    const value = Number(rest[n - 3]);
    if (!Number.isInteger(value)) {
      throw new SyntaxError(`Field ${n} of /proc/PID/stat is not a number: "${rest[n - 3]}"`);
    }
    return value;
  };
  if (!Number.isInteger(pid) || rest.length < 22) {
    throw new SyntaxError(`Not a /proc/PID/stat line: "${text.slice(0, 60)}"`);
  }
  return {
    pid,
    comm: text.slice(open + 1, close),
    state: rest[0],
    utime: field(14),
    stime: field(15),
    threads: field(20),
    rssPages: field(24),
  };
}

/** The fields of /proc/PID/status the harness uses. */
export interface ProcStatus {
  /** Resident memory now, in bytes (`VmRSS`). */
  rss: number;
  /** Peak resident memory, in bytes (`VmHWM`). */
  peakRss: number;
  /** The CPUs the process may run on (`Cpus_allowed_list`), in order. */
  cpus: number[];
}

/**
 * Parse the text of /proc/PID/status.
 *
 * @param text The file's contents.
 * @returns Resident memory, its peak, and the CPUs allowed.
 * @throws {SyntaxError} When `VmRSS` is missing (a zombie, or not a status file).
 */
export function parseStatus(text: string): ProcStatus {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const kib = (name: string): number | undefined => {
    const match = /^(\d+)\s*kB$/.exec(fields.get(name) ?? "");
    return match ? Number(match[1]) * 1024 : undefined;
  };
  const rss = kib("VmRSS");
  if (rss === undefined) throw new SyntaxError("No VmRSS in /proc/PID/status: is the process a zombie?");
  const list = fields.get("Cpus_allowed_list");
  return { rss, peakRss: kib("VmHWM") ?? rss, cpus: list ? parseCpuList(list) : [] };
}

/**
 * Parse a kernel CPU list such as `0-3,8,10-11`.
 *
 * @param text The list.
 * @returns The CPU numbers, ascending.
 * @throws {SyntaxError} When an item is not a number or a range.
 */
export function parseCpuList(text: string): number[] {
  const cpus: number[] = [];
  for (const item of text.trim().split(",")) {
    if (item === "") continue;
    const match = /^(\d+)(?:-(\d+))?$/.exec(item.trim());
    if (!match) throw new SyntaxError(`Invalid CPU list item "${item}"`);
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    for (let cpu = first; cpu <= last; cpu++) cpus.push(cpu);
  }
  return cpus.sort((a, b) => a - b);
}

/**
 * Read files under /proc with `cat`. Deno refuses to read /proc, even with
 * `--allow-read=/proc`, unless it runs with `--allow-all`; a `cat` allowed by
 * `--allow-run=cat` reads them without granting the harness everything.
 *
 * @param paths The files, each read whole.
 * @returns Their concatenated text.
 * @throws {Error} When `cat` fails (the process is gone, say).
 */
export async function catProc(paths: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command("cat", {
    args: paths,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(`Cannot read ${paths.join(", ")}: ${new TextDecoder().decode(stderr).trim()}`);
  return new TextDecoder().decode(stdout);
}

/**
 * Read /proc/PID/stat of several processes at one instant (one `cat`).
 *
 * @param pids The process ids.
 * @returns Their parsed stat lines, in the order of `pids`.
 */
export async function readStats(pids: number[]): Promise<ProcStat[]> {
  const text = await catProc(pids.map((pid) => `/proc/${pid}/stat`));
  const stats = text.split("\n").filter((line) => line !== "").map(parseStat);
  return pids.map((pid) => {
    const stat = stats.find((s) => s.pid === pid);
    if (!stat) throw new Error(`No /proc/${pid}/stat read`);
    return stat;
  });
}

/**
 * Read /proc/PID/status.
 *
 * @param pid The process id, or `self` (then: the `cat` itself, which has its
 * parent's CPU affinity).
 * @returns Its parsed fields.
 */
export async function readStatus(pid: number | "self"): Promise<ProcStatus> {
  return parseStatus(await catProc([`/proc/${pid}/status`]));
}

/**
 * CPU time (user plus system, all threads) of a stat, in seconds.
 *
 * @param stat A parsed /proc/PID/stat.
 * @returns Seconds of CPU used since the process started.
 */
export function cpuSeconds(stat: ProcStat): number {
  return (stat.utime + stat.stime) / CLOCK_TICKS;
}

/**
 * The `p`-th percentile of ascending-sorted values, by linear interpolation
 * between the closest ranks.
 *
 * @param sorted Values sorted ascending.
 * @param p The percentile, 0 to 100.
 * @returns The percentile, or NaN for no values.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.min(low + 1, sorted.length - 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
}

/**
 * The median of values in any order.
 *
 * @param values The values.
 * @returns The median, or NaN for no values.
 */
export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}
