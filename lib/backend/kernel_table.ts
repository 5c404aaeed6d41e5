/**
 * The peers a routed backend follows and the kernel entries it has put in for them; applies the
 * plans of kernel_plan.ts through the few netlink verbs in {@link KernelOps}, so tests drive it
 * with a recording fake.
 */

import {
  type NeighInfo,
  type Netlink,
  type RouteInfo,
  type RouteSpec,
  RT_TABLE_MAIN,
} from "../../ffi/netlink/mod.ts";
import { isErrno } from "../../ffi/errno.ts";
import { IP, type IPNet } from "../ip.ts";
import type { Lease } from "../lease.ts";
import type { LeaseEvent } from "../subnet/mod.ts";
import { errText, type Logger } from "../log.ts";
import {
  configDrift,
  kernelChanges,
  kernelFailures,
  peersInUse,
  peersRejected,
  resyncs,
} from "../health/catalog.ts";
import {
  describeProtocol,
  emptyPlan,
  foreignRouteAt,
  type KernelState,
  type PeerDecision,
  type PeerEntries,
  type Plan,
  planSize,
  planSync,
  planUpdate,
  routeSpecOf,
  type Scope,
} from "./kernel_plan.ts";

/** The netlink verbs the peer table uses (a subset of `Netlink`). */
export type KernelOps = Pick<
  Netlink,
  | "routeList"
  | "routeReplace"
  | "routeDel"
  | "neighList"
  | "neighSet"
  | "neighDel"
  | "fdbList"
  | "fdbSet"
  | "fdbDel"
>;

const IP_ZERO = IP.fromU32(0);

function routeDelSpec(r: RouteInfo): RouteSpec {
  // With its protocol, a delete matches only that route: never an admin's of the same dst.
  const spec: RouteSpec = { dst: r.dst, table: r.table };
  if (r.protocol !== 0) spec.protocol = r.protocol;
  if (r.gateway !== null) spec.gateway = r.gateway;
  if (r.oif !== null) spec.oif = r.oif;
  if (r.priority !== null && r.priority !== 0) spec.metric = r.priority;
  return spec;
}

function describeRoute(r: { dst: IPNet; gateway: IP | null; oif: number | null }): string {
  return `${r.dst}${r.gateway ? ` via ${r.gateway}` : ""}${r.oif !== null ? ` dev #${r.oif}` : ""}`;
}

// Labels of flannel_kernel_changes_total / flannel_kernel_failures_total.
const ROUTE_SET = { kind: "route", op: "set" } as const;
const ROUTE_DEL = { kind: "route", op: "delete" } as const;
const NEIGH_SET = { kind: "neigh", op: "set" } as const;
const NEIGH_DEL = { kind: "neigh", op: "delete" } as const;
const FDB_SET = { kind: "fdb", op: "set" } as const;
const FDB_DEL = { kind: "fdb", op: "delete" } as const;

/** What a neighbour entry of `ip`'s family is called. */
function nd(ip: IP): string {
  return ip.family === 4 ? "ARP" : "NDP";
}

/** What {@link applyPlan} checks the routes it sets against. */
export interface ApplyOptions {
  /** The main table (of the plan's family) as listed just before the plan was made; else listed
   * when a route is set. */
  readonly routes?: readonly RouteInfo[];
  /** Destination → the warning last logged for it, so a collision is logged once, not per sync. */
  readonly warned?: Map<string, string>;
}

/**
 * Applies `plan` in order; failures are logged and counted, never thrown. A route is not set
 * where the kernel holds someone else's route to the same destination ({@link foreignRouteAt}):
 * a replace would overwrite a connected route (a Network overlapping the underlay) or an admin's.
 */
