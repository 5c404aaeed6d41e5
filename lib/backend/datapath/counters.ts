/**
 * A data path's counters: one Float64Array over a SharedArrayBuffer that the Worker writes and
 * the daemon reads (exact up to 2^53; an aligned 8-byte store does not tear on the platforms
 * Deno supports). Each backend names its counters; this module lays them out.
 */

/** The layout of a list of counter names: slot indexes, memory, snapshots. */
export interface CounterLayout<Name extends string> {
  /** Slot indexes by name, e.g. `C.rx_malformed`. */
  readonly C: Readonly<Record<Name, number>>;
  /** Allocates the shared counter memory. */
  newMemory(): SharedArrayBuffer;
  /** A snapshot of the counters as a plain object. */
  read(mem: SharedArrayBuffer): Record<Name, number>;
}

/**
 * The layout of `names`, in slot order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const { C, newMemory, read } = counterLayout(["a", "b"] as const);
 * const mem = newMemory();
 * new Float64Array(mem)[C.b] += 2;
 * assert.deepEqual(read(mem), { a: 0, b: 2 });
 * ```
 */
export function counterLayout<const N extends readonly string[]>(
  names: N,
): CounterLayout<N[number]> {
  type Name = N[number];
  const C = Object.fromEntries(names.map((n, i) => [n, i])) as Record<Name, number>;
  return {
    C,
    newMemory: () => new SharedArrayBuffer(names.length * 8),
    read(mem) {
      const v = new Float64Array(mem);
      return Object.fromEntries(names.map((n, i) => [n, v[i]])) as Record<Name, number>;
    },
  };
}

/** `name=value` pairs of the non-zero counters, for a log line ("all zero" when none). */
export function formatCounters(c: Record<string, number>): string {
  const parts = Object.entries(c).filter(([, v]) => v !== 0).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(" ") : "all zero";
}
