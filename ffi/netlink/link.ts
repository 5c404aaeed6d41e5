/**
 * Link verbs (`ip link`): list, get, create vxlan, set up/down/mtu/address, delete.
 *
 * @module
 */

import { isErrno } from "../errno.ts";
import type { IP } from "../ip.ts";
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
import type { NetlinkTransport } from "./conn.ts";
import {
  AF_PACKET,
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
  IFLA_VXLAN_LOCAL6,
  IFLA_VXLAN_PORT,
  IFLA_VXLAN_TTL,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  RTEXT_FILTER_SKIP_STATS,
  RTEXT_FILTER_VF,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
} from "./consts.ts";
import { decodeLink, type LinkInfo } from "./decode.ts";
import { encodeIfInfoMsg } from "./family.ts";
import { encodeMsg } from "./message.ts";
import { ACK, DUMP } from "./presets.ts";

/** A vxlan link to create (`ip link add NAME type vxlan id VNI …`). */
export interface VxlanSpec {
  name: string;
  vni: number;
  /** IPv4 or IPv6 (a vxlan over the IPv6 underlay, `IFLA_VXLAN_LOCAL6`). */
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

/** Every link (`ip -d link show`). */
export function linkList(t: NetlinkTransport): LinkInfo[] {
  const req = encodeMsg(
    { type: RTM_GETLINK, flags: DUMP },
    encodeIfInfoMsg({ family: AF_PACKET }),
    [
      attrU32(IFLA_EXT_MASK, RTEXT_FILTER_VF),
    ],
  );
  return t.dump(req).filter((m) => m.type === RTM_NEWLINK).map(decodeLink);
}

/** One link by name or index; null when there is none (ENODEV). */
export function linkGet(t: NetlinkTransport, nameOrIndex: string | number): LinkInfo | null {
  const byIndex = typeof nameOrIndex === "number";
  const attrs = [attrU32(IFLA_EXT_MASK, RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS)];
  if (!byIndex) attrs.push(attrString(IFLA_IFNAME, nameOrIndex));
  const req = encodeMsg(
    { type: RTM_GETLINK, flags: NLM_F_REQUEST },
    encodeIfInfoMsg({ index: byIndex ? nameOrIndex : 0 }),
    attrs,
  );
  try {
    return decodeLink(t.get(req));
  } catch (err) {
    if (isErrno(err, "ENODEV")) return null;
    throw err;
  }
}

/** Creates a vxlan link (`ip link add … type vxlan …`); EEXIST when the name is taken. */
export function linkAddVxlan(t: NetlinkTransport, spec: VxlanSpec): void {
  // IFLA_INFO_DATA in the order iproute2 6.1 writes it, so the golden bytes match.
  const data: Attr[] = [];
  if (spec.lowerIndex !== undefined) data.push(attrU32(IFLA_VXLAN_LINK, spec.lowerIndex));
  if (spec.ttl !== undefined) data.push(attrU8(IFLA_VXLAN_TTL, spec.ttl));
  data.push(attrU32(IFLA_VXLAN_ID, spec.vni));
  // iproute2 writes an IPv6 local address as IFLA_VXLAN_LOCAL6, in the same place.
  if (spec.local !== undefined) {
    data.push(attrIP(spec.local.family === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, spec.local));
  }
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
  t.request(encodeMsg({ type: RTM_NEWLINK, flags }, encodeIfInfoMsg({}), attrs));
}

/** `ip link set dev X up`. */
export function linkSetUp(t: NetlinkTransport, index: number): void {
  setLink(t, { index, flags: IFF_UP, change: IFF_UP }, []);
}

/** `ip link set dev X down`. */
export function linkSetDown(t: NetlinkTransport, index: number): void {
  setLink(t, { index, flags: 0, change: IFF_UP }, []);
}

/** `ip link set dev X mtu N`. */
export function linkSetMtu(t: NetlinkTransport, index: number, mtu: number): void {
  setLink(t, { index }, [attrU32(IFLA_MTU, mtu)]);
}

/** `ip link set dev X address aa:bb:cc:dd:ee:ff`. */
export function linkSetAddress(t: NetlinkTransport, index: number, mac: string): void {
  setLink(t, { index }, [attrMac(IFLA_ADDRESS, mac)]);
}

function setLink(
  t: NetlinkTransport,
  h: { index: number; flags?: number; change?: number },
  attrs: Attr[],
): void {
  // iproute2 changes links with RTM_NEWLINK and no CREATE flag; the kernel treats it as SETLINK.
  t.request(encodeMsg({ type: RTM_NEWLINK, flags: ACK }, encodeIfInfoMsg(h), attrs));
}

/** `ip link del dev X`. */
export function linkDelete(t: NetlinkTransport, index: number): void {
  t.request(encodeMsg({ type: RTM_DELLINK, flags: ACK }, encodeIfInfoMsg({ index }), []));
}
