/**
 * Netlink messages (linux/netlink.h): `nlmsghdr` encoding with its attributes, splitting a
 * received buffer into messages, and `NLMSG_ERROR` with the extended ack. Pure.
 *
 * @module
 */

import { NLMSG_ALIGN, NLMSG_HDRLEN } from "./align.ts";
import { type Attr, Attrs, attrsLen, getString, getU32, parseAttrs, writeAttrs } from "./attr.ts";
import { NLMSG_DONE, NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_OFFS } from "./consts.ts";

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
      : new Attrs();
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
    : new Attrs();
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
