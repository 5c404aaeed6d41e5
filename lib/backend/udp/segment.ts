/**
 * TCP segmentation and checksum completion for TUN offloads (`IFF_VNET_HDR` + `TUN_F_TSO4` +
 * `TUN_F_CSUM`): the kernel hands the data path TCP super-packets of up to 64 KiB with a
 * partial checksum, and the wire must carry ordinary packets of at most the TUN MTU, each with
 * complete checksums (peers, and upstream flannel, expect whole packets).
 *
 * Pure functions over byte arrays, nothing allocated per call.
 */

import { IPPROTO_TCP, setHeaderChecksum, sum16 } from "./packet.ts";

/** virtio_net_hdr fields (little-endian), read from `b` at `off`. */
export function vnetFlags(b: Uint8Array, off: number): number {
  return b[off];
}
/** The GSO type byte of a virtio_net_hdr (ECN bit included). */
export function vnetGsoType(b: Uint8Array, off: number): number {
  return b[off + 1];
}
/** The GSO segment size (MSS for TCP) of a virtio_net_hdr. */
export function vnetGsoSize(b: Uint8Array, off: number): number {
  return b[off + 4] | (b[off + 5] << 8);
}
/** Where checksumming starts, relative to the packet. */
export function vnetCsumStart(b: Uint8Array, off: number): number {
  return b[off + 6] | (b[off + 7] << 8);
}
/** Where the checksum goes, relative to `csum_start`. */
export function vnetCsumOffset(b: Uint8Array, off: number): number {
  return b[off + 8] | (b[off + 9] << 8);
}

/**
 * Completes a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): the field at
 * `start + offset` holds the pseudo-header sum; the one's complement of the sum over
 * `[start, len)` goes there. Offsets are relative to the packet (IPv4 or IPv6) at `off`. False
 * when the offsets do not fit the packet.
 */
export function completeChecksum(
  b: Uint8Array,
  off: number,
  len: number,
  start: number,
  offset: number,
): boolean {
  if (start + offset + 2 > len) return false;
  let s = sum16(b, off + start, len - start);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  let c = ~s & 0xffff;
  // A UDP checksum of 0 means "none" (RFC 768) and is illegal over IPv6 (RFC 8200 §8.1): send
  // 0xffff, the same one's-complement value, instead. IPv4: for UDP (protocol, byte 9) only.
  // IPv6: always, so that UDP behind extension headers (next header, byte 6, not 17) is covered
  // too; for TCP and ICMPv6 the two forms verify alike.
  if (c === 0 && ((b[off] >>> 4) === 6 || b[off + 9] === 17)) c = 0xffff;
  b[off + start + offset] = c >>> 8;
  b[off + start + offset + 1] = c & 0xff;
  return true;
}

/**
 * The header length (IPv4 + TCP) of a TCP/IPv4 super-packet at `off`, or 0 when it is not one
 * that can be segmented (not TCP, bad header lengths, a fragment).
 */
export function tcpHeaderLength(b: Uint8Array, off: number, len: number): number {
  if (len < 40 || (b[off] >>> 4) !== 4 || b[off + 9] !== IPPROTO_TCP) return 0;
  const ihl = (b[off] & 0x0f) << 2;
  if (ihl < 20 || ihl + 20 > len) return 0;
  if ((((b[off + 6] << 8) | b[off + 7]) & 0x3fff) !== 0) return 0; // MF or offset set
  const doff = (b[off + ihl + 12] >>> 4) << 2;
  if (doff < 20 || ihl + doff > len) return 0;
  return ihl + doff;
}

/** The number of segments of `mss` payload bytes a super-packet of `len` bytes makes. */
export function segmentCount(len: number, hdrLen: number, mss: number): number {
  return Math.max(1, Math.ceil((len - hdrLen) / mss));
}

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
const TCP_CWR = 0x80;

/**
 * Copies segment `i` of the super-packet `src[off..off+len]` (headers `hdrLen` bytes, payload
 * in `mss` pieces) to `dst` at `dOff`, headers unchanged: the segment's length. Either family;
 * `src` and `dst` may be one buffer (regions apart). Shared with segment6.ts.
 */
