// args.ts, the probe path's flag parser: it must behave exactly as
// node:util's parseArgs (strict, no positionals) did, messages included.
import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { parseFlags } from "../args.ts";
import type { FlagOption } from "../args.ts";

const OPTIONS = {
  socket: { type: "string", default: "/tmp/app.sock" },
  path: { type: "string", default: "/healthz" },
  timeout: { type: "string", default: "2s" },
  count: { type: "string" },
  verbose: { type: "boolean", default: false },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h", default: false },
  output: { type: "string", short: "o" },
  all: { type: "boolean", short: "a" },
} as const satisfies Record<string, FlagOption>;

type Outcome = { values: Record<string, unknown> } | { error: string };

function ours(args: string[]): Outcome {
  try {
    return { values: { ...parseFlags(args, OPTIONS) } };
  } catch (error) {
    assert.ok(error instanceof TypeError, `not a TypeError: ${error}`);
    return { error: error.message };
  }
}

function node(args: string[]): Outcome {
  try {
    return { values: { ...parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }).values } };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

function same(args: string[]): void {
  assert.deepEqual(ours(args), node(args), JSON.stringify(args));
}

Deno.test("parseFlags reads --name value, --name=value and booleans, with defaults", () => {
  assert.deepEqual(parseFlags(["--timeout", "5s", "--path=/readyz", "--verbose"], OPTIONS), {
    timeout: "5s",
    path: "/readyz",
    verbose: true,
    socket: "/tmp/app.sock",
    help: false,
  });
  assert.deepEqual(parseFlags([], OPTIONS), {
    socket: "/tmp/app.sock",
    path: "/healthz",
    timeout: "2s",
    verbose: false,
    help: false,
  });
  assert.equal(parseFlags(["-h"], OPTIONS).help, true);
  assert.equal(parseFlags(["--timeout", "1s", "--timeout", "3s"], OPTIONS).timeout, "3s", "the last one wins");
  assert.equal(parseFlags(["--timeout="], OPTIONS).timeout, "");
  assert.equal(parseFlags(["--timeout=-5"], OPTIONS).timeout, "-5");
  assert.equal(parseFlags(["--path", "a=b c"], OPTIONS).path, "a=b c");
});

Deno.test("parseFlags refuses what parseArgs refused, with its messages", () => {
  const cases: [string[], string][] = [
    [["--bogus"], "Unknown option '--bogus'"],
    [["--bogus=1"], "Unknown option '--bogus'"],
    [["-z"], "Unknown option '-z'"],
    [["--timeout"], "Option '--timeout <value>' argument missing"],
    [["-o"], "Option '-o, --output <value>' argument missing"],
    [["--verbose=1"], "Option '--verbose' does not take an argument"],
    [["--help=yes"], "Option '-h, --help' does not take an argument"],
    [["foo"], "Unexpected argument 'foo'. This command does not take positional arguments"],
    [["--", "--verbose"], "Unexpected argument '--verbose'. This command does not take positional arguments"],
    [
      ["--timeout", "--verbose"],
      "Option '--timeout' argument is ambiguous.\nDid you forget to specify the option argument for '--timeout'?\n" +
      "To specify an option argument starting with a dash use '--timeout=-XYZ'.",
    ],
    [
      ["-o", "-x"],
      "Option '-o' argument is ambiguous.\nDid you forget to specify the option argument for '-o'?\n" +
      "To specify an option argument starting with a dash use '--output=-XYZ' or '-o-XYZ'.",
    ],
    [["--constructor"], "Unknown option '--constructor'"],
    [["--__proto__"], "Unknown option '--__proto__'"],
    [["--toString=x"], "Unknown option '--toString'"],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseFlags(args, OPTIONS), { name: "TypeError", message }, JSON.stringify(args));
    same(args);
  }
});

Deno.test("parseFlags agrees with parseArgs on short options, groups, -- and edge cases", () => {
  for (
    const args of [
      ["-h"],
      ["-hh"],
      ["-ha"],
      ["-h=1"],
      ["-hv"],
      ["-o", "file"],
      ["-ofile"],
      ["-o=file"],
      ["-oh"],
      ["-ho", "file"],
      ["-hao", "file"],
      ["-aoh", "x"],
      ["-o", "-"],
      ["-"],
      ["--"],
      ["--", "x"],
      ["---verbose"],
      ["--=x"],
      ["--Verbose"],
      ["--no-verbose"],
      ["--socket", "--"],
      ["--timeout", "-1"],
      ["--timeout", "-"],
      ["--path", ""],
      ["--count", "3", "--count=4"],
      ["--verbose", "--verbose"],
      ["--verbose", "x", "--bogus"],
      ["--bogus", "--verbose=1"],
      ["--timeout", "1s", "trailing"],
      ["-1"],
      ["--a=b=c"],
      ["--path=a=b"],
    ]
  ) same(args);
});

Deno.test("parseFlags agrees with parseArgs on 20,000 random argument lists", () => {
  const words = [
    "--socket",
    "--path",
    "--timeout",
    "--count",
    "--verbose",
    "--quiet",
    "--help",
    "--output",
    "--all",
    "-h",
    "-o",
    "-a",
    "-ha",
    "-ah",
    "-oh",
    "-ho",
    "-hao",
    "-z",
    "-",
    "--",
    "---",
    "--bogus",
    "--verbose=1",
    "--timeout=2s",
    "--timeout=",
    "--path=/x",
    "--=",
    "-=",
    "1s",
    "/readyz",
    "",
    "-1",
    "x y",
    "--constructor",
  ];
  // A fixed seed: a failure names its arguments and happens again.
  let seed = 0x9e3779b9;
  const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < 20_000; i++) {
    const args = Array.from({ length: Math.floor(random() * 6) }, () => words[Math.floor(random() * words.length)]);
    same(args);
  }
});

Deno.test("parseFlags leaves the arguments and options unchanged", () => {
  const args = ["--timeout", "1s", "-h"];
  const options = structuredClone(OPTIONS);
  parseFlags(args, options);
  assert.deepEqual(args, ["--timeout", "1s", "-h"]);
  assert.deepEqual(options, OPTIONS);
});
