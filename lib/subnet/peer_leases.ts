/**
 * Other hosts' leases as the backends may use them: the registry's subnet keys reduced to
 * `added`/`removed` events, after the one check every backend (and aws-vpc's route table)
 * relies on. A peer lease is handed on only when its subnet lies inside Network, is exactly
 * SubnetLen long, is not the whole Network, and overlaps neither our own lease nor another live
 * lease; of leases for the same subnet the first created (lowest create revision) wins. Anything
 * else is never handed on, also not as a removal, and gets one warning naming the key and the
 * reason, again only when that key changes. A rejected lease whose overlapping holder goes away
 * is handed on then.
 *
 * Leases of exactly SubnetLen on the SubnetLen grid overlap only when they are the same subnet
 * (the IPv4 part of two keys such as `10.1.5.0-24` and `10.1.5.0-24&fc00::-64`), so overlaps
 * are found by grouping on the subnet.
 */

import type { NetworkConfig } from "../config.ts";
import type { IPNet } from "../ip.ts";
import type { Lease } from "../lease.ts";
import type { Logger } from "../log.ts";
import { attrsEqual } from "./acquire.ts";
import type { SubnetEntry } from "./entry.ts";
import type { LeaseEvent } from "./mod.ts";

/** Why a peer subnet can never be used under `config`; null when it can. */
function scopeProblem(config: NetworkConfig, subnet: IPNet): string | null {
  const cidr = subnet.toString();
  const network = config.network.toString();
  if (!config.network.containsNet(subnet)) return `${cidr} is not inside Network ${network}`;
  if (subnet.equals(config.network)) return `${cidr} is the whole Network`;
  if (subnet.prefix !== config.subnetLen) {
    return `${cidr} is not of SubnetLen ${config.subnetLen}`;
  }
  return null;
}

/** A usable-looking lease: in scope, waiting for the overlap check. */
interface Held {
  readonly entry: SubnetEntry;
  readonly lease: Lease;
}

/** The reducer: feed it listings and watch events, take the events for the backends. */
export class PeerLeases {
  readonly #config: NetworkConfig;
  readonly #own: IPNet;
  readonly #ownKey: string;
  readonly #log: Logger;
  /** In-scope leases by key. */
  #held = new Map<string, Held>();
  /** Keys of #held by subnet (CIDR text). */
  #groups = new Map<string, Set<string>>();
  /** What the backends have been given, by key. */
  #handed = new Map<string, Lease>();
  /** Keys changed since the last flush, with what they had been handed before. */
  #touched = new Map<string, Lease | undefined>();
  /** Key → the mod revision it was last warned about. */
  #warned = new Map<string, number>();

  constructor(config: NetworkConfig, own: IPNet, ownKey: string, log: Logger) {
    this.#config = config;
    this.#own = own;
    this.#ownKey = ownKey;
    this.#log = log;
  }

