/**
 * The rtnetlink family headers that follow `nlmsghdr`: `ifinfomsg`, `ifaddrmsg`, `rtmsg` and
 * `ndmsg`, encoded and decoded with a comment per field. Pure.
 *
 * @module
 */

/** Sizes of the rtnetlink family headers that follow `nlmsghdr`. */
export const IFINFOMSG_SIZE = 16; // struct ifinfomsg (linux/rtnetlink.h)
export const IFADDRMSG_SIZE = 8; // struct ifaddrmsg (linux/if_addr.h)
export const RTMSG_SIZE = 12; // struct rtmsg (linux/rtnetlink.h)
export const NDMSG_SIZE = 12; // struct ndmsg (linux/neighbour.h)

/** `struct ifinfomsg` (linux/rtnetlink.h). */
export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}
/** Encodes an `ifinfomsg`; omitted fields are 0. */
export function encodeIfInfoMsg(h: Partial<IfInfoMsg>): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(IFINFOMSG_SIZE);
  const v = new DataView(b.buffer);
  v.setUint8(0, h.family ?? 0); // ifi_family; 1: __ifi_pad
  v.setUint16(2, h.type ?? 0, true); // ifi_type (ARPHRD_*)
  v.setInt32(4, h.index ?? 0, true); // ifi_index
  v.setUint32(8, (h.flags ?? 0) >>> 0, true); // ifi_flags (IFF_*)
  v.setUint32(12, (h.change ?? 0) >>> 0, true); // ifi_change
  return b;
}
/** Decodes the `ifinfomsg` at the start of a payload. */
export function decodeIfInfoMsg(p: Uint8Array): IfInfoMsg {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return {
    family: v.getUint8(0),
    type: v.getUint16(2, true),
    index: v.getInt32(4, true),
    flags: v.getUint32(8, true),
    change: v.getUint32(12, true),
  };
}

/** `struct ifaddrmsg` (linux/if_addr.h). */
export interface IfAddrMsg {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
}
/** Encodes an `ifaddrmsg`; omitted fields are 0. */
export function encodeIfAddrMsg(h: Partial<IfAddrMsg>): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(IFADDRMSG_SIZE);
  const v = new DataView(b.buffer);
  v.setUint8(0, h.family ?? 0); // ifa_family
  v.setUint8(1, h.prefixlen ?? 0); // ifa_prefixlen
  v.setUint8(2, h.flags ?? 0); // ifa_flags
  v.setUint8(3, h.scope ?? 0); // ifa_scope
  v.setUint32(4, h.index ?? 0, true); // ifa_index
  return b;
}
/** Decodes the `ifaddrmsg` at the start of a payload. */
export function decodeIfAddrMsg(p: Uint8Array): IfAddrMsg {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return {
    family: v.getUint8(0),
    prefixlen: v.getUint8(1),
    flags: v.getUint8(2),
    scope: v.getUint8(3),
    index: v.getUint32(4, true),
  };
}

/** `struct rtmsg` (linux/rtnetlink.h). */
export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}
/** Encodes an `rtmsg`; omitted fields are 0. */
export function encodeRtMsg(h: Partial<RtMsg>): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(RTMSG_SIZE);
  const v = new DataView(b.buffer);
  v.setUint8(0, h.family ?? 0); // rtm_family
  v.setUint8(1, h.dstLen ?? 0); // rtm_dst_len
  v.setUint8(2, h.srcLen ?? 0); // rtm_src_len
  v.setUint8(3, h.tos ?? 0); // rtm_tos
  v.setUint8(4, h.table ?? 0); // rtm_table (RT_TABLE_*; RTA_TABLE for ids >= 256)
  v.setUint8(5, h.protocol ?? 0); // rtm_protocol (RTPROT_*)
  v.setUint8(6, h.scope ?? 0); // rtm_scope (RT_SCOPE_*)
  v.setUint8(7, h.type ?? 0); // rtm_type (RTN_*)
  v.setUint32(8, (h.flags ?? 0) >>> 0, true); // rtm_flags (RTM_F_*, RTNH_F_*)
  return b;
}
/** Decodes the `rtmsg` at the start of a payload. */
export function decodeRtMsg(p: Uint8Array): RtMsg {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return {
    family: v.getUint8(0),
    dstLen: v.getUint8(1),
    srcLen: v.getUint8(2),
    tos: v.getUint8(3),
    table: v.getUint8(4),
    protocol: v.getUint8(5),
    scope: v.getUint8(6),
    type: v.getUint8(7),
    flags: v.getUint32(8, true),
  };
}

/** `struct ndmsg` (linux/neighbour.h). */
export interface NdMsg {
  family: number;
  index: number;
  state: number;
  flags: number;
  type: number;
}
/** Encodes an `ndmsg`; omitted fields are 0. */
export function encodeNdMsg(h: Partial<NdMsg>): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(NDMSG_SIZE);
  const v = new DataView(b.buffer);
  v.setUint8(0, h.family ?? 0); // ndm_family; 1..3: ndm_pad1, ndm_pad2
  v.setInt32(4, h.index ?? 0, true); // ndm_ifindex
  v.setUint16(8, h.state ?? 0, true); // ndm_state (NUD_*)
  v.setUint8(10, h.flags ?? 0); // ndm_flags (NTF_*)
  v.setUint8(11, h.type ?? 0); // ndm_type (RTN_*)
  return b;
}
/** Decodes the `ndmsg` at the start of a payload. */
export function decodeNdMsg(p: Uint8Array): NdMsg {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return {
    family: v.getUint8(0),
    index: v.getInt32(4, true),
    state: v.getUint16(8, true),
    flags: v.getUint8(10),
    type: v.getUint8(11),
  };
}
