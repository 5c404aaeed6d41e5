/**
 * {@link SubnetManager} over a {@link Registry}: lease policy (acquire, keep, watch); the storage
 * is lib/registry/etcd.ts.
 *
 * Reservations (keys without an etcd lease) are never allocated to another host, never renewed
 * and never deleted. A reservation for our PublicIP is used; when its stored attributes differ
 * from ours (e.g. a new VtepMAC after the vxlan device was recreated, or another BackendType) its
 * value is rewritten, still without an etcd lease, guarded on its revision: peers program their
 * routes/FDB from that value, so a stale VtepMAC would black-hole vxlan traffic. Upstream leaves
 * a reservation's value alone; this is a deliberate difference.
 */

import type { NetworkConfig } from "../config.ts";
import { type IPNet, prefixSize } from "../ip.ts";
import {
  decodeLeaseValue,
  encodeLeaseValue,
  type Lease,
  type LeaseAttrs,
  parseSubnetKey,
  subnetKey,
  subnetsPrefix,
} from "../lease.ts";
import { abortable, Backoff, sleep } from "../async.ts";
import { errText, type Logger, logger } from "../log.ts";
import { type ListedKeyValue, type Registry, RegistryUnavailableError } from "../registry/mod.ts";
import { candidateSubnets, fitsConfig } from "./candidates.ts";
import { readSubnetFile } from "./file.ts";
import { type LeaseEvent, LeaseLostError, type SubnetManager } from "./mod.ts";

/** Options of {@link EtcdSubnetManager}. */
export interface EtcdSubnetManagerOptions {
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
}

/** The network has no free subnet for us. */
export class NoFreeSubnetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NoFreeSubnetError";
  }
}

/** A parsed subnet key from a listing or watch. */
interface Entry {
  readonly kv: ListedKeyValue;
  readonly subnet: IPNet;
  /** Null when the value is malformed. */
  readonly lease: Lease | null;
}

function attrsEqual(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return encodeLeaseValue(a) === encodeLeaseValue(b);
}

/** Subnet leases in etcd (or any {@link Registry}). */
export class EtcdSubnetManager implements SubnetManager {
  readonly config: NetworkConfig;
  readonly #reg: Registry;
  readonly #prefix: string;
  readonly #subnetFile: string;
  readonly #marginMs: number;
  readonly #ttl: number;
  readonly #log: Logger;
  readonly #renewRetryMs: number;
  readonly #noFreeRetryMs: number;
  readonly #random: () => number;
  /** The last listing, handed to the first watchLeases() so that start-up lists only once. */
  #cache: { entries: ListedKeyValue[]; revision: number } | null = null;
  readonly #warned = new Set<string>();

