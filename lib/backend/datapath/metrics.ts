/**
 * A data path's shared-memory counters (counters.ts) as Prometheus counter families: each
 * counter goes to one family, with a `direction` label and, for drops, a `reason`. Collectors
 * read the memory when `/metrics` is scraped, so metrics add no work per packet.
 */

import type { Metrics, Sample } from "../../health/metrics.ts";

/** Where one counter goes: `[family, direction, reason?]`. */
export type CounterPlace<F extends string> = readonly [F, "tx" | "rx", string?];

/** One backend's families: `<prefix>_<family>_total`, with their help texts and counters. */
export interface CounterFamilies<N extends string, F extends string> {
  /** E.g. `flannel_udp`. */
  readonly prefix: string;
  /** Help text per family. */
  readonly help: Readonly<Record<F, string>>;
  /** The family (and labels) of every counter. */
  readonly places: Readonly<Record<N, CounterPlace<F>>>;
}

/** Registers the families of `spec`, each reading `read()` at every scrape. */
export function registerCounterFamilies<N extends string, F extends string>(
  m: Metrics,
  spec: CounterFamilies<N, F>,
  read: () => Readonly<Record<N, number>>,
): void {
  for (const [fam, help] of Object.entries(spec.help) as [F, string][]) {
    m.collector(`${spec.prefix}_${fam}_total`, help, "counter", () => {
      const c = read();
      const out: Sample[] = [];
      for (
        const [counter, [f, direction, reason]] of Object.entries(spec.places) as [
          N,
          CounterPlace<F>,
        ][]
      ) {
        if (f !== fam) continue;
        const labels: Record<string, string> = reason ? { direction, reason } : { direction };
        out.push({ labels, value: c[counter] ?? 0 });
      }
      return out;
    });
  }
}

/** Removes the families of `spec`. */
export function unregisterCounterFamilies<N extends string, F extends string>(
  m: Metrics,
  spec: CounterFamilies<N, F>,
): void {
  for (const fam of Object.keys(spec.help)) m.removeCollector(`${spec.prefix}_${fam}_total`);
}
