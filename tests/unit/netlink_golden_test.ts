/**
 * Golden bytes: every request the verbs send, compared with what iproute2 6.1 sends for the same
 * change. The bytes were captured by tests/fixtures/netlink/capture.sh (strace of `ip`/`bridge` in
 * a throwaway namespace where v0 has index 3 and flannel.1 index 4); the command is noted above
 * each golden. `nlmsg_seq` is zeroed in the goldens: iproute2 seeds it from the clock and our
 * connection sets it when sending, so the verbs hand the transport seq 0 and pid 0.
 */

import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { encodeIfInfoMsg } from "../../ffi/netlink/family.ts";
import { toHex } from "./hex.ts";
import { encodeMsg, type NlMsg, parseMsgs } from "../../ffi/netlink/message.ts";
import type { NetlinkTransport } from "../../ffi/netlink/conn.ts";
import { RTM_NEWLINK, RTM_NEWROUTE } from "../../ffi/netlink/consts.ts";
import { Netlink } from "../../ffi/netlink/mod.ts";
import { ip, net } from "../helpers.ts";

/** Records each message; answers a GET with a minimal reply of the matching type. */
class Recorder implements NetlinkTransport {
  sent: Uint8Array[] = [];
  request(msg: Uint8Array<ArrayBuffer>): void {
    this.sent.push(msg.slice());
  }
  get(msg: Uint8Array<ArrayBuffer>): NlMsg {
    this.sent.push(msg.slice());
    const type = new DataView(msg.buffer, msg.byteOffset).getUint16(4, true) === 18
      ? RTM_NEWLINK
      : RTM_NEWROUTE;
    return parseMsgs(encodeMsg({ type, flags: 0 }, encodeIfInfoMsg({})))[0];
  }
  dump(msg: Uint8Array<ArrayBuffer>): NlMsg[] {
    this.sent.push(msg.slice());
    return [];
  }
}

/** Joins golden fragments (one per field) into one hex string. */
function hex(...parts: string[]): string {
  return parts.join("").replace(/\s+/g, "");
}

function sent(call: (nl: Netlink) => unknown): string {
  const rec = new Recorder();
  call(new Netlink(rec));
  assertEquals(rec.sent.length, 1, "one message per verb");
  return toHex(rec.sent[0]);
}

const SEQ_PID = "00000000 00000000"; // nlmsg_seq (zeroed), nlmsg_pid 0

Deno.test("linkAddVxlan() encodes RTM_NEWLINK as `ip link add … type vxlan` does", () => {
  // ip link add flannel.1 mtu 1450 address 0e:11:22:33:44:55 type vxlan id 1 local 10.0.0.1 \
  //   dev v0 dstport 8472 nolearning ttl 0
  const golden = hex(
    "88000000", // nlmsg_len 136
    "1000", // nlmsg_type RTM_NEWLINK
    "0506", // nlmsg_flags 0x605 REQUEST|ACK|EXCL|CREATE
    SEQ_PID,
    "00 00 0000 00000000 00000000 00000000", // ifinfomsg: AF_UNSPEC, pad, type, index, flags, change
    "0800 0400 aa050000", // IFLA_MTU 1450
    "0a00 0100 0e1122334455 0000", // IFLA_ADDRESS + pad
    "0e00 0300 666c616e6e656c2e3100 0000", // IFLA_IFNAME "flannel.1\0" + pad
    "4400 1200", // IFLA_LINKINFO, 68 bytes
    "0900 0100 76786c616e 000000", //   IFLA_INFO_KIND "vxlan" (no NUL, as iproute2) + pad
    "3400 0200", //   IFLA_INFO_DATA, 52 bytes
    "0800 0300 03000000", //     IFLA_VXLAN_LINK 3 (v0)
    "0500 0500 00 000000", //     IFLA_VXLAN_TTL 0 (inherit)
    "0800 0100 01000000", //     IFLA_VXLAN_ID 1
    "0800 0400 0a000001", //     IFLA_VXLAN_LOCAL 10.0.0.1
    "0500 0700 00 000000", //     IFLA_VXLAN_LEARNING 0
    "0600 0f00 2118 0000", //     IFLA_VXLAN_PORT 8472, network order
  );
  assertEquals(
    sent((nl) =>
      nl.linkAddVxlan({
        name: "flannel.1",
        vni: 1,
        local: ip("10.0.0.1"),
        lowerIndex: 3,
        port: 8472,
        learning: false,
        ttl: 0,
        mtu: 1450,
        mac: "0e:11:22:33:44:55",
      })
    ),
    golden,
  );
});

