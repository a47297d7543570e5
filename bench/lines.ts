/**
 * A text stream cut into lines: what the bench's host and servers, and the
 * tests' fixtures, read from a pipe, one command or answer a line.
 *
 * @module
 */

/**
 * Split text into lines, without their `\n`; a last line with no `\n` comes out when the text ends.
 *
 * @returns A stream of lines.
 * @example
 * ```ts
 * import { lines } from "./lines.ts";
 * for await (const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream()).pipeThrough(lines())) {
 *   console.log(line);
 * }
 * ```
 */
export function lines(): TransformStream<string, string> {
  let buffered = "";
  return new TransformStream({
    transform(chunk, controller) {
      buffered += chunk;
      let lf: number;
      while ((lf = buffered.indexOf("\n")) >= 0) {
        controller.enqueue(buffered.slice(0, lf));
        buffered = buffered.slice(lf + 1);
      }
    },
    flush(controller) {
      if (buffered) controller.enqueue(buffered);
    },
  });
}
