/**
 * The Worker of the memory floor in Worker mode (see memory_floor.ts): a bare
 * Unix listener on the path it is sent, in a Worker that imports
 * `@logtape/logtape`. Posts a message once listening.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";

// This file is checked with the bench's main-thread types; a Worker's scope has these two.
const scope = self as unknown as {
  onmessage: (event: MessageEvent<string>) => void;
  postMessage(message: string): void;
};
getLogger(["bench", "memory-floor", "worker"]);
scope.onmessage = (event) => {
  const listener = Deno.listen({ transport: "unix", path: event.data });
  (async () => {
    for await (const conn of listener) conn.close();
  })();
  scope.postMessage("listening");
};
