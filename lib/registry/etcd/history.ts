/**
 * What the registry has seen of etcd's history, to notice when etcd lost its memory: wiped and
 * restarted on an empty data dir, or restored from an older snapshot. Either way leases we and
 * our peers hold are gone, and a watch resumed from the revision we had reached waits for a
 * revision the new store has not reached yet, silently.
 *
 * Every response header carries the cluster id, the member's store revision and its raft term.
 * A different cluster id, or a revision or term below the highest one seen, is "etcd lost its
 * memory" (both only grow in a healthy cluster; the term also catches a wiped store that was
 * written past our revision before we reconnected, if etcd had been restarted or had changed
 * leaders before). A header can lag behind only on a member that has not caught up with the
 * leader yet; the caller confirms a lower revision or term with a linearizable read (which waits
 * for the member to catch up) before it declares a reset, so a lagging member of a healthy
 * cluster is no false alarm.
 *
 * Not detectable here: a store wiped and re-created with the same flags (etcd derives the
 * cluster id from the member names, peer URLs and cluster token, so it is the same), written
 * past the highest revision we saw before our first answer from it, in a term no lower than we
 * saw. A resumed watch then gets the new store's events from the old revision on.
 */

/** The parts of an etcd `ResponseHeader` used here (uint64 fields as decimal strings). */
export interface Header {
  cluster_id: string | number;
  revision: string | number;
  raft_term?: string | number;
}

/** A suspicion from one header, see {@link History.suspect}. */
export type Suspicion =
  | { kind: "cluster"; reason: string }
  | { kind: "history"; revision: number; term: number };

/**
 * The cluster id and highest revision seen, and the number of resets so far (`epoch`).
 *
 * @example
 * ```ts
 * import { History } from "./history.ts";
 * const h = new History();
 * h.suspect({ cluster_id: "7", revision: "40" }, "http://e:2379");
 * const s = h.suspect({ cluster_id: "7", revision: "3" }, "http://e:2379");
 * if (s?.kind !== "history") throw new Error("a lower revision is suspect");
 * ```
 */
export class History {
  #clusterId: string | null = null;
  #highest = 0;
  #term = 0;
  #epoch = 0;
  #reason = "";
  readonly #listeners = new Set<() => void>();

  /** Incremented by every {@link reset}. */
  get epoch(): number {
    return this.#epoch;
  }

  /** Why the last reset happened. */
  get reason(): string {
    return this.#reason;
  }

  /** A revision known to exist in the store (a watch event's mod revision). */
  saw(revision: number): void {
    if (revision > this.#highest) this.#highest = revision;
  }

  /**
   * Records `header` (from `endpoint`) and says whether it looks like a lost memory: another
   * cluster (certain), or a lower revision or term (to confirm with a linearizable read, then
   * {@link confirm}).
   */
  suspect(header: Header, endpoint: string): Suspicion | null {
    const id = String(header.cluster_id);
    const rev = Number(header.revision);
    const term = Number(header.raft_term ?? 0);
    if (this.#clusterId !== null && id !== this.#clusterId) {
      return {
        kind: "cluster",
        reason: `etcd at ${endpoint} has cluster id ${hex(id)}, not ${hex(this.#clusterId)} as ` +
          `before: it is another cluster or was re-created`,
      };
    }
    this.#clusterId = id;
    if (rev < this.#highest || term < this.#term) return { kind: "history", revision: rev, term };
    this.#highest = rev;
    this.#term = term;
    return null;
  }

  /**
   * The result of the linearizable read that confirms a lower revision or term: the reason for a
   * reset when it is still lower than the highest seen, null when the member had only lagged.
   */
  confirm(header: Header, endpoint: string): string | null {
    const s = this.suspect(header, endpoint);
    if (s === null) return null;
    if (s.kind === "cluster") return s.reason;
    const what = s.revision < this.#highest
      ? `revision ${s.revision}, below revision ${this.#highest}`
      : `raft term ${s.term}, below term ${this.#term}`;
    return `etcd at ${endpoint} is at ${what} seen before: its data was wiped or restored from ` +
      "an older snapshot";
  }

  /**
   * Starts a new epoch from `header` (the new store's cluster id and revision) and tells every
   * listener.
   */
  reset(header: Header, reason: string): void {
    this.#clusterId = String(header.cluster_id);
    this.#highest = Number(header.revision);
    this.#term = Number(header.raft_term ?? 0);
    this.#epoch++;
    this.#reason = reason;
    for (const l of [...this.#listeners]) l();
  }

  /** Calls `fn` on every reset until the returned function is called. */
  onReset(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }
}

function hex(decimal: string): string {
  try {
    return BigInt(decimal).toString(16);
  } catch {
    return decimal;
  }
}
