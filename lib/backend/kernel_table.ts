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

/** What {@link applyPlan} checks the routes it sets against. */
export interface ApplyOptions {
  /** The main table as listed just before the plan was made; else listed when a route is set. */
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
  const run = (what: string, fn: () => void, absentOk = false) => {
    try {
      fn();
    } catch (err) {
      if (absentOk && (isErrno(err, "ESRCH") || isErrno(err, "ENOENT"))) return;
      failures++;
      log.error(`Cannot ${what}: ${errText(err)}`);
    }
  };
  for (const r of plan.routeDel) {
    run(`delete route ${describeRoute(r)}`, () => nl.routeDel(routeDelSpec(r)), true);
  }
  for (const n of plan.neighDel) {
    run(`delete ARP entry ${n.ip} on #${n.index}`, () => nl.neighDel(n.index, n.ip), true);
  }
  for (const f of plan.fdbDel) {
    const dst = f.dst ?? IP_ZERO;
    run(
      `delete FDB entry ${f.mac} dst ${dst} on #${f.index}`,
      () => nl.fdbDel(f.index, f.mac, dst),
      true,
    );
  }
  for (const f of plan.fdbSet) {
    run(
      `set FDB entry ${f.mac} dst ${f.dst} on #${f.index}`,
      () => nl.fdbSet(f.index, f.mac, f.dst),
    );
  }
  for (const n of plan.neighSet) {
    run(
      `set ARP entry ${n.ip} lladdr ${n.mac} on #${n.index}`,
      () => nl.neighSet(n.index, n.ip, n.mac),
    );
  }
  let routes = opts.routes ?? null;
  for (const r of plan.routeSet) {
    routes ??= nl.routeList(RT_TABLE_MAIN);
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
    run(`replace route ${describeRoute(r)}`, () => nl.routeReplace(routeSpecOf(r)));
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
    for (const l of leases) this.#leases.set(l.subnet.toString(), l);
    this.#synced = true;
    return this.resync();
  }

  /**
   * Reconciles the kernel with the current lease set (after a device change or lost events).
   * Does nothing before the first {@link sync}: an empty set would delete every peer's entries.
   */
  resync(): number {
    if (!this.#synced) return 0;
    // Of peers that claim the same VtepMAC for different hosts, the one already programmed keeps
    // it, else the one written first (lowest mod revision): decide those in that order.
    const before = new Set(this.#applied.keys());
    this.#applied.clear();
    this.#macWaiting.clear();
    const order = [...this.#leases].sort(([ka, a], [kb, b]) =>
      Number(before.has(kb)) - Number(before.has(ka)) || a.modRevision - b.modRevision
    );
    for (const [key, lease] of order) {
      const entries = this.#decideLogged(key, lease);
      if (entries) this.#applied.set(key, entries);
    }
    const kernel: KernelState = {
      routes: this.nl.routeList(RT_TABLE_MAIN),
      neighs: this.scope.devIndex !== null ? this.nl.neighList(this.scope.devIndex) : [],
      fdbs: this.scope.devIndex !== null ? this.nl.fdbList(this.scope.devIndex) : [],
    };
    const plan = planSync(this.#applied.values(), kernel, this.scope);
    applyPlan(this.nl, plan, this.log, { routes: kernel.routes, warned: this.#routeWarned });
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
    const queue = [...events];
    for (let i = 0; i < queue.length; i++) {
      const ev = queue[i];
      const key = ev.lease.subnet.toString();
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
      if (!old && !next) continue;
      // A VtepMAC this peer held and no longer does: a peer that waited for it gets it now.
      const freed = old?.fdb && old.fdb.mac !== next?.fdb?.mac ? old.fdb.mac : null;
      if (freed !== null && !this.#macInUse(freed, key)) {
        for (const [k, mac] of this.#macWaiting) {
          const lease = this.#leases.get(k);
          if (mac === freed && lease) queue.push({ type: "added", lease });
        }
      }
      const plan = planUpdate(old, next, (mac) => this.#macInUse(mac, key));
      if (plan.routeSet.length > 0) routes ??= this.nl.routeList(RT_TABLE_MAIN);
      applyPlan(this.nl, plan, this.log, { routes, warned: this.#routeWarned });
      if (this.log.enabled(1)) {
        this.log.v(1, `${ev.type === "removed" ? "Removed" : "Programmed"} peer ${key}`);
      }
    }
  }

  /** Restores an applied route the kernel reports deleted (self-healing). True when restored. */
  restoreRoute(r: RouteInfo): boolean {
    // Peers are keyed by subnet, which is their route's dst: no scan over thousands of peers.
    const e = this.#applied.get(r.dst.toString());
    if (!e || e.route.oif !== r.oif || !r.gateway || !e.route.gateway.equals(r.gateway)) {
      return false;
    }
    applyPlan(this.nl, { ...emptyPlan(), routeSet: [e.route] }, this.log, {
      warned: this.#routeWarned,
    });
    return true;
  }

  /** Restores an applied ARP entry the kernel reports deleted (self-healing). True when restored. */
  restoreNeigh(n: NeighInfo): boolean {
    for (const e of this.#applied.values()) {
      if (e.neigh && e.neigh.ip.equals(n.ip) && e.neigh.index === n.index) {
        applyPlan(this.nl, { ...emptyPlan(), neighSet: [e.neigh] }, this.log);
        return true;
      }
    }
    return false;
  }

  #macInUse(mac: string, except: string): boolean {
    for (const [k, e] of this.#applied) if (k !== except && e.fdb?.mac === mac) return true;
    return false;
  }

  /**
   * The programmed peer other than `key` whose FDB entry sends `mac` to another host than
   * `dst`. Two leases with one VtepMAC (cloned machines whose MAC derives from the machine id,
   * or a lease copied by hand) would otherwise take turns overwriting the one FDB entry, and
   * traffic for the first would go to the second.
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
    if (fdb && holder) {
      this.#macWaiting.set(key, fdb.mac);
      d = {
        ok: false,
        reason: `Skipping peer ${key} (PublicIP ${lease.attrs.publicIP}): VtepMAC ${fdb.mac} is ` +
          `already used by peer ${holder[0]} (at ${holder[1].fdb?.dst}), which keeps it`,
      };
    }
    if (d.ok) {
      this.#warned.delete(key);
      return d.entries;
    }
    if (this.#warned.get(key) !== d.reason) {
      this.#warned.set(key, d.reason);
      this.log.warn(d.reason);
    }
    return null;
  }
}