Deno.test("linkAddVxlan() adds IFLA_VXLAN_GBP as a flag attribute", () => {
  // Not in the iproute2 capture (flannel's GBP option): checked field by field.
  const got = sent((nl) => nl.linkAddVxlan({ name: "v", vni: 7, gbp: true }));
  assertEquals(
    got,
    hex(
      "48000000 1000 0506", // nlmsg_len 72
      SEQ_PID,
      "00 00 0000 00000000 00000000 00000000",
      "0600 0300 7600 0000", // IFLA_IFNAME "v\0"
      "2000 1200", // IFLA_LINKINFO 32
      "0900 0100 76786c616e 000000", // IFLA_INFO_KIND "vxlan"
      "1000 0200", // IFLA_INFO_DATA 16
      "0800 0100 07000000", // IFLA_VXLAN_ID 7
      "0400 1700", // IFLA_VXLAN_GBP (flag, no payload)
    ),
  );
});

Deno.test("link setters encode RTM_NEWLINK as `ip link set` does", async (t) => {
  const ifi = (flags: string, change: string) => `00 00 0000 04000000 ${flags} ${change}`;
  await t.step("linkSetDown: ip link set flannel.1 down", () => {
    assertEquals(
      sent((nl) => nl.linkSetDown(4)),
      hex("20000000 1000 0500", SEQ_PID, ifi("00000000", "01000000")), // change IFF_UP, flags 0
    );
  });
  await t.step("linkSetUp: ip link set flannel.1 up", () => {
    assertEquals(
      sent((nl) => nl.linkSetUp(4)),
      hex("20000000 1000 0500", SEQ_PID, ifi("01000000", "01000000")), // flags IFF_UP
    );
  });
  await t.step("linkSetMtu: ip link set flannel.1 mtu 1400", () => {
    assertEquals(
      sent((nl) => nl.linkSetMtu(4, 1400)),
      hex("28000000 1000 0500", SEQ_PID, ifi("00000000", "00000000"), "0800 0400 78050000"),
    );
  });
  await t.step("linkSetAddress: ip link set flannel.1 address 0e:11:22:33:44:66", () => {
    assertEquals(
      sent((nl) => nl.linkSetAddress(4, "0e:11:22:33:44:66")),
      hex(
        "2c000000 1000 0500",
        SEQ_PID,
        ifi("00000000", "00000000"),
        "0a00 0100 0e1122334466 0000", // IFLA_ADDRESS
      ),
    );
  });
  await t.step("linkDelete: ip link del flannel.1", () => {
    assertEquals(
      sent((nl) => nl.linkDelete(4)),
      hex("20000000 1100 0500", SEQ_PID, ifi("00000000", "00000000")), // RTM_DELLINK REQUEST|ACK
    );
  });
});

Deno.test("addrAdd()/addrDel() encode RTM_NEWADDR/RTM_DELADDR as `ip addr` does", async (t) => {
  const body = hex(
    "02 20 00 00 04000000", // ifaddrmsg: AF_INET, prefixlen 32, flags 0, scope universe, index 4
    "0800 0200 0a010f00", // IFA_LOCAL 10.1.15.0
    "0800 0100 0a010f00", // IFA_ADDRESS 10.1.15.0
  );
  await t.step("ip addr add 10.1.15.0/32 dev flannel.1", () => {
    assertEquals(
      sent((nl) => nl.addrAdd(4, ip("10.1.15.0"), 32)),
      hex("28000000 1400 0506", SEQ_PID, body), // RTM_NEWADDR REQUEST|ACK|EXCL|CREATE
    );
  });
  await t.step("ip addr del 10.1.15.0/32 dev flannel.1", () => {
    assertEquals(
      sent((nl) => nl.addrDel(4, ip("10.1.15.0"), 32)),
      hex("28000000 1500 0500", SEQ_PID, body), // RTM_DELADDR REQUEST|ACK
    );
  });
});

