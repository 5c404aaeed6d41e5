/**
 * rtnetlink replies → the plain objects of the verbs (`LinkInfo`, `RouteInfo`, …). Pure.
 *
 * @module
 */

import { getIP, getMac, getString, getU16be, getU32, getU8, parseAttrs } from "./attr.ts";
import {
  decodeIfAddrMsg,
  decodeIfInfoMsg,
  decodeNdMsg,
  decodeRtMsg,
  IFADDRMSG_SIZE,
  IFINFOMSG_SIZE,
  NDMSG_SIZE,
  RTMSG_SIZE,
} from "./family.ts";
import { msgAttrs, type NlMsg } from "./message.ts";
import {
  AF_INET6,
  IFA_ADDRESS,
  IFA_LOCAL,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  IFLA_VXLAN_GBP,
  IFLA_VXLAN_GROUP,
  IFLA_VXLAN_GROUP6,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_L2MISS,
  IFLA_VXLAN_L3MISS,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_LOCAL6,
  IFLA_VXLAN_PORT,
  IFLA_VXLAN_PROXY,
  IFLA_VXLAN_TTL,
  NDA_DST,
  NDA_LLADDR,
  NUD_PERMANENT,
  RTA_DST,
  RTA_GATEWAY,
  RTA_MULTIPATH,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTNH_F_ONLINK,
  RTPROT_KERNEL,
} from "./consts.ts";
import { IP, IPNet } from "../ip.ts";

const IP_ZERO = IP.fromU32(0);
const IP6_ZERO = IP.fromBigInt(0n, 6);

/** The zero address of an `AF_*` family (a default route carries no `RTA_DST`). */
function zeroOf(af: number): IP {
  return af === AF_INET6 ? IP6_ZERO : IP_ZERO;
}

/** A network interface, as `ip -d link` shows it. */
export interface LinkInfo {
  index: number;
  name: string;
  /** `IFLA_INFO_KIND`: "vxlan", "veth", "bridge", "tun", or null for a plain device. */
  kind: string | null;
  mtu: number;
  /** "aa:bb:cc:dd:ee:ff"; null for devices without a link-layer address (tun). */
  mac: string | null;
  flags: number;
  /** `IFF_UP` is set. */
  up: boolean;
  vxlan: VxlanInfo | null;
}

/** The vxlan attributes of a link (`IFLA_INFO_DATA` of kind "vxlan"). */
export interface VxlanInfo {
  vni: number;
  local: IP | null;
  lowerIndex: number | null;
  port: number;
  learning: boolean;
  ttl: number;
  group: IP | null;
  /** `IFLA_VXLAN_GBP` is set (group-based policy extension header). */
  gbp: boolean;
  /** `IFLA_VXLAN_PROXY`: the device answers ARP itself from its neighbour table. */
  proxy: boolean;
  /** `IFLA_VXLAN_L2MISS`: FDB misses are reported to user space (`RTM_GETNEIGH`). */
  l2miss: boolean;
  /** `IFLA_VXLAN_L3MISS`: ARP misses are reported to user space. */
  l3miss: boolean;
}

/** An IPv4 or IPv6 address on an interface. */
export interface AddrInfo {
  index: number;
  address: IP;
  prefix: number;
  scope: number;
}

/** An IPv4 or IPv6 route. */
export interface RouteInfo {
  /** 10.1.15.0/24; 0.0.0.0/0 for default. */
  dst: IPNet;
  gateway: IP | null;
  oif: number | null;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  /** `rtm_flags`; `RTNH_F_ONLINK` = 4. */
  flags: number;
  prefsrc: IP | null;
  priority: number | null;
  /** `RTNH_F_ONLINK` is set: the gateway counts as on the link. */
  onlink: boolean;
  /** Installed by the kernel itself (`RTPROT_KERNEL`: a connected route). */
  kernel: boolean;
}

/** A neighbour entry: ARP (IPv4) or NDP (IPv6). */
export interface NeighInfo {
  index: number;
  /** 0.0.0.0 when the kernel sent no IPv4 `NDA_DST`. */
  ip: IP;
  mac: string | null;
  state: number;
  flags: number;
  /** `NUD_PERMANENT` is set: a static entry, never aged out. */
  permanent: boolean;
}

/** A bridge forwarding (FDB) entry, e.g. vxlan MAC → remote VTEP. */
export interface FdbInfo {
  index: number;
  mac: string;
  dst: IP | null;
  state: number;
  flags: number;
  /** `NUD_PERMANENT` is set. */
  permanent: boolean;
}

/** Decodes an `RTM_NEWLINK`/`RTM_DELLINK` message. */
export function decodeLink(m: NlMsg): LinkInfo {
  const h = decodeIfInfoMsg(m.payload);
  const a = msgAttrs(m, IFINFOMSG_SIZE);
  const name = a.get(IFLA_IFNAME);
  const mtu = a.get(IFLA_MTU);
  const mac = a.get(IFLA_ADDRESS);
  let kind: string | null = null;
  let vxlan: VxlanInfo | null = null;
  const linkinfo = a.get(IFLA_LINKINFO);
  if (linkinfo) {
    const li = parseAttrs(linkinfo);
    const k = li.get(IFLA_INFO_KIND);
    kind = k ? getString(k) : null;
    const data = li.get(IFLA_INFO_DATA);
    if (kind === "vxlan" && data) vxlan = decodeVxlan(data);
  }
  return {
    index: h.index,
    name: name ? getString(name) : "",
    kind,
    mtu: mtu ? getU32(mtu) : 0,
    mac: mac && mac.length === 6 ? getMac(mac) : null,
    flags: h.flags,
    up: (h.flags & IFF_UP) !== 0,
    vxlan,
  };
}

