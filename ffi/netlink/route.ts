/**
 * The rtnetlink verbs, named after iproute2 and synchronous (the kernel answers at once). Each
 * verb is a flag preset over the codec (./codec.ts) and a transport (./conn.ts); the bytes each
 * one sends are compared with iproute2's in tests/unit/netlink_golden_test.ts.
 *
 * @example
 * ```ts ignore
 * using nl = Netlink.open();
 * const link = nl.linkGet("flannel.1");
 * if (link) nl.routeReplace({ dst: "10.1.7.0/24", gateway: "10.1.7.0", oif: link.index, onlink: true });
 * ```
 *
 * @module
 */

import { isErrno } from "../errno.ts";
import type { IP, IPNet } from "../ip.ts";
import {
  type Attr,
  attrFlag,
  attrIP,
  attrMac,
  attrNested,
  attrString,
  attrStringNoNul,
  attrU16be,
  attrU32,
  attrU8,
} from "./attr.ts";
import { encodeIfAddrMsg, encodeIfInfoMsg, encodeNdMsg, encodeRtMsg } from "./family.ts";
import { encodeMsg } from "./message.ts";
import { NetlinkConn, type NetlinkTransport } from "./conn.ts";
import {
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  AF_PACKET,
  IFA_ADDRESS,
  IFA_LOCAL,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_EXT_MASK,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  IFLA_VXLAN_GBP,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_PORT,
  IFLA_VXLAN_TTL,
  NDA_DST,
  NDA_IFINDEX,
  NDA_LLADDR,
  NLM_F_ACK,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  NTF_SELF,
  NUD_NOARP,
  NUD_PERMANENT,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RT_TABLE_UNSPEC,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTEXT_FILTER_SKIP_STATS,
  RTEXT_FILTER_VF,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_F_LOOKUP_TABLE,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETNEIGH,
  RTM_GETROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTN_UNICAST,
  RTN_UNSPEC,
  RTNH_F_ONLINK,
  RTPROT_BOOT,
  RTPROT_UNSPEC,
} from "./consts.ts";
import {
  type AddrInfo,
  decodeAddr,
  decodeFdb,
  decodeLink,
  decodeNeigh,
  decodeRoute,
  type FdbInfo,
  type LinkInfo,
  type NeighInfo,
  type RouteInfo,
} from "./decode.ts";

export type { AddrInfo, FdbInfo, LinkInfo, NeighInfo, RouteInfo, VxlanInfo } from "./decode.ts";
export { type NetlinkEvent, subscribe, type SubscribeOptions } from "./events.ts";

/** A route to add, replace or delete. Defaults are those of `ip route`. */
export interface RouteSpec {
  /** 10.1.7.0/24; 0.0.0.0/0 for default. The family of the message follows it. */
  dst: IPNet;
  gateway?: IP;
  oif?: number;
  /** `RTNH_F_ONLINK`: the gateway is on the link even without a matching connected route. */
  onlink?: boolean;
  /** Default `RT_TABLE_MAIN` (254). */
  table?: number;
  /** Default: universe with a gateway, link without (as `ip route`). */
  scope?: number;
  /** Default `RTPROT_BOOT` on add/replace, unspecified on delete (as `ip route`). */
  protocol?: number;
  /** `RTA_PREFSRC`. */
  src?: IP;
  /** `RTA_PRIORITY`. */
  metric?: number;
}

/** A vxlan link to create (`ip link add NAME type vxlan id VNI …`). */
export interface VxlanSpec {
  name: string;
  vni: number;
  local?: IP;
  /** The lower device's index (`dev`). */
  lowerIndex?: number;
  /** UDP destination port; the kernel default is 8472 when omitted. */
  port?: number;
  /** The kernel default is on when omitted. */
  learning?: boolean;
  /** 0 = inherit. */
  ttl?: number;
  mtu?: number;
  mac?: string;
  gbp?: boolean;
}