export function applyPlan(
  nl: KernelOps,
  plan: Plan,
  log: Logger,
  opts: ApplyOptions = {},
): number {
  let failures = 0;
  const run = (
    labels: { kind: "route" | "neigh" | "fdb"; op: "set" | "delete" },
    what: string,
    fn: () => void,
    absentOk = false,
  ) => {
    try {
      fn();
      kernelChanges.inc(labels);
    } catch (err) {
      if (absentOk && (isErrno(err, "ESRCH") || isErrno(err, "ENOENT"))) return;
      failures++;
      kernelFailures.inc(labels);
      log.error(`Cannot ${what}: ${errText(err)}`);
    }
  };
  for (const r of plan.routeDel) {
    run(ROUTE_DEL, `delete route ${describeRoute(r)}`, () => nl.routeDel(routeDelSpec(r)), true);
  }
  for (const n of plan.neighDel) {
    run(
      NEIGH_DEL,
      `delete ${nd(n.ip)} entry ${n.ip} on #${n.index}`,
      () => nl.neighDel(n.index, n.ip),
      true,
    );
  }
  for (const f of plan.fdbDel) {
    const dst = f.dst ?? IP_ZERO;
    run(
      FDB_DEL,
      `delete FDB entry ${f.mac} dst ${dst} on #${f.index}`,
      () => nl.fdbDel(f.index, f.mac, dst),
      true,
    );
  }
  for (const f of plan.fdbSet) {
    run(
      FDB_SET,
      `set FDB entry ${f.mac} dst ${f.dst} on #${f.index}`,
      () => nl.fdbSet(f.index, f.mac, f.dst),
    );
  }
  for (const n of plan.neighSet) {
    run(
      NEIGH_SET,
      `set ${nd(n.ip)} entry ${n.ip} lladdr ${n.mac} on #${n.index}`,
      () => nl.neighSet(n.index, n.ip, n.mac),
    );
  }
  let routes = opts.routes ?? null;
  for (const r of plan.routeSet) {
    routes ??= nl.routeList(RT_TABLE_MAIN, r.dst.family);
    const foreign = foreignRouteAt(routes, r.dst);
    if (foreign) {
      const dst = r.dst.toString();
      const why = `Not routing peer subnet ${dst}: the kernel already has a route to it that is ` +
        `not flannel's (${describeRoute(foreign)}, ${describeProtocol(foreign.protocol)}); ` +
        `left alone (does the Network overlap a local network?)`;
      if (opts.warned?.get(dst) !== why) log.warn(why);
      opts.warned?.set(dst, why);
      continue;
    }
    opts.warned?.delete(r.dst.toString());
    run(ROUTE_SET, `replace route ${describeRoute(r)}`, () => nl.routeReplace(routeSpecOf(r)));
  }
  return failures;
}

/**
 * The peers the backend follows and the entries it has put in the kernel for them.
 *
 * `decide` turns a lease into entries or a skip reason; it is called again for every lease when
 * the scope changes (the vxlan device was recreated with a new index).
 */
export class KernelEntryTable {
  #leases = new Map<string, Lease>();
  #applied = new Map<string, PeerEntries>();
  #warned = new Map<string, string>();
  /** Peer routes not set because of a foreign route to the same destination (see applyPlan). */
  #routeWarned = new Map<string, string>();
  /** Peers skipped because another peer holds their VtepMAC: key → that MAC. */
  #macWaiting = new Map<string, string>();
  /** Set by a batch in which a VtepMAC changed hands: a full reconcile follows it. */
  #reshuffle = false;
  /** False until the first full lease set arrived: before it, the lease set means nothing. */
  #synced = false;

  constructor(
    private readonly nl: KernelOps,
    private scope: Scope,
    private decide: (lease: Lease) => PeerDecision,
    private readonly log: Logger,
  ) {}

  /** Number of peers with entries in the kernel. */
  get size(): number {
    return this.#applied.size;
  }

  /**
   * Takes `leases` as the full set of peers and reconciles the kernel with it: stale entries go,
   * right ones stay untouched, missing or wrong ones are set. Returns the number of changes.
   */
  sync(leases: Iterable<Lease>): number {
    this.#leases.clear();
    for (const l of leases) {
      const key = this.#keyOf(l);
      if (key !== null) this.#leases.set(key, l);
    }
    this.#synced = true;
    return this.resync();
  }