function decodeVxlan(data: Uint8Array): VxlanInfo {
  const d = parseAttrs(data);
  const id = d.get(IFLA_VXLAN_ID);
  const local = d.get(IFLA_VXLAN_LOCAL) ?? d.get(IFLA_VXLAN_LOCAL6);
  const link = d.get(IFLA_VXLAN_LINK);
  const port = d.get(IFLA_VXLAN_PORT);
  const learning = d.get(IFLA_VXLAN_LEARNING);
  const ttl = d.get(IFLA_VXLAN_TTL);
  const group = d.get(IFLA_VXLAN_GROUP) ?? d.get(IFLA_VXLAN_GROUP6);
  const flag = (type: number) => {
    const a = d.get(type);
    return a !== undefined && getU8(a) !== 0;
  };
  return {
    vni: id ? getU32(id) : 0,
    local: local ? getIP(local) : null,
    lowerIndex: link ? getU32(link) : null,
    port: port ? getU16be(port) : 0,
    learning: learning ? getU8(learning) !== 0 : true,
    ttl: ttl ? getU8(ttl) : 0,
    group: group && group.some((x) => x !== 0) ? getIP(group) : null,
    gbp: d.has(IFLA_VXLAN_GBP),
    proxy: flag(IFLA_VXLAN_PROXY),
    l2miss: flag(IFLA_VXLAN_L2MISS),
    l3miss: flag(IFLA_VXLAN_L3MISS),
  };
}

/** Decodes an `RTM_NEWADDR`/`RTM_DELADDR` message (AF_INET). */
export function decodeAddr(m: NlMsg): AddrInfo {
  const h = decodeIfAddrMsg(m.payload);
  const a = msgAttrs(m, IFADDRMSG_SIZE);
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
  const addr = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
  return {
    index: h.index,
    address: addr ? getIP(addr) : IP_ZERO,
    prefix: h.prefixlen,
    scope: h.scope,
  };
}

/** Decodes an `RTM_NEWROUTE`/`RTM_DELROUTE` message (AF_INET). */
export function decodeRoute(m: NlMsg): RouteInfo {
  const h = decodeRtMsg(m.payload);
  const a = msgAttrs(m, RTMSG_SIZE);
  const dst = a.get(RTA_DST);
  const gw = a.get(RTA_GATEWAY);
  const oif = a.get(RTA_OIF);
  const table = a.get(RTA_TABLE);
  const prefsrc = a.get(RTA_PREFSRC);
  const prio = a.get(RTA_PRIORITY);
  let gateway = gw ? getIP(gw) : null;
  let oifIndex = oif ? getU32(oif) : null;
  const mp = a.get(RTA_MULTIPATH);
  if (mp && mp.length >= 8 && gateway === null && oifIndex === null) {
    // struct rtnexthop { u16 len; u8 flags; u8 hops; int ifindex; } + attrs: report the first hop.
    const v = new DataView(mp.buffer, mp.byteOffset, mp.byteLength);
    const len = v.getUint16(0, true);
    oifIndex = v.getInt32(4, true);
    const nha = parseAttrs(mp.subarray(8, Math.min(len, mp.length)));
    const g = nha.get(RTA_GATEWAY);
    if (g) gateway = getIP(g);
  }
  return {
    dst: IPNet.of(dst ? getIP(dst) : zeroOf(h.family), h.dstLen),
    gateway,
    oif: oifIndex,
    table: table ? getU32(table) : h.table,
    protocol: h.protocol,
    scope: h.scope,
    type: h.type,
    flags: h.flags,
    prefsrc: prefsrc ? getIP(prefsrc) : null,
    priority: prio ? getU32(prio) : null,
    onlink: (h.flags & RTNH_F_ONLINK) !== 0,
    kernel: h.protocol === RTPROT_KERNEL,
  };
}

/** Decodes an AF_INET `RTM_NEWNEIGH`/`RTM_DELNEIGH` message. */
export function decodeNeigh(m: NlMsg): NeighInfo {
  const h = decodeNdMsg(m.payload);
  const a = msgAttrs(m, NDMSG_SIZE);
  const dst = a.get(NDA_DST);
  const ll = a.get(NDA_LLADDR);
  return {
    index: h.index,
    ip: dst && (dst.length === 4 || dst.length === 16) ? getIP(dst) : zeroOf(h.family),
    mac: ll && ll.length === 6 ? getMac(ll) : null,
    state: h.state,
    flags: h.flags,
    permanent: (h.state & NUD_PERMANENT) !== 0,
  };
}

/** Decodes an AF_BRIDGE `RTM_NEWNEIGH` message (an FDB entry). */
export function decodeFdb(m: NlMsg): FdbInfo {
  const h = decodeNdMsg(m.payload);
  const a = msgAttrs(m, NDMSG_SIZE);
  const dst = a.get(NDA_DST);
  const ll = a.get(NDA_LLADDR);
  return {
    index: h.index,
    mac: ll ? getMac(ll) : "",
    // An IPv4 or IPv6 tunnel destination (vxlan over either underlay).
    dst: dst && (dst.length === 4 || dst.length === 16) ? getIP(dst) : null,
    state: h.state,
    flags: h.flags,
    permanent: (h.state & NUD_PERMANENT) !== 0,
  };
}
