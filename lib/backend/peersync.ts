/**
 * Per-peer kernel entries (route, ARP, FDB) and their reconciliation with what the kernel holds.
 *
 * Shared by the vxlan and host-gw backends: host-gw peers have a route only. The planning
 * functions are pure (tested without root); {@link PeerTable} applies plans through the few
 * netlink verbs in {@link KernelOps}, so tests drive it with a recording fake.
 *
 * Entries already right are never touched (no delete-and-add blink on restart); wrong ones are
 * replaced in place; stale ones are deleted. Order: FDB and ARP before the route on add, the route
 * first on removal, so a route never points at a tunnel endpoint that is not programmed yet.
 */

import {
  type FdbInfo,
  type NeighInfo,
  type Netlink,
  type RouteInfo,
  type RouteSpec,
  RT_TABLE_MAIN,
  RTN_UNICAST,
  RTNH_F_ONLINK,
} from "../../ffi/netlink/mod.ts";
import { isErrno } from "../../ffi/errno.ts";
import { IP, type IPNet } from "../ip.ts";
import type { Lease } from "../lease.ts";
import type { LeaseEvent, SubnetManager } from "../subnet/mod.ts";
import { errText, type Logger } from "../log.ts";

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

/** A route to a peer subnet (main table). */
export interface RouteEntry {
  readonly dst: IPNet;
  readonly gateway: IP;
  readonly oif: number;
  readonly onlink: boolean;
}

/** A permanent ARP entry on the vxlan device. */
export interface NeighEntry {
  readonly index: number;
  readonly ip: IP;
  readonly mac: string;
}

/** A permanent FDB entry on the vxlan device. */
export interface FdbEntry {
  readonly index: number;
  readonly mac: string;
  readonly dst: IP;
}

/** What one peer lease puts in the kernel. */
export interface PeerEntries {
  readonly route: RouteEntry;
  readonly neigh: NeighEntry | null;
  readonly fdb: FdbEntry | null;
}

/** A peer's entries, or why the peer is skipped (logged once as a warning). */
export type PeerDecision =
  | { readonly ok: true; readonly entries: PeerEntries }
  | { readonly ok: false; readonly reason: string };

/** Which kernel entries belong to the backend. */
export interface Scope {
  /** The overlay network: managed routes lie inside it. */
  readonly network: IPNet;
  /** Our own subnet: never touched. */
  readonly own: IPNet;
  /** The external interface index. */
  readonly extIndex: number;
  /** The vxlan device index; null for host-gw (no ARP/FDB managed). */
  readonly devIndex: number | null;
}

/** A list of kernel changes, in the order they are to be applied. */
export interface Plan {
  readonly routeDel: RouteInfo[];
  readonly neighDel: NeighInfo[];
  readonly fdbDel: FdbInfo[];
  readonly fdbSet: FdbEntry[];
  readonly neighSet: NeighEntry[];
  readonly routeSet: RouteEntry[];
}

/** What the kernel holds, as listed before a full sync. */
export interface KernelState {
  readonly routes: readonly RouteInfo[];
  readonly neighs: readonly NeighInfo[];
  readonly fdbs: readonly FdbInfo[];
}

const IP_ZERO = IP.fromU32(0);

/** Same address, or both absent. */
function sameIP(a: IP | null | undefined, b: IP | null | undefined): boolean {
  return a === b || (!!a && !!b && a.equals(b));
}

function emptyPlan(): Plan {
  return { routeDel: [], neighDel: [], fdbDel: [], fdbSet: [], neighSet: [], routeSet: [] };
}

/** Number of kernel changes in a plan. */
export function planSize(p: Plan): number {
  return p.routeDel.length + p.neighDel.length + p.fdbDel.length + p.fdbSet.length +
    p.neighSet.length + p.routeSet.length;
}

/**
 * True when `r` is a route the backend owns: main table, unicast, not a kernel (connected) route,
 * destination inside the overlay network but not our own subnet, and either on the vxlan device,
 * on the external interface, or via a gateway.
 */
export function isManagedRoute(r: RouteInfo, scope: Scope): boolean {
  if (r.table !== RT_TABLE_MAIN || r.type !== RTN_UNICAST || r.kernel) return false;
  if (!scope.network.containsNet(r.dst) || r.dst.overlaps(scope.own)) return false;
  return (scope.devIndex !== null && r.oif === scope.devIndex) || r.oif === scope.extIndex ||
    r.gateway !== null;
}

/** True when the kernel route is exactly the wanted one (so it is left untouched). */
export function routeMatches(r: RouteInfo, want: RouteEntry): boolean {
  return r.dst.equals(want.dst) && sameIP(r.gateway, want.gateway) && r.oif === want.oif &&
    r.onlink === want.onlink && (r.priority ?? 0) === 0;
}

