/**
 * The rtnetlink wire format, pure (no I/O): `nlmsghdr`, `rtattr`/`nlattr` TLVs (nested),
 * `ifinfomsg`, `ifaddrmsg`, `rtmsg`, `ndmsg`, `NLMSG_ERROR` with the extended ack, `NLMSG_DONE`.
 *
 * Netlink is host order (little-endian on every target of this project); the few network-order
 * fields (`IFLA_VXLAN_PORT`, IPv4 addresses as bytes) are written with explicit helpers. The
 * constants live in ./consts.ts under their kernel names.
 *
 * @module
 */

import { IP } from "../ip.ts";
import { NLMSG_DONE, NLMSG_ERROR, NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_OFFS } from "./consts.ts";

/** `NLMSG_ALIGNTO` (linux/netlink.h). */
export const NLMSG_ALIGNTO = 4;
/** `NLMSG_ALIGN(len)` (linux/netlink.h). */
export function NLMSG_ALIGN(len: number): number {
  return (len + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1);
}
/** `NLMSG_HDRLEN`: the aligned size of `struct nlmsghdr` (linux/netlink.h). */
export const NLMSG_HDRLEN = 16;
/** `NLA_ALIGNTO` (linux/netlink.h); `RTA_ALIGNTO` is the same 4. */
export const NLA_ALIGNTO = 4;
/** `NLA_ALIGN(len)` (linux/netlink.h), the same as `RTA_ALIGN`. */
export function NLA_ALIGN(len: number): number {
  return (len + NLA_ALIGNTO - 1) & ~(NLA_ALIGNTO - 1);
}
/** `NLA_HDRLEN`: the aligned size of `struct nlattr` (linux/netlink.h). */
export const NLA_HDRLEN = 4;
/** `NLA_F_NESTED` (linux/netlink.h). */
export const NLA_F_NESTED = 0x8000;
/** `NLA_F_NET_BYTEORDER` (linux/netlink.h). */
export const NLA_F_NET_BYTEORDER = 0x4000;
/** `NLA_TYPE_MASK` (linux/netlink.h): the attribute type without the two flag bits. */
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/** Sizes of the rtnetlink family headers that follow `nlmsghdr`. */
export const IFINFOMSG_SIZE = 16; // struct ifinfomsg (linux/rtnetlink.h)
export const IFADDRMSG_SIZE = 8; // struct ifaddrmsg (linux/if_addr.h)
export const RTMSG_SIZE = 12; // struct rtmsg (linux/rtnetlink.h)
export const NDMSG_SIZE = 12; // struct ndmsg (linux/neighbour.h)
export const RTGENMSG_SIZE = 1; // struct rtgenmsg (linux/rtnetlink.h)

// ---------------------------------------------------------------------------------------------
// Attributes

/** One TLV to encode: raw bytes, or a list of attributes nested inside. */
export interface Attr {
  type: number;
  value: Uint8Array | Attr[];
}

/** A raw-bytes attribute. */
export function attrBytes(type: number, value: Uint8Array): Attr {
  return { type, value };
}
/** An attribute holding a `__u8`. */
export function attrU8(type: number, v: number): Attr {
  return { type, value: Uint8Array.of(v & 0xff) };
}
/** An attribute holding a host-order `__u16`. */
export function attrU16(type: number, v: number): Attr {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, v, true);
  return { type, value: b };
}
/** An attribute holding a network-order `__be16` (e.g. `IFLA_VXLAN_PORT`). */
export function attrU16be(type: number, v: number): Attr {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, v, false);
  return { type, value: b };
}
/** An attribute holding a host-order `__u32`. */
export function attrU32(type: number, v: number): Attr {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return { type, value: b };
}
/** A NUL-terminated string attribute (`NLA_NUL_STRING`, e.g. `IFLA_IFNAME`). */
export function attrString(type: number, s: string): Attr {
  const t = new TextEncoder().encode(s);
  const b = new Uint8Array(t.length + 1);
  b.set(t);
  return { type, value: b };
}
/** A string attribute without the NUL (`NLA_STRING`, as iproute2 sends `IFLA_INFO_KIND`). */
export function attrStringNoNul(type: number, s: string): Attr {
  return { type, value: new TextEncoder().encode(s) };
}
/** A flag attribute: a header and no payload (`NLA_FLAG`, e.g. `IFLA_VXLAN_GBP`). */
export function attrFlag(type: number): Attr {
  return { type, value: new Uint8Array(0) };
}
/** An address attribute: the IP's network-order bytes (4 for IPv4, 16 for IPv6). */
export function attrIP(type: number, ip: IP): Attr {
  return { type, value: ip.bytes };
}
/** A MAC address attribute (6 bytes) from `aa:bb:cc:dd:ee:ff`. */
export function attrMac(type: number, mac: string): Attr {
  return { type, value: macBytes(mac) };
}
/** A nested attribute. The kernel accepts nests without `NLA_F_NESTED`, as iproute2 sends them. */
export function attrNested(type: number, attrs: Attr[]): Attr {
  return { type, value: attrs };
}

