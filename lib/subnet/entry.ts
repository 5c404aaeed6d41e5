/**
 * A subnet key as the registry holds it, read into a {@link Lease}: the one place a lease is
 * built from a registry key-value or write result.
 */

import type { IPNet } from "../ip.ts";
import { decodeLeaseValue, type Lease, type LeaseAttrs, parseSubnetKey } from "../lease.ts";
import type { KeyValue } from "../registry/mod.ts";

/** One key under `<prefix>/subnets/`, parsed. */
export interface SubnetEntry {
  readonly key: string;
  readonly modRevision: number;
  /** The revision that created the key: the first holder of a subnet wins an overlap. */
  readonly createRevision: number;
  /** Null when the key names no subnet (`problem` says why). */
  readonly subnet: IPNet | null;
  /** Null when the key or its value is malformed; a malformed value still occupies `subnet`. */
  readonly lease: Lease | null;
  /** Why the key or value is unusable; null when `lease` is set. */
  readonly problem: string | null;
}

/**
 * The lease a key holds. `ttlSeconds` is the time left on its etcd lease when known (a listing
 * or a write), else an estimate (the configured TTL); ignored for a reservation (no etcd lease).
 */
export function buildLease(
  subnet: IPNet,
  attrs: LeaseAttrs,
  stored: { readonly modRevision: number; readonly leaseId: string | null },
  ttlSeconds: number | null,
  now = Date.now(),
): Lease {
  return {
    subnet,
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
  const subnet = parseSubnetKey(kv.key);
  if (typeof subnet === "string") return { ...base, subnet: null, lease: null, problem: subnet };
  const attrs = decodeLeaseValue(kv.value);
  if (typeof attrs === "string") return { ...base, subnet, lease: null, problem: attrs };
  return { ...base, subnet, lease: buildLease(subnet, attrs, kv, ttlSeconds, now), problem: null };
}
