/**
 * TCP/IPv6 segmentation and receive coalescing (lib/backend/udp/segment6.ts), and
 * completeChecksum() over IPv6. Checksums are verified with the test's own RFC 1071 sum over an
 * explicitly built RFC 8200 §8.1 pseudo-header, not with the code under test.
 */

import assert from "node:assert/strict";
import {
  finishTcp6Super,
  tcp6CanAppend,
  tcp6CanStartRun,
  tcp6HeaderLength,
  writeSegment6,
} from "../../lib/backend/udp/segment6.ts";
import { completeChecksum, segmentCount } from "../../lib/backend/udp/segment.ts";

const SRC = [0xfc, 0, 0, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0, 0, 0, 1]; // fc00:0:0:21::1
const DST = [0xfc, 0, 0, 0, 0, 0, 0, 0x22, 0, 0, 0, 0, 0, 0, 0, 5]; // fc00:0:0:22::5
const SEQ0 = 0xffffff00; // wraps during the test
const ACK = 0x01020304;
/** TCP options: NOP NOP timestamp (12 bytes, TCP header 32). */
const OPTS = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];

/**
 * A TCP/IPv6 packet fc00:0:0:21::1 → fc00:0:0:22::5, ports 40000 → 5201, with `payload` bytes
 * (a counting pattern), traffic class 0x2e, flow label 0x12345, hop limit 63, timestamp options.
 */
function tcp6(payload: number, flags = 0x10, nextHeader = 6): Uint8Array {
  const p = new Uint8Array(72 + payload);
  p.set([0x62, 0xe1, 0x23, 0x45]); // version 6, traffic class 0x2e, flow label 0x12345
  p[4] = (32 + payload) >> 8;
  p[5] = (32 + payload) & 0xff;
  p[6] = nextHeader;
  p[7] = 63;
  p.set(SRC, 8);
  p.set(DST, 24);
  const t = 40;
  p.set([0x9c, 0x40, 0x14, 0x51], t); // 40000 → 5201
  p.set([SEQ0 >>> 24, (SEQ0 >>> 16) & 255, (SEQ0 >>> 8) & 255, SEQ0 & 255], t + 4);
  p.set([1, 2, 3, 4], t + 8);
  p[t + 12] = 8 << 4; // data offset 32 bytes
  p[t + 13] = flags;
  p[t + 14] = 0x01;
  p[t + 15] = 0xf6; // window 502
  p.set(OPTS, t + 20);
  for (let i = 0; i < payload; i++) p[72 + i] = (i * 7 + 3) & 0xff;
  return p;
}

