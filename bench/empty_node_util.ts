// A second floor for probe start-to-exit: an empty script that parses no arguments with node:util's parseArgs,
// which main.ts uses (the fallback for flags when @std/cli cannot be had). Loading any node: module, or starting the first timer, boots
// Deno's Node compatibility layer: the part of a probe's start-up that the plain empty script does not pay.
import { parseArgs } from "node:util";

parseArgs({ args: [], options: {} });
