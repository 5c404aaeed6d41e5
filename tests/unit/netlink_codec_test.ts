/** The pure codec: alignment macros, TLVs, family headers, address parsing. No privileges. */

import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { NLA_ALIGN, NLMSG_ALIGN } from "../../ffi/netlink/align.ts";
import {
  type Attr,
  attrIP,
  attrNested,
  attrsLen,
  attrString,
  attrU16be,
  attrU32,
  getString,
  getU16be,
  getU32,
  macBytes,
  parseAttrs,
  writeAttrs,
} from "../../ffi/netlink/attr.ts";
import {
  decodeIfAddrMsg,
  decodeIfInfoMsg,
  decodeNdMsg,
  decodeRtMsg,
  encodeIfAddrMsg,
  encodeIfInfoMsg,
  encodeNdMsg,
  encodeRtMsg,
} from "../../ffi/netlink/family.ts";
import { fromHex, toHex } from "./hex.ts";
import { encodeMsg, parseMsgs } from "../../ffi/netlink/message.ts";
import { IP } from "../../ffi/ip.ts";

/** An attribute list encoded on its own (a nested payload), for the tests below. */
function encodeAttrs(attrs: Attr[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(attrsLen(attrs));
  writeAttrs(out, new DataView(out.buffer), 0, attrs);
  return out;
}

Deno.test("NLMSG_ALIGN and NLA_ALIGN round up to 4 as the kernel macros do", async (t) => {
  for (const [n, want] of [[0, 0], [1, 4], [4, 4], [5, 8], [9, 12], [16, 16]]) {
    await t.step(`${n} → ${want}`, () => {
      assertEquals(NLMSG_ALIGN(n), want);
      assertEquals(NLA_ALIGN(n), want);
    });
  }
});

Deno.test("nested attributes encode with padded lengths and decode back", () => {
  const b = encodeAttrs([
    attrString(3, "eth0"), // 4 + 5 = 9 → padded to 12
    attrNested(18, [attrU32(1, 42), attrU16be(15, 8472)]), // 4 + 8 + 8 = 20
  ]);
  assertEquals(
    toHex(b),
    [
      "0900 0300 6574683000 000000", // type 3 "eth0\0", len 9, padded
      "1400 1200", // type 18, len 20 (nest)
      "0800 0100 2a000000", //   type 1 u32 42
      "0600 0f00 2118 0000", //   type 15 be16 8472, padded
    ].join("").replaceAll(" ", ""),
  );
  const top = parseAttrs(b);
  assertEquals(getString(top.get(3)!), "eth0");
  const inner = parseAttrs(top.get(18)!);
  assertEquals([getU32(inner.get(1)!), getU16be(inner.get(15)!)], [42, 8472]);
});

Deno.test("parseMsgs() splits a datagram of several aligned messages", () => {
  const a = encodeMsg({ type: 16, flags: 2, seq: 7, pid: 9 }, encodeIfInfoMsg({ index: 3 }), [
    attrString(3, "v0"),
  ]);
  const done = encodeMsg({ type: 3, flags: 2, seq: 7, pid: 9 }, new Uint8Array(4));
  const dgram = new Uint8Array(NLMSG_ALIGN(a.length) + done.length);
  dgram.set(a);
  dgram.set(done, NLMSG_ALIGN(a.length));
  const msgs = parseMsgs(dgram);
  assertEquals(msgs.map((m) => [m.type, m.flags, m.seq, m.pid, m.len]), [
    [16, 2, 7, 9, a.length],
    [3, 2, 7, 9, 20],
  ]);
  assertEquals(decodeIfInfoMsg(msgs[0].payload).index, 3);
});

Deno.test("family headers round-trip", () => {
  const ifi = { family: 0, type: 1, index: 5, flags: 0x11043, change: 1 };
  assertEquals(decodeIfInfoMsg(encodeIfInfoMsg(ifi)), ifi);
  const ifa = { family: 2, prefixlen: 24, flags: 0x80, scope: 253, index: 7 };
  assertEquals(decodeIfAddrMsg(encodeIfAddrMsg(ifa)), ifa);
  const rt = {
    family: 2,
    dstLen: 16,
    srcLen: 0,
    tos: 0,
    table: 254,
    protocol: 3,
    scope: 0,
    type: 1,
    flags: 4,
  };
  assertEquals(decodeRtMsg(encodeRtMsg(rt)), rt);
  const nd = { family: 7, index: 4, state: 0xc0, flags: 2, type: 0 };
  assertEquals(decodeNdMsg(encodeNdMsg(nd)), nd);
});

Deno.test("address helpers accept what iproute2 prints and reject the rest", () => {
  assertEquals(Array.from(macBytes("0e:AA:bb:cc:dd:ee")), [14, 170, 187, 204, 221, 238]);
  // Address text is parsed by ffi/ip.ts (tests/unit/ffi_ip_test.ts); the attribute takes its bytes.
  assertEquals(attrIP(1, IP.mustParse("10.1.15.0")).value, Uint8Array.from([10, 1, 15, 0]));
  assertEquals((attrIP(1, IP.mustParse("2001:db8::1")).value as Uint8Array).length, 16);
  throws(() => macBytes("0e:aa:bb:cc:dd"), /Invalid MAC address: 0e:aa:bb:cc:dd/);
  throws(() => fromHex("abc"), /Invalid hex string/);
});
