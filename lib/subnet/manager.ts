/**
 * {@link RegistrySubnetManager}: the {@link SubnetManager} over any {@link Registry} (etcd in the
 * daemon, an in-memory fake in the unit tests). It holds the options and wires the three parts:
 * acquire.ts (policy), keep.ts (renewal and our own key), lease_watch.ts (peers).
 */

import type { NetworkConfig } from "../config.ts";
import type { IPNet } from "../ip.ts";
import type { Lease, LeaseAttrs, LeaseSubnets } from "../lease.ts";
import { type Logger, logger } from "../log.ts";
import type { Registry } from "../registry/mod.ts";
import { type AcquireContext, acquireLease } from "./acquire.ts";
import { type KeepContext, keepLease } from "./keep.ts";
import { watchLeases } from "./lease_watch.ts";
import type { Acquired, LeaseEvent, LeaseSnapshot, SubnetManager } from "./mod.ts";

/** Options of {@link RegistrySubnetManager}. */
export interface RegistrySubnetManagerOptions {
  registry: Registry;
  config: NetworkConfig;
  /** etcd key prefix, e.g. `/coreos.com/network`. */
  prefix: string;
  /** subnet.env path: its FLANNEL_SUBNET is preferred when free. */
  subnetFile: string;
  /** Renew this long before expiry (`--subnet-lease-renew-margin`, minutes). */
  renewMarginMinutes: number;
  /** etcd lease TTL, default 86400 (24 h). */
  ttlSeconds?: number;
  log?: Logger;
  /** Wait after a failed renewal, default 60 s. */
  renewRetryMs?: number;
  /** Wait after "no free subnet", default 5 s. */
  noFreeSubnetRetryMs?: number;
  /** Random source for the candidate pick (tests). */
  random?: () => number;
  /** The external interface's connected prefixes: never leased (default none). */
  underlay?: readonly IPNet[];
  /** After etcd lost its memory, wait this long before listing the peers again, default 3 s. */
  resetSettleMs?: number;
}

/** Subnet leases in a {@link Registry}. */
export class RegistrySubnetManager implements SubnetManager {
  readonly config: NetworkConfig;
  readonly #ctx: AcquireContext & KeepContext & { readonly resetSettleMs: number };

  constructor(opts: RegistrySubnetManagerOptions) {
    this.config = opts.config;
    const ttlSeconds = opts.ttlSeconds ?? 86400;
    const log = opts.log ?? logger("subnet");
    let renewMarginMs = opts.renewMarginMinutes * 60_000;
    if (renewMarginMs >= ttlSeconds * 1000) {
      // Renewing "margin before expiry" would renew again at once, forever.
      renewMarginMs = ttlSeconds * 500;
      log.warn(
        `Lease renew margin ${opts.renewMarginMinutes} min is not shorter than the lease TTL ` +
          `${ttlSeconds} s: renewing at half the TTL instead`,
      );
    }
    this.#ctx = {
      registry: opts.registry,
      config: opts.config,
      prefix: opts.prefix,
      ttlSeconds,
      log,
      subnetFile: opts.subnetFile,
      noFreeSubnetRetryMs: opts.noFreeSubnetRetryMs ?? 5_000,
      random: opts.random ?? Math.random,
      underlay: opts.underlay ?? [],
      renewMarginMs,
      renewRetryMs: opts.renewRetryMs ?? 60_000,
      resetSettleMs: opts.resetSettleMs ?? 3_000,
    };
  }

  acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Acquired> {
    return acquireLease(this.#ctx, attrs, signal);
  }

  keepLease(lease: Lease, signal: AbortSignal): Promise<void> {
    return keepLease(this.#ctx, lease, signal);
  }

  watchLeases(
    own: LeaseSubnets,
    from: LeaseSnapshot | null,
    signal: AbortSignal,
  ): AsyncIterable<LeaseEvent[]> {
    return watchLeases(this.#ctx, own, from, signal);
  }
}
