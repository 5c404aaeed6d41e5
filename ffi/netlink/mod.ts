/**
 * The rtnetlink surface that `lib/` uses: the {@link Netlink} handle and its value types, the
 * notification stream, and the few kernel constants callers compare with. Inside the folder:
 * align.ts/attr.ts/message.ts/family.ts (the pure codec), conn.ts (the socket and its
 * transport interface), decode.ts (replies to values), link/addr/route/neigh/fdb.ts (verbs),
 * events.ts (notifications), consts.ts (kernel names).
 *
 * @module
 */

export { Netlink } from "./handle.ts";
export type { NetlinkTransport } from "./conn.ts";
export type { AddrInfo, FdbInfo, LinkInfo, NeighInfo, RouteInfo, VxlanInfo } from "./decode.ts";
export type { VxlanSpec } from "./link.ts";
export type { AddrOptions } from "./addr.ts";
export type { RouteSpec } from "./route.ts";
export { type NetlinkEvent, subscribe, type SubscribeOptions } from "./events.ts";
export {
  RT_SCOPE_LINK,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTN_UNICAST,
  RTNH_F_ONLINK,
} from "./consts.ts";