  /**
   * Takes `entries` as the whole set (the first listing, or a re-listing after compaction or an
   * etcd that lost its memory) and returns the difference to what was handed on: removals
   * first, then leases that are new or whose attributes changed.
   */
  replace(entries: readonly SubnetEntry[]): LeaseEvent[] {
    const before = this.#handed;
    this.#held = new Map();
    this.#groups = new Map();
    this.#handed = new Map();
    const present = new Set<string>();
    for (const e of entries) {
      present.add(e.key);
      this.#take(e);
    }
    for (const k of this.#warned.keys()) if (!present.has(k)) this.#warned.delete(k);
    for (const subnet of this.#groups.keys()) this.#settle(subnet);
    this.#touched.clear();
    const removed: LeaseEvent[] = [];
    const added: LeaseEvent[] = [];
    for (const [key, old] of before) {
      if (!this.#handed.has(key)) removed.push({ type: "removed", lease: old });
    }
    for (const [key, lease] of this.#handed) {
      const old = before.get(key);
      if (!old || !attrsEqual(old.attrs, lease.attrs)) added.push({ type: "added", lease });
    }
    return [...removed, ...added];
  }

  /** A put of `entry.key` (from a watch). */
  put(entry: SubnetEntry): void {
    const old = this.#held.get(entry.key);
    if (old) this.#drop(entry.key, old);
    const group = this.#take(entry);
    if (group !== null) this.#settle(group);
    const oldGroup = old ? old.lease.subnet.toString() : null;
    if (oldGroup !== null && oldGroup !== group) this.#settle(oldGroup);
  }

  /** A delete of `key` (from a watch). */
  delete(key: string): void {
    this.#warned.delete(key);
    const old = this.#held.get(key);
    if (!old) return;
    this.#drop(key, old);
    this.#settle(old.lease.subnet.toString());
  }

  /** The events since the last flush (one etcd response): removals first, then additions. */
  flush(): LeaseEvent[] {
    const removed: LeaseEvent[] = [];
    const added: LeaseEvent[] = [];
    for (const [key, before] of this.#touched) {
      const now = this.#handed.get(key);
      if (before && !now) removed.push({ type: "removed", lease: before });
      else if (now && now !== before) added.push({ type: "added", lease: now });
    }
    this.#touched.clear();
    return [...removed, ...added];
  }

  /** Files `e` under #held when in scope; returns its subnet group then, else null. */
  #take(e: SubnetEntry): string | null {
    if (e.key === this.#ownKey) return null;
    if (e.subnet === null || e.lease === null) {
      this.#warn(e, `Skipping malformed lease ${e.key} (revision ${e.modRevision}): ${e.problem}`);
      return null;
    }
    const why = scopeProblem(this.#config, e.subnet);
    if (why !== null) {
      this.#warn(e, this.#ignoring(e, e.lease, why));
      return null;
    }
    const group = e.subnet.toString();
    this.#held.set(e.key, { entry: e, lease: e.lease });
    let keys = this.#groups.get(group);
    if (!keys) this.#groups.set(group, keys = new Set());
    keys.add(e.key);
    return group;
  }

  #drop(key: string, h: Held): void {
    this.#held.delete(key);
    const group = h.lease.subnet.toString();
    const keys = this.#groups.get(group);
    keys?.delete(key);
    if (keys?.size === 0) this.#groups.delete(group);
    this.#hand(key, undefined);
  }

  /** Hands on the first holder of `group`'s subnet; warns about the others. */
  #settle(group: string): void {
    const keys = this.#groups.get(group);
    if (!keys) return;
    const holders = [...keys].map((k) => this.#held.get(k)!);
    const ours = holders[0].lease.subnet.equals(this.#own);
    let first: Held | null = null;
    if (!ours) {
      for (const h of holders) {
        if (
          !first || h.entry.createRevision < first.entry.createRevision ||
          (h.entry.createRevision === first.entry.createRevision && h.entry.key < first.entry.key)
        ) first = h;
      }
    }
    for (const h of holders) {
      if (h === first) {
        this.#warned.delete(h.entry.key);
        this.#hand(h.entry.key, h.lease);
        continue;
      }
      this.#hand(h.entry.key, undefined);
      const why = first
        ? `${group} is already held by ${first.entry.key} (created first, at revision ${first.entry.createRevision})`
        : `${group} is our own lease`;
      this.#warn(h.entry, this.#ignoring(h.entry, h.lease, why));
    }
  }

  #hand(key: string, lease: Lease | undefined): void {
    const cur = this.#handed.get(key);
    if (cur === lease) return;
    if (!this.#touched.has(key)) this.#touched.set(key, cur);
    if (lease) this.#handed.set(key, lease);
    else this.#handed.delete(key);
  }

  #ignoring(e: SubnetEntry, lease: Lease, why: string): string {
    return `Ignoring lease ${e.key} (revision ${e.modRevision}, PublicIP ${lease.attrs.publicIP.toString()}): ${why}`;
  }

  #warn(e: SubnetEntry, line: string): void {
    if (this.#warned.get(e.key) === e.modRevision) return;
    this.#warned.set(e.key, e.modRevision);
    this.#log.warn(line);
  }
}
