/**
 * Which subnet a host takes: its own lease or reservation by PublicIP, else the subnet of the
 * previous subnet.env when free, else a random pick among the first 100 free subnets.
 *
 * Reservations (keys without an etcd lease) are never allocated to another host, never renewed
 * and never deleted. A reservation for our PublicIP is used; when its stored attributes differ
 * from ours (e.g. a new VtepMAC after the vxlan device was recreated, or another BackendType) its
 * value is rewritten, still without an etcd lease, guarded on its revision: peers program their
 * routes/FDB from that value, so a stale VtepMAC would black-hole vxlan traffic. Upstream leaves
 * a reservation's value alone; this is a deliberate difference.
 */

import { type IPNet, prefixSize } from "../ip.ts";
import {
  encodeLeaseValue,
  type Lease,
  type LeaseAttrs,
  subnetKey,
  subnetsPrefix,
} from "../lease.ts";
import { abortable, Backoff, sleep } from "../async.ts";
import { errText } from "../log.ts";
import { RegistryUnavailableError } from "../registry/mod.ts";
import { candidateSubnets, fitsConfig } from "./candidates.ts";
import { buildLease, readEntry, type SubnetEntry } from "./entry.ts";
import { readSubnetFile } from "./subnet_env.ts";
import type { Acquired, LeaseSnapshot } from "./mod.ts";
import type { SubnetContext } from "./context.ts";

/** What acquisition needs beyond the shared context. */
export interface AcquireContext extends SubnetContext {
  /** subnet.env path: its FLANNEL_SUBNET is preferred when free. */
  readonly subnetFile: string;
  /** Wait after "no free subnet". */
  readonly noFreeSubnetRetryMs: number;
  /** Random source for the candidate pick. */
  readonly random: () => number;
}

/** The network has no free subnet for us. */
class NoFreeSubnetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NoFreeSubnetError";
  }
}

/** Two attribute sets that encode the same (what peers would read). */
export function attrsEqual(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return encodeLeaseValue(a) === encodeLeaseValue(b);
}

/** Lists every subnet key, parsed. */
export async function listSubnets(
  ctx: SubnetContext,
  signal: AbortSignal,
): Promise<LeaseSnapshot> {
  const listing = await abortable(ctx.registry.list(subnetsPrefix(ctx.prefix)), signal);
  const now = Date.now();
  return {
    revision: listing.revision,
    entries: listing.entries.map((kv) => readEntry(kv, kv.ttlSeconds, now)),
  };
}

/** Acquires a lease for `attrs`, retrying every failure until `signal` aborts. */
export async function acquireLease(
  ctx: AcquireContext,
  attrs: LeaseAttrs,
  signal: AbortSignal,
): Promise<Acquired> {
  const backoff = new Backoff(100, 10_000);
  while (true) {
    signal.throwIfAborted();
    try {
      const got = await tryAcquire(ctx, attrs, signal);
      if (got) return got;
      // Lost a race (or the listing was stale): list again right away.
      continue;
    } catch (err) {
      signal.throwIfAborted();
      if (err instanceof NoFreeSubnetError) {
        ctx.log.error(`${err.message} (trying again in ${ctx.noFreeSubnetRetryMs / 1000} s)`);
        await sleep(ctx.noFreeSubnetRetryMs, signal);
        continue;
      }
      const delay = backoff.next();
      // Unreachable endpoints were already logged one line each by the registry.
      if (!(err instanceof RegistryUnavailableError)) {
        ctx.log.error(`Failed to acquire a subnet (trying again in ${delay} ms): ${errText(err)}`);
      }
      await sleep(delay, signal);
    }
  }
}

/**
 * One round: a fresh listing, then reuse / subnet file / random pick. Null: retry now.
 * Every registry call is abandoned when `signal` aborts, and no later step runs.
 */
