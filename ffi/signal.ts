/**
 * Signal dispositions set through libc.
 *
 * Deno ≥ 2.9.2 opens the V8 inspector on 127.0.0.1:9229 when the process receives SIGUSR1. For a
 * root network daemon that is a local code-execution hole, so the daemon sets SIGUSR1 to SIG_IGN
 * in the kernel, where the signal is then dropped before Deno sees it.
 *
 * Deno installs its own SIGUSR1 handler about 0.5 s after start, overwriting an earlier SIG_IGN,
 * so {@link keepSignalIgnored} re-checks the disposition: every 10 ms for the first 3 s (the
 * handler is replaced within 10 ms of being installed) and then every second.
 */

import { errno, sym } from "./libc.ts";
import { SyscallError } from "./errno.ts";

/** Signal numbers on x86-64 Linux (asm/signal.h). */
const SIGNALS = { SIGHUP: 1, SIGUSR1: 10, SIGUSR2: 12, SIGPIPE: 13 } as const;

/** The signals this module can ignore. */
export type IgnorableSignal = keyof typeof SIGNALS;

// SIG_IGN is ((__sighandler_t) 1), SIG_ERR is ((__sighandler_t) -1) in bits/signum-generic.h.
const SIG_IGN = Deno.UnsafePointer.create(1n);
const SIG_ERR = 0xffffffffffffffffn;

/** `struct sigaction` as glibc lays it out on x86-64: handler, sa_mask[128], flags, restorer. */
const SIGACTION = { size: 152, handler: 0 } as const;
const scratch = new Uint8Array(SIGACTION.size);
const scratchView = new DataView(scratch.buffer);

/** The current handler of `name` as a number: 0 = SIG_DFL, 1 = SIG_IGN, else a function. */
export function signalDisposition(name: IgnorableSignal): bigint {
  if (sym.sigaction(SIGNALS[name], null, scratch) < 0) {
    throw new SyscallError(`sigaction(${name})`, errno());
  }
  return scratchView.getBigUint64(SIGACTION.handler, true);
}

/** Sets `name` to SIG_IGN for the whole process, once. */
export function ignoreSignal(name: IgnorableSignal): void {
  const prev = sym.signal(SIGNALS[name], SIG_IGN);
  if (Deno.UnsafePointer.value(prev) === SIG_ERR) {
    throw new SyscallError(`signal(${name})`, errno());
  }
}

/**
 * Ignores `name` now and keeps it ignored until `signal` aborts, re-setting SIG_IGN whenever
 * something (Deno's runtime) installs a handler. `onReset` is told each time that happens.
 */
export function keepSignalIgnored(
  name: IgnorableSignal,
  signal: AbortSignal,
  onReset?: (previous: bigint) => void,
): void {
  ignoreSignal(name);
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = () => {
    if (signal.aborted) return;
    const current = signalDisposition(name);
    if (current !== 1n) {
      ignoreSignal(name);
      onReset?.(current);
    }
    timer = setTimeout(tick, performance.now() - started < 3000 ? 10 : 1000);
    // Deno's timers are numbers; the cast only quiets @types/node's overload of setTimeout.
    Deno.unrefTimer(timer as unknown as number);
  };
  signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
  tick();
}