/**
 * Full reconcile: what to change so that the kernel holds exactly `desired` among the entries the
 * backend owns. Right entries are left out of the plan.
 */
export function planSync(desired: Iterable<PeerEntries>, kernel: KernelState, scope: Scope): Plan {
  const plan = emptyPlan();
  const routes = new Map<string, RouteEntry>();
  const neighs = new Map<string, NeighEntry>();
  const fdbs = new Map<string, FdbEntry>();
  for (const e of desired) {
    routes.set(e.route.dst.toString(), e.route);
    if (e.neigh) neighs.set(e.neigh.ip.toString(), e.neigh);
    if (e.fdb) fdbs.set(e.fdb.mac, e.fdb);
  }

  const routeOk = new Set<string>();
  for (const r of kernel.routes) {
    if (!isManagedRoute(r, scope)) continue;
    const dst = r.dst.toString();
    const want = routes.get(dst);
    if (want && !routeOk.has(dst) && routeMatches(r, want)) {
      routeOk.add(dst);
    } else if (!want || (r.priority ?? 0) !== 0 || routeOk.has(dst)) {
      // Not ours to keep: a replace would not overwrite a route with another metric.
      plan.routeDel.push(r);
    }
    // else: same dst, metric 0, wrong gateway/dev: routeSet below replaces it in place.
  }
  for (const [dst, want] of routes) if (!routeOk.has(dst)) plan.routeSet.push(want);

  if (scope.devIndex !== null) {
    const neighOk = new Set<string>();
    for (const n of kernel.neighs) {
      if (n.index !== scope.devIndex) continue;
      const ip = n.ip.toString();
      const want = neighs.get(ip);
      if (!want) plan.neighDel.push(n);
      else if (n.mac === want.mac && n.permanent) neighOk.add(ip);
      // else: replaced in place below.
    }
    for (const [ip, want] of neighs) if (!neighOk.has(ip)) plan.neighSet.push(want);

    const fdbOk = new Set<string>();
    for (const f of kernel.fdbs) {
      // Entries without a destination are the device's own address lists, not tunnel entries.
      if (f.index !== scope.devIndex || f.dst === null || f.mac === "00:00:00:00:00:00") continue;
      const want = fdbs.get(f.mac);
      if (want && sameIP(f.dst, want.dst) && f.permanent && !fdbOk.has(f.mac)) {
        fdbOk.add(f.mac);
      } else if (!want || !sameIP(f.dst, want.dst) || fdbOk.has(f.mac)) {
        // A MAC may hold several destinations (fdbAppend): drop every one that is not wanted.
        plan.fdbDel.push(f);
      }
    }
    for (const [mac, want] of fdbs) if (!fdbOk.has(mac)) plan.fdbSet.push(want);
  }
  return plan;
}

/**
 * Incremental change of one peer from `old` to `next` (null = absent). Every wanted entry is set
 * again (replace is idempotent and restores what someone deleted); old entries whose key changed
 * are deleted, except an FDB MAC another peer still uses (`macInUse`).
 */
export function planUpdate(
  old: PeerEntries | null,
  next: PeerEntries | null,
  macInUse: (mac: string) => boolean,
): Plan {
  const plan = emptyPlan();
  if (old) {
    if (!next || !old.route.dst.equals(next.route.dst)) {
      plan.routeDel.push(routeInfoOf(old.route));
    }
    if (
      old.neigh &&
      (!sameIP(old.neigh.ip, next?.neigh?.ip) || old.neigh.index !== next!.neigh!.index)
    ) {
      plan.neighDel.push({
        index: old.neigh.index,
        ip: old.neigh.ip,
        mac: old.neigh.mac,
        state: 0,
        flags: 0,
        permanent: false,
      });
    }
    if (
      old.fdb && (old.fdb.mac !== next?.fdb?.mac || old.fdb.index !== next.fdb.index) &&
      !macInUse(old.fdb.mac)
    ) {
      plan.fdbDel.push({
        index: old.fdb.index,
        mac: old.fdb.mac,
        dst: old.fdb.dst,
        state: 0,
        flags: 0,
        permanent: false,
      });
    }
  }
  if (next) {
    if (next.fdb) plan.fdbSet.push(next.fdb);
    if (next.neigh) plan.neighSet.push(next.neigh);
    plan.routeSet.push(next.route);
  }
  return plan;
}

function routeInfoOf(r: RouteEntry): RouteInfo {
  return {
    dst: r.dst,
    gateway: r.gateway,
    oif: r.oif,
    table: RT_TABLE_MAIN,
    protocol: 0,
    scope: 0,
    type: RTN_UNICAST,
    flags: r.onlink ? RTNH_F_ONLINK : 0,
    prefsrc: null,
    priority: null,
    onlink: r.onlink,
    kernel: false,
  };
}

