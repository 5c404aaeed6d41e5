/** Helpers shared by unit and end-to-end tests (no privileges, no I/O). */

import { IP, IPNet } from "../ffi/ip.ts";
import { setSink } from "../lib/log.ts";
import type { LeaseEvent } from "../lib/subnet/mod.ts";

/**
 * Sends the daemon's log lines to `lines` instead of stderr until disposed. Works across awaits,
 * unlike capturing around a call that returns a promise:
 * `using log = logCapture(); await backend.run(signal); assert.match(log.lines.join(""), …)`.
 */
export function logCapture(): { lines: string[] } & Disposable {
  const lines: string[] = [];
  const prev = setSink((l) => lines.push(l));
  return { lines, [Symbol.dispose]: () => void setSink(prev) };
}

/** Captures the log lines of a synchronous `fn`. */
export function captureLog<T>(fn: () => T): { result: T; lines: string[] } {
  using log = logCapture();
  return { result: fn(), lines: log.lines };
}

/** The next value of `it`, failing after `ms` or when the iterator ends. */
export async function takeNext<T>(it: AsyncIterator<T>, ms = 2000): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    const r = await Promise.race([
      it.next(),
      new Promise<never>((_, rej) => t = setTimeout(() => rej(new Error("timeout")), ms)),
    ]);
    if (r.done) throw new Error("ended");
    return r.value;
  } finally {
    clearTimeout(t);
  }
}

/**
 * A lease-event batch as sorted `"added 10.1.8.0/24"` lines (`"added 10.1.8.0/24 + fc00:0:0:8::/64"`
 * for a dual-stack lease), for comparisons.
 */
export function showEvents(batch: LeaseEvent[]): string[] {
  return batch.map((e) =>
    `${e.type} ${[e.lease.subnet, e.lease.ipv6Subnet].filter((n) => n !== null).join(" + ")}`
  ).sort();
}

/** An address from test text (throws on a typo). */
export function ip(s: string): IP {
  return IP.mustParse(s);
}

/** A network from test text, host bits not allowed (throws on a typo). */
export function net(s: string): IPNet {
  return IPNet.mustParse(s);
}
