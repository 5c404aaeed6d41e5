/**
 * IPv4 packet helpers for the udp data path: validation, checksums, TTL decrement and ICMP
 * errors. They work in place on preallocated buffers and allocate nothing, because they run
 * once per packet.
 *
 * Byte order: packet fields are big-endian; addresses are returned as host-order u32 numbers
 * (as in lib/ip.ts).
 */

/** Why an incoming datagram or outgoing packet was refused (0 = well-formed). */
export const enum Malformed {
  Ok = 0,
  TooShort = 1,
  NotIPv4 = 2,
  BadHeaderLength = 3,
  BadTotalLength = 4,
  BadChecksum = 5,
}

/** IP protocol numbers (netinet/in.h). */
export const IPPROTO_ICMP = 1;
/** `IPPROTO_TCP` (netinet/in.h). */
export const IPPROTO_TCP = 6;
/** ICMP types and codes (RFC 792). */
export const ICMP_DEST_UNREACH = 3;
/** `ICMP_NET_UNREACH` (RFC 792). */
export const ICMP_NET_UNREACH = 0;
/** `ICMP_FRAG_NEEDED` (RFC 792). */
export const ICMP_FRAG_NEEDED = 4;
/** `ICMP_TIME_EXCEEDED` (RFC 792). */
export const ICMP_TIME_EXCEEDED = 11;
/** `ICMP_EXC_TTL` (RFC 792). */
export const ICMP_EXC_TTL = 0;
/** TTL of the ICMP errors we originate (upstream's proxy.c uses 8). */
export const ICMP_TTL = 8;

/**
 * The 16-bit one's-complement sum of `len` bytes at `off` (big-endian words), added to `init`,
 * not yet folded. Byte by byte; {@link sum16} is the fast version with the same result.
 */
export function sum16Bytes(b: Uint8Array, off: number, len: number, init = 0): number {
  let s = init;
  const end = off + (len & ~1);
  for (let i = off; i < end; i += 2) s += (b[i] << 8) | b[i + 1];
  if (len & 1) s += b[off + len - 1] << 8;
  return s;
}

// 32-bit views of the few buffers the data path checksums, made once per buffer.
const views: { buf: ArrayBufferLike; u32: Uint32Array }[] = [];

function u32View(buf: ArrayBufferLike): Uint32Array {
  for (let i = 0; i < views.length; i++) if (views[i].buf === buf) return views[i].u32;
  const u32 = new Uint32Array(buf, 0, Math.floor(buf.byteLength / 4));
  if (views.length >= 8) views.shift();
  views.push({ buf, u32 });
  return u32;
}

/**
 * The 16-bit one's-complement sum of `len` bytes at `off`, added to `init`, not yet folded.
 *
 * Long runs are summed as little-endian 32-bit words (4× fewer steps) and byte-swapped at the
 * end, which gives the same one's-complement sum (RFC 1071 §2(B), byte-order independence).
 */
export function sum16(b: Uint8Array, off: number, len: number, init = 0): number {
  let abs = b.byteOffset + off;
  if (len < 64 || (abs & 1) !== 0) return sum16Bytes(b, off, len, init);
  let s = init;
  if ((abs & 2) !== 0) {
    s += (b[off] << 8) | b[off + 1];
    off += 2;
    len -= 2;
    abs += 2;
  }
  const words = len >>> 2;
  const u32 = u32View(b.buffer);
  let acc = 0;
  const first = abs >>> 2;
  const last = first + words;
  for (let i = first; i < last; i++) acc += u32[i];
  // Fold the little-endian sum to 16 bits, then swap its bytes into network order.
  while (acc > 0xffff) acc = (acc % 65536) + Math.floor(acc / 65536);
  s += ((acc & 0xff) << 8) | (acc >>> 8);
  const done = words << 2;
  return sum16Bytes(b, off + done, len - done, s);
}

/** Folds a sum to 16 bits and complements it: the Internet checksum (RFC 1071). */
export function foldComplement(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** The Internet checksum of `len` bytes at `off`. */
export function checksum(b: Uint8Array, off: number, len: number, init = 0): number {
  return foldComplement(sum16(b, off, len, init));
}

/** The IPv4 header length in bytes of the packet at `off`. */
export function ihlBytes(b: Uint8Array, off: number): number {
  return (b[off] & 0x0f) << 2;
}

/** The IPv4 total length field of the packet at `off`. */
export function totalLength(b: Uint8Array, off: number): number {
  return (b[off + 2] << 8) | b[off + 3];
}

/** The source address (host-order u32) of the IPv4 packet at `off`. */
export function srcAddr(b: Uint8Array, off: number): number {
  return ((b[off + 12] << 24) | (b[off + 13] << 16) | (b[off + 14] << 8) | b[off + 15]) >>> 0;
}

/** The destination address (host-order u32) of the IPv4 packet at `off`. */
export function dstAddr(b: Uint8Array, off: number): number {
  return ((b[off + 16] << 24) | (b[off + 17] << 16) | (b[off + 18] << 8) | b[off + 19]) >>> 0;
}

function putU16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}