/** The route spec for `routeReplace`. */
export function routeSpecOf(r: RouteEntry): RouteSpec {
  return { dst: r.dst, gateway: r.gateway, oif: r.oif, onlink: r.onlink };
}

function routeDelSpec(r: RouteInfo): RouteSpec {
  const spec: RouteSpec = { dst: r.dst, table: r.table };
  if (r.gateway !== null) spec.gateway = r.gateway;
  if (r.oif !== null) spec.oif = r.oif;
  if (r.priority !== null && r.priority !== 0) spec.metric = r.priority;
  return spec;
}

function describeRoute(r: { dst: IPNet; gateway: IP | null; oif: number | null }): string {
  return `${r.dst}${r.gateway ? ` via ${r.gateway}` : ""}${r.oif !== null ? ` dev #${r.oif}` : ""}`;
}

/** Applies `plan` in order; failures are logged and counted, never thrown. */
export function applyPlan(nl: KernelOps, plan: Plan, log: Logger): number {
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
  for (const r of plan.routeSet) {
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
export class PeerTable {
  #leases = new Map<string, Lease>();
  #applied = new Map<string, PeerEntries>();
  #warned = new Map<string, string>();
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

  /** The entries applied for `subnet` (CIDR text), if any. */
  entriesOf(subnet: string): PeerEntries | undefined {
    return this.#applied.get(subnet);
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
    this.#applied.clear();
    for (const [key, lease] of this.#leases) {
      const entries = this.#decideLogged(key, lease);
      if (entries) this.#applied.set(key, entries);
    }
    const kernel: KernelState = {
      routes: this.nl.routeList(RT_TABLE_MAIN),
      neighs: this.scope.devIndex !== null ? this.nl.neighList(this.scope.devIndex) : [],
      fdbs: this.scope.devIndex !== null ? this.nl.fdbList(this.scope.devIndex) : [],
    };
    const plan = planSync(this.#applied.values(), kernel, this.scope);
    applyPlan(this.nl, plan, this.log);
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
    for (const ev of events) {
      const key = ev.lease.subnet.toString();
      let next: PeerEntries | null = null;
      if (ev.type === "removed") {
        this.#leases.delete(key);
        this.#warned.delete(key);
      } else {
        this.#leases.set(key, ev.lease);
        next = this.#decideLogged(key, ev.lease);
      }
      const old = this.#applied.get(key) ?? null;
      if (next) this.#applied.set(key, next);
      else this.#applied.delete(key);
      if (!old && !next) continue;
      const plan = planUpdate(old, next, (mac) => this.#macInUse(mac, key));
      applyPlan(this.nl, plan, this.log);
      if (this.log.enabled(1)) {
        this.log.v(1, `${ev.type === "removed" ? "Removed" : "Programmed"} peer ${key}`);
      }
    }
  }

  /** Restores an applied route the kernel reports deleted (self-healing). True when restored. */
  restoreRoute(r: RouteInfo): boolean {
    // Peers are keyed by subnet, which is their route's dst: no scan over thousands of peers.
    const e = this.#applied.get(r.dst.toString());
    if (!e || e.route.oif !== r.oif || !sameIP(e.route.gateway, r.gateway)) return false;
    applyPlan(this.nl, { ...emptyPlan(), routeSet: [e.route] }, this.log);
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

  #decideLogged(key: string, lease: Lease): PeerEntries | null {
    const d = this.decide(lease);
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

/**
 * True when the kernel reaches `ip` through `extIndex` without a gateway (the peer is on a
 * directly connected subnet).
 */
export function isDirect(nl: Pick<Netlink, "routeGet">, ip: IP, extIndex: number): boolean {
  try {
    const r = nl.routeGet(ip);
    return r !== null && r.gateway === null && r.oif === extIndex && r.type === RTN_UNICAST;
  } catch {
    return false;
  }
}

/**
 * Feeds the peer leases into `table` until `signal` aborts: the first batch (the full set) as a
 * full sync against the kernel, later batches incrementally. Rejects when the watch fails.
 */
export async function followLeases(
  table: PeerTable,
  subnets: SubnetManager,
  own: IPNet,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  let first = true;
  for await (const batch of subnets.watchLeases(own, signal)) {
    if (signal.aborted) break;
    if (first) {
      first = false;
      const changes = table.sync(batch.filter((e) => e.type === "added").map((e) => e.lease));
      log.info(`Reconciled ${batch.length} peer leases: ${changes} kernel changes`);
    } else {
      table.apply(batch);
    }
  }
}
