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
 * are found by grouping on the subnet. With IPv6 enabled the same holds for the IPv6 half
 * (inside IPv6Network, exactly IPv6SubnetLen, not the whole IPv6Network, no overlap): a lease
 * sits in one group per family and is handed on only when it is the first holder in each.
 */

import type { NetworkConfig, SubnetRange } from "../config.ts";
import type { IPNet } from "../ip.ts";
import type { Lease, LeaseSubnets } from "../lease.ts";
import { clip, type Logger } from "../log.ts";
import { attrsEqual } from "./acquire.ts";
import type { SubnetEntry } from "./entry.ts";
import type { LeaseEvent } from "./mod.ts";

/** Why one family's subnet of a peer can never be used; null when it can. */
function rangeProblem(r: SubnetRange, subnet: IPNet): string | null {
  const v6 = r.network.family === 6;
  const netKey = v6 ? "IPv6Network" : "Network";
  const lenKey = v6 ? "IPv6SubnetLen" : "SubnetLen";
  const cidr = subnet.toString();
  if (!r.network.containsNet(subnet)) return `${cidr} is not inside ${netKey} ${r.network}`;
  if (subnet.equals(r.network)) return `${cidr} is the whole ${netKey}`;
  if (subnet.prefix !== r.subnetLen) return `${cidr} is not of ${lenKey} ${r.subnetLen}`;
  return null;
}

/**
 * Why a peer lease can never be used under `config`; null when it can. Each enabled family's
 * subnet is checked; a family the config disables is ignored. A peer without the IPv6 half
 * (an IPv4-only host in a dual-stack network) is used for IPv4 alone, as upstream; a lease with
 * no subnet of any enabled family is refused.
 */
function scopeProblem(config: NetworkConfig, s: LeaseSubnets): string | null {
  let usable = false;
  for (const [r, n] of [[config.ipv4, s.subnet], [config.ipv6, s.ipv6Subnet]] as const) {
    if (!r || !n) continue;
    const why = rangeProblem(r, n);
    if (why !== null) return why;
    usable = true;
  }
  if (usable) return null;
  return config.ipv4 ? "it has no IPv4 subnet" : "it has no IPv6 subnet (IPv6-only network)";
}

/** The overlap groups of a lease: the CIDR of each enabled family's subnet. */
function groupsOf(config: NetworkConfig, s: LeaseSubnets): string[] {
  const out: string[] = [];
  if (config.ipv4 && s.subnet) out.push(s.subnet.toString());
  if (config.ipv6 && s.ipv6Subnet) out.push(s.ipv6Subnet.toString());
  return out;
}

/** A usable-looking lease: in scope, waiting for the overlap check. */
interface Held {
  readonly entry: SubnetEntry;
  readonly lease: Lease;
}

/** The reducer: feed it listings and watch events, take the events for the backends. */
export class PeerLeases {
  readonly #config: NetworkConfig;
  /** Our own subnets' CIDRs (either family). */
  readonly #own: Set<string>;
  readonly #ownKey: string;
  readonly #log: Logger;
  /** In-scope leases by key. */
  #held = new Map<string, Held>();
  /** Keys of #held by subnet (CIDR text, either family). */
  #groups = new Map<string, Set<string>>();
  /** What the backends have been given, by key. */
  #handed = new Map<string, Lease>();
  /** Keys changed since the last flush, with what they had been handed before. */
  #touched = new Map<string, Lease | undefined>();
  /** Key → the mod revision it was last warned about. */
  #warned = new Map<string, number>();

  constructor(config: NetworkConfig, own: LeaseSubnets, ownKey: string, log: Logger) {
    this.#config = config;
    this.#own = new Set(groupsOf(config, own));
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
    this.#settle([...this.#groups.keys()]);
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
    const groups = this.#take(entry);
    this.#settle([...groups, ...(old ? groupsOf(this.#config, old.lease) : [])]);
  }

  /** A delete of `key` (from a watch). */
  delete(key: string): void {
    this.#warned.delete(key);
    const old = this.#held.get(key);
    if (!old) return;
    this.#drop(key, old);
    this.#settle(groupsOf(this.#config, old.lease));
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

  /** Files `e` under #held when in scope; returns its subnet groups then, else none. */
  #take(e: SubnetEntry): string[] {
    if (e.key === this.#ownKey) return [];
    if (e.subnets === null || e.lease === null) {
      this.#warn(
        e,
        `Skipping malformed lease ${clip(e.key)} (revision ${e.modRevision}): ${e.problem}`,
      );
      return [];
    }
    const why = scopeProblem(this.#config, e.subnets);
    if (why !== null) {
      this.#warn(e, this.#ignoring(e, e.lease, why));
      return [];
    }
    this.#held.set(e.key, { entry: e, lease: e.lease });
    const groups = groupsOf(this.#config, e.lease);
    for (const g of groups) {
      let keys = this.#groups.get(g);
      if (!keys) this.#groups.set(g, keys = new Set());
      keys.add(e.key);
    }
    return groups;
  }

  #drop(key: string, h: Held): void {
    this.#held.delete(key);
    for (const g of groupsOf(this.#config, h.lease)) {
      const keys = this.#groups.get(g);
      keys?.delete(key);
      if (keys?.size === 0) this.#groups.delete(g);
    }
    this.#hand(key, undefined);
  }

  /** The first created holder of a subnet group. */
  #first(group: string): Held | null {
    let first: Held | null = null;
    for (const k of this.#groups.get(group) ?? []) {
      const h = this.#held.get(k)!;
      if (
        !first || h.entry.createRevision < first.entry.createRevision ||
        (h.entry.createRevision === first.entry.createRevision && h.entry.key < first.entry.key)
      ) first = h;
    }
    return first;
  }

  /**
   * Re-decides every holder of `groups`: a lease is handed on when, in each of its subnets
   * (one per enabled family), it is the first created holder and that subnet is not ours.
   */
  #settle(groups: readonly string[]): void {
    const keys = new Set<string>();
    for (const g of groups) for (const k of this.#groups.get(g) ?? []) keys.add(k);
    for (const key of keys) {
      const h = this.#held.get(key)!;
      let why: string | null = null;
      for (const g of groupsOf(this.#config, h.lease)) {
        if (this.#own.has(g)) {
          why = `${g} is our own lease`;
          break;
        }
        const first = this.#first(g)!;
        if (first !== h) {
          why =
            `${g} is already held by ${first.entry.key} (created first, at revision ${first.entry.createRevision})`;
          break;
        }
      }
      if (why === null) {
        this.#warned.delete(key);
        this.#hand(key, h.lease);
      } else {
        this.#hand(key, undefined);
        this.#warn(h.entry, this.#ignoring(h.entry, h.lease, why));
      }
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
    const a = lease.attrs;
    const who = a.publicIP ? `PublicIP ${a.publicIP}` : `PublicIPv6 ${a.publicIPv6 ?? "(none)"}`;
    return `Ignoring lease ${clip(e.key)} (revision ${e.modRevision}, ${who}): ${why}`;
  }

  #warn(e: SubnetEntry, line: string): void {
    if (this.#warned.get(e.key) === e.modRevision) return;
    this.#warned.set(e.key, e.modRevision);
    this.#log.warn(line);
  }
}