const ACK = NLM_F_REQUEST | NLM_F_ACK;
const DUMP = NLM_F_REQUEST | NLM_F_DUMP;

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

  // -- links -----------------------------------------------------------------------------------

  /** Every link (`ip -d link show`). */
  linkList(): LinkInfo[] {
    const req = encodeMsg(
      { type: RTM_GETLINK, flags: DUMP },
      encodeIfInfoMsg({ family: AF_PACKET }),
      [
        attrU32(IFLA_EXT_MASK, RTEXT_FILTER_VF),
      ],
    );
    return this.#t.dump(req).filter((m) => m.type === RTM_NEWLINK).map(decodeLink);
  }

  /** One link by name or index; null when there is none (ENODEV). */
  linkGet(nameOrIndex: string | number): LinkInfo | null {
    const byIndex = typeof nameOrIndex === "number";
    const attrs = [attrU32(IFLA_EXT_MASK, RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS)];
    if (!byIndex) attrs.push(attrString(IFLA_IFNAME, nameOrIndex));
    const req = encodeMsg(
      { type: RTM_GETLINK, flags: NLM_F_REQUEST },
      encodeIfInfoMsg({ index: byIndex ? nameOrIndex : 0 }),
      attrs,
    );
    try {
      return decodeLink(this.#t.get(req));
    } catch (err) {
      if (isErrno(err, "ENODEV")) return null;
      throw err;
    }
  }

  /** Creates a vxlan link (`ip link add … type vxlan …`); EEXIST when the name is taken. */
  linkAddVxlan(spec: VxlanSpec): void {
    // IFLA_INFO_DATA in the order iproute2 6.1 writes it, so the golden bytes match.
    const data: Attr[] = [];
    if (spec.lowerIndex !== undefined) data.push(attrU32(IFLA_VXLAN_LINK, spec.lowerIndex));
    if (spec.ttl !== undefined) data.push(attrU8(IFLA_VXLAN_TTL, spec.ttl));
    data.push(attrU32(IFLA_VXLAN_ID, spec.vni));
    if (spec.local !== undefined) data.push(attrIP(IFLA_VXLAN_LOCAL, spec.local));
    if (spec.learning !== undefined) data.push(attrU8(IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0));
    if (spec.port !== undefined) data.push(attrU16be(IFLA_VXLAN_PORT, spec.port));
    if (spec.gbp) data.push(attrFlag(IFLA_VXLAN_GBP));
    const attrs: Attr[] = [];
    if (spec.mtu !== undefined) attrs.push(attrU32(IFLA_MTU, spec.mtu));
    if (spec.mac !== undefined) attrs.push(attrMac(IFLA_ADDRESS, spec.mac));
    attrs.push(
      attrString(IFLA_IFNAME, spec.name),
      attrNested(IFLA_LINKINFO, [
        attrStringNoNul(IFLA_INFO_KIND, "vxlan"),
        attrNested(IFLA_INFO_DATA, data),
      ]),
    );
    const flags = ACK | NLM_F_CREATE | NLM_F_EXCL;
    this.#t.request(encodeMsg({ type: RTM_NEWLINK, flags }, encodeIfInfoMsg({}), attrs));
  }

  /** `ip link set dev X up`. */
  linkSetUp(index: number): void {
    this.#setLink({ index, flags: IFF_UP, change: IFF_UP }, []);
  }

  /** `ip link set dev X down`. */
  linkSetDown(index: number): void {
    this.#setLink({ index, flags: 0, change: IFF_UP }, []);
  }

  /** `ip link set dev X mtu N`. */
  linkSetMtu(index: number, mtu: number): void {
    this.#setLink({ index }, [attrU32(IFLA_MTU, mtu)]);
  }

  /** `ip link set dev X address aa:bb:cc:dd:ee:ff`. */
  linkSetAddress(index: number, mac: string): void {
    this.#setLink({ index }, [attrMac(IFLA_ADDRESS, mac)]);
  }

  #setLink(h: { index: number; flags?: number; change?: number }, attrs: Attr[]): void {
    // iproute2 changes links with RTM_NEWLINK and no CREATE flag; the kernel treats it as SETLINK.
    this.#t.request(encodeMsg({ type: RTM_NEWLINK, flags: ACK }, encodeIfInfoMsg(h), attrs));
  }

  /** `ip link del dev X`. */
  linkDelete(index: number): void {
    this.#t.request(encodeMsg({ type: RTM_DELLINK, flags: ACK }, encodeIfInfoMsg({ index }), []));
  }

  // -- addresses -------------------------------------------------------------------------------

  /** IPv4 addresses, of one link or all (`ip -4 addr show`). */
  addrList(index?: number): AddrInfo[] {
    const req = encodeMsg(
      { type: RTM_GETADDR, flags: DUMP },
      encodeIfAddrMsg({ family: AF_INET, index }),
    );
    return this.#t.dump(req)
      .filter((m) => m.type === RTM_NEWADDR && m.payload[0] === AF_INET)
      .map(decodeAddr)
      .filter((a) => index === undefined || a.index === index);
  }

  /**
   * `ip addr add ADDRESS/PREFIX dev X`; EEXIST when present. An interface address keeps its host
   * bits (10.1.7.1/24), so it is an address and a prefix length, not an {@link IPNet}.
   */
  addrAdd(index: number, address: IP, prefix: number): void {
    this.#t.request(addrMsg(RTM_NEWADDR, ACK | NLM_F_CREATE | NLM_F_EXCL, index, address, prefix));
  }

  /** `ip addr del ADDRESS/PREFIX dev X`. */
  addrDel(index: number, address: IP, prefix: number): void {
    this.#t.request(addrMsg(RTM_DELADDR, ACK, index, address, prefix));
  }

  // -- routes ----------------------------------------------------------------------------------

  /** IPv4 routes of a table (`ip -4 route show table main`), cached clones excluded. */
  routeList(table: number = RT_TABLE_MAIN): RouteInfo[] {
    const req = encodeMsg(
      { type: RTM_GETROUTE, flags: DUMP },
      encodeRtMsg({ family: AF_INET }),
      [attrU32(RTA_TABLE, table)],
    );
    return this.#t.dump(req)
      .filter((m) => m.type === RTM_NEWROUTE && m.payload[0] === AF_INET)
      .map(decodeRoute)
      .filter((r) => r.table === table);
  }

  /** `ip route add`: NLM_F_CREATE|NLM_F_EXCL, EEXIST when present. */
  routeAdd(r: RouteSpec): void {
    this.#t.request(routeMsg(RTM_NEWROUTE, ACK | NLM_F_CREATE | NLM_F_EXCL, r));
  }

  /** `ip route replace`: NLM_F_CREATE|NLM_F_REPLACE. */
  routeReplace(r: RouteSpec): void {
    this.#t.request(routeMsg(RTM_NEWROUTE, ACK | NLM_F_CREATE | NLM_F_REPLACE, r));
  }

  /** `ip route del`: ESRCH when absent. */
  routeDel(r: RouteSpec): void {
    this.#t.request(routeMsg(RTM_DELROUTE, ACK, r));
  }

  /**
   * `ip route get DST`: the route the kernel would use for one address (its `dst` is the address
   * as /32, with the gateway, oif and prefsrc the lookup chose); null when unreachable.
   */
  routeGet(dst: IP): RouteInfo | null {
    const req = encodeMsg(
      { type: RTM_GETROUTE, flags: NLM_F_REQUEST },
      encodeRtMsg({ family: afOf(dst), dstLen: dst.bits, flags: RTM_F_LOOKUP_TABLE }),
      [attrIP(RTA_DST, dst)],
    );
    try {
      return decodeRoute(this.#t.get(req));
    } catch (err) {
      if (isErrno(err, "ENETUNREACH") || isErrno(err, "EHOSTUNREACH")) return null;
      throw err;
    }
  }

  /** The main-table IPv4 default route with the lowest metric, or null. */
  defaultRoute(): { index: number; gateway: IP | null } | null {
    const best = this.routeList(RT_TABLE_MAIN)
      .filter((r) => r.dst.prefix === 0 && r.type === RTN_UNICAST && r.oif !== null)
      .sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0))[0];
    return best ? { index: best.oif!, gateway: best.gateway } : null;
  }

  // -- neighbours (ARP) ------------------------------------------------------------------------

  /** `ip neigh replace IP lladdr MAC dev X nud permanent`. */
  neighSet(index: number, ip: IP, mac: string): void {
    const h = encodeNdMsg({ family: afOf(ip), index, state: NUD_PERMANENT });
    const flags = ACK | NLM_F_CREATE | NLM_F_REPLACE;
    this.#t.request(
      encodeMsg({ type: RTM_NEWNEIGH, flags }, h, [
        attrIP(NDA_DST, ip),
        attrMac(NDA_LLADDR, mac),
      ]),
    );
  }

  /** `ip neigh del IP dev X`. */
  neighDel(index: number, ip: IP): void {
    // iproute2 sends NUD_PERMANENT on delete too; the kernel ignores the state.
    const h = encodeNdMsg({ family: afOf(ip), index, state: NUD_PERMANENT });
    this.#t.request(encodeMsg({ type: RTM_DELNEIGH, flags: ACK }, h, [attrIP(NDA_DST, ip)]));
  }

  /** IPv4 neighbours, of one link or all (`ip -4 neigh show`). */
  neighList(index?: number): NeighInfo[] {
    const req = encodeMsg(
      { type: RTM_GETNEIGH, flags: DUMP },
      encodeNdMsg({ family: AF_INET }),
      // Strict dump checking wants ndm_ifindex 0 and the filter as NDA_IFINDEX.
      index === undefined ? [] : [attrU32(NDA_IFINDEX, index)],
    );
    return this.#t.dump(req)
      .filter((m) => m.type === RTM_NEWNEIGH && m.payload[0] === AF_INET)
      .map(decodeNeigh)
      .filter((n) => index === undefined || n.index === index);
  }

  // -- bridge FDB ------------------------------------------------------------------------------

  /** `bridge fdb replace MAC dev X dst IP` (self, permanent). */
  fdbSet(index: number, mac: string, dst: IP): void {
    this.#t.request(fdbMsg(RTM_NEWNEIGH, ACK | NLM_F_CREATE | NLM_F_REPLACE, index, mac, dst));
  }

  /** `bridge fdb append MAC dev X dst IP`: one more destination for the same MAC. */
  fdbAppend(index: number, mac: string, dst: IP): void {
    this.#t.request(fdbMsg(RTM_NEWNEIGH, ACK | NLM_F_CREATE | NLM_F_APPEND, index, mac, dst));
  }

  /** `bridge fdb del MAC dev X dst IP`. */
  fdbDel(index: number, mac: string, dst: IP): void {
    this.#t.request(fdbMsg(RTM_DELNEIGH, ACK, index, mac, dst));
  }

  /** FDB entries, of one link or all (`bridge fdb show`). */
  fdbList(index?: number): FdbInfo[] {
    const req = encodeMsg(
      { type: RTM_GETNEIGH, flags: DUMP },
      encodeNdMsg({ family: AF_BRIDGE, index }),
    );
    return this.#t.dump(req)
      .filter((m) => m.type === RTM_NEWNEIGH && m.payload[0] === AF_BRIDGE)
      .map(decodeFdb)
      .filter((f) => index === undefined || f.index === index);
  }
}