/** The encoded size of one attribute including its header, before the trailing alignment pad. */
function attrLen(a: Attr): number {
  if (a.value instanceof Uint8Array) return NLA_HDRLEN + a.value.length;
  let n = NLA_HDRLEN;
  for (const c of a.value) n = NLA_ALIGN(n) + attrLen(c);
  return NLA_ALIGN(n);
}

/** The encoded size of an attribute list, aligned. */
export function attrsLen(attrs: Attr[]): number {
  let n = 0;
  for (const a of attrs) n += NLA_ALIGN(attrLen(a));
  return n;
}

/** Writes `attrs` at `off` in `view`; returns the offset after the last aligned attribute. */
function writeAttrs(out: Uint8Array, view: DataView, off: number, attrs: Attr[]): number {
  for (const a of attrs) {
    const len = attrLen(a);
    view.setUint16(off, len, true); // nla_len
    view.setUint16(off + 2, a.type, true); // nla_type
    if (a.value instanceof Uint8Array) out.set(a.value, off + NLA_HDRLEN);
    else writeAttrs(out, view, off + NLA_HDRLEN, a.value);
    off += NLA_ALIGN(len);
  }
  return off;
}

/** Encodes an attribute list on its own (used for nested payloads in tests). */
export function encodeAttrs(attrs: Attr[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(attrsLen(attrs));
  writeAttrs(out, new DataView(out.buffer), 0, attrs);
  return out;
}

/** Decoded attributes: type (flags masked off) → payload. The first of duplicates wins. */
export type Attrs = Map<number, Uint8Array>;

/** Parses a run of TLVs; stops at the first malformed header. */
export function parseAttrs(b: Uint8Array): Attrs {
  const m: Attrs = new Map();
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let off = 0;
  while (off + NLA_HDRLEN <= b.length) {
    const len = v.getUint16(off, true);
    const type = v.getUint16(off + 2, true) & NLA_TYPE_MASK;
    if (len < NLA_HDRLEN || off + len > b.length) break;
    if (!m.has(type)) m.set(type, b.subarray(off + NLA_HDRLEN, off + len));
    off += NLA_ALIGN(len);
  }
  return m;
}

/** Reads a `__u8` payload. */
export function getU8(b: Uint8Array): number {
  return b[0];
}
/** Reads a host-order `__u16` payload. */
export function getU16(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(0, true);
}
/** Reads a network-order `__be16` payload. */
export function getU16be(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(0, false);
}
/** Reads a host-order `__u32` payload. */
export function getU32(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
}
/** Reads a string payload, dropping the NUL and anything after it. */
export function getString(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? b : b.subarray(0, nul));
}
/** An address attribute's payload (4 or 16 network-order bytes) as an IP; throws otherwise. */
export function getIP(b: Uint8Array): IP {
  return IP.fromBytes(b);
}
/** Formats a link-layer address as `aa:bb:cc:dd:ee:ff`. */
export function getMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

/** `aa:bb:cc:dd:ee:ff` as 6 bytes; throws on anything else. */
export function macBytes(mac: string): Uint8Array<ArrayBuffer> {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) {
    throw new TypeError(`Invalid MAC address: ${mac}`);
  }
  return Uint8Array.from(mac.split(":"), (x) => parseInt(x, 16));
}
// ---------------------------------------------------------------------------------------------
// Messages

/** `struct nlmsghdr` (linux/netlink.h) without `nlmsg_len`, which the encoder computes. */
export interface NlHeader {
  type: number;
  flags: number;
  seq?: number;
  pid?: number;
}

/** A decoded netlink message: header fields and the payload after `nlmsghdr`. */
export interface NlMsg {
  len: number;
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Everything after the 16-byte header, `nlmsg_len - 16` bytes. */
  payload: Uint8Array;
}

/**
 * Encodes one message: `nlmsghdr`, the family header `fixed` (e.g. an encoded `rtmsg`), then the
 * attributes. `nlmsg_len` covers the last attribute's padding too, as iproute2's `addattr_l` does.
 */
export function encodeMsg(
  h: NlHeader,
  fixed: Uint8Array,
  attrs: Attr[] = [],
): Uint8Array<ArrayBuffer> {
  const attrOff = NLMSG_HDRLEN + NLMSG_ALIGN(fixed.length);
  const len = attrs.length === 0 ? NLMSG_HDRLEN + fixed.length : attrOff + attrsLen(attrs);
  const out = new Uint8Array(NLMSG_ALIGN(len));
  const v = new DataView(out.buffer);
  v.setUint32(0, len, true); // nlmsg_len
  v.setUint16(4, h.type, true); // nlmsg_type
  v.setUint16(6, h.flags, true); // nlmsg_flags
  v.setUint32(8, (h.seq ?? 0) >>> 0, true); // nlmsg_seq
  v.setUint32(12, (h.pid ?? 0) >>> 0, true); // nlmsg_pid
  out.set(fixed, NLMSG_HDRLEN);
  writeAttrs(out, v, attrOff, attrs);
  return out.subarray(0, len);
}

