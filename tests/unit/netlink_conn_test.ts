/**
 * NetlinkConn against the kernel with read-only requests (GETs need no privileges and change
 * nothing, so these run in whatever namespace the test runs in).
 */

import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { SyscallError } from "../../ffi/errno.ts";
import { attrString, attrU32 } from "../../ffi/netlink/attr.ts";
import { decodeIfInfoMsg, encodeIfInfoMsg } from "../../ffi/netlink/family.ts";
import { encodeMsg } from "../../ffi/netlink/message.ts";
import { NetlinkConn } from "../../ffi/netlink/conn.ts";
import {
  IFLA_EXT_MASK,
  IFLA_IFNAME,
  NLM_F_REQUEST,
  RTEXT_FILTER_SKIP_STATS,
  RTM_GETLINK,
  RTM_NEWLINK,
} from "../../ffi/netlink/consts.ts";
import { Netlink } from "../../ffi/netlink/mod.ts";

const getLink = (name: string) =>
  encodeMsg({ type: RTM_GETLINK, flags: NLM_F_REQUEST }, encodeIfInfoMsg({}), [
    attrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS),
    attrString(IFLA_IFNAME, name),
  ]);

Deno.test("NetlinkConn binds to a kernel-assigned port id and answers a GET", () => {
  using conn = NetlinkConn.open();
  ok(conn.pid > 0);
  const reply = conn.get(getLink("lo"));
  assertEquals(reply.type, RTM_NEWLINK);
  assertEquals(reply.pid, conn.pid);
  assertEquals(decodeIfInfoMsg(reply.payload).index, 1);
});

Deno.test("NetlinkConn skips a stale reply whose sequence number is not the request's", () => {
  using conn = NetlinkConn.open();
  conn.send(getLink("lo")); // its reply stays queued, unread
  const reply = conn.get(getLink("lo"));
  // The queued reply carries the first seq; get() must return the second one.
  assertEquals(reply.seq, 2);
});

Deno.test("NetlinkConn reports a kernel error as SyscallError named after the request", () => {
  using conn = NetlinkConn.open();
  throws(() => conn.get(getLink("nosuchdev0")), (e: unknown) => {
    ok(e instanceof SyscallError);
    assertEquals([e.code, e.syscall], ["ENODEV", "RTM_GETLINK"]);
    ok(e.message.startsWith("RTM_GETLINK: ENODEV (No such device)"));
    return true;
  });
});

Deno.test("Netlink list verbs dump to NLMSG_DONE and linkGet() maps ENODEV to null", () => {
  using nl = Netlink.open();
  const links = nl.linkList();
  ok(links.some((l) => l.index === 1 && l.name === "lo" && l.up));
  assertEquals(nl.linkGet("lo")?.index, 1);
  assertEquals(nl.linkGet(1)?.name, "lo");
  assertEquals(nl.linkGet("nosuchdev0"), null);
  ok(nl.addrList(1).some((a) => a.address.toString() === "127.0.0.1" && a.prefix === 8));
  // The local table always holds 127.0.0.1 as a local route.
  ok(nl.routeList(255).some((r) => r.dst.toString() === "127.0.0.1/32" && r.type === 2));
});
