/**
 * {@link Netlink}: one rtnetlink connection and the verbs of `ip link/addr/route/neigh` and
 * `bridge fdb` over it, named after iproute2 and synchronous (the kernel answers at once). Each
 * verb is a flag preset in its own file (link.ts, addr.ts, route.ts, neigh.ts, fdb.ts) over the
 * codec and a transport (conn.ts); the bytes each one sends are compared with iproute2's in
 * tests/unit/netlink_golden_test.ts.
 *
 * @example
 * ```ts ignore
 * using nl = Netlink.open();
 * const link = nl.linkGet("flannel.1");
 * if (link) {
 *   nl.routeReplace({
 *     dst: IPNet.mustParse("10.1.7.0/24"),
 *     gateway: IP.mustParse("10.1.7.0"),
 *     oif: link.index,
 *     onlink: true,
 *   });
 * }
 * ```
 *
 * @module
 */

import type { Family, IP } from "../ip.ts";
import * as addr from "./addr.ts";
import { NetlinkConn, type NetlinkTransport } from "./conn.ts";
import type { AddrInfo, FdbInfo, LinkInfo, NeighInfo, RouteInfo } from "./decode.ts";
import * as fdb from "./fdb.ts";
import * as link from "./link.ts";
import * as neigh from "./neigh.ts";
import * as route from "./route.ts";

/** An rtnetlink handle with the verbs of `ip link/addr/route/neigh` and `bridge fdb`. */
export class Netlink implements Disposable {
  readonly #t: NetlinkTransport;
  readonly #owned: NetlinkConn | null;

  /** Wraps a transport (a recording fake in tests). {@link Netlink.open} for the real socket. */
  constructor(transport: NetlinkTransport) {
    this.#t = transport;
    this.#owned = transport instanceof NetlinkConn ? transport : null;
  }

  /** Opens an rtnetlink socket in the calling process's network namespace. */
  static open(): Netlink {
    return new Netlink(NetlinkConn.open());
  }

  /** Closes the socket; idempotent. */
  close(): void {
    this.#owned?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Every link (`ip -d link show`). */
  linkList(): LinkInfo[] {
    return link.linkList(this.#t);
  }
  /** One link by name or index; null when there is none (ENODEV). */
  linkGet(nameOrIndex: string | number): LinkInfo | null {
    return link.linkGet(this.#t, nameOrIndex);
  }
  /** Creates a vxlan link (`ip link add … type vxlan …`); EEXIST when the name is taken. */
  linkAddVxlan(spec: link.VxlanSpec): void {
    link.linkAddVxlan(this.#t, spec);
  }
  /** `ip link set dev X up`. */
  linkSetUp(index: number): void {
    link.linkSetUp(this.#t, index);
  }
  /** `ip link set dev X down`. */
  linkSetDown(index: number): void {
    link.linkSetDown(this.#t, index);
  }
  /** `ip link set dev X mtu N`. */
  linkSetMtu(index: number, mtu: number): void {
    link.linkSetMtu(this.#t, index, mtu);
  }
  /** `ip link set dev X address aa:bb:cc:dd:ee:ff`. */
  linkSetAddress(index: number, mac: string): void {
    link.linkSetAddress(this.#t, index, mac);
  }
  /** `ip link del dev X`. */
  linkDelete(index: number): void {
    link.linkDelete(this.#t, index);
  }

  /** IPv4 addresses, of one link or all (`ip -4 addr show`). */
  addrList(index?: number, family: Family = 4): AddrInfo[] {
    return addr.addrList(this.#t, index, family);
  }
  /** `ip addr add ADDRESS/PREFIX dev X`; EEXIST when present. */
  addrAdd(index: number, address: IP, prefix: number, opts: addr.AddrOptions = {}): void {
    addr.addrAdd(this.#t, index, address, prefix, opts);
  }
  /** `ip addr del ADDRESS/PREFIX dev X`. */
  addrDel(index: number, address: IP, prefix: number): void {
    addr.addrDel(this.#t, index, address, prefix);
  }

  /** IPv4 routes of a table (`ip -4 route show table main`), cached clones excluded. */
  routeList(table?: number, family: Family = 4): RouteInfo[] {
    return route.routeList(this.#t, table, family);
  }
  /** `ip route add`: NLM_F_CREATE|NLM_F_EXCL, EEXIST when present. */
  routeAdd(r: route.RouteSpec): void {
    route.routeAdd(this.#t, r);
  }
  /** `ip route replace`: NLM_F_CREATE|NLM_F_REPLACE. */
  routeReplace(r: route.RouteSpec): void {
    route.routeReplace(this.#t, r);
  }
  /** `ip route del`: ESRCH when absent. */
  routeDel(r: route.RouteSpec): void {
    route.routeDel(this.#t, r);
  }
  /** `ip route get DST`; null when unreachable. */
  routeGet(dst: IP): RouteInfo | null {
    return route.routeGet(this.#t, dst);
  }
  /** The main-table IPv4 default route with the lowest metric, or null. */
  defaultRoute(family: Family = 4): { index: number; gateway: IP | null } | null {
    return route.defaultRoute(this.#t, family);
  }

  /** `ip neigh replace IP lladdr MAC dev X nud permanent`. */
  neighSet(index: number, ip: IP, mac: string): void {
    neigh.neighSet(this.#t, index, ip, mac);
  }
  /** `ip neigh del IP dev X`. */
  neighDel(index: number, ip: IP): void {
    neigh.neighDel(this.#t, index, ip);
  }
  /** IPv4 neighbours, of one link or all (`ip -4 neigh show`). */
  neighList(index?: number, family: Family = 4): NeighInfo[] {
    return neigh.neighList(this.#t, index, family);
  }

  /** `bridge fdb replace MAC dev X dst IP` (self, permanent). */
  fdbSet(index: number, mac: string, dst: IP): void {
    fdb.fdbSet(this.#t, index, mac, dst);
  }
  /** `bridge fdb append MAC dev X dst IP`: one more destination for the same MAC. */
  fdbAppend(index: number, mac: string, dst: IP): void {
    fdb.fdbAppend(this.#t, index, mac, dst);
  }
  /** `bridge fdb del MAC dev X dst IP`. */
  fdbDel(index: number, mac: string, dst: IP): void {
    fdb.fdbDel(this.#t, index, mac, dst);
  }
  /** FDB entries, of one link or all (`bridge fdb show`). */
  fdbList(index?: number): FdbInfo[] {
    return fdb.fdbList(this.#t, index);
  }
}
