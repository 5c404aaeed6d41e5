/** Packet helpers of the udp data path: checksums, validation, TTL, ICMP errors, segmentation. */

import assert from "node:assert/strict";
import {
  buildIcmpError,
  checksum,
  decrementTTL,
  dstAddr,
  foldComplement,
  Malformed,
  setHeaderChecksum,
  srcAddr,
  sum16,
  sum16Bytes,
  validateIPv4,
} from "../../lib/backend/udp/packet.ts";
import {
  completeChecksum,
  finishTcpSuper,
  segmentCount,
  tcpCanAppend,
  tcpCanStartRun,
  tcpHeaderLength,
  writeSegment,
} from "../../lib/backend/udp/segment.ts";

/** An IPv4 packet 10.1.1.5 → 10.1.2.7 with `payload` after a 20-byte header. */
function ipv4(proto: number, payload: number[], ttl = 64): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  p.set([0x45, 0, 0, 0, 0xab, 0xcd, 0x40, 0, ttl, proto, 0, 0, 10, 1, 1, 5, 10, 1, 2, 7]);
  p[2] = p.length >> 8;
  p[3] = p.length & 0xff;
  p.set(payload, 20);
  setHeaderChecksum(p, 0);
  return p;
}

Deno.test("checksum() matches the RFC 1071 example and verifies to 0", () => {
  // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 (checksum 220d).
  assert.equal(
    checksum(new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0, 8),
    0x220d,
  );
  const p = ipv4(17, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(checksum(p, 0, 20), 0);
  assert.equal(checksum(new Uint8Array([1, 2, 3]), 0, 3), ~(0x0102 + 0x0300) & 0xffff);
});

Deno.test("validateIPv4() refuses what is not exactly one well-formed IPv4 packet", async (t) => {
  const good = ipv4(17, new Array(12).fill(0));
  const rows: [string, (p: Uint8Array) => number, Malformed][] = [
    ["well-formed", () => good.length, Malformed.Ok],
    ["shorter than a header", () => 19, Malformed.TooShort],
    ["IPv6 version nibble", (p) => (p[0] = 0x65, good.length), Malformed.NotIPv4],
    ["header length 16", (p) => (p[0] = 0x44, good.length), Malformed.BadHeaderLength],
    ["header longer than data", (p) => (p[0] = 0x4f, 24), Malformed.BadHeaderLength],
    ["datagram shorter than total length", () => good.length - 1, Malformed.BadTotalLength],
    ["datagram longer than total length", () => good.length + 4, Malformed.BadTotalLength],
    ["bad checksum", (p) => (p[10] ^= 1, good.length), Malformed.BadChecksum],
  ];
  for (const [name, mutate, want] of rows) {
    await t.step(name, () => {
      const p = new Uint8Array(64);
      p.set(good);
      const len = mutate(p);
      assert.equal(validateIPv4(p, 0, len), want);
    });
  }
  await t.step("at an offset", () => {
    const b = new Uint8Array(10 + good.length);
    b.set(good, 10);
    assert.equal(validateIPv4(b, 10, good.length), Malformed.Ok);
    assert.equal(srcAddr(b, 10), 0x0a010105);
    assert.equal(dstAddr(b, 10), 0x0a010207);
  });
});

Deno.test("decrementTTL() keeps the header checksum valid, incrementally, for every TTL", () => {
  for (let ttl = 2; ttl <= 255; ttl++) {
    for (const id of [0x0000, 0xabcd, 0xffff, 0x1234]) {
      const p = ipv4(6, [], ttl);
      p[4] = id >> 8;
      p[5] = id & 0xff;
      setHeaderChecksum(p, 0);
      assert.equal(decrementTTL(p, 0), ttl - 1);
      assert.equal(p[8], ttl - 1);
      assert.equal(checksum(p, 0, 20), 0, `ttl ${ttl} id ${id}`);
    }
  }
});

Deno.test("decrementTTL() reports expiry for TTL 1 and 0 and leaves the packet alone", () => {
  for (const ttl of [0, 1]) {
    const p = ipv4(6, [], ttl);
    const before = [...p];
    assert.equal(decrementTTL(p, 0), 0);
    assert.deepEqual([...p], before);
  }
});

Deno.test("buildIcmpError() quotes header + 8 bytes, from our address, both checksums valid", () => {
  const off = ipv4(17, [0x1f, 0x90, 0x00, 0x35, 0, 20, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd]);
  const out = new Uint8Array(600);
  const n = buildIcmpError(out, off, 0, off.length, 3, 0, 0x0a010100);
  assert.equal(n, 20 + 8 + 28);
  assert.equal(validateIPv4(out, 0, n), Malformed.Ok);
  assert.equal(out[8], 8, "TTL 8 as upstream");
  assert.equal(out[9], 1, "ICMP");
  assert.equal(srcAddr(out, 0), 0x0a010100);
  assert.equal(dstAddr(out, 0), 0x0a010105);
  assert.deepEqual([out[20], out[21]], [3, 0]);
  assert.equal(checksum(out, 20, n - 20), 0);
  assert.deepEqual([...out.subarray(28, n)], [...off.subarray(0, 28)]);
});

Deno.test("buildIcmpError() answers an echo but never an ICMP error or a later fragment", () => {
  const out = new Uint8Array(600);
  const echo = ipv4(1, [8, 0, 0, 0, 0, 1, 0, 1]);
  assert.ok(buildIcmpError(out, echo, 0, echo.length, 3, 0, 1) > 0);
  const err = ipv4(1, [3, 1, 0, 0, 0, 0, 0, 0]);
  assert.equal(buildIcmpError(out, err, 0, err.length, 3, 0, 1), 0);
  const frag = ipv4(17, new Array(8).fill(0));
  frag[7] = 10;
  assert.equal(buildIcmpError(out, frag, 0, frag.length, 3, 0, 1), 0);
  const fromZero = ipv4(17, new Array(8).fill(0));
  fromZero.fill(0, 12, 16);
  assert.equal(buildIcmpError(out, fromZero, 0, fromZero.length, 3, 0, 1), 0);
});

/** A TCP/IPv4 super-packet with `n` payload bytes and a pseudo-header partial checksum. */
function tcpSuper(n: number, flags = 0x18): Uint8Array {
  const tcp = new Array(20).fill(0);
  tcp.splice(0, 4, 0x13, 0x88, 0x95, 0x2a); // ports 5000 → 38186
  tcp.splice(4, 4, 0xff, 0xff, 0xff, 0x00); // seq near the wrap
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  const payload = Array.from({ length: n }, (_, i) => (i * 7) & 0xff);
  const p = ipv4(6, [...tcp, ...payload]);
  return p;
}

function tcpChecksumOk(p: Uint8Array, len: number): boolean {
  const ihl = (p[0] & 15) * 4;
  const pseudo = new Uint8Array(12 + len - ihl);
  pseudo.set(p.subarray(12, 20), 0);
  pseudo[9] = 6;
  pseudo[10] = (len - ihl) >> 8;
  pseudo[11] = (len - ihl) & 0xff;
  pseudo.set(p.subarray(ihl, len), 12);
  return checksum(pseudo, 0, pseudo.length) === 0;
}

Deno.test("writeSegment() cuts a TCP super-packet into valid packets with advancing seq", () => {
  const mss = 1000;
  const sup = tcpSuper(3500, 0x19); // PSH|ACK|FIN
  const hdr = tcpHeaderLength(sup, 0, sup.length);
  assert.equal(hdr, 40);
  const n = segmentCount(sup.length, hdr, mss);
  assert.equal(n, 4);
  const out = new Uint8Array(4 * 1100);
  let pos = 0;
  const lens: number[] = [];
  for (let i = 0; i < n; i++) {
    const len = writeSegment(sup, 0, sup.length, hdr, mss, i, out, pos);
    const seg = out.subarray(pos, pos + len);
    assert.equal(validateIPv4(seg, 0, len), Malformed.Ok, `segment ${i} IPv4`);
    assert.ok(tcpChecksumOk(seg, len), `segment ${i} TCP checksum`);
    const seq = ((seg[24] << 24) | (seg[25] << 16) | (seg[26] << 8) | seg[27]) >>> 0;
    assert.equal(seq, (0xffffff00 + i * mss) >>> 0);
    assert.equal((seg[4] << 8) | seg[5], (0xabcd + i) & 0xffff, "IP id advances");
    assert.equal(seg[33] & 0x09, i === n - 1 ? 0x09 : 0, "FIN/PSH only on the last");
    assert.deepEqual([...seg.subarray(40)], [
      ...sup.subarray(40 + i * mss, 40 + i * mss + len - 40),
    ]);
    lens.push(len);
    pos += len;
  }
  assert.deepEqual(lens, [1040, 1040, 1040, 540]);
});

Deno.test("completeChecksum() finishes a pseudo-header partial checksum", () => {
  const p = tcpSuper(100);
  // What the kernel leaves with TUN_F_CSUM: the folded pseudo-header sum, not complemented.
  const tcpLen = p.length - 20;
  let s = 6 + tcpLen;
  for (let i = 12; i < 20; i += 2) s += (p[i] << 8) | p[i + 1];
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  p[36] = s >> 8;
  p[37] = s & 0xff;
  assert.ok(completeChecksum(p, 0, p.length, 20, 16));
  assert.ok(tcpChecksumOk(p, p.length));
  assert.equal(
    completeChecksum(p, 0, p.length, p.length - 1, 0),
    false,
    "offsets beyond the packet",
  );
});

Deno.test("tcpHeaderLength() refuses non-TCP, fragments and bad data offsets", () => {
  assert.equal(tcpHeaderLength(ipv4(17, new Array(40).fill(0)), 0, 60), 0);
  const frag = tcpSuper(10);
  frag[6] = 0x20; // MF
  assert.equal(tcpHeaderLength(frag, 0, frag.length), 0);
  const bad = tcpSuper(10);
  bad[32] = 0x20; // data offset 8 bytes
  assert.equal(tcpHeaderLength(bad, 0, bad.length), 0);
});

Deno.test("tcpCanAppend() and finishTcpSuper() merge consecutive segments into a GSO packet", () => {
  const mss = 1000;
  const sup = tcpSuper(2500, 0x18); // ACK|PSH
  const hdr = tcpHeaderLength(sup, 0, sup.length);
  // Three wire segments, back to back as a UDP_GRO datagram delivers them, after 10 bytes of room.
  const buf = new Uint8Array(10 + 3 * 1040);
  const lens: number[] = [];
  let pos = 10;
  for (let i = 0; i < 3; i++) {
    const n = writeSegment(sup, 0, sup.length, hdr, mss, i, buf, pos);
    lens.push(n);
    pos += n;
  }
  const a = 10;
  const seq0 = 0xffffff00;
  assert.ok(tcpCanStartRun(buf, a));
  assert.ok(tcpCanAppend(buf, a, a + 1040, 1040, hdr, mss, (seq0 + 1000) >>> 0));
  assert.equal(tcpCanAppend(buf, a, a + 1040, 1040, hdr, mss, (seq0 + 999) >>> 0), false, "gap");
  assert.equal(tcpCanAppend(buf, a, a + 1040, 1040, hdr, 999, (seq0 + 1000) >>> 0), false, "> mss");
  // Merge by hand as the Worker does: payloads moved behind the first packet.
  let end = a + 1040;
  for (const [i, n] of [[1, 1040], [2, 540]]) {
    const p = a + i * 1040;
    buf.copyWithin(end, p + hdr, p + n);
    end += n - hdr;
  }
  finishTcpSuper(buf, a, end - a, hdr, mss, true);
  assert.equal(end - a, 40 + 2500);
  assert.deepEqual([...buf.subarray(0, 10)], [1, 1, 40, 0, 0xe8, 3, 20, 0, 16, 0], "vnet header");
  assert.equal(validateIPv4(buf, a, end - a), Malformed.Ok);
  assert.deepEqual([...buf.subarray(a + 40, end)], [...sup.subarray(40)], "payload in order");
  // The TCP checksum field holds the pseudo-header sum: completing it gives a valid checksum.
  assert.ok(completeChecksum(buf, a, end - a, 20, 16));
  assert.ok(tcpChecksumOk(buf.subarray(a, end), end - a));
});

Deno.test("tcpCanStartRun() refuses SYN, FIN, RST and ECN-marked segments", () => {
  for (const flags of [0x02, 0x11, 0x04, 0x50, 0x90]) {
    assert.equal(tcpCanStartRun(tcpSuper(10, flags), 0), false, `flags ${flags.toString(16)}`);
  }
  assert.ok(tcpCanStartRun(tcpSuper(10, 0x10), 0));
});

Deno.test("sum16() (32-bit words) equals the byte-by-byte sum at every offset and length", () => {
  const buf = new Uint8Array(4096 + 16);
  crypto.getRandomValues(buf);
  const view = buf.subarray(3); // a view whose byteOffset is odd, too
  for (const b of [buf, view]) {
    for (let off = 0; off < 8; off++) {
      for (const len of [0, 1, 63, 64, 65, 66, 67, 1000, 1473, 4000]) {
        assert.equal(
          foldComplement(sum16(b, off, len, 0x1234)),
          foldComplement(sum16Bytes(b, off, len, 0x1234)),
          `off ${off} len ${len} byteOffset ${b.byteOffset}`,
        );
      }
    }
  }
  buf.fill(0xff);
  assert.equal(foldComplement(sum16(buf, 0, 4096)), foldComplement(sum16Bytes(buf, 0, 4096)));
});

Deno.test("writeSegment() within one buffer (copyWithin) writes what the two-buffer form writes", () => {
  const sup = tcpSuper(3000);
  const hdr = tcpHeaderLength(sup, 0, sup.length);
  const one = new Uint8Array(8192);
  one.set(sup, 5000);
  const other = new Uint8Array(4096);
  let a = 10;
  let b = 10;
  for (let i = 0; i < 3; i++) {
    const n1 = writeSegment(one, 5000, sup.length, hdr, 1100, i, one, a);
    const n2 = writeSegment(sup, 0, sup.length, hdr, 1100, i, other, b);
    assert.equal(n1, n2);
    assert.deepEqual([...one.subarray(a, a + n1)], [...other.subarray(b, b + n2)]);
    a += n1;
    b += n2;
  }
});
