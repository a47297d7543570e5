/**
 * healthsock's loggers: a category and a level per record, written to a
 * sink. On the main thread the sink is LogTape, so an application configures
 * healthsock's logs through LogTape's `healthsock` category. The Worker that
 * serves health beside the app has a sink of its own (worker.ts): it posts
 * plain records to the main thread, and writes them to stderr itself, in
 * {@linkcode formatLine}'s format, when the main thread does not take them.
 *
 * The Worker's bundle has a stub instead of LogTape (tools/build_worker.ts):
 * LogTape's logger is reached only through the main thread's sink, and only
 * when a record is written, so the stub is never called.
 *
 * @module
 */
import { getLogger as logTapeLogger } from "@logtape/logtape";
import { escapeText } from "./report.ts";

/** Log levels, lowest first (LogTape's). */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** One of {@linkcode LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

/** How log lines are written: `TIME [LVL] category: message`, or one JSON object a line. */
export type LogFormat = "text" | "json";

/** Where one category's records go. */
export interface LogChannel {
  /** Whether records of `level` are written. */
  enabled(level: LogLevel): boolean;
  /** Write a record: `message` is a template in which `{name}` stands for `properties.name`. */
  write(level: LogLevel, message: string, properties: Record<string, unknown>): void;
}

/** Where records go: a channel per category. */
export interface LogSink {
  channel(category: readonly string[]): LogChannel;
}

/** LogTape, as the main thread's sink. */
const logTape: LogSink = {
  channel(category) {
    const logger = logTapeLogger(category);
    return {
      enabled: (level) => logger.isEnabledFor(level),
      write(level, message, properties) {
        if (level === "warning") logger.warn(message, properties);
        else logger[level](message, properties);
      },
    };
  },
};

let sink: LogSink = logTape;
let generation = 0;

/**
 * Send every logger's records to `next` from now on (the Worker's sink).
 *
 * @param next The sink; LogTape's when absent.
 */
export function setLogSink(next: LogSink = logTape): void {
  sink = next;
  generation++;
}

let stderrFormat: LogFormat = "text";

/**
 * Say how this program's log lines look on stderr (the CLI's `--log-format`):
 * the Worker writes its records so when the main thread does not take them.
 *
 * @param next Text or JSON lines.
 */
export function setLogFormat(next: LogFormat): void {
  stderrFormat = next;
}

/** How this program's log lines look on stderr ({@linkcode setLogFormat}); text unless told. */
export function logFormat(): LogFormat {
  return stderrFormat;
}

/** A logger of one category: LogTape's methods, written to the current sink. */
export class Logger {
  /** The category, `["healthsock", …]`. */
  readonly category: readonly string[];
  #channel?: LogChannel;
  #generation = -1;

  constructor(category: readonly string[]) {
    this.category = category;
  }

  // Made on first use: loggers are made as modules load, before the Worker has set its sink.
  get #out(): LogChannel {
    if (this.#generation !== generation) {
      this.#channel = sink.channel(this.category);
      this.#generation = generation;
    }
    return this.#channel!;
  }

  /** Whether records of `level` are written. */
  isEnabledFor(level: LogLevel): boolean {
    return this.#out.enabled(level);
  }

  /** Write a record at `level`, if that level is enabled. */
  log(level: LogLevel, message: string, properties: Record<string, unknown> = {}): void {
    const out = this.#out;
    if (out.enabled(level)) out.write(level, message, properties);
  }

  trace(message: string, properties?: Record<string, unknown>): void {
    this.log("trace", message, properties);
  }

  debug(message: string, properties?: Record<string, unknown>): void {
    this.log("debug", message, properties);
  }

  info(message: string, properties?: Record<string, unknown>): void {
    this.log("info", message, properties);
  }

  warn(message: string, properties?: Record<string, unknown>): void {
    this.log("warning", message, properties);
  }

  error(message: string, properties?: Record<string, unknown>): void {
    this.log("error", message, properties);
  }

  fatal(message: string, properties?: Record<string, unknown>): void {
    this.log("fatal", message, properties);
  }
}

