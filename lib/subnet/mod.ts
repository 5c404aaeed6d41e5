/**
 * The subnet manager's interface: lease policy (acquire, keep, watch) over a {@link Registry}.
 *
 * Backends only see this interface. {@link RegistrySubnetManager} (manager.ts) implements it over
 * any registry, in three parts: acquire.ts (which subnet to take), keep.ts (renewal and our own
 * key), lease_watch.ts with peer_leases.ts (other hosts' leases, checked against the config).
 *
 * @module
 */

import type { Lease, LeaseAttrs, LeaseSubnets } from "../lease.ts";
import type { NetworkConfig } from "../config.ts";
import type { SubnetEntry } from "./entry.ts";

/** A change to another host's lease. */
export type LeaseEvent =
  | { readonly type: "added"; readonly lease: Lease }
  | { readonly type: "removed"; readonly lease: Lease };

/** Our own lease was deleted, expired, or is now held by another host. The daemon exits 1. */
export class LeaseLostError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LeaseLostError";
  }
}

/** Every subnet key at one store revision, as a listing saw them. */
export interface LeaseSnapshot {
  readonly revision: number;
  readonly entries: readonly SubnetEntry[];
}

/** Our lease, and the listing it was acquired against (the lease watch starts from it). */
export interface Acquired {
  readonly lease: Lease;
  readonly peers: LeaseSnapshot;
}

export interface SubnetManager {
  /** The validated network config the manager allocates from. */
  readonly config: NetworkConfig;

  /**
   * Acquires a lease for `attrs` (reuse by PublicIP, then the subnet in the subnet file, then a
   * random free one). Retries every failure (etcd down, lost race, full network) with a log line
   * until it succeeds or `signal` aborts (then it rejects with the abort reason).
   */
  acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Acquired>;

  /**
   * Keeps `lease`: renews it before expiry (guarded on its revision), watches its key, and
   * re-creates it (same subnet, only where the key is free) when etcd lost its memory.
   * Resolves when `signal` aborts; rejects with {@link LeaseLostError} when the lease is lost.
   */
  keepLease(lease: Lease, signal: AbortSignal): Promise<void>;

  /**
   * Other hosts' leases as batches of events. The first batch is the full current set (all
   * `added`) of `from` (a fresh listing when null), then changes as they happen; after a
   * compaction or an etcd that lost its memory, the difference. Only leases inside Network, of
   * SubnetLen, not the whole Network and overlapping neither `own` nor an older lease are handed
   * on; the others (and malformed keys or values) get one warning per change of their key.
   * Ends when `signal` aborts.
   */
  watchLeases(
    own: LeaseSubnets,
    from: LeaseSnapshot | null,
    signal: AbortSignal,
  ): AsyncIterable<LeaseEvent[]>;
}
