/**
 * Which subnets a host takes: its own lease or reservation by PublicIP (PublicIPv6 on an
 * IPv6-only network), else the subnets of the previous subnet.env when free, else a random pick
 * among the first 100 free subnets; with IPv6 enabled both families in one key, as upstream.
 *
 * Reservations (keys without an etcd lease) are never allocated to another host, never renewed
 * and never deleted. A reservation for our PublicIP is used; when its stored attributes differ
 * from ours (e.g. a new VtepMAC after the vxlan device was recreated, or another BackendType) its
 * value is rewritten, still without an etcd lease, guarded on its revision: peers program their
 * routes/FDB from that value, so a stale VtepMAC would black-hole vxlan traffic. Upstream leaves
 * a reservation's value alone; this is a deliberate difference.
 */

import type { SubnetRange } from "../config.ts";
import { type IPNet, prefixSize } from "../ip.ts";
import {
  describeSubnets,
  encodeLeaseValue,
  type Lease,
  type LeaseAttrs,
  type LeaseSubnets,
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
  /**
   * The external interface's connected prefixes: no subnet overlapping one is picked (it would
   * hand this host an underlay address, e.g. the gateway's, for its bridge).
   */
  readonly underlay: readonly IPNet[];
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

/** The config's ranges by family, enabled ones only. */
function ranges(ctx: SubnetContext): [4 | 6, SubnetRange][] {
  const out: [4 | 6, SubnetRange][] = [];
  if (ctx.config.ipv4) out.push([4, ctx.config.ipv4]);
  if (ctx.config.ipv6) out.push([6, ctx.config.ipv6]);
  return out;
}

/** The subnet of one family. */
export function subnetOf(s: LeaseSubnets, family: 4 | 6): IPNet | null {
  return family === 4 ? s.subnet : s.ipv6Subnet;
}

/**
 * True when `s` could have been allocated under the config: each enabled family's subnet fits
 * its range, and a disabled family has no subnet (the key would name it).
 */
export function fitsAll(ctx: SubnetContext, s: LeaseSubnets): boolean {
  const c = ctx.config;
  const ok = (r: SubnetRange | null, n: IPNet | null) =>
    r ? n !== null && fitsConfig(r, n) : n === null;
  return ok(c.ipv4, s.subnet) && ok(c.ipv6, s.ipv6Subnet);
}

/**
 * Whose lease is ours: the one with our PublicIP, or on an IPv6-only network (every host then
 * writes PublicIP 0.0.0.0, as upstream) the one with our PublicIPv6.
 */
export function isOurs(ctx: SubnetContext, theirs: LeaseAttrs, ours: LeaseAttrs): boolean {
  const a = ctx.config.ipv4 ? theirs.publicIP : theirs.publicIPv6;
  const b = ctx.config.ipv4 ? ours.publicIP : ours.publicIPv6;
  return a !== null && b !== null && a.equals(b);
}

/** Our address for log lines (PublicIP, or PublicIPv6 on an IPv6-only network). */
function whoAmI(ctx: SubnetContext, attrs: LeaseAttrs): string {
  return String((ctx.config.ipv4 ? attrs.publicIP : attrs.publicIPv6) ?? "(none)");
}

/**
 * One round: a fresh listing, then reuse / subnet file / random pick. Null: retry now.
 * Every registry call is abandoned when `signal` aborts, and no later step runs. Both families
 * are leased together in one key; the subnet file and the random pick are per family (a
 * previous IPv4 subnet is kept while the IPv6 one is new when IPv6 was just enabled).
 */
async function tryAcquire(
  ctx: AcquireContext,
  attrs: LeaseAttrs,
  signal: AbortSignal,
): Promise<Acquired | null> {
  const peers = await listSubnets(ctx, signal);
  const entries = peers.entries.filter((e) => e.subnets !== null);
  const done = (lease: Lease | null) => lease ? { lease, peers } : null;

  // 1. Ours by PublicIP. A reservation wins over a lease.
  const mine = entries.filter((e) => e.lease !== null && isOurs(ctx, e.lease.attrs, attrs));
  const deleted = new Set<string>();
  const isLease = (e: SubnetEntry) => e.lease!.etcdLeaseId === null ? 0 : 1;
  mine.sort((a, b) => isLease(a) - isLease(b));
  for (const e of mine) {
    const lease = e.lease!;
    const cidr = describeSubnets(lease);
    const onUnderlay = lease.etcdLeaseId === null ? undefined : underlayOverlap(ctx, lease);
    if (onUnderlay) {
      ctx.log.warn(
        `Deleting lease ${cidr}: it overlaps ${onUnderlay}, a network of the external interface`,
      );
      if (await abortable(ctx.registry.delete(e.key, e.modRevision), signal)) {
        deleted.add(e.key);
      }
      continue;
    }
    if (!fitsAll(ctx, lease)) {
      if (lease.etcdLeaseId === null) {
        ctx.log.warn(
          `Reservation ${cidr} for ${whoAmI(ctx, attrs)} does not fit the network ` +
            `config (${describeRanges(ctx)}): ignored`,
        );
        continue;
      }
      ctx.log.info(
        `Deleting lease ${cidr}: it no longer fits the network config (${describeRanges(ctx)})`,
      );
      if (await abortable(ctx.registry.delete(e.key, e.modRevision), signal)) {
        deleted.add(e.key);
      }
      continue;
    }
    return done(await reuse(ctx, e.key, lease, attrs, signal));
  }

  // Keys whose value is malformed still occupy their subnets, as do leases of another length
  // (an older config). Keys outside the Network, or the whole Network, are never used by any
  // host (see peer_leases.ts): counted as taken, `0.0.0.0-0` would block every acquisition.
  const live = entries.filter((e) => !deleted.has(e.key));
  const prevFile = await readSubnetFile(ctx.subnetFile);
  const picked: { 4: IPNet | null; 6: IPNet | null } = { 4: null, 6: null };
  const fromFile: string[] = [];
  for (const [family, range] of ranges(ctx)) {
    const taken = live.map((e) => subnetOf(e.subnets!, family)).filter((n): n is IPNet =>
      n !== null && range.network.containsNet(n) && !range.network.equals(n)
    );
    // The underlay's own prefixes, whatever their length, are never ours to lease.
    taken.push(...ctx.underlay.filter((n) => n.family === family && n.overlaps(range.network)));
    // 2. The subnet in the previous subnet.env, when free and fitting.
    const prev = family === 4 ? prevFile.subnet : prevFile.ipv6Subnet;
    if (prev && fitsConfig(range, prev) && !taken.some((t) => t.overlaps(prev))) {
      picked[family] = prev;
      fromFile.push(prev.toString());
      continue;
    }
    // 3. A random pick among the first 100 free subnets.
    const free = candidateSubnets(range, taken, 100);
    if (free.length === 0) throw new NoFreeSubnetError(noFreeMessage(range));
    picked[family] = free[Math.min(free.length - 1, Math.floor(ctx.random() * free.length))];
  }
  const want: LeaseSubnets = { subnet: picked[4], ipv6Subnet: picked[6] };
  const lease = await create(ctx, want, attrs, signal);
  const cidr = describeSubnets(want);
  if (lease) {
    const note = fromFile.length === 0
      ? ""
      : fromFile.length === ranges(ctx).length
      ? ` (the subnet of ${ctx.subnetFile})`
      : ` (${fromFile.join(", ")} from ${ctx.subnetFile})`;
    ctx.log.info(`Acquired lease ${cidr}${note}`);
    return done(lease);
  }
  ctx.log.info(`Subnet ${cidr} was taken meanwhile by another host: retrying`);
  return null;
}

/** The first underlay prefix a subnet of `s` overlaps, if any. */
function underlayOverlap(ctx: AcquireContext, s: LeaseSubnets): IPNet | undefined {
  const subnets = [s.subnet, s.ipv6Subnet].filter((n): n is IPNet => n !== null);
  return ctx.underlay.find((u) => subnets.some((n) => n.overlaps(u)));
}

/** Reuses our listed lease or reservation, rewriting it when its attributes are stale. */
async function reuse(
  ctx: SubnetContext,
  key: string,
  old: Lease,
  attrs: LeaseAttrs,
  signal: AbortSignal,
): Promise<Lease | null> {
  const cidr = describeSubnets(old);
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
    return buildLease(old, attrs, w, null);
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
  return buildLease(old, attrs, w, w.ttlSeconds);
}

async function create(
  ctx: SubnetContext,
  subnets: LeaseSubnets,
  attrs: LeaseAttrs,
  signal: AbortSignal,
): Promise<Lease | null> {
  const w = await abortable(
    ctx.registry.create(subnetKey(ctx.prefix, subnets), encodeLeaseValue(attrs), ctx.ttlSeconds),
    signal,
  );
  return w ? buildLease(subnets, attrs, w, w.ttlSeconds) : null;
}

function describeRanges(ctx: SubnetContext): string {
  return ranges(ctx).map(([f, c]) => {
    const len = f === 4 ? "SubnetLen" : "IPv6SubnetLen";
    return `${c.network} between ${c.subnetMin} and ${c.subnetMax}, ${len} ${c.subnetLen}`;
  }).join("; ");
}

function noFreeMessage(c: SubnetRange): string {
  const span = c.subnetMax.toBigInt() - c.subnetMin.toBigInt();
  const n = span / prefixSize(c.subnetLen, c.subnetMin.family) + 1n;
  const len = c.network.family === 4 ? "SubnetLen" : "IPv6SubnetLen";
  return `No free subnet in ${c.network} between ${c.subnetMin} and ${c.subnetMax} ` +
    `(${len} ${c.subnetLen}): all ${n} are leased or reserved`;
}