function addrMsg(
  type: number,
  flags: number,
  index: number,
  ip: IP,
  prefix: number,
): Uint8Array<ArrayBuffer> {
  const h = encodeIfAddrMsg({ family: afOf(ip), prefixlen: prefix, index });
  return encodeMsg({ type, flags }, h, [attrIP(IFA_LOCAL, ip), attrIP(IFA_ADDRESS, ip)]);
}

function routeMsg(type: number, flags: number, r: RouteSpec): Uint8Array<ArrayBuffer> {
  const { ip, prefix } = r.dst;
  const del = type === RTM_DELROUTE;
  const table = r.table ?? RT_TABLE_MAIN;
  // As iproute2: a delete matches any protocol/type and scope "nowhere" matches every scope.
  const scope = r.scope ?? (del ? RT_SCOPE_NOWHERE : r.gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
  const h = encodeRtMsg({
    family: afOf(ip),
    dstLen: prefix,
    table: table < 256 ? table : RT_TABLE_UNSPEC,
    protocol: r.protocol ?? (del ? RTPROT_UNSPEC : RTPROT_BOOT),
    scope,
    type: del ? RTN_UNSPEC : RTN_UNICAST,
    flags: r.onlink ? RTNH_F_ONLINK : 0,
  });
  const attrs: Attr[] = [];
  // iproute2 omits RTA_DST for a /0.
  if (prefix > 0) attrs.push(attrIP(RTA_DST, ip));
  if (r.metric !== undefined) attrs.push(attrU32(RTA_PRIORITY, r.metric));
  if (r.src !== undefined) attrs.push(attrIP(RTA_PREFSRC, r.src));
  if (r.gateway !== undefined) attrs.push(attrIP(RTA_GATEWAY, r.gateway));
  if (table >= 256) attrs.push(attrU32(RTA_TABLE, table));
  if (r.oif !== undefined) attrs.push(attrU32(RTA_OIF, r.oif));
  return encodeMsg({ type, flags }, h, attrs);
}

function fdbMsg(type: number, flags: number, index: number, mac: string, dst: IP) {
  // iproute2's `bridge fdb` sends NUD_NOARP|NUD_PERMANENT ("permanent" in `bridge fdb show`).
  const h = encodeNdMsg({
    family: AF_BRIDGE,
    index,
    state: NUD_NOARP | NUD_PERMANENT,
    flags: NTF_SELF,
  });
  return encodeMsg({ type, flags }, h, [attrMac(NDA_LLADDR, mac), attrIP(NDA_DST, dst)]);
}

/** The `AF_*` family of an address: `AF_INET` or `AF_INET6` (linux/socket.h). */
function afOf(ip: IP): number {
  return ip.family === 4 ? AF_INET : AF_INET6;
}