export function copySegment(
  src: Uint8Array,
  off: number,
  len: number,
  hdrLen: number,
  mss: number,
  i: number,
  dst: Uint8Array,
  dOff: number,
): number {
  const pStart = off + hdrLen + i * mss;
  const pLen = Math.min(mss, off + len - pStart);
  if (src === dst) {
    // One buffer (the data path's case): no views to allocate.
    dst.copyWithin(dOff, off, off + hdrLen);
    dst.copyWithin(dOff + hdrLen, pStart, pStart + pLen);
  } else {
    dst.set(src.subarray(off, off + hdrLen), dOff);
    dst.set(src.subarray(pStart, pStart + pLen), dOff + hdrLen);
  }
  return hdrLen + pLen;
}

/**
 * Writes the per-segment TCP fields of segment `i` (TCP header at `t` in `dst`, the
 * super-packet's at `u` in `src`): sequence + i·mss, FIN/PSH only on the `last` segment, CWR
 * only on the first, and a zero checksum to be computed over the finished segment.
 */
export function setSegmentTcp(
  src: Uint8Array,
  u: number,
  dst: Uint8Array,
  t: number,
  i: number,
  mss: number,
  last: boolean,
): void {
  const seq = ((src[u + 4] << 24) | (src[u + 5] << 16) | (src[u + 6] << 8) | src[u + 7]) >>> 0;
  const s2 = (seq + i * mss) >>> 0;
  dst[t + 4] = s2 >>> 24;
  dst[t + 5] = (s2 >>> 16) & 0xff;
  dst[t + 6] = (s2 >>> 8) & 0xff;
  dst[t + 7] = s2 & 0xff;
  let flags = src[u + 13];
  if (!last) flags &= ~(TCP_FIN | TCP_PSH);
  if (i > 0) flags &= ~TCP_CWR;
  dst[t + 13] = flags;
  dst[t + 16] = 0;
  dst[t + 17] = 0;
}

/**
 * The TCP half of appending to a receive run (either family): the TCP header at `t` continues
 * the run whose first TCP header is at `u` (`tcpHdrLen` bytes each, in `b`): same ports, ack,
 * data offset, window and options, sequence number `nextSeq`, flags ACK with at most PSH.
 */
export function tcpContinues(
  b: Uint8Array,
  t: number,
  u: number,
  tcpHdrLen: number,
  nextSeq: number,
): boolean {
  for (let i = 0; i < 4; i++) if (b[t + i] !== b[u + i]) return false; // ports
  const seq = ((b[t + 4] << 24) | (b[t + 5] << 16) | (b[t + 6] << 8) | b[t + 7]) >>> 0;
  if (seq !== nextSeq) return false;
  for (let i = 8; i < 13; i++) if (b[t + i] !== b[u + i]) return false; // ack, data offset
  if ((b[t + 13] & ~TCP_PSH) !== TCP_ACK) return false; // ACK, maybe PSH, nothing else
  if (b[t + 14] !== b[u + 14] || b[t + 15] !== b[u + 15]) return false; // window
  for (let i = 20; i < tcpHdrLen; i++) if (b[t + i] !== b[u + i]) return false; // options
  return true;
}

/**
 * Writes segment `i` of the TCP super-packet `src[off..off+len]` (headers `hdrLen` bytes,
 * payload split in `mss` pieces) to `dst` at `dOff` and returns its length. Per segment: IPv4
 * total length, id + i, header checksum; TCP sequence + i·mss, FIN/PSH only on the last
 * segment, CWR only on the first, full TCP checksum.
 */
