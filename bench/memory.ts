/**
 * Memory under churn, for `deno task bench`: what healthsock keeps resident
 * while clients come and go at full speed, and what it gives back after,
 * against a bare `Deno.listen` server (churn_floor.ts) measured in the same run.
 *
 * For each server, each in a fresh process: its idle RSS; then, from
 * bench/churn.py in its own process, `--churn` seconds of
 * - line-mode watch streams opened and closed at full speed (64 clients), or
 * - 2,000 clients sending a complete `GET /livez`, never reading, reconnecting,
 *
 * the peak RSS (VmHWM) and the RSS the same number of seconds after the churn
 * ended; and the RSS added per idle connection while 10,000 are held open.
 *
 * @module
 */
import { readStatus } from "./proc.ts";
import { MiB } from "./scenarios.ts";
import type { Harness, Running } from "./servers.ts";

/** The servers compared: healthsock in each mode, with a V8 flag a user can set, and the floor. */
export type ChurnServer = "worker" | "main" | "worker-small" | "floor";
export const CHURN_SERVERS: readonly ChurnServer[] = ["worker", "main", "worker-small", "floor"];
/** The V8 flag the `-small` servers run with (what README's Memory section suggests). */
export const SMALL_FLAGS = ["--optimize-for-size"];
const NAMES: Record<ChurnServer, string> = {
  worker: "healthsock, Worker (default)",
  main: "healthsock, main thread",
  "worker-small": `healthsock, Worker, ${SMALL_FLAGS.join(" ")}`,
  floor: "floor: bare Deno.listen (churn_floor.ts)",
};

/** Clients of each churn. */
export const WATCH_CLIENTS = 64;
export const COMPLETE_CLIENTS = 2000;

/** One churn: resident memory before, at its peak, and after the settle. */
export interface ChurnRun {
  idleMiB: number;
  peakMiB: number;
  settleMiB: number;
  /** Streams or requests completed. */
  cycles: number;
}

export interface ChurnRow {
  id: ChurnServer;
  label: string;
  watch?: ChurnRun;
  complete?: ChurnRun;
  /** Idle RSS, then RSS with `held` idle connections open. */
  hold?: { idleMiB: number; heldMiB: number; held: number };
}

export interface ChurnSettings {
  /** Milliseconds of churn, and of settling after it. */
  churn: number;
  /** Idle connections held. */
  held: number;
  quick: boolean;
}

interface Step {
  label: string;
  seconds: number;
  run(): Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function start(h: Harness, id: ChurnServer, path: string): Promise<Running> {
  if (id === "floor") return h.churnFloor(path);
  const thread = id === "main" ? "main" : "worker";
  return h.host(path, "trivial", { thread, v8Flags: id.endsWith("-small") ? SMALL_FLAGS : [] });
}

/** The steps of the memory-under-churn part, filling `rows` (one per server) as they run. */
export function churnSteps(h: Harness, settings: ChurnSettings, rows: ChurnRow[]): Step[] {
  const steps: Step[] = [];
  const idle = settings.quick ? 200 : 1500;
  const seconds = settings.churn / 1000;
  for (const id of CHURN_SERVERS) rows.push({ id, label: NAMES[id] });
  for (const kind of ["watch", "complete"] as const) {
    for (const row of rows) {
      steps.push({
        label: `memory under churn · ${
          kind === "watch"
            ? `${WATCH_CLIENTS} watch streams opened and closed`
            : `${COMPLETE_CLIENTS} complete-request clients reconnecting`
        } · ${row.label}`,
        seconds: 2 * seconds + idle / 1000 + 1,
        run: async () => {
          const path = h.socket(`churn-${kind}`);
          const server = await start(h, row.id, path);
          try {
            await sleep(idle);
            const idleMiB = (await readStatus(server.pid)).rss / MiB;
            const churn = await h.churn(path, kind, kind === "watch" ? WATCH_CLIENTS : COMPLETE_CLIENTS, seconds);
            const { cycles } = await churn.figures;
            const peakMiB = (await readStatus(server.pid)).peakRss / MiB;
            await sleep(settings.churn);
            const settleMiB = (await readStatus(server.pid)).rss / MiB;
            row[kind] = { idleMiB, peakMiB, settleMiB, cycles };
          } finally {
            await server.stop();
          }
        },
      });
    }
  }
  for (const row of rows) {
    steps.push({
      label: `memory per idle connection · ${settings.held} held · ${row.label}`,
      seconds: idle / 1000 + 4,
      run: async () => {
        const path = h.socket("churn-hold");
        const server = await start(h, row.id, path);
        try {
          await sleep(idle);
          const idleMiB = (await readStatus(server.pid)).rss / MiB;
          // Within the server's requestTimeout (5 s) of connecting: none has been closed yet.
          const churn = await h.churn(path, "hold", settings.held, 30);
          await sleep(settings.quick ? 200 : 2000);
          const heldMiB = (await readStatus(server.pid)).rss / MiB;
          churn.end();
          await churn.figures;
          row.hold = { idleMiB, heldMiB, held: settings.held };
        } finally {
          await server.stop();
        }
      },
    });
  }
  return steps;
}

/** KiB of RSS per idle connection held. */
export function perConnectionKiB(row: ChurnRow): number {
  return row.hold ? (row.hold.heldMiB - row.hold.idleMiB) * 1024 / row.hold.held : NaN;
}