async function tryAcquire(
  ctx: AcquireContext,
  attrs: LeaseAttrs,
  signal: AbortSignal,
): Promise<Acquired | null> {
  const peers = await listSubnets(ctx, signal);
  const entries = peers.entries.filter((e) => e.subnet !== null);
  const done = (lease: Lease | null) => lease ? { lease, peers } : null;

  // 1. Ours by PublicIP. A reservation wins over a lease.
  const mine = entries.filter((e) => e.lease?.attrs.publicIP.equals(attrs.publicIP));
  const deleted = new Set<string>();
  const isLease = (e: SubnetEntry) => e.lease!.etcdLeaseId === null ? 0 : 1;
  mine.sort((a, b) => isLease(a) - isLease(b));
  for (const e of mine) {
    const lease = e.lease!;
    const cidr = lease.subnet.toString();
    if (!fitsConfig(ctx.config, lease.subnet)) {
      if (lease.etcdLeaseId === null) {
        ctx.log.warn(
          `Reservation ${cidr} for ${attrs.publicIP} does not fit the network ` +
            `config (${describeRange(ctx)}): ignored`,
        );
        continue;
      }
      ctx.log.info(
        `Deleting lease ${cidr}: it no longer fits the network config (${describeRange(ctx)})`,
      );
      if (await abortable(ctx.registry.delete(e.key, e.modRevision), signal)) {
        deleted.add(e.key);
      }
      continue;
    }
    return done(await reuse(ctx, e.key, lease, attrs, signal));
  }

  // Keys whose value is malformed still occupy their subnet, as do leases of another length
  // (an older config). Keys outside the Network, or the whole Network, are never used by any
  // host (see peer_leases.ts): counted as taken, `0.0.0.0-0` would block every acquisition.
  const taken = entries.filter((e) =>
    !deleted.has(e.key) && ctx.config.network.containsNet(e.subnet!) &&
    !ctx.config.network.equals(e.subnet!)
  ).map((e) => e.subnet!);

  // 2. The subnet in the previous subnet.env, when free and fitting.
  const prev = (await readSubnetFile(ctx.subnetFile)).subnet;
  if (prev && fitsConfig(ctx.config, prev) && !taken.some((t) => t.overlaps(prev))) {
    const lease = await create(ctx, prev, attrs, signal);
    if (lease) {
      ctx.log.info(`Acquired lease ${prev} (the subnet of ${ctx.subnetFile})`);
      return done(lease);
    }
    ctx.log.info(`Subnet ${prev} was taken meanwhile by another host: retrying`);
    return null;
  }

  // 3. A random pick among the first 100 free subnets.
  const free = candidateSubnets(ctx.config, taken, 100);
  if (free.length === 0) throw new NoFreeSubnetError(noFreeMessage(ctx));
  const pick = free[Math.min(free.length - 1, Math.floor(ctx.random() * free.length))];
  const lease = await create(ctx, pick, attrs, signal);
  if (lease) {
    ctx.log.info(`Acquired lease ${pick}`);
    return done(lease);
  }
  ctx.log.info(`Subnet ${pick} was taken meanwhile by another host: retrying`);
  return null;
}

/** Reuses our listed lease or reservation, rewriting it when its attributes are stale. */
async function reuse(
  ctx: SubnetContext,
  key: string,
  old: Lease,
  attrs: LeaseAttrs,
  signal: AbortSignal,
): Promise<Lease | null> {
  const cidr = old.subnet.toString();
  if (old.etcdLeaseId === null) {
    if (attrsEqual(old.attrs, attrs)) {
      ctx.log.info(`Using reservation ${cidr}`);
      return old;
    }
    const w = await abortable(
      ctx.registry.update(key, encodeLeaseValue(attrs), null, old.modRevision),
      signal,
    );
    if (!w) return null;
    ctx.log.info(`Using reservation ${cidr} (attributes updated, still without TTL)`);
    return buildLease(old.subnet, attrs, w, null);
  }
  // The listing asked etcd for the time left: an expiration in the past means it ran out (or
  // its TTL could not be read) between listing and TTL query.
  const left = old.expiration!.getTime() - Date.now();
  if (attrsEqual(old.attrs, attrs) && left > 0) {
    ctx.log.info(`Reusing lease ${cidr} (expires in ${Math.round(left / 1000)} s)`);
    return old;
  }
  // New attributes (e.g. VtepMAC), or the etcd lease ran out: rewrite with a fresh TTL,
  // guarded on the revision we listed.
  const w = await abortable(
    ctx.registry.update(key, encodeLeaseValue(attrs), ctx.ttlSeconds, old.modRevision),
    signal,
  );
  if (!w) return null;
  ctx.log.info(`Reusing lease ${cidr} (attributes updated)`);
  return buildLease(old.subnet, attrs, w, w.ttlSeconds);
}

async function create(
  ctx: SubnetContext,
  subnet: IPNet,
  attrs: LeaseAttrs,
  signal: AbortSignal,
): Promise<Lease | null> {
  const w = await abortable(
    ctx.registry.create(subnetKey(ctx.prefix, subnet), encodeLeaseValue(attrs), ctx.ttlSeconds),
    signal,
  );
  return w ? buildLease(subnet, attrs, w, w.ttlSeconds) : null;
}

function describeRange(ctx: SubnetContext): string {
  const c = ctx.config;
  return `${c.network} between ${c.subnetMin} and ${c.subnetMax}, SubnetLen ${c.subnetLen}`;
}

function noFreeMessage(ctx: SubnetContext): string {
  const c = ctx.config;
  const span = c.subnetMax.toBigInt() - c.subnetMin.toBigInt();
  const n = span / prefixSize(c.subnetLen, c.subnetMin.family) + 1n;
  return `No free subnet in ${c.network} between ${c.subnetMin} and ${c.subnetMax} ` +
    `(SubnetLen ${c.subnetLen}): all ${n} are leased or reserved`;
}