/** Overwrites `nlmsg_seq` and `nlmsg_pid` of an encoded message in place. */
export function setSeqPid(msg: Uint8Array, seq: number, pid: number): void {
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  v.setUint32(8, seq >>> 0, true);
  v.setUint32(12, pid >>> 0, true);
}

/** Splits a datagram into messages (`NLMSG_OK`/`NLMSG_NEXT`); stops at a malformed header. */
export function parseMsgs(b: Uint8Array): NlMsg[] {
  const out: NlMsg[] = [];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let off = 0;
  while (off + NLMSG_HDRLEN <= b.length) {
    const len = v.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > b.length) break;
    out.push({
      len,
      type: v.getUint16(off + 4, true),
      flags: v.getUint16(off + 6, true),
      seq: v.getUint32(off + 8, true),
      pid: v.getUint32(off + 12, true),
      payload: b.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += NLMSG_ALIGN(len);
  }
  return out;
}

/** The attributes of a message whose family header is `fixedSize` bytes. */
export function msgAttrs(m: NlMsg, fixedSize: number): Attrs {
  return parseAttrs(m.payload.subarray(NLMSG_ALIGN(fixedSize)));
}

/** A decoded `NLMSG_ERROR` (struct nlmsgerr, linux/netlink.h) or the status of `NLMSG_DONE`. */
export interface NlError {
  /** The positive errno; 0 for an ACK. */
  errno: number;
  /** The header of the request it answers. */
  request: { len: number; type: number; flags: number; seq: number; pid: number } | null;
  /** `NLMSGERR_ATTR_MSG`, the extended-ack text. */
  message: string | null;
  /** `NLMSGERR_ATTR_OFFS`, the offset of the offending attribute in the request. */
  offset: number | null;
}

/**
 * Decodes `NLMSG_ERROR` (and the `int error` that starts a `NLMSG_DONE` payload). The ext-ack
 * TLVs follow the echoed request: its header only with `NLM_F_CAPPED`, the whole request without.
 */
export function decodeError(m: NlMsg): NlError {
  const v = new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
  const err = m.payload.length >= 4 ? v.getInt32(0, true) : 0;
  const errno = err === 0 ? 0 : -err; // no -0 for an ACK
  if (m.type === NLMSG_DONE || m.payload.length < 4 + NLMSG_HDRLEN) {
    const tlvs = m.type === NLMSG_DONE && m.payload.length > 4
      ? parseAttrs(m.payload.subarray(4))
      : new Map();
    return { errno, request: null, ...extAck(tlvs) };
  }
  const request = {
    len: v.getUint32(4, true),
    type: v.getUint16(8, true),
    flags: v.getUint16(10, true),
    seq: v.getUint32(12, true),
    pid: v.getUint32(16, true),
  };
  const capped = (m.flags & 0x100) !== 0; // NLM_F_CAPPED
  const echoed = capped ? NLMSG_HDRLEN : NLMSG_ALIGN(request.len);
  const tlvOff = 4 + echoed;
  const tlvs = (m.flags & 0x200) !== 0 && tlvOff < m.payload.length // NLM_F_ACK_TLVS
    ? parseAttrs(m.payload.subarray(tlvOff))
    : new Map();
  return { errno, request, ...extAck(tlvs) };
}

function extAck(tlvs: Attrs): { message: string | null; offset: number | null } {
  const msg = tlvs.get(NLMSGERR_ATTR_MSG);
  const offs = tlvs.get(NLMSGERR_ATTR_OFFS);
  return {
    message: msg ? getString(msg) : null,
    offset: offs && offs.length >= 4 ? getU32(offs) : null,
  };
}

/** True for `NLMSG_ERROR`. */
export function isError(m: NlMsg): boolean {
  return m.type === NLMSG_ERROR;
}

// ---------------------------------------------------------------------------------------------
// Family headers

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

/** Hex of bytes, for tests and debug logs. */
export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
/** Bytes of a hex string (whitespace ignored). */
export function fromHex(s: string): Uint8Array<ArrayBuffer> {
  const t = s.replace(/\s+/g, "");
  if (t.length % 2 !== 0 || /[^0-9a-fA-F]/.test(t)) throw new TypeError("Invalid hex string");
  const b = new Uint8Array(t.length / 2);
  for (let i = 0; i < b.length; i++) b[i] = parseInt(t.slice(2 * i, 2 * i + 2), 16);
  return b;
}
