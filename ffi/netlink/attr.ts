/**
 * rtattr/nlattr TLVs (linux/netlink.h, linux/rtnetlink.h): encoding of attribute lists (nested
 * too), the decoder of a received run, and the payload readers. Pure.
 *
 * Netlink is host order (little-endian on every target of this project); the few network-order
 * payloads (`IFLA_VXLAN_PORT`, addresses as bytes) have explicit helpers.
 *
 * @module
 */

import { IP } from "../ip.ts";
import { NLA_ALIGN, NLA_F_NESTED, NLA_HDRLEN, NLA_TYPE_MASK } from "./align.ts";

/** One TLV to encode: raw bytes, or a list of attributes nested inside. */
export interface Attr {
  type: number;
  value: Uint8Array | Attr[];
}

/** An attribute holding a `__u8`. */
export function attrU8(type: number, v: number): Attr {
  return { type, value: Uint8Array.of(v & 0xff) };
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
export function writeAttrs(out: Uint8Array, view: DataView, off: number, attrs: Attr[]): number {
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

/**
 * Walks a run of TLVs one attribute at a time and keeps the first error (mdlayher/netlink's
 * `AttributeDecoder` idea): a malformed header ends the walk and is reported by {@link err},
 * instead of the rest of the buffer vanishing without a word.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AttributeDecoder } from "./attr.ts";
 * const d = new AttributeDecoder(Uint8Array.from([8, 0, 3, 0, 1, 0, 0, 0, 9, 0, 4]));
 * assert.ok(d.next());
 * assert.equal(d.type, 3);
 * assert.ok(!d.next()); // the second header claims 9 bytes, 3 are left
 * assert.match(d.err()!.message, /^Malformed netlink attribute at offset 8: /);
 * ```
 */
export class AttributeDecoder {
  readonly #b: Uint8Array;
  readonly #v: DataView;
  #off = 0;
  #type = 0;
  #nested = false;
  #payload: Uint8Array = new Uint8Array(0);
  #err: Error | null = null;

  constructor(b: Uint8Array) {
    this.#b = b;
    this.#v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  /** Moves to the next attribute; false at the end or at the first malformed one. */
  next(): boolean {
    if (this.#err || this.#off >= this.#b.length) return false;
    const off = this.#off;
    if (off + NLA_HDRLEN > this.#b.length) {
      return this.#fail(off, `${this.#b.length - off} bytes left, a header needs ${NLA_HDRLEN}`);
    }
    const len = this.#v.getUint16(off, true);
    const raw = this.#v.getUint16(off + 2, true);
    if (len < NLA_HDRLEN) return this.#fail(off, `nla_len ${len} is shorter than the header`);
    if (off + len > this.#b.length) {
      return this.#fail(off, `nla_len ${len} overruns the ${this.#b.length - off} bytes left`);
    }
    this.#type = raw & NLA_TYPE_MASK;
    this.#nested = (raw & NLA_F_NESTED) !== 0;
    this.#payload = this.#b.subarray(off + NLA_HDRLEN, off + len);
    this.#off = off + NLA_ALIGN(len);
    return true;
  }

  /** The current attribute's type, flags masked off. */
  get type(): number {
    return this.#type;
  }

  /** `NLA_F_NESTED` was set on the current attribute. */
  get nested(): boolean {
    return this.#nested;
  }

  /** The current attribute's payload (a view, not a copy). */
  get bytes(): Uint8Array {
    return this.#payload;
  }

  /** The first error met, or null. */
  err(): Error | null {
    return this.#err;
  }

  #fail(off: number, why: string): false {
    this.#err = new RangeError(`Malformed netlink attribute at offset ${off}: ${why}`);
    return false;
  }
}

/**
 * Decoded attributes: type (flags masked off) → payload; the first of duplicates wins. `error`
 * is the first malformed TLV, after which nothing was read.
 */
export class Attrs extends Map<number, Uint8Array> {
  error: Error | null = null;
}

/** Parses a run of TLVs into {@link Attrs}; a malformed one ends it and is kept in `error`. */
export function parseAttrs(b: Uint8Array): Attrs {
  const m = new Attrs();
  const d = new AttributeDecoder(b);
  while (d.next()) if (!m.has(d.type)) m.set(d.type, d.bytes);
  m.error = d.err();
  return m;
}

/** Reads a `__u8` payload. */
export function getU8(b: Uint8Array): number {
  return b[0];
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
