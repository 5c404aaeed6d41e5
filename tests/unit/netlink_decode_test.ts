/**
 * Decoding real kernel replies (kernel 6.18), kept as hex in tests/fixtures/netlink/ by
 * capture.sh: one line per datagram iproute2 received (strace -e read of recvmsg), so a file
 * also holds the replies of iproute2's own side requests. State of the namespace when captured:
 * v0 (index 3, 10.0.0.1/24) paired with v1, flannel.1 (index 5, vxlan id 1 local 10.0.0.1 dev v0
 * dstport 8472 nolearning ttl 0, mtu 1450, MAC 0e:11:22:33:44:55, 10.1.15.0/32), routes
 * 10.1.7.0/24 via 10.1.7.0 onlink and 10.2.0.0/16 via 10.0.0.2, ARP 10.1.7.0 → 0e:aa:bb:cc:dd:ee,
 * FDB 0e:aa:bb:cc:dd:ee → 10.0.0.2.
 */

import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { attrString, parseAttrs } from "../../ffi/netlink/attr.ts";
import { fromHex } from "./hex.ts";
import { decodeError, encodeMsg, type NlMsg, parseMsgs } from "../../ffi/netlink/message.ts";
import {
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_MULTI,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
} from "../../ffi/netlink/consts.ts";
import {
  decodeAddr,
  decodeFdb,
  decodeLink,
  decodeNeigh,
  decodeRoute,
} from "../../ffi/netlink/decode.ts";
import { decodeEvent } from "../../ffi/netlink/events.ts";
import { ip, net } from "../helpers.ts";

function fixture(name: string): NlMsg[] {
  const text = Deno.readTextFileSync(new URL(`../fixtures/netlink/${name}`, import.meta.url));
  return text.trim().split("\n").flatMap((line) => parseMsgs(fromHex(line)));
}

Deno.test("decodeLink() reads a vxlan RTM_NEWLINK reply with its IFLA_INFO_DATA", () => {
  const link = fixture("reply_link_get_vxlan.hex")
    .filter((m) => m.type === RTM_NEWLINK)
    .map(decodeLink)
    .find((l) => l.name === "flannel.1");
  assertEquals(link, {
    index: 5,
    name: "flannel.1",
    kind: "vxlan",
    mtu: 1450,
    mac: "0e:11:22:33:44:55",
    flags: 0x11043, // UP|BROADCAST|RUNNING|MULTICAST|LOWER_UP
    up: true,
    vxlan: {
      vni: 1,
      local: ip("10.0.0.1"),
      lowerIndex: 3,
      port: 8472,
      learning: false,
      ttl: 0,
      group: null,
      gbp: false,
      proxy: false,
      l2miss: false,
      l3miss: false,
    },
  });
});

Deno.test("decodeLink() reads the vxlan modes: learning, proxy, l2miss, l3miss, gbp", async (t) => {
  // capture.sh: flannel.2 as upstream v0.4.0 leaves it (`learning proxy l2miss l3miss`,
  // IFLA_VXLAN_PROXY/L2MISS/L3MISS are u8 1), flannel.3 `nolearning gbp` (IFLA_VXLAN_GBP a flag).
  const vxlanOf = (file: string, name: string) =>
    fixture(file).filter((m) => m.type === RTM_NEWLINK).map(decodeLink).find((l) => l.name === name)
      ?.vxlan;
  const base = { local: ip("10.0.0.1"), lowerIndex: 3, ttl: 0, group: null };
  await t.step("an upstream v0.4.0 device", () => {
    assertEquals(vxlanOf("reply_link_get_vxlan_modes.hex", "flannel.2"), {
      ...base,
      vni: 2,
      port: 8473,
      learning: true,
      gbp: false,
      proxy: true,
      l2miss: true,
      l3miss: true,
    });
  });
  await t.step("a GBP device", () => {
    assertEquals(vxlanOf("reply_link_get_vxlan_gbp.hex", "flannel.3"), {
      ...base,
      vni: 3,
      port: 8474,
      learning: false,
      gbp: true,
      proxy: false,
      l2miss: false,
      l3miss: false,
    });
  });
});

