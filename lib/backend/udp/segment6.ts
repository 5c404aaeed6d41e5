/**
 * TCP/IPv6 segmentation and receive coalescing for TUN offloads (`IFF_VNET_HDR` + `TUN_F_TSO6`):
 * the IPv6 counterparts of segment.ts. The kernel hands the data path TCP/IPv6 super-packets of
 * up to 64 KiB (`VIRTIO_NET_HDR_GSO_TCPV6`) with a partial checksum; the wire carries ordinary
 * packets of at most the TUN MTU with complete checksums. On receive, consecutive segments of
 * one flow become one GSO super-packet for the TUN again.
 *
 * Only the 40-byte fixed header directly followed by TCP (next header 6) is handled: a packet
 * with extension headers (hop-by-hop, routing, fragment, destination options, …) is refused
 * (header length 0), and the data path sends such a super-packet nowhere, counting it malformed.
 * Linux's TCP does not add extension headers of its own (BIG TCP's hop-by-hop jumbo header is
 * stripped before a driver sees the packet), so this costs nothing in practice.
 *
 * Pure functions over byte arrays, nothing allocated per call.
 */

import { IPPROTO_TCP, sum16 } from "./packet.ts";
import { copySegment, setSegmentTcp, tcpContinues } from "./segment.ts";

/** The IPv6 fixed header's length (RFC 8200 §3). */
export const IPV6_HEADER = 40;

const TCP_PSH = 0x08;
const TCP_ACK = 0x10;

/**
 * The header length (IPv6 + TCP) of a TCP/IPv6 super-packet of `len` bytes at `off`, or 0 when
 * it is not one that can be segmented: not version 6, a next header other than TCP (extension
 * headers included), a TCP data offset below 20 bytes or past the end of the packet.
 */
export function tcp6HeaderLength(b: Uint8Array, off: number, len: number): number {
  if (len < IPV6_HEADER + 20 || (b[off] >>> 4) !== 6 || b[off + 6] !== IPPROTO_TCP) return 0;
  const doff = (b[off + IPV6_HEADER + 12] >>> 4) << 2;
  if (doff < 20 || IPV6_HEADER + doff > len) return 0;
  return IPV6_HEADER + doff;
}

/**
 * Folds and complements the TCP checksum of the `tcpLen`-byte TCP segment at `t` behind the IPv6
 * header at `ip` (pseudo-header: source, destination, upper-layer length, next header; RFC 8200
 * §8.1), with the checksum field holding 0.
 */