/** RFC 1071, byte by byte: the folded 16-bit one's-complement sum. */
function onesSum(bytes: number[]): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i] << 8) | (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** The upper-layer checksum of the IPv6 packet `p` verifies (pseudo-header built here). */
function upperChecksumOk(p: Uint8Array, proto: number): boolean {
  const upper = [...p.subarray(40)];
  const n = upper.length;
  const pseudo = [
    ...p.subarray(8, 40),
    (n >>> 24) & 255,
    (n >>> 16) & 255,
    (n >>> 8) & 255,
    n & 255,
    0,
    0,
    0,
    proto,
  ];
  return onesSum([...pseudo, ...upper]) === 0xffff;
}

function u32(p: Uint8Array, o: number): number {
  return ((p[o] << 24) | (p[o + 1] << 16) | (p[o + 2] << 8) | p[o + 3]) >>> 0;
}

Deno.test("tcp6HeaderLength(): 40 + the TCP data offset", () => {
  const p = tcp6(100);
  assert.equal(tcp6HeaderLength(p, 0, p.length), 72);
  const q = new Uint8Array(7 + p.length);
  q.set(p, 7);
  assert.equal(tcp6HeaderLength(q, 7, p.length), 72, "at an offset");
});

Deno.test("tcp6HeaderLength() refuses extension headers, non-TCP, IPv4 and bad lengths", () => {
  for (const nh of [0, 43, 44, 60, 17, 58]) { // hop-by-hop, routing, fragment, dest opts, UDP, ICMPv6
    const p = tcp6(100, 0x10, nh);
    assert.equal(tcp6HeaderLength(p, 0, p.length), 0, `next header ${nh}`);
  }
  const v4 = tcp6(100);
  v4[0] = 0x45;
  assert.equal(tcp6HeaderLength(v4, 0, v4.length), 0, "version 4");
  const small = tcp6(100);
  small[52] = 4 << 4; // data offset 16 bytes
  assert.equal(tcp6HeaderLength(small, 0, small.length), 0, "data offset below 20");
  const big = tcp6(0);
  big[52] = 15 << 4; // 60 bytes of TCP header in a 72-byte packet
  assert.equal(tcp6HeaderLength(big, 0, big.length), 0, "data offset past the end");
  assert.equal(tcp6HeaderLength(tcp6(0), 0, 59), 0, "shorter than IPv6 + TCP");
});

Deno.test("writeSegment6() cuts a TCP/IPv6 super-packet into valid packets", () => {
  const mss = 1000;
  const sup = tcp6(3500, 0x99); // CWR|ACK|PSH|FIN
  const hdr = tcp6HeaderLength(sup, 0, sup.length);
  const n = segmentCount(sup.length, hdr, mss);
  assert.equal(n, 4);
  const out = new Uint8Array(4 * 1100);
  let pos = 3;
  const lens: number[] = [];
  for (let i = 0; i < n; i++) {
    const len = writeSegment6(sup, 0, sup.length, hdr, mss, i, out, pos);
    const seg = out.subarray(pos, pos + len);
    lens.push(len);
    assert.equal((seg[4] << 8) | seg[5], len - 40, `segment ${i} payload length`);
    assert.deepEqual([...seg.subarray(0, 4)], [0x62, 0xe1, 0x23, 0x45], "class and flow label");
    assert.deepEqual([seg[6], seg[7]], [6, 63], "next header, hop limit");
    assert.deepEqual([...seg.subarray(8, 40)], [...SRC, ...DST], "addresses");
    assert.equal(u32(seg, 44), (SEQ0 + i * mss) >>> 0, `segment ${i} seq`);
    assert.equal(u32(seg, 48), ACK, "ack");
    const flags = seg[53];
    assert.equal(flags & 0x09, i === n - 1 ? 0x09 : 0, "FIN/PSH only on the last");
    assert.equal(flags & 0x80, i === 0 ? 0x80 : 0, "CWR only on the first");
    assert.equal(flags & 0x10, 0x10, "ACK on all");
    assert.deepEqual([...seg.subarray(60, 72)], OPTS, "options");
    assert.ok(upperChecksumOk(seg, 6), `segment ${i} TCP checksum`);
    assert.deepEqual(
      [...seg.subarray(72)],
      [...sup.subarray(72 + i * mss, 72 + i * mss + len - 72)],
      `segment ${i} payload`,
    );
    pos += len;
  }
  assert.deepEqual(lens, [1072, 1072, 1072, 572]);
  // The checksum is not just "valid": a flipped payload byte breaks it.
  const seg0 = out.subarray(3, 3 + 1072);
  seg0[100] ^= 1;
  assert.equal(upperChecksumOk(seg0, 6), false);
});

Deno.test("writeSegment6() within one buffer writes what the two-buffer form writes", () => {
  const sup = tcp6(3000, 0x18);
  const hdr = tcp6HeaderLength(sup, 0, sup.length);
  const one = new Uint8Array(8192);
  one.set(sup, 5000);
  const other = new Uint8Array(4096);
  let a = 10, b = 10;
  for (let i = 0; i < 3; i++) {
    const n1 = writeSegment6(one, 5000, sup.length, hdr, 1100, i, one, a);
    const n2 = writeSegment6(sup, 0, sup.length, hdr, 1100, i, other, b);
    assert.equal(n1, n2);
    assert.deepEqual([...one.subarray(a, a + n1)], [...other.subarray(b, b + n2)]);
    a += n1;
    b += n2;
  }
});

/** Segments of `sup` (mss 1000) back to back after 10 bytes of room: buffer and lengths. */
function wireSegments(sup: Uint8Array, mss: number): { buf: Uint8Array; lens: number[] } {
  const hdr = tcp6HeaderLength(sup, 0, sup.length);
  const n = segmentCount(sup.length, hdr, mss);
  const buf = new Uint8Array(10 + n * (hdr + mss));
  const lens: number[] = [];
  let pos = 10;
  for (let i = 0; i < n; i++) {
    const len = writeSegment6(sup, 0, sup.length, hdr, mss, i, buf, pos);
    lens.push(len);
    pos += len;
  }
  return { buf, lens };
}

Deno.test("tcp6CanAppend() and finishTcp6Super(): segments → run → a TCPV6 GSO super-packet", () => {
  const mss = 1000;
  const sup = tcp6(2500, 0x18); // ACK|PSH
  const hdr = 72;
  const { buf, lens } = wireSegments(sup, mss);
  assert.deepEqual(lens, [1072, 1072, 572]);
  const a = 10;
  assert.ok(tcp6CanStartRun(buf, a));
  // Merge as the Worker does: each payload moved behind the run after its check.
  let end = a + lens[0];
  let next = (SEQ0 + mss) >>> 0;
  let p = a + lens[0];
  for (const n of lens.slice(1)) {
    assert.ok(tcp6CanAppend(buf, a, p, n, hdr, mss, next), `segment at ${p} appends`);
    buf.copyWithin(end, p + hdr, p + n);
    end += n - hdr;
    next = (next + n - hdr) >>> 0;
    p += n;
  }
  const len = end - a;
  assert.equal(len, 72 + 2500);
  finishTcp6Super(buf, a, len, hdr, mss, true);
  // virtio_net_hdr: NEEDS_CSUM, GSO_TCPV6, hdr_len 72, gso_size 1000, csum_start 40, offset 16.
  assert.deepEqual([...buf.subarray(0, 10)], [1, 4, 72, 0, 0xe8, 3, 40, 0, 16, 0]);
  const s = buf.subarray(a, end);
  assert.equal((s[4] << 8) | s[5], 32 + 2500, "payload length of the run");
  assert.equal(u32(s, 44), SEQ0, "the first segment's seq");
  assert.equal(s[53], 0x18, "ACK|PSH");
  assert.deepEqual([...s.subarray(72)], [...sup.subarray(72)], "payload in order");
  // The checksum field holds the pseudo-header sum (not complemented), as NEEDS_CSUM wants.
  const tcpLen = len - 40;
  const pseudo = onesSum([...s.subarray(8, 40), 0, 0, tcpLen >> 8, tcpLen & 255, 0, 0, 0, 6]);
  assert.equal((s[56] << 8) | s[57], pseudo);
  // Completing it (what the kernel's checksum offload does) gives a valid TCP checksum.
  assert.ok(completeChecksum(buf, a, len, 40, 16));
  assert.ok(upperChecksumOk(s, 6));
});

Deno.test("tcp6CanAppend() refuses another flow, a gap, an oversize payload and flags", () => {
  const mss = 1000;
  const sup = tcp6(2500, 0x10);
  const { buf } = wireSegments(sup, mss);
  const a = 10, p = a + 1072, hdr = 72, next = (SEQ0 + mss) >>> 0;
  assert.ok(tcp6CanAppend(buf, a, p, 1072, hdr, mss, next));
  assert.equal(tcp6CanAppend(buf, a, p, 1072, hdr, mss, (next + 1) >>> 0), false, "gap");
  assert.equal(tcp6CanAppend(buf, a, p, 1072, hdr, 999, next), false, "payload > mss");
  assert.equal(tcp6CanAppend(buf, a, p, 72, hdr, mss, next), false, "no payload");
  const cases: [string, number, number][] = [
    ["flow label", 3, 0x46],
    ["traffic class", 1, 0xf1],
    ["hop limit", 7, 62],
    ["source address", 8 + 15, 2],
    ["destination address", 24 + 15, 6],
    ["source port", 40, 0x9d],
    ["ack", 40 + 11, 5],
    ["SYN", 40 + 13, 0x12],
    ["FIN", 40 + 13, 0x11],
    ["ECE", 40 + 13, 0x50],
    ["window", 40 + 15, 0xf7],
    ["option", 60 + 7, 8],
    ["next header", 6, 17],
  ];
  for (const [what, at, value] of cases) {
    const b = buf.slice();
    b[p + at] = value;
    assert.equal(tcp6CanAppend(b, a, p, 1072, hdr, mss, next), false, what);
  }
  for (const flags of [0x02, 0x11, 0x04, 0x50, 0x90, 0x30]) {
    const b = buf.slice();
    b[a + 53] = flags;
    assert.equal(tcp6CanStartRun(b, a), false, `start with flags ${flags.toString(16)}`);
  }
  assert.ok(tcp6CanStartRun(buf, a));
});

Deno.test("completeChecksum() over IPv6: TCP, and UDP where 0 becomes 0xffff", () => {
  const p = tcp6(301);
  const tcpLen = p.length - 40;
  p[56] = 0;
  p[57] = 0;
  const ph = onesSum([...p.subarray(8, 40), 0, 0, tcpLen >> 8, tcpLen & 255, 0, 0, 0, 6]);
  p[56] = ph >> 8;
  p[57] = ph & 0xff;
  assert.ok(completeChecksum(p, 0, p.length, 40, 16));
  assert.ok(upperChecksumOk(p, 6));

  // UDP/IPv6 whose payload makes the complemented sum 0: the field must be 0xffff, never 0.
  const u = new Uint8Array(40 + 8 + 2);
  u.set(tcp6(0).subarray(0, 40));
  u[4] = 0;
  u[5] = 10;
  u[6] = 17;
  u.set([0x9c, 0x40, 0x14, 0x51, 0, 10, 0, 0], 40);
  const pseudo = [...u.subarray(8, 40), 0, 0, 0, 10, 0, 0, 0, 17];
  const partial = onesSum(pseudo); // what the kernel leaves in the field
  // Choose the payload word so that the whole sum is 0xffff (complement 0).
  const rest = onesSum([...pseudo, ...u.subarray(40)]);
  const word = 0xffff - rest;
  u[48] = word >> 8;
  u[49] = word & 0xff;
  u[46] = partial >> 8;
  u[47] = partial & 0xff;
  assert.ok(completeChecksum(u, 0, u.length, 40, 6));
  assert.deepEqual([u[46], u[47]], [0xff, 0xff], "UDP over IPv6 never carries checksum 0");
  assert.ok(upperChecksumOk(u, 17));
});