Deno.test("a link dump is multipart and ends with NLMSG_DONE", () => {
  const msgs = fixture("reply_link_dump.hex").filter((m) => m.seq !== 0);
  ok(msgs.every((m) => (m.flags & NLM_F_MULTI) !== 0));
  assertEquals(msgs.at(-1)!.type, NLMSG_DONE);
  assertEquals(decodeError(msgs.at(-1)!).errno, 0);
  const links = msgs.filter((m) => m.type === RTM_NEWLINK).map(decodeLink);
  assertEquals(links.map((l) => [l.index, l.name, l.kind]), [
    [1, "lo", null],
    [2, "v1", "veth"],
    [3, "v0", "veth"],
    [5, "flannel.1", "vxlan"],
  ]);
  assertEquals(links[0].mac, "00:00:00:00:00:00");
  assertEquals(links[0].mtu, 65536);
});

Deno.test("decodeAddr() reads an IPv4 address dump", () => {
  const addrs = fixture("reply_addr_dump.hex").filter((m) => m.type === RTM_NEWADDR).map(
    decodeAddr,
  );
  assertEquals(addrs, [
    { index: 1, address: ip("127.0.0.1"), prefix: 8, scope: 254 },
    { index: 3, address: ip("10.0.0.1"), prefix: 24, scope: 0 },
    { index: 5, address: ip("10.1.15.0"), prefix: 32, scope: 0 },
  ]);
});

Deno.test("decodeRoute() reads connected, onlink and gateway routes", () => {
  const routes = fixture("reply_route_dump.hex").filter((m) => m.type === RTM_NEWROUTE).map(
    decodeRoute,
  );
  const base = { table: 254, type: 1, priority: null };
  assertEquals(routes, [
    {
      ...base,
      dst: net("10.0.0.0/24"),
      gateway: null,
      oif: 3,
      protocol: 2, // RTPROT_KERNEL
      scope: 253, // RT_SCOPE_LINK
      flags: 0,
      prefsrc: ip("10.0.0.1"),
      onlink: false,
      kernel: true,
    },
    {
      ...base,
      dst: net("10.1.7.0/24"),
      gateway: ip("10.1.7.0"),
      oif: 5,
      protocol: 3, // RTPROT_BOOT
      scope: 0,
      flags: 4, // RTNH_F_ONLINK
      prefsrc: null,
      onlink: true,
      kernel: false,
    },
    {
      ...base,
      dst: net("10.2.0.0/16"),
      gateway: ip("10.0.0.2"),
      oif: 3,
      protocol: 3,
      scope: 0,
      flags: 0,
      prefsrc: null,
      onlink: false,
      kernel: false,
    },
  ]);
});

Deno.test("decodeRoute() reads an RTM_GETROUTE lookup reply", () => {
  const r = decodeRoute(fixture("reply_route_get.hex").find((m) => m.type === RTM_NEWROUTE)!);
  assertEquals([r.dst, r.gateway, r.oif, r.prefsrc, r.table], [
    net("10.1.7.5/32"),
    ip("10.1.7.0"),
    5,
    ip("10.1.15.0"),
    254,
  ]);
});

Deno.test("decodeNeigh() and decodeFdb() read ARP and FDB dumps", () => {
  const neigh = fixture("reply_neigh_dump.hex").filter((m) => m.type === RTM_NEWNEIGH);
  assertEquals(neigh.map(decodeNeigh), [
    {
      index: 5,
      ip: ip("10.1.7.0"),
      mac: "0e:aa:bb:cc:dd:ee",
      state: 0x80,
      flags: 0,
      permanent: true,
    },
  ]);
  const fdb = fixture("reply_fdb_dump.hex").filter((m) => m.type === RTM_NEWNEIGH);
  assertEquals(fdb.map(decodeFdb), [
    {
      index: 5,
      mac: "0e:aa:bb:cc:dd:ee",
      dst: ip("10.0.0.2"),
      state: 0xc0,
      flags: 2,
      permanent: true,
    },
  ]);
});