Deno.test("route verbs encode RTM_NEWROUTE/RTM_DELROUTE as `ip route` does", async (t) => {
  await t.step(
    "routeReplace onlink: ip route replace 10.1.7.0/24 via 10.1.7.0 dev flannel.1 onlink",
    () => {
      assertEquals(
        sent((nl) =>
          nl.routeReplace({
            dst: net("10.1.7.0/24"),
            gateway: ip("10.1.7.0"),
            oif: 4,
            onlink: true,
          })
        ),
        hex(
          "34000000 1800 0505", // RTM_NEWROUTE REQUEST|ACK|REPLACE|CREATE
          SEQ_PID,
          // rtmsg: AF_INET, dst_len 24, src_len 0, tos 0, table main, proto boot, scope universe,
          // type unicast, rtm_flags RTNH_F_ONLINK
          "02 18 00 00 fe 03 00 01 04000000",
          "0800 0100 0a010700", // RTA_DST 10.1.7.0
          "0800 0500 0a010700", // RTA_GATEWAY 10.1.7.0
          "0800 0400 04000000", // RTA_OIF 4
        ),
      );
    },
  );
  const gw = hex(
    "0800 0100 0a020000", // RTA_DST 10.2.0.0
    "0800 0500 0a000002", // RTA_GATEWAY 10.0.0.2
    "0800 0400 03000000", // RTA_OIF 3
  );
  await t.step("routeReplace gateway: ip route replace 10.2.0.0/16 via 10.0.0.2 dev v0", () => {
    assertEquals(
      sent((nl) => nl.routeReplace({ dst: net("10.2.0.0/16"), gateway: ip("10.0.0.2"), oif: 3 })),
      hex("34000000 1800 0505", SEQ_PID, "02 10 00 00 fe 03 00 01 00000000", gw),
    );
  });
  await t.step(
    "routeReplace blackhole: ip route replace blackhole 10.1.15.0/24 metric 1024",
    () => {
      assertEquals(
        sent((nl) => nl.routeReplace({ dst: net("10.1.15.0/24"), type: 6, metric: 1024 })),
        hex(
          "2c000000 1800 0505", // RTM_NEWROUTE REQUEST|ACK|REPLACE|CREATE
          SEQ_PID,
          // rtmsg: AF_INET, dst_len 24, table main, proto boot, scope universe, type blackhole
          "02 18 00 00 fe 03 00 06 00000000",
          "0800 0100 0a010f00", // RTA_DST 10.1.15.0
          "0800 0600 00040000", // RTA_PRIORITY 1024
        ),
      );
    },
  );
  await t.step("routeDel: ip route del 10.2.0.0/16 via 10.0.0.2 dev v0", () => {
    assertEquals(
      sent((nl) => nl.routeDel({ dst: net("10.2.0.0/16"), gateway: ip("10.0.0.2"), oif: 3 })),
      // RTM_DELROUTE REQUEST|ACK; table main, protocol unspec, scope nowhere, type unspec
      hex("34000000 1900 0500", SEQ_PID, "02 10 00 00 fe 00 ff 00 00000000", gw),
    );
  });
  await t.step("routeAdd: the same as replace with CREATE|EXCL instead of CREATE|REPLACE", () => {
    // Deliberate: not captured separately; `ip route add` differs from replace only in flags.
    assertEquals(
      sent((nl) => nl.routeAdd({ dst: net("10.2.0.0/16"), gateway: ip("10.0.0.2"), oif: 3 })),
      hex("34000000 1800 0506", SEQ_PID, "02 10 00 00 fe 03 00 01 00000000", gw),
    );
  });
  await t.step("routeReplace default: ip route replace default via 10.0.0.254 dev v0", () => {
    assertEquals(
      sent((nl) => nl.routeReplace({ dst: net("0.0.0.0/0"), gateway: ip("10.0.0.254"), oif: 3 })),
      hex(
        "2c000000 1800 0505",
        SEQ_PID,
        "02 00 00 00 fe 03 00 01 00000000", // dst_len 0
        // no RTA_DST for a /0, as iproute2
        "0800 0500 0a0000fe", // RTA_GATEWAY 10.0.0.254
        "0800 0400 03000000", // RTA_OIF 3
      ),
    );
  });
  await t.step("routeGet: ip route get 10.1.7.5", () => {
    assertEquals(
      sent((nl) => nl.routeGet(ip("10.1.7.5"))),
      hex(
        "24000000 1a00 0100", // RTM_GETROUTE REQUEST
        SEQ_PID,
        "02 20 00 00 00 00 00 00 00100000", // dst_len 32, rtm_flags RTM_F_LOOKUP_TABLE
        "0800 0100 0a010705", // RTA_DST 10.1.7.5
      ),
    );
  });
});

