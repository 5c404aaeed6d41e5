/**
 * The subnet manager's interface: lease policy (acquire, keep, watch) over a {@link Registry}.
 *
 * Backends only see this interface; the etcd implementation lives in manager.ts and the storage
 * in lib/registry/etcd.ts.
 */

import type { IPNet } from "../ip.ts";
import type { Lease, LeaseAttrs } from "../lease.ts";
import type { NetworkConfig } from "../config.ts";

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

export interface SubnetManager {
  /** The validated network config the manager allocates from. */
  readonly config: NetworkConfig;

  /**
   * Acquires a lease for `attrs` (reuse by PublicIP, then the subnet in the subnet file, then a
   * random free one). Retries every failure (etcd down, lost race, full network) with a log line
   * until it succeeds or `signal` aborts (then it rejects with the abort reason).
   */
  acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease>;

  /**
   * Keeps `lease`: renews it before expiry (guarded on its revision), watches its key.
   * Resolves when `signal` aborts; rejects with {@link LeaseLostError} when the lease is lost.
   */
  keepLease(lease: Lease, signal: AbortSignal): Promise<void>;

  /**
   * Other hosts' leases as batches of events. The first batch is the full current set (all
   * `added`), then changes as they happen; after a reconnect or compaction the difference.
   * Malformed keys or values are skipped with one warning. Ends when `signal` aborts.
   */
  watchLeases(own: IPNet, signal: AbortSignal): AsyncIterable<LeaseEvent[]>;
}
