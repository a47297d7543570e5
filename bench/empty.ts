// The floor of a probe's start-to-exit time: an empty Deno script, run with the check's flags.