  /**
   * Reconciles the kernel with the current lease set (after a device change or lost events).
   * Does nothing before the first {@link sync}: an empty set would delete every peer's entries.
   */
  resync(): number {
    if (!this.#synced) return 0;
    resyncs.inc({ what: "peers" });
    // Of peers that claim one VtepMAC for different hosts, the lease written last gets it (a
    // host whose address changed keeps its MAC; its old lease lingers until it expires): decide
    // the newest first.
    this.#applied.clear();
    this.#macWaiting.clear();
    const order = [...this.#leases].sort(([ka, a], [kb, b]) =>
      b.modRevision - a.modRevision || (ka < kb ? -1 : ka > kb ? 1 : 0)
    );
    for (const [key, lease] of order) {
      const entries = this.#decideLogged(key, lease);
      if (entries) this.#applied.set(key, entries);
    }
    const kernel: KernelState = {
      routes: this.nl.routeList(RT_TABLE_MAIN, this.scope.family),
      neighs: this.scope.devIndex !== null
        ? this.nl.neighList(this.scope.devIndex, this.scope.family)
        : [],
      fdbs: this.scope.devIndex !== null ? this.nl.fdbList(this.scope.devIndex) : [],
    };
    const plan = planSync(this.#applied.values(), kernel, this.scope);
    applyPlan(this.nl, plan, this.log, { routes: kernel.routes, warned: this.#routeWarned });
    peersInUse.set(this.#applied.size);
    return planSize(plan);
  }

  /** Changes the scope and decision (e.g. new device index) and reconciles. */
  rescope(scope: Scope, decide: (lease: Lease) => PeerDecision): number {
    this.scope = scope;
    this.decide = decide;
    return this.resync();
  }

  /** Applies a batch of lease events incrementally. */
  apply(events: readonly LeaseEvent[]): void {
    // One listing per batch (not per event): routes set within the batch are flannel's own.
    let routes: readonly RouteInfo[] | undefined;
    // A VtepMAC changing hands (a newer lease claims it, or its holder goes while another
    // waits for it): settled by a full reconcile after the batch, rare enough to afford it.
    this.#reshuffle = false;
    for (const ev of events) {
      const key = this.#keyOf(ev.lease);
      // A peer without a subnet of this family (an IPv4-only host in a dual-stack network).
      if (key === null) continue;
      let next: PeerEntries | null = null;
      if (ev.type === "removed") {
        this.#leases.delete(key);
        this.#warned.delete(key);
        this.#routeWarned.delete(key);
        this.#macWaiting.delete(key);
      } else {
        this.#leases.set(key, ev.lease);
        next = this.#decideLogged(key, ev.lease);
      }
      const old = this.#applied.get(key) ?? null;
      if (next) this.#applied.set(key, next);
      else this.#applied.delete(key);
      const freed = old?.fdb && old.fdb.mac !== next?.fdb?.mac ? old.fdb.mac : null;
      if (freed !== null && [...this.#macWaiting.values()].includes(freed)) {
        this.#reshuffle = true;
      }
      if (!old && !next) continue;
      const plan = planUpdate(old, next, (mac) => this.#macInUse(mac, key));
      if (plan.routeSet.length > 0) routes ??= this.nl.routeList(RT_TABLE_MAIN, this.scope.family);
      applyPlan(this.nl, plan, this.log, { routes, warned: this.#routeWarned });
      peersInUse.set(this.#applied.size);
      if (this.log.enabled(1)) {
        this.log.v(1, `${ev.type === "removed" ? "Removed" : "Programmed"} peer ${key}`);
      }
    }
    if (this.#reshuffle) this.resync();
  }

  /** Restores an applied route the kernel reports deleted (self-healing). True when restored. */
  restoreRoute(r: RouteInfo): boolean {
    // Peers are keyed by subnet, which is their route's dst: no scan over thousands of peers.
    const e = this.#applied.get(r.dst.toString());
    if (!e || e.route.oif !== r.oif || !r.gateway || !e.route.gateway.equals(r.gateway)) {
      return false;
    }
    configDrift.inc({ what: "peers" });
    applyPlan(this.nl, { ...emptyPlan(), routeSet: [e.route] }, this.log, {
      warned: this.#routeWarned,
    });
    return true;
  }

  /** Restores an applied ARP entry the kernel reports deleted (self-healing). True when restored. */
  restoreNeigh(n: NeighInfo): boolean {
    for (const e of this.#applied.values()) {
      if (e.neigh && e.neigh.ip.equals(n.ip) && e.neigh.index === n.index) {
        configDrift.inc({ what: "peers" });
        applyPlan(this.nl, { ...emptyPlan(), neighSet: [e.neigh] }, this.log);
        return true;
      }
    }
    return false;
  }

  /** The peer's subnet of this table's family, as the key of its entries; null when none. */
  #keyOf(lease: Lease): string | null {
    const s = this.scope.family === 4 ? lease.subnet : lease.ipv6Subnet;
    return s === null ? null : s.toString();
  }

  #macInUse(mac: string, except: string): boolean {
    for (const [k, e] of this.#applied) if (k !== except && e.fdb?.mac === mac) return true;
    return false;
  }

  /**
   * The programmed peer other than `key` whose FDB entry sends `mac` to another host than
   * `dst`. Two leases with one VtepMAC (a host whose address changed, next to its old lease;
   * cloned machines whose MAC derives from the machine id; a lease copied by hand) share one FDB
   * entry: it follows the newest lease, the other waits and gets the MAC back when the newer
   * one goes (before, the entry stayed on a deleted lease's host for good).
   */
  #macHolder(mac: string, dst: IP, key: string): [string, PeerEntries] | null {
    for (const [k, e] of this.#applied) {
      if (k !== key && e.fdb?.mac === mac && !e.fdb.dst.equals(dst)) return [k, e];
    }
    return null;
  }

  #decideLogged(key: string, lease: Lease): PeerEntries | null {
    let d = this.decide(lease);
    this.#macWaiting.delete(key);
    const fdb = d.ok ? d.entries.fdb : null;
    const holder = fdb ? this.#macHolder(fdb.mac, fdb.dst, key) : null;
    const holderLease = holder ? this.#leases.get(holder[0]) : undefined;
    if (holder && holderLease && lease.modRevision > holderLease.modRevision) {
      // Newer than the holder: it takes the MAC; the reconcile after the batch demotes the holder.
      this.#reshuffle = true;
    } else if (fdb && holder) {
      this.#macWaiting.set(key, fdb.mac);
      d = {
        ok: false,
        reason: `Skipping peer ${key} (PublicIP ${lease.attrs.publicIP}): VtepMAC ${fdb.mac} is ` +
          `also claimed by peer ${holder[0]} (at ${holder[1].fdb?.dst}); the newer lease gets it`,
      };
    }
    if (d.ok) {
      this.#warned.delete(key);
      return d.entries;
    }
    if (this.#warned.get(key) !== d.reason) {
      peersRejected.inc();
      this.#warned.set(key, d.reason);
      this.log.warn(d.reason);
    }
    return null;
  }
}