Deno.test("neighSet()/neighDel() encode ARP entries as `ip neigh` does", async (t) => {
  await t.step(
    "ip neigh replace 10.1.7.0 lladdr 0e:aa:bb:cc:dd:ee dev flannel.1 nud permanent",
    () => {
      assertEquals(
        sent((nl) => nl.neighSet(4, ip("10.1.7.0"), "0e:aa:bb:cc:dd:ee")),
        hex(
          "30000000 1c00 0505", // RTM_NEWNEIGH REQUEST|ACK|REPLACE|CREATE
          SEQ_PID,
          "02 000000 04000000 8000 00 00", // ndmsg: AF_INET, pad, ifindex 4, NUD_PERMANENT, flags, type
          "0800 0100 0a010700", // NDA_DST 10.1.7.0
          "0a00 0200 0eaabbccddee 0000", // NDA_LLADDR
        ),
      );
    },
  );
  await t.step("ip neigh del 10.1.7.0 dev flannel.1", () => {
    assertEquals(
      sent((nl) => nl.neighDel(4, ip("10.1.7.0"))),
      hex(
        "24000000 1d00 0500", // RTM_DELNEIGH REQUEST|ACK
        SEQ_PID,
        "02 000000 04000000 8000 00 00", // iproute2 keeps NUD_PERMANENT; the kernel ignores it
        "0800 0100 0a010700", // NDA_DST
      ),
    );
  });
});

Deno.test("fdb verbs encode AF_BRIDGE RTM_NEWNEIGH/RTM_DELNEIGH as `bridge fdb` does", async (t) => {
  const body = (dst: string) =>
    hex(
      // ndmsg: AF_BRIDGE, pad, ifindex 4, state NUD_NOARP|NUD_PERMANENT, NTF_SELF, type 0
      "07 000000 04000000 c000 02 00",
      "0a00 0200 0eaabbccddee 0000", // NDA_LLADDR
      `0800 0100 ${dst}`, // NDA_DST
    );
  await t.step("bridge fdb replace 0e:aa:bb:cc:dd:ee dev flannel.1 dst 10.0.0.2", () => {
    assertEquals(
      sent((nl) => nl.fdbSet(4, "0e:aa:bb:cc:dd:ee", ip("10.0.0.2"))),
      hex("30000000 1c00 0505", SEQ_PID, body("0a000002")), // REQUEST|ACK|REPLACE|CREATE
    );
  });
  await t.step("bridge fdb append 0e:aa:bb:cc:dd:ee dev flannel.1 dst 10.0.0.3", () => {
    assertEquals(
      sent((nl) => nl.fdbAppend(4, "0e:aa:bb:cc:dd:ee", ip("10.0.0.3"))),
      hex("30000000 1c00 050c", SEQ_PID, body("0a000003")), // REQUEST|ACK|CREATE|APPEND
    );
  });
  await t.step("bridge fdb del 0e:aa:bb:cc:dd:ee dev flannel.1 dst 10.0.0.3", () => {
    assertEquals(
      sent((nl) => nl.fdbDel(4, "0e:aa:bb:cc:dd:ee", ip("10.0.0.3"))),
      hex("30000000 1d00 0500", SEQ_PID, body("0a000003")), // RTM_DELNEIGH REQUEST|ACK
    );
  });
});

