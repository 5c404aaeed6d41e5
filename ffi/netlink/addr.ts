/**
 * Address verbs (`ip addr`): list, add, delete.
 *
 * @module
 */

import type { IP } from "../ip.ts";
import { attrIP } from "./attr.ts";
import type { NetlinkTransport } from "./conn.ts";
import {
  AF_INET,
  IFA_ADDRESS,
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

/** IPv4 addresses, of one link or all (`ip -4 addr show`). */
export function addrList(t: NetlinkTransport, index?: number): AddrInfo[] {
  const req = encodeMsg(
    { type: RTM_GETADDR, flags: DUMP },
    encodeIfAddrMsg({ family: AF_INET, index }),
  );
  return t.dump(req)
    .filter((m) => m.type === RTM_NEWADDR && m.payload[0] === AF_INET)
    .map(decodeAddr)
    .filter((a) => index === undefined || a.index === index);
}

/**
 * `ip addr add ADDRESS/PREFIX dev X`; EEXIST when present. An interface address keeps its host
 * bits (10.1.7.1/24), so it is an address and a prefix length, not an `IPNet`.
 */
export function addrAdd(t: NetlinkTransport, index: number, address: IP, prefix: number): void {
  t.request(addrMsg(RTM_NEWADDR, ACK | NLM_F_CREATE | NLM_F_EXCL, index, address, prefix));
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
): Uint8Array<ArrayBuffer> {
  const h = encodeIfAddrMsg({ family: afOf(ip), prefixlen: prefix, index });
  return encodeMsg({ type, flags }, h, [attrIP(IFA_LOCAL, ip), attrIP(IFA_ADDRESS, ip)]);
}
