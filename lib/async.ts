/** Small abortable async helpers shared by the daemon's loops. */

/** Resolves after `ms`, or rejects with the abort reason when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Settles like `p`, or rejects with the abort reason as soon as `signal` aborts. A registry call
 * to an etcd that does not answer only fails at its deadline (5 s per endpoint): shutdown must
 * not wait for it. `p` is left to settle unobserved.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const ac = new AbortController();
 * const p = abortable(new Promise(() => {}), ac.signal);
 * ac.abort(new Error("stop"));
 * await assert.rejects(p, /stop/);
 * ```
 */
export function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      p.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (err) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

/** Resolves when `signal` aborts (never rejects). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** True when `err` is the reason of an aborted `signal` (i.e. a cancellation, not a failure). */
export function isAbort(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted && (err === signal.reason || (err as Error)?.name === "AbortError");
}

/**
 * Capped exponential backoff: `next()` returns 100 ms, 200 ms, … up to `maxMs`; `reset()` after a
 * success.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const b = new Backoff(100, 500);
 * assert.deepEqual([b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 500]);
 * b.reset();
 * assert.equal(b.next(), 100);
 * ```
 */
export class Backoff {
  #next: number;
  constructor(readonly initialMs = 100, readonly maxMs = 10_000) {
    this.#next = initialMs;
  }
  /** The delay to wait now; doubles the following one. */
  next(): number {
    const d = this.#next;
    this.#next = Math.min(this.#next * 2, this.maxMs);
    return d;
  }
  /** Starts again from the initial delay. */
  reset(): void {
    this.#next = this.initialMs;
  }
}