Deno.test("list verbs send the dump requests iproute2 sends", async (t) => {
  await t.step("linkList: ip link show", () => {
    assertEquals(
      sent((nl) => nl.linkList()),
      hex(
        "28000000 1200 0103", // RTM_GETLINK REQUEST|DUMP
        SEQ_PID,
        "11 00 0000 00000000 00000000 00000000", // ifinfomsg: AF_PACKET, as iproute2
        "0800 1d00 01000000", // IFLA_EXT_MASK RTEXT_FILTER_VF
      ),
    );
  });
  await t.step(
    "linkGet: the RTM_GETLINK `ip link set flannel.1 …` sends to resolve the name",
    () => {
      assertEquals(
        sent((nl) => nl.linkGet("flannel.1")),
        hex(
          "38000000 1200 0100", // RTM_GETLINK REQUEST
          SEQ_PID,
          "00 00 0000 00000000 00000000 00000000",
          "0800 1d00 09000000", // IFLA_EXT_MASK RTEXT_FILTER_VF|RTEXT_FILTER_SKIP_STATS
          "0e00 0300 666c616e6e656c2e3100 0000", // IFLA_IFNAME "flannel.1\0"
        ),
      );
    },
  );
  await t.step("addrList: ip -4 addr show", () => {
    assertEquals(
      sent((nl) => nl.addrList()),
      hex("18000000 1600 0103", SEQ_PID, "02 00 00 00 00000000"), // RTM_GETADDR, ifaddrmsg AF_INET
    );
  });
  await t.step("routeList: ip -4 route show table main", () => {
    assertEquals(
      sent((nl) => nl.routeList()),
      hex(
        "24000000 1a00 0103", // RTM_GETROUTE REQUEST|DUMP
        SEQ_PID,
        "02 00 00 00 00 00 00 00 00000000", // rtmsg AF_INET
        "0800 0f00 fe000000", // RTA_TABLE 254 (filtered by the kernel under strict checking)
      ),
    );
  });
  await t.step("neighList: ip -4 neigh show", () => {
    assertEquals(
      sent((nl) => nl.neighList()),
      hex("1c000000 1e00 0103", SEQ_PID, "02 000000 00000000 0000 00 00"), // ndmsg AF_INET
    );
  });
  await t.step("fdbList: bridge fdb show", () => {
    assertEquals(
      sent((nl) => nl.fdbList()),
      hex("1c000000 1e00 0103", SEQ_PID, "07 000000 00000000 0000 00 00"), // ndmsg AF_BRIDGE
    );
  });
  await t.step("neighList(index) filters with NDA_IFINDEX (not captured: strict dump form)", () => {
    assertEquals(
      sent((nl) => nl.neighList(4)),
      hex("24000000 1e00 0103", SEQ_PID, "02 000000 00000000 0000 00 00", "0800 0800 04000000"),
    );
  });
});

// IPv6: captured by the same script (the IPv6 section: v0 index 3 with fd00::1/64, flannel-v6.1
// index 5).
const FD00_1 = "fd000000 00000000 00000000 00000001";
const FD00_2 = "fd000000 00000000 00000000 00000002";
const FC00_22 = "fc000000 00000022 00000000 00000000";
const FC00_7 = "fc000000 00000007 00000000 00000000";
const FC00_8 = "fc000000 00000008 00000000 00000000";

