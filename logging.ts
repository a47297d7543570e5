/**
 * The CLI's logging: every record is one line on stderr, as text or as a JSON
 * object, and so are the CLI's own messages (draining, stopping, the line of a
 * non-zero exit), so a reader of either format never meets a line of the other.
 *
 * Logged values come from outside (request lines, check outputs, paths): in
 * text, every control character of the finished line is escaped with
 * `escapeText`, as in `?verbose` text and event streams, so no value
 * can forge a log line or send a terminal a command; in JSON, encoding does it.
 *
 * Loaded only when logging is set up: `check` without logging stays off the
 * npm package.
 *
 * @module
 */
import { configure } from "@logtape/logtape";
import type { LogRecord } from "@logtape/logtape";
import { formatLine, setLogFormat } from "./log.ts";
import type { LogFormat, LogLevel } from "./log.ts";

export type { LogFormat };
export { LOG_LEVELS } from "./log.ts";

/** One line, without its line ending, for a log record. */
export type LineFormatter = (record: LogRecord) => string;

/**
 * The formatter of a format ({@linkcode formatLine}'s, which the Worker
 * also writes when the main thread does not take its records): text is
 * `TIME [LVL] category: message` with the whole line escaped; JSON is
 * LogTape's JSON Lines object, its `message` the text of the message (values
 * unquoted) and its `properties` the values.
 *
 * @param format Text or JSON.
 * @returns A function from a record to one line, without its line ending.
 */
export function lineFormatter(format: LogFormat): LineFormatter {
  return (record) => formatLine(format, record);
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
  setLogFormat(format);
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
