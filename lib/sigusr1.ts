/**
 * SIGUSR1 can never open Deno's inspector: the signal is blocked in every thread of the process
 * from its first instruction. main.ts calls {@link blockSigusr1ForGood} before it loads anything
 * else; see docs/design.md, "SIGUSR1", for why this has no window and polling had one.
 */

import { execSelfWithSignalBlocked, signalBlocked, signalDisposition } from "../ffi/signal.ts";

/**
 * Returns at once when the process already blocks SIGUSR1 (started blocked by its supervisor,
 * or this is the re-executed image). Otherwise re-executes the process with SIGUSR1 blocked and
 * ignored; it returns only by throwing when that fails.
 */
export function blockSigusr1ForGood(): void {
  if (signalBlocked("SIGUSR1")) return;
  // Deno's handler exists only once its event loop has run 0.5 s. This runs synchronously before
  // the first await of the program, so finding it installed means the start took that long.
  if (signalDisposition("SIGUSR1") > 1n) {
    console.error(
      "flannel: Deno's SIGUSR1 handler was installed before the signal could be blocked " +
        "(start took over 0.5 s); re-executing with it blocked",
    );
  }
  execSelfWithSignalBlocked("SIGUSR1");
}

/** Whether this thread blocks SIGUSR1 (then every thread it created does too). */
export function sigusr1Blocked(): boolean {
  return signalBlocked("SIGUSR1");
}
