/**
 * Address verbs (`ip addr`): list, add, delete.
 *
 * @module
 */

import type { Family, IP } from "../ip.ts";
import { attrIP } from "./attr.ts";
import type { NetlinkTransport } from "./conn.ts";
import {
  AF_INET,
  AF_INET6,
  IFA_ADDRESS,
  IFA_F_NODAD,
  IFA_LOCAL,
  NLM_F_CREATE,
  NLM_F_EXCL,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
} from "./consts.ts";
import { type AddrInfo, decodeAddr } from "./decode.ts";
import { encodeIfAddrMsg } from "./family.ts";
import { encodeMsg } from "./message.ts";
import { ACK, afOf, DUMP } from "./presets.ts";

/** Addresses of one family, of one link or all (`ip -4 addr show`, `ip -6 addr show`). */
export function addrList(t: NetlinkTransport, index?: number, family: Family = 4): AddrInfo[] {
  const af = family === 4 ? AF_INET : AF_INET6;
  const req = encodeMsg(
    { type: RTM_GETADDR, flags: DUMP },
    encodeIfAddrMsg({ family: af, index }),
  );
  return t.dump(req)
    .filter((m) => m.type === RTM_NEWADDR && m.payload[0] === af)
    .map(decodeAddr)
    .filter((a) => index === undefined || a.index === index);
}

/**
 * `ip addr add ADDRESS/PREFIX dev X`; EEXIST when present. An interface address keeps its host
 * bits (10.1.7.1/24), so it is an address and a prefix length, not an `IPNet`.
 */
export function addrAdd(
  t: NetlinkTransport,
  index: number,
  address: IP,
  prefix: number,
  opts: AddrOptions = {},
): void {
  const ifaFlags = opts.nodad ? IFA_F_NODAD : 0;
  const flags = ACK | NLM_F_CREATE | NLM_F_EXCL;
  t.request(addrMsg(RTM_NEWADDR, flags, index, address, prefix, ifaFlags));
}

/** Options of {@link addrAdd}. */
export interface AddrOptions {
  /** `nodad`: an IPv6 address usable at once, without duplicate address detection. */
  nodad?: boolean;
}

/** `ip addr del ADDRESS/PREFIX dev X`. */
export function addrDel(t: NetlinkTransport, index: number, address: IP, prefix: number): void {
  t.request(addrMsg(RTM_DELADDR, ACK, index, address, prefix));
}

function addrMsg(
  type: number,
  flags: number,
  index: number,
  ip: IP,
  prefix: number,
  ifaFlags = 0,
): Uint8Array<ArrayBuffer> {
  const h = encodeIfAddrMsg({ family: afOf(ip), prefixlen: prefix, flags: ifaFlags, index });
  return encodeMsg({ type, flags }, h, [attrIP(IFA_LOCAL, ip), attrIP(IFA_ADDRESS, ip)]);
}