export function writeSegment(
  src: Uint8Array,
  off: number,
  len: number,
  hdrLen: number,
  mss: number,
  i: number,
  dst: Uint8Array,
  dOff: number,
): number {
  const ihl = (src[off] & 0x0f) << 2;
  const segLen = copySegment(src, off, len, hdrLen, mss, i, dst, dOff);
  // IPv4 header.
  dst[dOff + 2] = segLen >>> 8;
  dst[dOff + 3] = segLen & 0xff;
  const id = (((src[off + 4] << 8) | src[off + 5]) + i) & 0xffff;
  dst[dOff + 4] = id >>> 8;
  dst[dOff + 5] = id & 0xff;
  setHeaderChecksum(dst, dOff);
  // TCP header.
  const t = dOff + ihl;
  setSegmentTcp(src, off + ihl, dst, t, i, mss, hdrLen + (i + 1) * mss >= len);
  const tcpLen = segLen - ihl;
  // Pseudo-header: source, destination, protocol, TCP length.
  let s = sum16(dst, dOff + 12, 8, IPPROTO_TCP + tcpLen);
  s = sum16(dst, t, tcpLen, s);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  const c = ~s & 0xffff;
  dst[t + 16] = c >>> 8;
  dst[t + 17] = c & 0xff;
  return segLen;
}

/**
 * True when the TCP/IPv4 packet at `p` (`n` bytes) continues the run that starts with the packet
 * at `a` (headers `hdrLen` bytes): same addresses, ports, IP and TCP header fields (except
 * length, id, checksums and sequence), sequence number `nextSeq`, no SYN/FIN/RST/URG/ECE/CWR, a
 * payload of 1..`mss` bytes. Then the two can be one GSO super-packet for the TUN.
 */
export function tcpCanAppend(
  b: Uint8Array,
  a: number,
  p: number,
  n: number,
  hdrLen: number,
  mss: number,
  nextSeq: number,
): boolean {
  if (n <= hdrLen || n - hdrLen > mss || tcpHeaderLength(b, p, n) !== hdrLen) return false;
  // IPv4: version/ihl, TOS, flags (DF), TTL, protocol, addresses.
  if (b[p] !== b[a] || b[p + 1] !== b[a + 1] || (b[p + 6] & 0xe0) !== (b[a + 6] & 0xe0)) {
    return false;
  }
  if (b[p + 8] !== b[a + 8]) return false;
  for (let i = 12; i < 20; i++) if (b[p + i] !== b[a + i]) return false;
  const ihl = (b[a] & 0x0f) << 2;
  return tcpContinues(b, p + ihl, a + ihl, hdrLen - ihl, nextSeq);
}

/** True when the TCP/IPv4 packet at `a` may start a GSO run: ACK with optional PSH only. */
export function tcpCanStartRun(b: Uint8Array, a: number): boolean {
  const ihl = (b[a] & 0x0f) << 2;
  return (b[a + ihl + 13] & ~TCP_PSH) === 0x10;
}

/**
 * Turns the run of `len` bytes at `a` (the first packet's headers followed by the payloads of
 * all segments) into a TUN GSO super-packet: IPv4 total length and header checksum, TCP flags
 * with `psh`, and the pseudo-header sum in the TCP checksum field, as `NEEDS_CSUM` requires; and
 * writes the 10-byte virtio_net_hdr (TCPV4, `mss`) right before it.
 */
export function finishTcpSuper(
  b: Uint8Array,
  a: number,
  len: number,
  hdrLen: number,
  mss: number,
  psh: boolean,
): void {
  const ihl = (b[a] & 0x0f) << 2;
  b[a + 2] = len >>> 8;
  b[a + 3] = len & 0xff;
  setHeaderChecksum(b, a);
  const t = a + ihl;
  if (psh) b[t + 13] |= TCP_PSH;
  let s = sum16(b, a + 12, 8, IPPROTO_TCP + len - ihl);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  b[t + 16] = s >>> 8;
  b[t + 17] = s & 0xff;
  const v = a - 10;
  b[v] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
  b[v + 1] = 1; // VIRTIO_NET_HDR_GSO_TCPV4
  b[v + 2] = hdrLen & 0xff;
  b[v + 3] = hdrLen >>> 8;
  b[v + 4] = mss & 0xff;
  b[v + 5] = mss >>> 8;
  b[v + 6] = ihl; // csum_start
  b[v + 7] = 0;
  b[v + 8] = 16; // csum_offset: the TCP checksum field
  b[v + 9] = 0;
}