Deno.test("linkAddVxlan() over IPv6 writes IFLA_VXLAN_LOCAL6 where iproute2 does", () => {
  // ip link add flannel-v6.1 mtu 1430 address 0e:11:22:33:44:77 type vxlan id 1 local fd00::1 \
  //   dev v0 dstport 8472 nolearning ttl 0
  const golden = hex(
    "98000000 1000 0506", // nlmsg_len 152, RTM_NEWLINK REQUEST|ACK|EXCL|CREATE
    SEQ_PID,
    "00 00 0000 00000000 00000000 00000000", // ifinfomsg
    "0800 0400 96050000", // IFLA_MTU 1430
    "0a00 0100 0e1122334477 0000", // IFLA_ADDRESS + pad
    "1100 0300 666c616e6e656c2d76362e3100 000000", // IFLA_IFNAME "flannel-v6.1\0" + pad
    "5000 1200", // IFLA_LINKINFO, 80 bytes
    "0900 0100 76786c616e 000000", //   IFLA_INFO_KIND "vxlan"
    "4000 0200", //   IFLA_INFO_DATA, 64 bytes
    "0800 0300 03000000", //     IFLA_VXLAN_LINK 3 (v0)
    "0500 0500 00 000000", //     IFLA_VXLAN_TTL 0
    "0800 0100 01000000", //     IFLA_VXLAN_ID 1
    `1400 1100 ${FD00_1}`, //     IFLA_VXLAN_LOCAL6 fd00::1
    "0500 0700 00 000000", //     IFLA_VXLAN_LEARNING 0
    "0600 0f00 2118 0000", //     IFLA_VXLAN_PORT 8472
  );
  assertEquals(
    sent((nl) =>
      nl.linkAddVxlan({
        name: "flannel-v6.1",
        vni: 1,
        local: ip("fd00::1"),
        lowerIndex: 3,
        port: 8472,
        learning: false,
        ttl: 0,
        mtu: 1430,
        mac: "0e:11:22:33:44:77",
      })
    ),
    golden,
  );
});

Deno.test("IPv6 address, route, NDP neighbour and fdb verbs encode as iproute2 does", async (t) => {
  await t.step("ip addr add fc00:0:0:22::/128 dev flannel-v6.1 nodad", () => {
    assertEquals(
      sent((nl) => nl.addrAdd(5, ip("fc00:0:0:22::"), 128, { nodad: true })),
      hex(
        "40000000 1400 0506", // RTM_NEWADDR REQUEST|ACK|EXCL|CREATE
        SEQ_PID,
        "0a 80 02 00 05000000", // ifaddrmsg: AF_INET6, /128, IFA_F_NODAD, universe, index 5
        `1400 0200 ${FC00_22}`, // IFA_LOCAL
        `1400 0100 ${FC00_22}`, // IFA_ADDRESS
      ),
    );
  });
  await t.step(
    "ip -6 route replace fc00:0:0:7::/64 via fc00:0:0:7:: dev flannel-v6.1 onlink",
    () => {
      assertEquals(
        sent((nl) =>
          nl.routeReplace({
            dst: net("fc00:0:0:7::/64"),
            gateway: ip("fc00:0:0:7::"),
            oif: 5,
            onlink: true,
          })
        ),
        hex(
          "4c000000 1800 0505", // RTM_NEWROUTE REQUEST|ACK|REPLACE|CREATE
          SEQ_PID,
          // rtmsg: AF_INET6, /64, table main, boot, universe, unicast, RTNH_F_ONLINK
          "0a 40 00 00 fe 03 00 01 04000000",
          `1400 0100 ${FC00_7}`, // RTA_DST
          `1400 0500 ${FC00_7}`, // RTA_GATEWAY
          "0800 0400 05000000", // RTA_OIF 5
        ),
      );
    },
  );
  const via = hex(`1400 0100 ${FC00_8}`, `1400 0500 ${FD00_2}`, "0800 0400 03000000");
  await t.step("ip -6 route replace fc00:0:0:8::/64 via fd00::2 dev v0", () => {
    assertEquals(
      sent((nl) =>
        nl.routeReplace({ dst: net("fc00:0:0:8::/64"), gateway: ip("fd00::2"), oif: 3 })
      ),
      hex("4c000000 1800 0505", SEQ_PID, "0a 40 00 00 fe 03 00 01 00000000", via),
    );
  });
  await t.step("ip -6 route del fc00:0:0:8::/64 via fd00::2 dev v0", () => {
    assertEquals(
      sent((nl) => nl.routeDel({ dst: net("fc00:0:0:8::/64"), gateway: ip("fd00::2"), oif: 3 })),
      // RTM_DELROUTE REQUEST|ACK; proto, scope and type unspecified, as iproute2
      hex("4c000000 1900 0500", SEQ_PID, "0a 40 00 00 fe 00 00 00 00000000", via),
    );
  });
  await t.step("ip -6 route replace blackhole fc00:0:0:22::/64 metric 1024", () => {
    assertEquals(
      sent((nl) => nl.routeReplace({ dst: net("fc00:0:0:22::/64"), type: 6, metric: 1024 })),
      hex(
        "38000000 1800 0505", // RTM_NEWROUTE REQUEST|ACK|REPLACE|CREATE
        SEQ_PID,
        // rtmsg: AF_INET6, /64, table main, boot, universe, type blackhole
        "0a 40 00 00 fe 03 00 06 00000000",
        `1400 0100 ${FC00_22}`, // RTA_DST
        "0800 0600 00040000", // RTA_PRIORITY 1024
      ),
    );
  });
  await t.step(
    "ip -6 neigh replace fc00:0:0:7:: lladdr 0e:aa:bb:cc:dd:ff dev flannel-v6.1 nud permanent",
    () => {
      assertEquals(
        sent((nl) => nl.neighSet(5, ip("fc00:0:0:7::"), "0e:aa:bb:cc:dd:ff")),
        hex(
          "3c000000 1c00 0505", // RTM_NEWNEIGH REQUEST|ACK|REPLACE|CREATE
          SEQ_PID,
          "0a 000000 05000000 8000 00 00", // ndmsg: AF_INET6, ifindex 5, NUD_PERMANENT
          `1400 0100 ${FC00_7}`, // NDA_DST
          "0a00 0200 0eaabbccddff 0000", // NDA_LLADDR
        ),
      );
    },
  );
  await t.step("ip -6 neigh del fc00:0:0:7:: dev flannel-v6.1", () => {
    assertEquals(
      sent((nl) => nl.neighDel(5, ip("fc00:0:0:7::"))),
      hex("30000000 1d00 0500", SEQ_PID, "0a 000000 05000000 8000 00 00", `1400 0100 ${FC00_7}`),
    );
  });
  await t.step("bridge fdb replace 0e:aa:bb:cc:dd:ff dev flannel-v6.1 dst fd00::2", () => {
    assertEquals(
      sent((nl) => nl.fdbSet(5, "0e:aa:bb:cc:dd:ff", ip("fd00::2"))),
      hex(
        "3c000000 1c00 0505",
        SEQ_PID,
        "07 000000 05000000 c000 02 00", // AF_BRIDGE, NUD_NOARP|NUD_PERMANENT, NTF_SELF
        "0a00 0200 0eaabbccddff 0000", // NDA_LLADDR
        `1400 0100 ${FD00_2}`, // NDA_DST fd00::2
      ),
    );
  });
});

