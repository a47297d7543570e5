/**
 * What the Worker's bundle has instead of `@logtape/logtape`
 * (tools/build_worker.ts maps the package here): the Worker sets its own log
 * sink (worker.ts) before anything logs, so log.ts never reaches LogTape there
 * and none of it need be bundled. Should that change, the Worker logs nothing
 * rather than fail.
 *
 * @module
 */

/** A LogTape logger that writes nothing. */
export function getLogger(_category: readonly string[]): {
  isEnabledFor(level: string): boolean;
  [level: string]: unknown;
} {
  const none = () => {};
  return {
    isEnabledFor: () => false,
    trace: none,
    debug: none,
    info: none,
    warn: none,
    error: none,
    fatal: none,
  };
}
