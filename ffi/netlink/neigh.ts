/**
 * Neighbour (ARP) verbs (`ip neigh`): set permanent, delete, list.
 *
 * @module
 */

import type { Family, IP } from "../ip.ts";
import { attrIP, attrMac, attrU32 } from "./attr.ts";
import type { NetlinkTransport } from "./conn.ts";
import {
  AF_INET,
  AF_INET6,
  NDA_DST,
  NDA_IFINDEX,
  NDA_LLADDR,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  NUD_PERMANENT,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
} from "./consts.ts";
import { decodeNeigh, type NeighInfo } from "./decode.ts";
import { encodeNdMsg } from "./family.ts";
import { encodeMsg } from "./message.ts";
import { ACK, afOf, DUMP } from "./presets.ts";

/** `ip neigh replace IP lladdr MAC dev X nud permanent`. */
export function neighSet(t: NetlinkTransport, index: number, ip: IP, mac: string): void {
  const h = encodeNdMsg({ family: afOf(ip), index, state: NUD_PERMANENT });
  const flags = ACK | NLM_F_CREATE | NLM_F_REPLACE;
  t.request(
    encodeMsg({ type: RTM_NEWNEIGH, flags }, h, [
      attrIP(NDA_DST, ip),
      attrMac(NDA_LLADDR, mac),
    ]),
  );
}

/** `ip neigh del IP dev X`. */
export function neighDel(t: NetlinkTransport, index: number, ip: IP): void {
  // iproute2 sends NUD_PERMANENT on delete too; the kernel ignores the state.
  const h = encodeNdMsg({ family: afOf(ip), index, state: NUD_PERMANENT });
  t.request(encodeMsg({ type: RTM_DELNEIGH, flags: ACK }, h, [attrIP(NDA_DST, ip)]));
}

/** Neighbours of one family (ARP or NDP), of one link or all (`ip -4 neigh show`, `-6`). */
export function neighList(t: NetlinkTransport, index?: number, family: Family = 4): NeighInfo[] {
  const af = family === 4 ? AF_INET : AF_INET6;
  const req = encodeMsg(
    { type: RTM_GETNEIGH, flags: DUMP },
    encodeNdMsg({ family: af }),
    // Strict dump checking wants ndm_ifindex 0 and the filter as NDA_IFINDEX.
    index === undefined ? [] : [attrU32(NDA_IFINDEX, index)],
  );
  return t.dump(req)
    .filter((m) => m.type === RTM_NEWNEIGH && m.payload[0] === af)
    .map(decodeNeigh)
    .filter((n) => index === undefined || n.index === index);
}