Deno.test("IPv6 list verbs send the AF_INET6 dump requests iproute2 sends", async (t) => {
  await t.step("addrList(undefined, 6): ip -6 addr show", () => {
    assertEquals(
      sent((nl) => nl.addrList(undefined, 6)),
      hex("18000000 1600 0103", SEQ_PID, "0a 00 00 00 00000000"), // ifaddrmsg AF_INET6
    );
  });
  await t.step("routeList(254, 6): ip -6 route show table main", () => {
    assertEquals(
      sent((nl) => nl.routeList(254, 6)),
      hex("24000000 1a00 0103", SEQ_PID, "0a 00 00 00 00 00 00 00 00000000", "0800 0f00 fe000000"),
    );
  });
  await t.step("routeGet: ip route get fd00::7:5 (no RTM_F_LOOKUP_TABLE for IPv6)", () => {
    assertEquals(
      sent((nl) => nl.routeGet(ip("fd00::7:5"))),
      hex(
        "30000000 1a00 0100", // RTM_GETROUTE REQUEST
        SEQ_PID,
        "0a 80 00 00 00 00 00 00 00000000", // rtmsg: AF_INET6, dst_len 128, flags 0
        "1400 0100 fd000000 00000000 00000000 00070005", // RTA_DST
      ),
    );
  });
  await t.step("neighList(undefined, 6): ip -6 neigh show", () => {
    assertEquals(
      sent((nl) => nl.neighList(undefined, 6)),
      hex("1c000000 1e00 0103", SEQ_PID, "0a 000000 00000000 0000 00 00"), // ndmsg AF_INET6
    );
  });
});
