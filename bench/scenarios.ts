/**
 * What the bench runs: the settings from the command line, the load
 * scenarios and the servers each one compares.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** The bench directory, where the peers and the load generator are. */
export const BENCH = new URL(".", import.meta.url).pathname;
/** The repository root, where main.ts is. */
export const ROOT = new URL("..", import.meta.url).pathname;
export const MiB = 2 ** 20;

export type Framing = "line" | "http";
export type ServerKind = "healthsock" | "healthsock-main" | "floor" | "deno-serve" | "node";
/** Where `serve()` runs the socket: `thread: "worker"` (its default) or `"main"`. */
export type Thread = "worker" | "main";
export const THREADS: readonly Thread[] = ["worker", "main"];
export type LoadMode = "line" | "http" | "http-close" | "mixed";
export type HostVariant = "trivial" | "onrequest" | "slow" | "imported" | "none";

export interface Settings {
  quick: boolean;
  warmup: number;
  duration: number;
  rounds: number;
  growth: number;
  /** Milliseconds of each churn of the memory-under-churn part, and of settling after it. */
  churn: number;
  /** Idle connections held for the memory per connection. */
  held: number;
  probes: number;
  memoryRuns: number;
  /** Seconds of probes against the blocking app, per mode. */
  blocked: number;
  /** Seconds of each event-loop delay window. */
  lagWindow: number;
  /** Start-ups timed per variant. */
  startups: number;
  out: string;
  json?: string;
  pin: boolean;
}

export interface Scenario {
  id: string;
  label: string;
  mode: LoadMode;
  clients: number;
  framing: Framing;
  servers: ServerKind[];
}

export const SCENARIOS: Scenario[] = [
  {
    id: "line-1",
    label: "line, new conn, 1 client",
    mode: "line",
    clients: 1,
    framing: "line",
    servers: ["healthsock", "healthsock-main", "floor", "node"],
  },
  {
    id: "line-16",
    label: "line, new conn, 16 clients",
    mode: "line",
    clients: 16,
    framing: "line",
    servers: ["healthsock", "healthsock-main", "floor", "node"],
  },
  {
    id: "http-ka",
    label: "HTTP keep-alive, 16 conns",
    mode: "http",
    clients: 16,
    framing: "http",
    servers: ["healthsock", "healthsock-main", "floor", "deno-serve", "node"],
  },
  {
    id: "http-close",
    label: "HTTP, new conn, 16 clients",
    mode: "http-close",
    clients: 16,
    framing: "http",
    servers: ["healthsock", "healthsock-main", "floor", "deno-serve", "node"],
  },
];

export const SERVER_ORDER: ServerKind[] = ["healthsock", "healthsock-main", "floor", "deno-serve", "node"];

export function serverName(kind: ServerKind, framing?: Framing): string {
  switch (kind) {
    case "healthsock":
      return "healthsock serve(), Worker";
    case "healthsock-main":
      return "healthsock serve(), main thread";
    case "floor":
      return "Deno.listen floor";
    case "deno-serve":
      return "Deno.serve";
    case "node":
      return framing === undefined ? "Node" : framing === "line" ? "Node net" : "Node http";
  }
}

export function settingsFrom(args: string[]): Settings {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      duration: { type: "string" },
      rounds: { type: "string" },
      growth: { type: "string" },
      churn: { type: "string" },
      probes: { type: "string" },
      out: { type: "string", default: BENCH },
      json: { type: "string" },
      "no-pin": { type: "boolean", default: false },
    },
  });
  const quick = values.quick;
  const number = (text: string | undefined, fallback: number, name: string): number => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!(value > 0)) throw new RangeError(`Invalid --${name} "${text}": expected a positive number`);
    return value;
  };
  return {
    quick,
    warmup: quick ? 100 : 1000,
    duration: number(values.duration, quick ? 0.3 : 3, "duration") * 1000,
    rounds: Math.round(number(values.rounds, quick ? 1 : 2, "rounds")),
    growth: number(values.growth, quick ? 1.5 : 60, "growth") * 1000,
    churn: number(values.churn, quick ? 1 : 60, "churn") * 1000,
    held: quick ? 500 : 10_000,
    probes: Math.round(number(values.probes, quick ? 1 : 30, "probes")),
    memoryRuns: quick ? 1 : 3,
    blocked: quick ? 2 : 12,
    lagWindow: quick ? 1 : 5,
    startups: quick ? 1 : 10,
    out: values.out.endsWith("/") ? values.out : values.out + "/",
    json: values.json,
    pin: !values["no-pin"],
  };
}
