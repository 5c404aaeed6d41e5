/**
 * Signal dispositions and the thread signal mask, through libc.
 *
 * Deno ≥ 2.9.2 opens the V8 inspector on 127.0.0.1:9229 when `deno run` receives SIGUSR1: a
 * handler installed ~0.5 s after start whatever the program does. A handler runs only on a thread
 * that does not block the signal, and every thread inherits the mask of the thread that created
 * it, and a process keeps its mask across `execve`. So a process whose first thread already
 * blocks SIGUSR1 never runs that handler on any thread. {@link execSelfWithSignalBlocked} gets a
 * running process there: block in this thread, then replace the image with itself. See
 * docs/design.md, "SIGUSR1".
 */

import { check, cstr, errno, sym } from "./libc.ts";
import { SyscallError } from "./errno.ts";

/** Signal numbers on x86-64 Linux (asm/signal.h). */
const SIGNALS = { SIGHUP: 1, SIGUSR1: 10, SIGUSR2: 12, SIGPIPE: 13 } as const;

/** The signals this module handles. */
export type SignalName = keyof typeof SIGNALS;

// SIG_IGN is ((__sighandler_t) 1), SIG_ERR is ((__sighandler_t) -1) in bits/signum-generic.h.
const SIG_IGN = Deno.UnsafePointer.create(1n);
const SIG_ERR = 0xffffffffffffffffn;

// `how` of pthread_sigmask (bits/sigaction.h).
const SIG_BLOCK = 0;

/** `struct sigaction` as glibc lays it out on x86-64: handler, sa_mask[128], flags, restorer. */
const SIGACTION = { size: 152, handler: 0 } as const;
/** glibc's `sigset_t` is 1024 bits; signal n is bit n-1 (the kernel reads the first 64). */
const SIGSET_SIZE = 128;

/** The current handler of `name` as a number: 0 = SIG_DFL, 1 = SIG_IGN, else a function. */
export function signalDisposition(name: SignalName): bigint {
  const act = new Uint8Array(SIGACTION.size);
  if (sym.sigaction(SIGNALS[name], null, act) < 0) {
    throw new SyscallError(`sigaction(${name})`, errno());
  }
  return new DataView(act.buffer).getBigUint64(SIGACTION.handler, true);
}

/** Sets `name` to SIG_IGN for the whole process (an ignored signal stays ignored across exec). */
export function ignoreSignal(name: SignalName): void {
  const prev = sym.signal(SIGNALS[name], SIG_IGN);
  if (Deno.UnsafePointer.value(prev) === SIG_ERR) {
    throw new SyscallError(`signal(${name})`, errno());
  }
}

/** Sets `name` back to SIG_DFL (the kernel's default action) for the whole process. */
export function defaultSignal(name: SignalName): void {
  const prev = sym.signal(SIGNALS[name], null);
  if (Deno.UnsafePointer.value(prev) === SIG_ERR) {
    throw new SyscallError(`signal(${name})`, errno());
  }
}

function sigset(name: SignalName): { set: Uint8Array<ArrayBuffer>; byte: number; bit: number } {
  const n = SIGNALS[name] - 1;
  return { set: new Uint8Array(SIGSET_SIZE), byte: n >> 3, bit: 1 << (n & 7) };
}

/** Whether the calling thread blocks `name`. */
export function signalBlocked(name: SignalName): boolean {
  const { set, byte, bit } = sigset(name);
  // pthread_sigmask returns the error number instead of setting errno.
  const rc = sym.pthread_sigmask(SIG_BLOCK, null, set);
  if (rc !== 0) throw new SyscallError(`pthread_sigmask(${name})`, rc);
  return (set[byte] & bit) !== 0;
}

/** Adds `name` to the calling thread's mask (threads it creates later inherit it). */
export function blockSignal(name: SignalName): void {
  const { set, byte, bit } = sigset(name);
  set[byte] |= bit;
  const rc = sym.pthread_sigmask(SIG_BLOCK, set, null);
  if (rc !== 0) throw new SyscallError(`pthread_sigmask(${name})`, rc);
}

/** Splits a NUL-separated /proc file (cmdline, environ) into C strings, bytes kept as they are. */
function nulList(bytes: Uint8Array): Uint8Array<ArrayBuffer>[] {
  const out: Uint8Array<ArrayBuffer>[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0) {
      out.push(bytes.slice(start, i + 1));
      start = i + 1;
    }
  }
  return out;
}

/** A NULL-terminated `char *[]` over `strings`, which must stay referenced until the call. */
function pointerArray(strings: Uint8Array<ArrayBuffer>[]): Uint8Array<ArrayBuffer> {
  const arr = new BigUint64Array(strings.length + 1);
  strings.forEach((s, i) => {
    arr[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(s)));
  });
  return new Uint8Array(arr.buffer);
}

/**
 * Blocks and ignores `name`, then replaces the process image with itself: its executable with
 * the argv and environment it was started with (`/proc/self/cmdline`, `/proc/self/environ`). The
 * pid, open non-CLOEXEC fds (stdio) and the working directory stay. Returns only by throwing.
 */
export function execSelfWithSignalBlocked(name: SignalName): never {
  blockSignal(name);
  ignoreSignal(name);
  const argv = nulList(Deno.readFileSync("/proc/self/cmdline"));
  const envp = nulList(Deno.readFileSync("/proc/self/environ"));
  // The executable by its real path, not /proc/self/exe: the kernel names the process (comm, as
  // ps, ss -p and pgrep show it) after the file executed, and "exe" would hide "deno"/"flannel".
  const exe = Deno.execPath();
  check(sym.execve(cstr(exe), pointerArray(argv), pointerArray(envp)), `execve(${exe})`);
  throw new Error("execve returned without an error");
}
