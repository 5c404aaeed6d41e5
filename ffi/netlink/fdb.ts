/**
 * Bridge forwarding-database verbs (`bridge fdb`) on a vxlan device: set, append, delete, list.
 *
 * @module
 */

import type { IP } from "../ip.ts";
import { attrIP, attrMac } from "./attr.ts";
import type { NetlinkTransport } from "./conn.ts";
import {
  AF_BRIDGE,
  NDA_DST,
  NDA_LLADDR,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  NTF_SELF,
  NUD_NOARP,
  NUD_PERMANENT,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
} from "./consts.ts";
import { decodeFdb, type FdbInfo } from "./decode.ts";
import { encodeNdMsg } from "./family.ts";
import { encodeMsg } from "./message.ts";
import { ACK, DUMP } from "./presets.ts";

/** `bridge fdb replace MAC dev X dst IP` (self, permanent). */
export function fdbSet(t: NetlinkTransport, index: number, mac: string, dst: IP): void {
  t.request(fdbMsg(RTM_NEWNEIGH, ACK | NLM_F_CREATE | NLM_F_REPLACE, index, mac, dst));
}

/** `bridge fdb append MAC dev X dst IP`: one more destination for the same MAC. */
export function fdbAppend(t: NetlinkTransport, index: number, mac: string, dst: IP): void {
  t.request(fdbMsg(RTM_NEWNEIGH, ACK | NLM_F_CREATE | NLM_F_APPEND, index, mac, dst));
}

/** `bridge fdb del MAC dev X dst IP`. */
export function fdbDel(t: NetlinkTransport, index: number, mac: string, dst: IP): void {
  t.request(fdbMsg(RTM_DELNEIGH, ACK, index, mac, dst));
}

/** FDB entries, of one link or all (`bridge fdb show`). */
export function fdbList(t: NetlinkTransport, index?: number): FdbInfo[] {
  const req = encodeMsg(
    { type: RTM_GETNEIGH, flags: DUMP },
    encodeNdMsg({ family: AF_BRIDGE, index }),
  );
  return t.dump(req)
    .filter((m) => m.type === RTM_NEWNEIGH && m.payload[0] === AF_BRIDGE)
    .map(decodeFdb)
    .filter((f) => index === undefined || f.index === index);
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