function tcp6Checksum(b: Uint8Array, ip: number, t: number, tcpLen: number): number {
  // The upper-layer length is a 32-bit field: its high half is 0 below 64 KiB, and a 32-bit
  // value adds as its two 16-bit words.
  let s = sum16(b, ip + 8, 32, IPPROTO_TCP + (tcpLen >>> 16) + (tcpLen & 0xffff));
  s = sum16(b, t, tcpLen, s);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/**
 * Writes segment `i` of the TCP/IPv6 super-packet `src[off..off+len]` (headers `hdrLen` bytes
 * from {@link tcp6HeaderLength}, payload split in `mss` pieces) to `dst` at `dOff` and returns
 * its length. Per segment: IPv6 payload length; TCP sequence + i·mss, FIN/PSH only on the last
 * segment, CWR only on the first, the full TCP checksum over the IPv6 pseudo-header. Traffic
 * class, flow label, hop limit, addresses, ports, ack, window and options are the
 * super-packet's. `src` and `dst` may be one buffer (regions apart).
 */
export function writeSegment6(
  src: Uint8Array,
  off: number,
  len: number,
  hdrLen: number,
  mss: number,
  i: number,
  dst: Uint8Array,
  dOff: number,
): number {
  const segLen = copySegment(src, off, len, hdrLen, mss, i, dst, dOff);
  const tcpLen = segLen - IPV6_HEADER;
  dst[dOff + 4] = tcpLen >>> 8;
  dst[dOff + 5] = tcpLen & 0xff;
  const t = dOff + IPV6_HEADER;
  setSegmentTcp(src, off + IPV6_HEADER, dst, t, i, mss, hdrLen + (i + 1) * mss >= len);
  const c = tcp6Checksum(dst, dOff, t, tcpLen);
  dst[t + 16] = c >>> 8;
  dst[t + 17] = c & 0xff;
  return segLen;
}

/**
 * True when the TCP/IPv6 packet at `p` (`n` bytes) continues the run that starts with the
 * packet at `a` (headers `hdrLen` bytes): the same flow and header fields — version, traffic
 * class and flow label, next header (TCP, no extension headers), hop limit, addresses, ports,
 * ack, window, options — sequence number `nextSeq`, flags ACK with at most PSH, and a payload of
 * 1..`mss` bytes. Then the two can be one GSO super-packet for the TUN.
 */
export function tcp6CanAppend(
  b: Uint8Array,
  a: number,
  p: number,
  n: number,
  hdrLen: number,
  mss: number,
  nextSeq: number,
): boolean {
  if (n <= hdrLen || n - hdrLen > mss || tcp6HeaderLength(b, p, n) !== hdrLen) return false;
  // Version, traffic class, flow label (bytes 0..3); next header, hop limit; the addresses.
  for (let i = 0; i < 4; i++) if (b[p + i] !== b[a + i]) return false;
  for (let i = 6; i < IPV6_HEADER; i++) if (b[p + i] !== b[a + i]) return false;
  return tcpContinues(b, p + IPV6_HEADER, a + IPV6_HEADER, hdrLen - IPV6_HEADER, nextSeq);
}

/**
 * True when the TCP/IPv6 packet at `a` (its headers checked by {@link tcp6HeaderLength}) may
 * start a GSO run: flags ACK with optional PSH only (no SYN, FIN, RST, URG, ECE, CWR).
 */
export function tcp6CanStartRun(b: Uint8Array, a: number): boolean {
  return (b[a + IPV6_HEADER + 13] & ~TCP_PSH) === TCP_ACK;
}

/**
 * Turns the run of `len` bytes at `a` (the first packet's headers, `hdrLen` bytes, followed by
 * the payloads of all segments) into a TUN GSO super-packet, as the kernel's
 * `virtio_net_hdr_to_skb` takes it: the IPv6 payload length of the whole run, TCP flags with
 * `psh`, and the pseudo-header sum (not complemented, over the run's TCP length) in the TCP
 * checksum field, as `NEEDS_CSUM` requires (TCP GSO then fixes up each segment's checksum from
 * it); and writes the 10-byte virtio_net_hdr right before it: `NEEDS_CSUM`, `GSO_TCPV6`,
 * hdr_len, gso_size `mss`, csum_start 40 (the TCP header), csum_offset 16 (its checksum).
 * `len - 40` must fit the 16-bit payload length.
 */
export function finishTcp6Super(
  b: Uint8Array,
  a: number,
  len: number,
  hdrLen: number,
  mss: number,
  psh: boolean,
): void {
  const tcpLen = len - IPV6_HEADER;
  b[a + 4] = tcpLen >>> 8;
  b[a + 5] = tcpLen & 0xff;
  const t = a + IPV6_HEADER;
  if (psh) b[t + 13] |= TCP_PSH;
  let s = sum16(b, a + 8, 32, IPPROTO_TCP + tcpLen);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  b[t + 16] = s >>> 8;
  b[t + 17] = s & 0xff;
  const v = a - 10;
  b[v] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
  b[v + 1] = 4; // VIRTIO_NET_HDR_GSO_TCPV6
  b[v + 2] = hdrLen & 0xff;
  b[v + 3] = hdrLen >>> 8;
  b[v + 4] = mss & 0xff;
  b[v + 5] = mss >>> 8;
  b[v + 6] = IPV6_HEADER; // csum_start
  b[v + 7] = 0;
  b[v + 8] = 16; // csum_offset: the TCP checksum field
  b[v + 9] = 0;
}