/**
 * The logger of a category.
 *
 * @param category `["healthsock", "server"]` and the like.
 * @returns Its logger.
 */
export function getLogger(category: readonly string[]): Logger {
  return new Logger(category);
}

/** A record as {@linkcode formatLine} writes it. */
export interface LineRecord {
  category: readonly string[];
  level: LogLevel;
  /** The message's parts: text at even indexes, values at odd ones (LogTape's `message`). */
  message: readonly unknown[];
  properties: Record<string, unknown>;
  /** Milliseconds since the epoch. */
  timestamp: number;
}

/**
 * A template's parts, as LogTape makes them: `{name}` is `properties.name`,
 * `{{` and `}}` are braces.
 *
 * @param template The message template.
 * @param properties Its values.
 * @returns Text at even indexes, values at odd ones.
 */
export function messageParts(template: string, properties: Record<string, unknown>): unknown[] {
  if (!template.includes("{")) return [template];
  const parts: unknown[] = [];
  let text = "";
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if ((c === "{" || c === "}") && template[i + 1] === c) {
      text += c;
      i++;
    } else if (c === "{" && template.indexOf("}", i) > i) {
      const end = template.indexOf("}", i);
      parts.push(text, properties[template.slice(i + 1, end).trim()]);
      text = "";
      i = end;
    } else {
      text += c;
    }
  }
  parts.push(text);
  return parts;
}

/** A value inside a message: strings as they are (no quotes), anything else inspected on one line. */
function valueText(value: unknown): string {
  return typeof value === "string"
    ? value
    : Deno.inspect(value, { colors: false, compact: true, breakLength: Infinity, depth: 4 });
}

function renderMessage(message: readonly unknown[]): string {
  let text = "";
  for (let i = 0; i < message.length; i++) text += i % 2 === 0 ? message[i] as string : valueText(message[i]);
  return text;
}

const ABBREVIATIONS: Record<LogLevel, string> = {
  trace: "TRC",
  debug: "DBG",
  info: "INF",
  warning: "WRN",
  error: "ERR",
  fatal: "FTL",
};

function two(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}

// Valid JSON either way, but a reader that splits on them (JavaScript's own line terminators) would see two lines;
// DEL and C1 controls are escaped as LogTape's JSON Lines formatter does.
const JSON_UNSAFE = /[\u007f-\u009f\u2028\u2029]/g;

function jsonValue(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}

/**
 * One log line, without its line ending, in the CLI's format. Text is
 * `TIME [LVL] category: message`, the time UTC, the whole line escaped with
 * {@linkcode escapeText}: no value can forge a line or send a terminal a
 * command. JSON is LogTape's JSON Lines object (`@timestamp`, `level`,
 * `message`, `logger`, `properties`), its `message` the text of the message
 * (values unquoted).
 *
 * @param format Text or JSON.
 * @param record The record.
 * @returns The line.
 */
export function formatLine(format: LogFormat, record: LineRecord): string {
  const message = renderMessage(record.message);
  if (format === "json") {
    const level = record.level === "warning" ? "WARN" : record.level.toUpperCase();
    return JSON.stringify(
      {
        "@timestamp": new Date(record.timestamp).toISOString(),
        level,
        message,
        logger: record.category.join("."),
        properties: record.properties,
      },
      jsonValue,
    ).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  }
  const at = new Date(record.timestamp);
  const time = `${two(at.getUTCHours())}:${two(at.getUTCMinutes())}:${two(at.getUTCSeconds())}.${
    String(at.getUTCMilliseconds()).padStart(3, "0")
  }`;
  // One implementation for every framing: template text, values and category alike.
  return escapeText(`${time} [${ABBREVIATIONS[record.level]}] ${record.category.join("·")}: ${message}`);
}