Deno.test("decodeError() reads EEXIST with the whole request echoed and no ext-ack", () => {
  const err = fixture("reply_err_eexist.hex").filter((m) => m.type === NLMSG_ERROR).at(-1)!;
  const e = decodeError(err);
  assertEquals(e.errno, 17);
  assertEquals(e.request?.type, RTM_NEWLINK);
  assertEquals(e.request?.flags, 0x605);
  assertEquals(e.message, null);
});

Deno.test("decodeError() reads the extended-ack message after an echoed request", () => {
  const err = fixture("reply_err_extack.hex").find((m) => m.type === NLMSG_ERROR)!;
  ok((err.flags & NLM_F_ACK_TLVS) !== 0);
  const e = decodeError(err);
  assertEquals(e.errno, 101); // ENETUNREACH
  assertEquals(e.request?.type, RTM_NEWROUTE);
  assertEquals(e.message, "Nexthop has invalid gateway");
});

Deno.test("decodeError() reads ext-ack after a capped echo (NETLINK_CAP_ACK)", () => {
  // nlmsgerr: error -19, the request's 16-byte header only, then NLMSGERR_ATTR_MSG.
  const payload = new Uint8Array(4 + 16);
  const v = new DataView(payload.buffer);
  v.setInt32(0, -19, true);
  v.setUint32(4, 60, true); // the original nlmsg_len, longer than what is echoed
  v.setUint16(8, RTM_NEWROUTE, true);
  const tlv = encodeMsg({ type: 0, flags: 0 }, new Uint8Array(0), [
    attrString(NLMSGERR_ATTR_MSG, "Device not found"),
  ]).subarray(16);
  const msg = encodeMsg({ type: NLMSG_ERROR, flags: NLM_F_CAPPED | NLM_F_ACK_TLVS }, payload, []);
  const whole = new Uint8Array(msg.length + tlv.length);
  whole.set(msg);
  whole.set(tlv, msg.length);
  new DataView(whole.buffer).setUint32(0, whole.length, true);
  const e = decodeError(parseMsgs(whole)[0]);
  assertEquals([e.errno, e.request?.type, e.message], [19, RTM_NEWROUTE, "Device not found"]);
});

Deno.test("parseAttrs() masks NLA_F_NESTED and stops at a truncated attribute, reporting it", () => {
  const b = fromHex("0800 0180 01000000 0800 0200 02"); // type 1|NESTED, then a cut-off TLV
  const a = parseAttrs(b);
  assertEquals([...a.keys()], [1]);
  // The cut-off TLV is reported, not dropped without a word.
  assertEquals(
    a.error?.message,
    "Malformed netlink attribute at offset 8: nla_len 8 overruns the 5 bytes left",
  );
  assertEquals(parseAttrs(fromHex("0800 0100 01000000")).error, null);
  assertEquals(
    parseAttrs(fromHex("0200 0100")).error?.message,
    "Malformed netlink attribute at offset 0: nla_len 2 is shorter than the header",
  );
  assertEquals(
    parseAttrs(fromHex("0800 0100 01000000 05")).error?.message,
    "Malformed netlink attribute at offset 8: 1 bytes left, a header needs 4",
  );
});

Deno.test("decodeEvent() maps notifications and skips AF_BRIDGE neighbours", () => {
  const link = fixture("reply_link_dump.hex").find((m) => m.type === RTM_NEWLINK)!;
  assertEquals(decodeEvent(link)?.kind, "link");
  const route = fixture("reply_route_dump.hex").find((m) => m.type === RTM_NEWROUTE)!;
  const ev = decodeEvent(route);
  assertEquals(ev?.kind === "route" && ev.type === "new" && String(ev.route.dst), "10.0.0.0/24");
  const fdb = fixture("reply_fdb_dump.hex").find((m) => m.type === RTM_NEWNEIGH)!;
  assertEquals(decodeEvent(fdb), null);
  const neigh = fixture("reply_neigh_dump.hex").find((m) => m.type === RTM_NEWNEIGH)!;
  assertEquals(decodeEvent(neigh)?.kind, "neigh");
});
