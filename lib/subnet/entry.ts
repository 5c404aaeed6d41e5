/**
 * A subnet key as the registry holds it, read into a {@link Lease}: the one place a lease is
 * built from a registry key-value or write result.
 */

import {
  decodeLeaseValue,
  type Lease,
  type LeaseAttrs,
  type LeaseSubnets,
  parseSubnetKey,
} from "../lease.ts";
import type { KeyValue } from "../registry/mod.ts";

/** One key under `<prefix>/subnets/`, parsed. */
export interface SubnetEntry {
  readonly key: string;
  readonly modRevision: number;
  /** The revision that created the key: the first holder of a subnet wins an overlap. */
  readonly createRevision: number;
  /** The subnets the key names (either family); null when it names none (`problem` says why). */
  readonly subnets: LeaseSubnets | null;
  /** Null when the key or its value is malformed; a malformed value still occupies `subnets`. */
  readonly lease: Lease | null;
  /** Why the key or value is unusable; null when `lease` is set. */
  readonly problem: string | null;
}

/**
 * The lease a key holds. `ttlSeconds` is the time left on its etcd lease when known (a listing
 * or a write), else an estimate (the configured TTL); ignored for a reservation (no etcd lease).
 */
export function buildLease(
  subnets: LeaseSubnets,
  attrs: LeaseAttrs,
  stored: { readonly modRevision: number; readonly leaseId: string | null },
  ttlSeconds: number | null,
  now = Date.now(),
): Lease {
  return {
    subnet: subnets.subnet,
    ipv6Subnet: subnets.ipv6Subnet,
    attrs,
    expiration: stored.leaseId === null ? null : new Date(now + (ttlSeconds ?? 0) * 1000),
    modRevision: stored.modRevision,
    etcdLeaseId: stored.leaseId,
  };
}

/** Parses a listed or watched key-value (see {@link buildLease} for `ttlSeconds`). */
export function readEntry(
  kv: KeyValue,
  ttlSeconds: number | null,
  now = Date.now(),
): SubnetEntry {
  const base = { key: kv.key, modRevision: kv.modRevision, createRevision: kv.createRevision };
  const subnets = parseSubnetKey(kv.key);
  if (typeof subnets === "string") {
    return { ...base, subnets: null, lease: null, problem: subnets };
  }
  const attrs = decodeLeaseValue(kv.value);
  if (typeof attrs === "string") return { ...base, subnets, lease: null, problem: attrs };
  const lease = buildLease(subnets, attrs, kv, ttlSeconds, now);
  return { ...base, subnets, lease, problem: null };
}
