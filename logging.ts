/**
 * The CLI's logging: every record is one line on stderr, as text or as a JSON
 * object, and so are the CLI's own messages (draining, stopping, the line of a
 * non-zero exit), so a reader of either format never meets a line of the other.
 *
 * Logged values come from outside (request lines, check outputs, paths): in
 * text, every control character of the finished line is escaped with
 * {@linkcode escapeText}, as in `?verbose` text and event streams, so no value
 * can forge a log line or send a terminal a command; in JSON, encoding does it.
 *
 * Loaded only when logging is set up: `check` without logging stays off the
 * npm package.
 *
 * @module
 */
import { configure, getJsonLinesFormatter, getTextFormatter } from "@logtape/logtape";
import type { LogLevel, LogRecord } from "@logtape/logtape";
import { escapeText } from "./report.ts";

/** How log lines are written. */
export type LogFormat = "text" | "json";

/** One line, without its line ending, for a log record. */
export type LineFormatter = (record: LogRecord) => string;

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

// Valid JSON either way, but a reader that splits on them (JavaScript's own line terminators) would see two lines.
const SEPARATORS = /[\u2028\u2029]/g;

/**
 * The formatter of a format: text is `TIME [LVL] category: message` with the
 * whole line escaped; JSON is logtape's JSON Lines object, its `message` the
 * text of the message (values unquoted) and its `properties` the values.
 *
 * @param format Text or JSON.
 * @returns A function from a record to one line, without its line ending.
 */
export function lineFormatter(format: LogFormat): LineFormatter {
  if (format === "json") {
    const json = getJsonLinesFormatter();
    return (record) => {
      const line = json({ ...record, message: [renderMessage(record.message)] });
      // JSON.stringify escapes C0 controls, logtape DEL and C1; the line ends "\n".
      return line.slice(0, line.endsWith("\n") ? -1 : undefined).replace(
        SEPARATORS,
        (c) => `\\u${c.charCodeAt(0).toString(16)}`,
      );
    };
  }
  const text = getTextFormatter({ timestamp: "time", sanitize: false, value: valueText });
  return (record) => {
    const line = text(record);
    // One implementation for every framing: template text, values and category alike.
    return escapeText(line.endsWith("\n") ? line.slice(0, -1) : line);
  };
}

/** Set in JSON mode only: the CLI's own messages are then JSON records too. */
let jsonLine: LineFormatter | undefined;
const encoder = new TextEncoder();

/**
 * Send the `healthsock` loggers at `level` and above to stderr in `format`.
 *
 * @param level The lowest level written.
 * @param format Text or JSON lines.
 */
export async function setUpLogging(level: LogLevel, format: LogFormat): Promise<void> {
  const formatter = lineFormatter(format);
  jsonLine = format === "json" ? formatter : undefined;
  const stderr = (record: LogRecord) => {
    Deno.stderr.writeSync(encoder.encode(formatter(record) + "\n"));
  };
  await configure({
    sinks: { stderr },
    loggers: [
      { category: ["healthsock"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/**
 * In JSON mode, write one of the CLI's own messages as a record of
 * `healthsock.cli`, whatever the log level: an operator must see that a signal
 * was heard, or why the program exits. In text mode (or before logging is set
 * up) it writes nothing and returns false: the caller writes its plain line.
 *
 * @param level The record's level.
 * @param message The message, already in words.
 * @param properties Values for JSON readers.
 * @returns Whether the line was written.
 */
export function notice(level: LogLevel, message: string, properties: Record<string, unknown> = {}): boolean {
  if (!jsonLine) return false;
  const record: LogRecord = {
    category: ["healthsock", "cli"],
    level,
    message: [message],
    rawMessage: message,
    timestamp: Date.now(),
    properties,
  };
  Deno.stderr.writeSync(encoder.encode(jsonLine(record) + "\n"));
  return true;
}
