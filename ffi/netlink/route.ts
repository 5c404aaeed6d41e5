/**
 * Route verbs (`ip route`): list, add, replace, delete, get (lookup), and the default route.
 *
 * @module
 */

import { isErrno } from "../errno.ts";
import type { Family, IP, IPNet } from "../ip.ts";
import { type Attr, attrIP, attrU32 } from "./attr.ts";
import type { NetlinkTransport } from "./conn.ts";
import {
  AF_INET,
  AF_INET6,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
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
  RTM_DELROUTE,
  RTM_F_LOOKUP_TABLE,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  RTN_UNICAST,
  RTN_UNSPEC,
  RTNH_F_ONLINK,
  RTPROT_BOOT,
  RTPROT_UNSPEC,
} from "./consts.ts";
import { decodeRoute, type RouteInfo } from "./decode.ts";
import { encodeRtMsg } from "./family.ts";
import { encodeMsg } from "./message.ts";
import { ACK, afOf, DUMP } from "./presets.ts";

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

/**
 * The routes of one family in a table (`ip -4 route show table main`, `ip -6 …`), cached
 * clones excluded.
 */
export function routeList(
  t: NetlinkTransport,
  table: number = RT_TABLE_MAIN,
  family: Family = 4,
): RouteInfo[] {
  const af = family === 4 ? AF_INET : AF_INET6;
  const req = encodeMsg(
    { type: RTM_GETROUTE, flags: DUMP },
    encodeRtMsg({ family: af }),
    [attrU32(RTA_TABLE, table)],
  );
  return t.dump(req)
    .filter((m) => m.type === RTM_NEWROUTE && m.payload[0] === af)
    .map(decodeRoute)
    .filter((r) => r.table === table);
}

/** `ip route add`: NLM_F_CREATE|NLM_F_EXCL, EEXIST when present. */
export function routeAdd(t: NetlinkTransport, r: RouteSpec): void {
  t.request(routeMsg(RTM_NEWROUTE, ACK | NLM_F_CREATE | NLM_F_EXCL, r));
}

/** `ip route replace`: NLM_F_CREATE|NLM_F_REPLACE. */
export function routeReplace(t: NetlinkTransport, r: RouteSpec): void {
  t.request(routeMsg(RTM_NEWROUTE, ACK | NLM_F_CREATE | NLM_F_REPLACE, r));
}

/** `ip route del`: ESRCH when absent. */
export function routeDel(t: NetlinkTransport, r: RouteSpec): void {
  t.request(routeMsg(RTM_DELROUTE, ACK, r));
}

/**
 * `ip route get DST`: the route the kernel would use for one address (its `dst` is the address
 * as a host route, with the gateway, oif and prefsrc the lookup chose); null when unreachable.
 */
export function routeGet(t: NetlinkTransport, dst: IP): RouteInfo | null {
  const req = encodeMsg(
    { type: RTM_GETROUTE, flags: NLM_F_REQUEST },
    // The kernel refuses RTM_F_LOOKUP_TABLE in an IPv6 get (EINVAL), and iproute2 sends none.
    encodeRtMsg({
      family: afOf(dst),
      dstLen: dst.bits,
      flags: dst.family === 4 ? RTM_F_LOOKUP_TABLE : 0,
    }),
    [attrIP(RTA_DST, dst)],
  );
  try {
    return decodeRoute(t.get(req));
  } catch (err) {
    if (isErrno(err, "ENETUNREACH") || isErrno(err, "EHOSTUNREACH")) return null;
    throw err;
  }
}

/** The main-table default route of a family with the lowest metric, or null. */
export function defaultRoute(
  t: NetlinkTransport,
  family: Family = 4,
): { index: number; gateway: IP | null } | null {
  const best = routeList(t, RT_TABLE_MAIN, family)
    .filter((r) => r.dst.prefix === 0 && r.type === RTN_UNICAST && r.oif !== null)
    .sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0))[0];
  return best ? { index: best.oif!, gateway: best.gateway } : null;
}

function routeMsg(type: number, flags: number, r: RouteSpec): Uint8Array<ArrayBuffer> {
  const { ip, prefix } = r.dst;
  const del = type === RTM_DELROUTE;
  const table = r.table ?? RT_TABLE_MAIN;
  // As iproute2: a delete matches any protocol/type and scope "nowhere" matches every scope;
  // IPv6 routes have no scope of their own, iproute2 always sends universe for them.
  const scope = r.scope ??
    (ip.family === 6
      ? RT_SCOPE_UNIVERSE
      : del
      ? RT_SCOPE_NOWHERE
      : r.gateway
      ? RT_SCOPE_UNIVERSE
      : RT_SCOPE_LINK);
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
