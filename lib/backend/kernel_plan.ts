/**
 * Per-peer kernel entries (route, ARP, FDB) and the pure planning of their reconciliation with
 * what the kernel holds (tested without root). {@link KernelEntryTable} (kernel_table.ts) applies
 * the plans.
 *
 * Entries already right are never touched (no delete-and-add blink on restart); wrong ones are
 * replaced in place; stale ones are deleted. Order: FDB and ARP before the route on add, the route
 * first on removal, so a route never points at a tunnel endpoint that is not programmed yet.
 */

import {
  type FdbInfo,
  type NeighInfo,
  type RouteInfo,
  type RouteSpec,
  RT_TABLE_MAIN,
  RTN_UNICAST,
  RTNH_F_ONLINK,
} from "../../ffi/netlink/mod.ts";
import type { IP, IPNet } from "../ip.ts";

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

/** Which kernel entries belong to the backend (one family's: each family has its own table). */
export interface Scope {
  /** The address family of the routes and neighbours (IPv4 and IPv6 are listed apart). */
  readonly family: 4 | 6;
  /** The overlay network (`Network` or `IPv6Network`): managed routes lie inside it. */
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

/**
 * The routing protocol number of every route flannel installs (`ip route show proto 102`), so
 * that a restart can tell flannel's routes from anyone else's. 102 is in none of iproute2's
 * /etc/iproute2/rt_protos, nor the kernel's RTPROT_* list (0–4, 8–16, 18, 42, 99, 186–192),
 * and is not Calico's 80; the kernel gives numbers above RTPROT_STATIC (4) no meaning of its own.
 */
export const RTPROT_FLANNEL = 102;

const RTPROT_BOOT = 3; // linux/rtnetlink.h

/** Same address, or both absent. */
function sameIP(a: IP | null | undefined, b: IP | null | undefined): boolean {
  return a === b || (!!a && !!b && a.equals(b));
}

export function emptyPlan(): Plan {
  return { routeDel: [], neighDel: [], fdbDel: [], fdbSet: [], neighSet: [], routeSet: [] };
}

/** Number of kernel changes in a plan. */
export function planSize(p: Plan): number {
  return p.routeDel.length + p.neighDel.length + p.fdbDel.length + p.fdbSet.length +
    p.neighSet.length + p.routeSet.length;
}

/**
 * True when `r` is a route flannel installed (main table, unicast, protocol
 * {@link RTPROT_FLANNEL}), wherever it points: one outside the Network, for a lease that is gone,
 * or through a device that changed is still flannel's own and a full sync removes it.
 */
export function isManagedRoute(r: RouteInfo): boolean {
  return r.table === RT_TABLE_MAIN && r.type === RTN_UNICAST && r.protocol === RTPROT_FLANNEL;
}

/**
 * True when `r` may be a route the previous version installed, which marked nothing (protocol
 * boot): main table, unicast, destination inside the overlay network but not our own subnet, and
 * on the vxlan device, on the external interface, or via a gateway. A full sync adopts such a
 * route only where a lease wants a route to the same destination (it is replaced by the marked
 * one); any other is left alone, since `ip route add` also gives an admin's route protocol boot.
 */
export function isLegacyRoute(r: RouteInfo, scope: Scope): boolean {
  if (r.table !== RT_TABLE_MAIN || r.type !== RTN_UNICAST || r.protocol !== RTPROT_BOOT) {
    return false;
  }
  if (!scope.network.containsNet(r.dst) || r.dst.overlaps(scope.own)) return false;
  return (scope.devIndex !== null && r.oif === scope.devIndex) || r.oif === scope.extIndex ||
    r.gateway !== null;
}

/**
 * True when the route has the metric a route added without one gets: 0 for IPv4, 1024 for IPv6
 * (the kernel's IP6_RT_PRIO_USER), so an IPv6 route flannel added is not taken for another's.
 */
export function hasDefaultMetric(r: RouteInfo): boolean {
  const p = r.priority ?? 0;
  return p === 0 || (r.dst.family === 6 && p === IP6_RT_PRIO_USER);
}

const IP6_RT_PRIO_USER = 1024; // linux/ipv6_route.h

const PROTOCOL_NAMES: Record<number, string> = { 2: "kernel", 3: "boot", 4: "static" };

/**
 * The route among `routes` that a replace to `dst` would overwrite and that is not flannel's to
 * overwrite, or null: main table, default metric ({@link hasDefaultMetric}), same destination, and neither flannel's own
 * ({@link RTPROT_FLANNEL}) nor a unicast protocol-boot route (the previous version's, which
 * marked nothing; also what plain `ip route add` makes, adopted only for a peer lease's exact
 * subnet). A connected route (protocol kernel), an admin's `proto static` or a routing daemon's
 * route is never replaced: a peer subnet that collides with one is not routed.
 */
export function foreignRouteAt(routes: readonly RouteInfo[], dst: IPNet): RouteInfo | null {
  for (const r of routes) {
    if (r.table !== RT_TABLE_MAIN || !hasDefaultMetric(r) || !r.dst.equals(dst)) continue;
    if (r.protocol === RTPROT_FLANNEL) continue;
    if (r.protocol === RTPROT_BOOT && r.type === RTN_UNICAST) continue;
    return r;
  }
  return null;
}

/** `protocol kernel`, `protocol static`, `protocol 12`: as `ip route` names it. */
export function describeProtocol(protocol: number): string {
  return `protocol ${PROTOCOL_NAMES[protocol] ?? protocol}`;
}

/** True when the kernel route is exactly the wanted one (so it is left untouched). */
export function routeMatches(r: RouteInfo, want: RouteEntry): boolean {
  return r.dst.equals(want.dst) && sameIP(r.gateway, want.gateway) && r.oif === want.oif &&
    r.onlink === want.onlink && hasDefaultMetric(r) && r.protocol === RTPROT_FLANNEL;
}

/**
 * Full reconcile: what to change so that the kernel holds exactly `desired` among the entries the
 * backend owns: every route flannel marked ({@link isManagedRoute}), the previous version's
 * unmarked routes where a lease wants one ({@link isLegacyRoute}), and the device's ARP and FDB
 * entries. Right entries are left out of the plan; every other route is never touched.
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
    const dst = r.dst.toString();
    const want = routes.get(dst);
    if (!isManagedRoute(r) && !(want && isLegacyRoute(r, scope))) continue;
    if (want && !routeOk.has(dst) && routeMatches(r, want)) {
      routeOk.add(dst);
    } else if (!want || !hasDefaultMetric(r) || routeOk.has(dst)) {
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
      // The kernel's own entries for IPv6 multicast groups (ff02::…, NUD_NOARP): not peers.
      if (n.ip.family === 6 && n.ip.bytes[0] === 0xff) continue;
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

/** The kernel listing of a route as `routeReplace(routeSpecOf(r))` leaves it. */
export function routeInfoOf(r: RouteEntry): RouteInfo {
  return {
    dst: r.dst,
    gateway: r.gateway,
    oif: r.oif,
    table: RT_TABLE_MAIN,
    protocol: RTPROT_FLANNEL,
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
  return { dst: r.dst, gateway: r.gateway, oif: r.oif, onlink: r.onlink, protocol: RTPROT_FLANNEL };
}
