/**
 * Bounding what a check supplies: the most bytes of each field a report
 * shows, what a text costs once escaped, cutting a text or an observed value
 * to its bound, and describing a thrown value. Pure: values in, values out.
 *
 * @module
 */

/**
 * The most bytes a check's `output`, or its `observedValue`, takes in a report.
 * With {@linkcode MAX_UNIT_BYTES}, {@linkcode MAX_NAME_BYTES} and
 * {@linkcode MAX_CHECKS} this bounds a report: about 2.7 KiB a check, 350 KiB
 * for the most checks, all fields full, far below the 1 MiB a client accepts.
 */
export const MAX_OUTPUT_BYTES = 1024;
/** The most bytes of an `observedUnit` in a report: a unit is a word. */
export const MAX_UNIT_BYTES = 64;
/** The most bytes of a check's name, measurement or component type. */
export const MAX_NAME_BYTES = 128;
/** The most checks a `Health` holds, so that a report of all of them stays bounded. */
export const MAX_CHECKS = 128;
const encoder = new TextEncoder();

/**
 * The bytes a text takes in a report at most, escaped: as JSON writes it, or
 * as `?verbose` text does (DEL, C1 and the line separators as `\uXXXX`).
 * Each UTF-16 unit costs at most 6, so `text.length * 6` bounds it. Counting
 * stops once the cost is above `stopAbove`.
 */
export function reportCost(text: string, from = 0, until = text.length, stopAbove = Infinity): number {
  let cost = 0;
  for (let i = from; i < until && cost <= stopAbove; i++) cost += unitCost(text, i);
  return cost;
}

/** The cost of the character at `i`: a surrogate pair counts once, at its first half, and its second costs 0. */
function unitCost(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c < 0x20) return c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d ? 2 : 6;
  if (c === 0x22 || c === 0x5c) return 2;
  if (c < 0x7f) return 1;
  if (c <= 0x9f || c === 0x2028 || c === 0x2029) return 6;
  if (c < 0x800) return 2;
  if (c >= 0xd800 && c <= 0xdbff) {
    const next = text.charCodeAt(i + 1);
    return next >= 0xdc00 && next <= 0xdfff ? 4 : 6;
  }
  if (c >= 0xdc00 && c <= 0xdfff) {
    const previous = text.charCodeAt(i - 1);
    return previous >= 0xd800 && previous <= 0xdbff ? 0 : 6;
  }
  return 3;
}

/**
 * Cut a text that takes more than `max` bytes in a report (see
 * {@linkcode reportCost}) to at most that, its end replaced by
 * `… (cut from N bytes)` (N its UTF-8 size), never inside a character.
 */
export function cutText(text: string, max: number): string {
  // Most texts need no counting.
  if (text.length * 6 <= max || reportCost(text, 0, text.length, max) <= max) return text;
  const mark = `… (cut from ${encoder.encode(text).length} bytes)`;
  const room = max - reportCost(mark);
  let cost = 0;
  let end = 0;
  while (end < text.length) {
    const c = text.charCodeAt(end);
    const pair = c >= 0xd800 && c <= 0xdbff && end + 1 < text.length;
    const width = pair ? 2 : 1;
    const next = cost + reportCost(text, end, end + width);
    if (next > room) break;
    cost = next;
    end += width;
  }
  return text.slice(0, end) + mark;
}

/**
 * What a report shows of an `observedValue`: numbers, booleans and null as
 * they are; a string cut as an output is; an object or array copied through
 * JSON (so later changes to it do not show), or, when its JSON takes more than
 * {@linkcode MAX_OUTPUT_BYTES}, that JSON text cut and marked. Undefined for
 * what JSON leaves out (a function). Throws what `JSON.stringify` throws.
 */
export function boundValue(value: unknown): unknown {
  if (typeof value === "string") return cutText(value, MAX_OUTPUT_BYTES);
  if (typeof value === "number" || typeof value === "boolean" || value === null) return value;
  const json = JSON.stringify(value);
  if (json === undefined) return undefined;
  // JSON text needs no more escaping: its cost is its UTF-8 size.
  if (json.length * 3 <= MAX_OUTPUT_BYTES || encoder.encode(json).length <= MAX_OUTPUT_BYTES) return JSON.parse(json);
  return cutText(json, MAX_OUTPUT_BYTES);
}

/** Cut a check's output to {@linkcode MAX_OUTPUT_BYTES}. */
export function cutOutput(output: string): string {
  return cutText(output, MAX_OUTPUT_BYTES);
}

/** The message of anything thrown, for a result's `output`. */
export function messageOf(error: unknown): string {
  try {
    if (error instanceof Error) return String(error.message || error.name);
    if (typeof error === "string") return error;
  } catch { /* a message getter that throws */ }
  return `threw ${describe(error)}`;
}

/** A short text of any value, for an error message. */
export function describe(value: unknown): string {
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 80 ? text.slice(0, 80) + "…" : text;
  } catch {
    return Object.prototype.toString.call(value);
  }
}