function putU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}

/**
 * Checks that `len` bytes at `off` hold exactly one well-formed IPv4 packet: version 4, header
 * length 20..60 bytes within the data, total length equal to `len`, valid header checksum.
 */
export function validateIPv4(b: Uint8Array, off: number, len: number): Malformed {
  if (len < 20) return Malformed.TooShort;
  if ((b[off] >>> 4) !== 4) return Malformed.NotIPv4;
  const ihl = ihlBytes(b, off);
  if (ihl < 20 || ihl > len) return Malformed.BadHeaderLength;
  if (totalLength(b, off) !== len) return Malformed.BadTotalLength;
  if (checksum(b, off, ihl) !== 0) return Malformed.BadChecksum;
  return Malformed.Ok;
}

/**
 * Decrements the TTL of the IPv4 packet at `off` and patches the header checksum incrementally
 * (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), m = the TTL/protocol word). Returns the new TTL;
 * when the TTL is already 0 or 1 the packet is left untouched and 0 is returned (expired).
 */
export function decrementTTL(b: Uint8Array, off: number): number {
  const ttl = b[off + 8];
  if (ttl <= 1) return 0;
  const old = (ttl << 8) | b[off + 9];
  const next = old - 0x100;
  b[off + 8] = ttl - 1;
  let s = (~((b[off + 10] << 8) | b[off + 11]) & 0xffff) + (~old & 0xffff) + next;
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  putU16(b, off + 10, ~s & 0xffff);
  return ttl - 1;
}

/** Writes the header checksum of the IPv4 packet at `off`. */
export function setHeaderChecksum(b: Uint8Array, off: number): void {
  b[off + 10] = 0;
  b[off + 11] = 0;
  putU16(b, off + 10, checksum(b, off, ihlBytes(b, off)));
}

function isIcmpError(type: number): boolean {
  // RFC 1122 3.2.2: never answer an ICMP error with an ICMP error. Queries (echo) are answered.
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

/**
 * Builds an ICMP error about the offending IPv4 packet at `b[off..off+len]` into `out` (at
 * least 576 bytes) and returns its length, or 0 when none must be sent: the offender is an ICMP
 * error, a non-first fragment, too short to quote, or from 0.0.0.0 / a multicast or broadcast
 * address. The error carries the offender's header and first 8 payload bytes (RFC 792), from
 * `src` (our TUN address) to the offender's source, TTL {@link ICMP_TTL}. `mtu` fills the
 * next-hop MTU field of "fragmentation needed".
 */
export function buildIcmpError(
  out: Uint8Array,
  b: Uint8Array,
  off: number,
  len: number,
  type: number,
  code: number,
  src: number,
  mtu = 0,
): number {
  if (len < 20) return 0;
  const ihl = ihlBytes(b, off);
  if (ihl < 20 || ihl > len) return 0;
  const fragOff = ((b[off + 6] << 8) | b[off + 7]) & 0x1fff;
  if (fragOff !== 0) return 0;
  const dst = srcAddr(b, off);
  if (dst === 0 || dst >>> 28 === 0xe || dst === 0xffffffff) return 0;
  if (b[off + 9] === IPPROTO_ICMP && (len <= ihl || isIcmpError(b[off + ihl]))) return 0;
  const quote = Math.min(len, ihl + 8);
  const total = 20 + 8 + quote;
  out.fill(0, 0, 28);
  out[0] = 0x45;
  putU16(out, 2, total);
  out[8] = ICMP_TTL;
  out[9] = IPPROTO_ICMP;
  putU32(out, 12, src);
  putU32(out, 16, dst);
  setHeaderChecksum(out, 0);
  out[20] = type;
  out[21] = code;
  if (type === ICMP_DEST_UNREACH && code === ICMP_FRAG_NEEDED) putU16(out, 26, mtu);
  out.set(b.subarray(off, off + quote), 28);
  putU16(out, 22, checksum(out, 20, 8 + quote));
  return total;
}