  constructor(opts: EtcdSubnetManagerOptions) {
    this.#reg = opts.registry;
    this.config = opts.config;
    this.#prefix = opts.prefix;
    this.#subnetFile = opts.subnetFile;
    this.#ttl = opts.ttlSeconds ?? 86400;
    this.#log = opts.log ?? logger("subnet");
    this.#marginMs = opts.renewMarginMinutes * 60_000;
    if (this.#marginMs >= this.#ttl * 1000) {
      // Renewing "margin before expiry" would renew again at once, forever.
      this.#marginMs = this.#ttl * 500;
      this.#log.warn(
        `Lease renew margin ${opts.renewMarginMinutes} min is not shorter than the lease TTL ` +
          `${this.#ttl} s: renewing at half the TTL instead`,
      );
    }
    this.#renewRetryMs = opts.renewRetryMs ?? 60_000;
    this.#noFreeRetryMs = opts.noFreeSubnetRetryMs ?? 5_000;
    this.#random = opts.random ?? Math.random;
  }

  // ---- acquire -------------------------------------------------------------------------------

  async acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease> {
    const backoff = new Backoff(100, 10_000);
    while (true) {
      signal.throwIfAborted();
      try {
        const lease = await this.#tryAcquire(attrs, signal);
        if (lease) return lease;
        // Lost a race (or the listing was stale): list again right away.
        continue;
      } catch (err) {
        signal.throwIfAborted();
        if (err instanceof NoFreeSubnetError) {
          this.#log.error(`${err.message} (trying again in ${this.#noFreeRetryMs / 1000} s)`);
          await sleep(this.#noFreeRetryMs, signal);
          continue;
        }
        const delay = backoff.next();
        // Unreachable endpoints were already logged one line each by the registry.
        if (!(err instanceof RegistryUnavailableError)) {
          this.#log.error(
            `Failed to acquire a subnet (trying again in ${delay} ms): ${errText(err)}`,
          );
        }
        await sleep(delay, signal);
      }
    }
  }

  /**
   * One round: a fresh listing, then reuse / subnet file / random pick. Null: retry now.
   * Every registry call is abandoned when `signal` aborts (an unanswering etcd fails a call only
   * at its deadline), and no later step runs.
   */
  async #tryAcquire(attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease | null> {
    const listing = await abortable(this.#reg.list(subnetsPrefix(this.#prefix)), signal);
    this.#cache = listing;
    const entries = this.#parse(listing.entries, null);
    const now = Date.now();

    // 1. Ours by PublicIP. A reservation wins over a lease.
    const mine = entries.filter((e) => e.lease?.attrs.publicIP.equals(attrs.publicIP));
    const deleted = new Set<string>();
    mine.sort((a, b) => (a.kv.leaseId === null ? 0 : 1) - (b.kv.leaseId === null ? 0 : 1));
    for (const e of mine) {
      const cidr = e.subnet.toString();
      if (!fitsConfig(this.config, e.subnet)) {
        if (e.kv.leaseId === null) {
          this.#log.warn(
            `Reservation ${cidr} for ${attrs.publicIP} does not fit the network ` +
              `config (${this.#describeRange()}): ignored`,
          );
          continue;
        }
        this.#log.info(
          `Deleting lease ${cidr}: it no longer fits the network config (${this.#describeRange()})`,
        );
        if (await abortable(this.#reg.delete(e.kv.key, e.kv.modRevision), signal)) {
          deleted.add(e.kv.key);
        }
        continue;
      }
      const reused = await this.#reuse(e, attrs, now, signal);
      if (reused === null) return null;
      return reused;
    }

    // Keys whose value is malformed still occupy their subnet (see #parse).
    const taken = entries.filter((e) => !deleted.has(e.kv.key)).map((e) => e.subnet);

    // 2. The subnet in the previous subnet.env, when free and fitting.
    const prev = (await readSubnetFile(this.#subnetFile)).subnet;
    if (prev && fitsConfig(this.config, prev) && !taken.some((t) => t.overlaps(prev))) {
      const lease = await this.#create(prev, attrs, signal);
      if (lease) {
        this.#log.info(`Acquired lease ${prev} (the subnet of ${this.#subnetFile})`);
        return lease;
      }
      this.#log.info(`Subnet ${prev} was taken meanwhile by another host: retrying`);
      return null;
    }

    // 3. A random pick among the first 100 free subnets.
    const free = candidateSubnets(this.config, taken, 100);
    if (free.length === 0) throw new NoFreeSubnetError(this.#noFreeMessage());
    const pick = free[Math.min(free.length - 1, Math.floor(this.#random() * free.length))];
    const lease = await this.#create(pick, attrs, signal);
    if (lease) {
      this.#log.info(`Acquired lease ${pick}`);
      return lease;
    }
    this.#log.info(`Subnet ${pick} was taken meanwhile by another host: retrying`);
    return null;
  }

  async #reuse(
    e: Entry,
    attrs: LeaseAttrs,
    now: number,
    signal: AbortSignal,
  ): Promise<Lease | null> {
    const cidr = e.subnet.toString();
    const old = e.lease!;
    if (e.kv.leaseId === null) {
      if (attrsEqual(old.attrs, attrs)) {
        this.#log.info(`Using reservation ${cidr}`);
        return old;
      }
      const w = await abortable(
        this.#reg.update(e.kv.key, encodeLeaseValue(attrs), null, e.kv.modRevision),
        signal,
      );
      if (!w) return null;
      this.#log.info(`Using reservation ${cidr} (attributes updated, still without TTL)`);
      return { ...old, attrs, modRevision: w.modRevision };
    }
    if (attrsEqual(old.attrs, attrs) && e.kv.ttlSeconds !== null) {
      this.#log.info(`Reusing lease ${cidr} (expires in ${e.kv.ttlSeconds} s)`);
      return { ...old, expiration: new Date(now + e.kv.ttlSeconds * 1000) };
    }
    // New attributes (e.g. VtepMAC), or the etcd lease ran out between listing and TTL query:
    // rewrite with a fresh TTL, guarded on the revision we listed.
    const w = await abortable(
      this.#reg.update(e.kv.key, encodeLeaseValue(attrs), this.#ttl, e.kv.modRevision),
      signal,
    );
    if (!w) return null;
    this.#log.info(`Reusing lease ${cidr} (attributes updated)`);
    return this.#leaseFromWrite(e.subnet, attrs, w);
  }

  async #create(subnet: IPNet, attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease | null> {
    const w = await abortable(
      this.#reg.create(subnetKey(this.#prefix, subnet), encodeLeaseValue(attrs), this.#ttl),
      signal,
    );
    return w ? this.#leaseFromWrite(subnet, attrs, w) : null;
  }

  #leaseFromWrite(
    subnet: IPNet,
    attrs: LeaseAttrs,
    w: { modRevision: number; leaseId: string | null; ttlSeconds: number | null },
  ): Lease {
    return {
      subnet,
      attrs,
      expiration: w.ttlSeconds === null ? null : new Date(Date.now() + w.ttlSeconds * 1000),
      modRevision: w.modRevision,
      etcdLeaseId: w.leaseId,
    };
  }

  #describeRange(): string {
    const c = this.config;
    return `${c.network} between ${c.subnetMin} and ${c.subnetMax}, SubnetLen ${c.subnetLen}`;
  }

  #noFreeMessage(): string {
    const c = this.config;
    const span = c.subnetMax.toBigInt() - c.subnetMin.toBigInt();
    const n = span / prefixSize(c.subnetLen, c.subnetMin.family) + 1n;
    return `No free subnet in ${c.network} between ${c.subnetMin} and ${c.subnetMax} (SubnetLen ${c.subnetLen}): all ${n} are leased or reserved`;
  }

  /**
   * Parses listed keys. Malformed keys are skipped; keys with a malformed value keep their subnet
   * (so it is never allocated over) with `lease: null`. One warning per key and revision.
   */
  #parse(kvs: readonly ListedKeyValue[], own: IPNet | null): Entry[] {
    const out: Entry[] = [];
    const now = Date.now();
    for (const kv of kvs) {
      const subnet = parseSubnetKey(kv.key);
      if (typeof subnet === "string") {
        this.#warnOnce(kv.key, kv.modRevision, subnet);
        continue;
      }
      if (own && subnet.equals(own)) continue;
      const attrs = decodeLeaseValue(kv.value);
      if (typeof attrs === "string") {
        this.#warnOnce(kv.key, kv.modRevision, attrs);
        out.push({ kv, subnet, lease: null });
        continue;
      }
      out.push({
        kv,
        subnet,
        lease: {
          subnet,
          attrs,
          expiration: kv.leaseId === null ? null : new Date(now + (kv.ttlSeconds ?? 0) * 1000),
          modRevision: kv.modRevision,
          etcdLeaseId: kv.leaseId,
        },
      });
    }
    return out;
  }

  #warnOnce(key: string, revision: number, why: string): void {
    const id = `${key}@${revision}`;
    if (this.#warned.has(id)) return;
    this.#warned.add(id);
    this.#log.warn(`Skipping malformed lease ${key} (revision ${revision}): ${why}`);
  }

  // ---- keep ----------------------------------------------------------------------------------

  async keepLease(lease: Lease, signal: AbortSignal): Promise<void> {
    const state: KeepState = {
      lease,
      wake: null,
    };
    const inner = new AbortController();
    const both = AbortSignal.any([signal, inner.signal]);
    const watching = this.#watchOwn(state, both);
    // Also for a reservation: it sleeps until the watch sees an etcd lease attached to our key.
    const renewing = this.#renewLoop(state, both);
    try {
      await Promise.race([watching, renewing]);
    } catch (err) {
      if (err instanceof LeaseLostError) throw err;
      if (!signal.aborted) throw err;
    } finally {
      inner.abort();
      await Promise.allSettled([watching, renewing]);
    }
  }

  async #renewLoop(state: KeepState, signal: AbortSignal): Promise<void> {
    const key = subnetKey(this.#prefix, state.lease.subnet);
    const cidr = state.lease.subnet.toString();
    while (!signal.aborted) {
      const l = state.lease;
      if (l.etcdLeaseId === null || l.expiration === null) {
        // Turned into a reservation by an admin: nothing to renew any more.
        await waitOrWake(state, 2 ** 31 - 1, signal);
        continue;
      }
      const wait = l.expiration.getTime() - this.#marginMs - Date.now();
      if (wait > 0) {
        this.#log.v(1, `Renewing lease ${cidr} in ${Math.round(wait / 1000)} s`);
        await waitOrWake(state, wait, signal);
        if (state.lease !== l) continue; // changed by the watch: recompute
        if (l.expiration.getTime() - this.#marginMs > Date.now()) continue;
      }
      try {
        const w = await abortable(
          this.#reg.update(key, encodeLeaseValue(l.attrs), this.#ttl, l.modRevision),
          signal,
        );
        if (w) {
          state.lease = this.#leaseFromWrite(l.subnet, l.attrs, w);
          this.#log.info(
            `Renewed lease ${cidr} (expires ${state.lease.expiration!.toISOString()})`,
          );
          continue;
        }
        // The key changed since our last write: whose is it now?
        const cur = await abortable(this.#reg.get(key), signal);
        if (!cur.kv) throw new LeaseLostError(`Lease ${cidr} was deleted from etcd`);
        const attrs = decodeLeaseValue(cur.kv.value);
        if (typeof attrs === "string" || !attrs.publicIP.equals(l.attrs.publicIP)) {
          throw new LeaseLostError(
            `Lease ${cidr} is now held by ${
              typeof attrs === "string" ? "an unreadable value" : attrs.publicIP.toString()
            }`,
          );
        }
        // Rewritten with our PublicIP (e.g. by an admin) before the watch told us: adopt it as
        // the watch does, etcd lease included. Made a reservation, it is never renewed (a
        // write with a TTL would turn it back into a lease).
        this.#observe(state, cidr, cur.kv.value, cur.kv.modRevision, cur.kv.leaseId);
      } catch (err) {
        if (err instanceof LeaseLostError || signal.aborted) throw err;
        this.#log.error(
          `Error renewing lease ${cidr} (trying again in ${this.#renewRetryMs / 1000} s): ${
            errText(err)
          }`,
        );
        await sleep(this.#renewRetryMs, signal);
      }
    }
    signal.throwIfAborted();
  }

  /** Watches our own key; rejects with LeaseLostError when it is deleted or taken. */
  async #watchOwn(state: KeepState, signal: AbortSignal): Promise<void> {
    const key = subnetKey(this.#prefix, state.lease.subnet);
    const cidr = state.lease.subnet.toString();
    let from = state.lease.modRevision + 1;
    while (!signal.aborted) {
      let compacted = false;
      for await (const ev of this.#reg.watch(key, { prefix: false, fromRevision: from }, signal)) {
        if (ev.type === "compacted" || ev.type === "reset") {
          compacted = true;
          break;
        }
        if (ev.type === "reconnected" || ev.type === "progress") continue;
        from = ev.modRevision + 1;
        if (ev.type === "delete") {
          throw new LeaseLostError(`Lease ${cidr} was deleted from etcd (expired or revoked)`);
        }
        this.#observe(state, cidr, ev.value, ev.modRevision, ev.leaseId);
      }
      if (!compacted) break;
      // History lost: read the key as it is now.
      const cur = await this.#retry(() => this.#reg.get(key), signal);
      if (!cur.kv) throw new LeaseLostError(`Lease ${cidr} was deleted from etcd`);
      this.#observe(state, cidr, cur.kv.value, cur.kv.modRevision, cur.kv.leaseId);
      from = cur.revision + 1;
    }
    signal.throwIfAborted();
  }

  /** A write to our key: ours (adopt its revision) or another host's (lost). */
  #observe(
    state: KeepState,
    cidr: string,
    value: string,
    modRevision: number,
    leaseId: string | null,
  ): void {
    if (modRevision <= state.lease.modRevision) return;
    const attrs = decodeLeaseValue(value);
    if (typeof attrs === "string" || !attrs.publicIP.equals(state.lease.attrs.publicIP)) {
      throw new LeaseLostError(
        `Lease ${cidr} is now held by ${
          typeof attrs === "string" ? "an unreadable value" : attrs.publicIP.toString()
        }`,
      );
    }
    const l = state.lease;
    let expiration = l.expiration;
    if (leaseId === null) expiration = null;
    else if (leaseId !== l.etcdLeaseId) expiration = new Date(Date.now() + this.#ttl * 1000);
    state.lease = { ...l, modRevision, etcdLeaseId: leaseId, expiration };
    state.wake?.();
  }

  async #retry<T>(fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    const backoff = new Backoff();
    while (true) {
      signal.throwIfAborted();
      try {
        return await abortable(fn(), signal);
      } catch (err) {
        signal.throwIfAborted();
        const d = backoff.next();
        if (!(err instanceof RegistryUnavailableError)) {
          this.#log.warn(`Etcd request failed (trying again in ${d} ms): ${errText(err)}`);
        }
        await sleep(d, signal);
      }
    }
  }

  // ---- watch ---------------------------------------------------------------------------------

  async *watchLeases(own: IPNet, signal: AbortSignal): AsyncIterable<LeaseEvent[]> {
    const prefix = subnetsPrefix(this.#prefix);
    let listing = this.#cache ?? await this.#retry(() => this.#reg.list(prefix), signal);
    this.#cache = null;
    let known = this.#snapshot(listing.entries, own);
    yield [...known.values()].map((lease) => ({ type: "added" as const, lease }));
    let from = listing.revision + 1;
    let pending: LeaseEvent[] = [];
    while (!signal.aborted) {
      let compacted = false;
      for await (
        const ev of this.#reg.watch(prefix, { prefix: true, fromRevision: from }, signal)
      ) {
        if (ev.type === "reconnected") continue;
        if (ev.type === "progress") {
          // The end of one etcd response: its changes go to the backend as one batch.
          if (pending.length > 0) yield pending;
          pending = [];
          continue;
        }
        if (ev.type === "compacted" || ev.type === "reset") {
          compacted = true;
          break;
        }
        from = ev.modRevision + 1;
        const subnet = parseSubnetKey(ev.key);
        if (typeof subnet === "string") {
          if (ev.type === "put") this.#warnOnce(ev.key, ev.modRevision, subnet);
          continue;
        }
        if (subnet.equals(own)) continue;
        if (ev.type === "delete") {
          const old = known.get(ev.key);
          if (old) {
            known.delete(ev.key);
            pending.push({ type: "removed", lease: old });
          }
          continue;
        }
        const attrs = decodeLeaseValue(ev.value);
        if (typeof attrs === "string") {
          this.#warnOnce(ev.key, ev.modRevision, attrs);
          continue;
        }
        const lease: Lease = {
          subnet,
          attrs,
          expiration: ev.leaseId === null ? null : new Date(Date.now() + this.#ttl * 1000),
          modRevision: ev.modRevision,
          etcdLeaseId: ev.leaseId,
        };
        known.set(ev.key, lease);
        pending.push({ type: "added", lease });
      }
      if (pending.length > 0) yield pending;
      pending = [];
      if (!compacted) break;
      this.#log.info(`Lease history compacted: listing ${prefix} again`);
      listing = await this.#retry(() => this.#reg.list(prefix), signal);
      const fresh = this.#snapshot(listing.entries, own);
      const batch: LeaseEvent[] = [];
      for (const [key, old] of known) {
        if (!fresh.has(key)) batch.push({ type: "removed", lease: old });
      }
      for (const [key, lease] of fresh) {
        const old = known.get(key);
        if (!old || !attrsEqual(old.attrs, lease.attrs)) batch.push({ type: "added", lease });
      }
      known = fresh;
      from = listing.revision + 1;
      if (batch.length > 0) yield batch;
    }
  }

  /** Well-formed leases of other hosts by key. */
  #snapshot(kvs: readonly ListedKeyValue[], own: IPNet): Map<string, Lease> {
    const m = new Map<string, Lease>();
    for (const e of this.#parse(kvs, own)) if (e.lease) m.set(e.kv.key, e.lease);
    return m;
  }
}

interface KeepState {
  lease: Lease;
  /** Set while the renew loop sleeps: wakes it to recompute. */
  wake: (() => void) | null;
}

/** Sleeps `ms` (clamped to the timer maximum), or until `state.wake()`; rejects on abort. */
function waitOrWake(state: KeepState, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", onAbort);
      state.wake = null;
    };
    const onAbort = () => {
      done();
      reject(signal.reason);
    };
    const t = setTimeout(() => {
      done();
      resolve();
    }, Math.min(ms, 2 ** 31 - 1));
    state.wake = () => {
      done();
      resolve();
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
