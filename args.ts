/**
 * Command-line flags for the probe path (`check`, `watch`): a strict parser
 * with the behaviour and messages of `node:util`'s `parseArgs` in strict mode
 * without positionals, as the CLI used it.
 *
 * Why not `parseArgs` itself: loading any `node:` module boots Deno's Node
 * compatibility layer, about 5 ms of a probe's 25 ms start-up (measured with
 * hyperfine; see README, Benchmarks). `demo` still uses `parseArgs`.
 *
 * Accepted: `--name value`, `--name=value`, `--flag` (boolean), short
 * options (`-h`, grouped as `-hv`, a short string option taking the rest of
 * the group or the next argument), and `--` (after which every argument is a
 * positional, which is refused). A later occurrence of an option wins.
 *
 * @module
 */

/** One option: its type, an optional one-letter alias and a default. */
export interface FlagOption {
  /** `string` takes a value; `boolean` takes none. */
  type: "string" | "boolean";
  /** A one-character alias used as `-x`. @default {undefined} */
  short?: string;
  /** The value when the option is not given. @default {undefined} */
  default?: string | boolean;
}

/** The values parsed: every given or defaulted option by its long name. */
export type FlagValues = Record<string, string | boolean | undefined>;

/** A lexed option, as `parseArgs` names its parts in messages. */
interface Token {
  name: string;
  rawName: string;
  value: string | undefined;
  inlineValue: boolean;
}

/**
 * Parse `args` against `options`, strictly: unknown options, a missing or
 * ambiguous value, a value for a boolean and any positional argument throw.
 *
 * @param args The arguments after the command name.
 * @param options The options by long name.
 * @returns The values: each option given (the last one wins), else its default.
 * @throws {TypeError} With `parseArgs`'s message, for the first argument at fault.
 * @example
 * ```ts
 * import { parseFlags } from "./args.ts";
 * parseFlags(["--timeout=1s", "-h"], {
 *   timeout: { type: "string", default: "2s" },
 *   help: { type: "boolean", short: "h", default: false },
 * }); // { timeout: "1s", help: true }
 * ```
 */
export function parseFlags(args: readonly string[], options: Readonly<Record<string, FlagOption>>): FlagValues {
  const values: FlagValues = {};
  for (const token of lex(args, options)) {
    if (typeof token === "string") {
      throw new TypeError(`Unexpected argument '${token}'. This command does not take positional arguments`);
    }
    const option = own(options, token.name);
    if (!option) throw new TypeError(`Unknown option '${token.rawName}'`);
    const shortAndLong = `${option.short ? `-${option.short}, ` : ""}--${token.name}`;
    if (option.type === "string") {
      if (token.value === undefined) throw new TypeError(`Option '${shortAndLong} <value>' argument missing`);
      if (!token.inlineValue && isOptionLike(token.value)) {
        const example = token.rawName.startsWith("--")
          ? `'${token.rawName}=-XYZ'`
          : `'--${token.name}=-XYZ' or '${token.rawName}-XYZ'`;
        throw new TypeError(
          `Option '${token.rawName}' argument is ambiguous.\n` +
            `Did you forget to specify the option argument for '${token.rawName}'?\n` +
            `To specify an option argument starting with a dash use ${example}.`,
        );
      }
      values[token.name] = token.value;
    } else {
      if (token.value !== undefined) throw new TypeError(`Option '${shortAndLong}' does not take an argument`);
      values[token.name] = true;
    }
  }
  for (const [name, option] of Object.entries(options)) {
    if (!Object.hasOwn(values, name) && option.default !== undefined) values[name] = option.default;
  }
  return values;
}

/** Split arguments into options (with their values) and positionals, as `parseArgs` does before it checks them. */
function lex(args: readonly string[], options: Readonly<Record<string, FlagOption>>): (Token | string)[] {
  const tokens: (Token | string)[] = [];
  const pending = [...args];
  while (pending.length > 0) {
    const arg = pending.shift()!;
    if (arg === "--") {
      tokens.push(...pending);
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      if (eq > 2) {
        tokens.push({ name: arg.slice(2, eq), rawName: arg.slice(0, eq), value: arg.slice(eq + 1), inlineValue: true });
        continue;
      }
      const name = arg.slice(2);
      // A known string option takes the next argument, whatever it looks like (checked later).
      const value = own(options, name)?.type === "string" ? pending.shift() : undefined;
      tokens.push({ name, rawName: arg, value, inlineValue: false });
      continue;
    }
    if (arg.length < 2 || arg[0] !== "-") {
      tokens.push(arg);
      continue;
    }
    // Short options, alone or grouped: -h, -hv, -xVALUE, -hx VALUE.
    for (let i = 1; i < arg.length; i++) {
      const short = arg[i];
      const name = longFor(options, short);
      if (own(options, name)?.type === "string") {
        const rest = arg.slice(i + 1);
        const value = rest !== "" ? rest : pending.shift();
        tokens.push({ name, rawName: `-${short}`, value, inlineValue: rest !== "" });
        break;
      }
      tokens.push({ name, rawName: `-${short}`, value: undefined, inlineValue: false });
    }
  }
  return tokens;
}

function own(options: Readonly<Record<string, FlagOption>>, name: string): FlagOption | undefined {
  return Object.hasOwn(options, name) ? options[name] : undefined;
}

function longFor(options: Readonly<Record<string, FlagOption>>, short: string): string {
  for (const [name, option] of Object.entries(options)) if (option.short === short) return name;
  return short;
}

function isOptionLike(value: string): boolean {
  return value.length > 1 && value[0] === "-";
}
