import assert from "node:assert/strict";
import type { Lease } from "../../lib/lease.ts";
import { logger } from "../../lib/log.ts";
import { planVxlanPeer, type VxlanPeerContext } from "../../lib/backend/vxlan/entries.ts";
import {
  isLegacyRoute,
  isManagedRoute,
  type PeerEntries,
  planSync,
  planUpdate,
  routeSpecOf,
  RTPROT_FLANNEL,
  type Scope,
} from "../../lib/backend/kernel_plan.ts";
import { KernelEntryTable } from "../../lib/backend/kernel_table.ts";
import { isDirect } from "../../lib/backend/route_network.ts";
import { FakeNetlink, lease, routeOf } from "./fake_netlink.ts";
import { captureLog, ip, net } from "../helpers.ts";

const DEV = 7;
const EXT = 2;
const MAC_B = "aa:bb:cc:00:00:0b";
const MAC_C = "aa:bb:cc:00:00:0c";

const scope: Scope = {
  family: 4,
  network: net("10.1.0.0/16"),
  own: net("10.1.1.0/24"),
  extIndex: EXT,
  devIndex: DEV,
};

function ctx(over: Partial<VxlanPeerContext> = {}): VxlanPeerContext {
  return {
    vni: 1,
    devIndex: DEV,
    extIndex: EXT,
    directRouting: false,
    ownIP: ip("192.168.0.1"),
    isDirect: (a) => a.toString().startsWith("192.168.0."),
    ...over,
  };
}

function entries(l: Lease, c = ctx()): PeerEntries {
  const d = planVxlanPeer(l, c);
  if (!d.ok) throw new Error(d.reason);
  return d.entries;
}

Deno.test("planVxlanPeer", async (t) => {
  await t.step("a tunnel peer gets FDB, ARP and an onlink route via its subnet base", () => {
    assert.deepEqual(entries(lease("10.1.2.0/24", "192.168.0.2")), {
      route: { dst: net("10.1.2.0/24"), gateway: ip("10.1.2.0"), oif: DEV, onlink: true },
      neigh: { index: DEV, ip: ip("10.1.2.0"), mac: MAC_B },
      fdb: { index: DEV, mac: MAC_B, dst: ip("192.168.0.2") },
    });
  });
  await t.step(
    "DirectRouting: a directly connected peer gets a plain route via its PublicIP",
    () => {
      assert.deepEqual(entries(lease("10.1.2.0/24", "192.168.0.2"), ctx({ directRouting: true })), {
        route: { dst: net("10.1.2.0/24"), gateway: ip("192.168.0.2"), oif: EXT, onlink: false },
        neigh: null,
        fdb: null,
      });
    },
  );
  await t.step("DirectRouting: a peer behind a router still goes through the tunnel", () => {
    const e = entries(lease("10.1.3.0/24", "172.16.0.3"), ctx({ directRouting: true }));
    assert.equal(e.route.oif, DEV);
    assert.equal(String(e.fdb?.dst), "172.16.0.3");
  });
  await t.step("an upper-case VtepMAC and a missing VNI (older flannel) are accepted", () => {
    const e = entries(
      lease("10.1.2.0/24", "192.168.0.2", "vxlan", { vtepmac: "AA:BB:CC:00:00:0B" }),
    );
    assert.equal(e.neigh?.mac, MAC_B);
  });
  const skips: [string, Lease, RegExp][] = [
    [
      "another backend type",
      lease("10.1.2.0/24", "192.168.0.2", "host-gw", null),
      /"host-gw" is not vxlan/,
    ],
    ["udp (no type)", lease("10.1.2.0/24", "192.168.0.2", "", null), /"udp" is not vxlan/],
    [
      "another VNI",
      lease("10.1.2.0/24", "192.168.0.2", "vxlan", { VNI: 2, VtepMAC: MAC_B }),
      /VNI 2 differs from ours \(1\)/,
    ],
    [
      "a bad MAC",
      lease("10.1.2.0/24", "192.168.0.2", "vxlan", { VNI: 1, VtepMAC: "zz" }),
      /VtepMAC "zz" is not a MAC/,
    ],
    [
      "no BackendData",
      lease("10.1.2.0/24", "192.168.0.2", "vxlan", null),
      /BackendData is not a JSON object/,
    ],
    [
      "the zero VtepMAC",
      lease("10.1.2.0/24", "192.168.0.2", "vxlan", { VNI: 1, VtepMAC: "00:00:00:00:00:00" }),
      /VtepMAC 00:00:00:00:00:00 is the zero MAC$/,
    ],
    [
      "the broadcast VtepMAC",
      lease("10.1.2.0/24", "192.168.0.2", "vxlan", { VNI: 1, VtepMAC: "FF:FF:FF:FF:FF:FF" }),
      /VtepMAC ff:ff:ff:ff:ff:ff is a multicast or broadcast MAC$/,
    ],
    [
      "a multicast VtepMAC",
      lease("10.1.2.0/24", "192.168.0.2", "vxlan", { VNI: 1, VtepMAC: "01:00:5e:00:00:01" }),
      /VtepMAC 01:00:5e:00:00:01 is a multicast or broadcast MAC$/,
    ],
    [
      "a VtepMAC with only the group bit of the first byte",
      lease("10.1.2.0/24", "192.168.0.2", "vxlan", { VNI: 1, VtepMAC: "33:33:00:00:00:01" }),
      /is a multicast or broadcast MAC$/,
    ],
  ];
  await t.step("a peer claiming our own device's VtepMAC is skipped", () => {
    const d = planVxlanPeer(
      lease("10.1.2.0/24", "192.168.0.2"),
      ctx({ ownMAC: "AA:BB:CC:00:00:0B" }),
    );
    assert.deepEqual(d, {
      ok: false,
      reason:
        "Skipping peer 10.1.2.0/24 (PublicIP 192.168.0.2): VtepMAC aa:bb:cc:00:00:0b is our own device's MAC",
    });
  });
  await t.step("IPv6: a zero or multicast VtepMAC in BackendV6Data is skipped too", () => {
    for (const mac of ["00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:01"]) {
      const l = lease("10.1.2.0/24", "192.168.0.2", "vxlan", undefined, {
        subnet: "fc00:0:0:2::/64",
        publicIPv6: "fd00::2",
        backendV6Data: { VNI: 1, VtepMAC: mac },
      });
      const d = planVxlanPeer(l, ctx({ family: 6, ownIP: ip("fd00::1") }));
      assert.equal(d.ok, false, mac);
      if (!d.ok) {
        assert.match(
          d.reason,
          /^Skipping peer fc00:0:0:2::\/64 .*VtepMAC .* is the zero MAC|multicast/,
        );
      }
    }
  });
  await t.step("a huge VtepMAC is quoted short", () => {
    const l = lease("10.1.2.0/24", "192.168.0.2", "vxlan", { VtepMAC: "x".repeat(100_000) });
    const d = planVxlanPeer(l, ctx());
    assert.equal(d.ok, false);
    if (!d.ok) {
      assert.ok(d.reason.length < 200, `reason is ${d.reason.length} characters long`);
      assert.match(d.reason, /VtepMAC "x+… is not a MAC address$/);
    }
  });
  await t.step("a lease with our own PublicIP (a stale one of ours) is skipped", () => {
    const d = planVxlanPeer(lease("10.1.9.0/24", "192.168.0.1"), ctx());
    assert.deepEqual(d, {
      ok: false,
      reason: "Skipping peer 10.1.9.0/24 (PublicIP 192.168.0.1): that is our own PublicIP",
    });
  });
  for (const [name, l, re] of skips) {
    await t.step(`${name} is skipped with a reason naming the peer`, () => {
      const d = planVxlanPeer(l, ctx());
      assert.equal(d.ok, false);
      if (!d.ok) {
        assert.match(d.reason, re);
        assert.match(d.reason, /^Skipping peer 10\.1\.2\.0\/24 \(PublicIP 192\.168\.0\.2\)/);
      }
    });
  }
});

Deno.test("isManagedRoute() owns every main-table route with flannel's protocol, wherever it points", () => {
  const r = (over: Partial<ReturnType<typeof routeOf>>) => ({
    ...routeOf({ dst: net("10.1.2.0/24"), protocol: RTPROT_FLANNEL }),
    ...over,
  });
  assert.equal(isManagedRoute(r({ oif: DEV, gateway: ip("10.1.2.0") })), true);
  assert.equal(isManagedRoute(r({ oif: EXT, gateway: ip("192.168.0.2") })), true);
  assert.equal(
    isManagedRoute(r({ dst: net("10.2.0.0/24"), oif: DEV })),
    true,
    "outside the network",
  );
  assert.equal(
    isManagedRoute(r({ dst: net("8.8.0.0/16"), oif: 99, gateway: ip("1.2.3.4") })),
    true,
  );
  assert.equal(isManagedRoute(r({ protocol: 3 })), false, "boot: an admin's ip route add");
  assert.equal(isManagedRoute(r({ protocol: 4 })), false, "static");
  assert.equal(isManagedRoute(r({ protocol: 2 })), false, "kernel route");
  assert.equal(isManagedRoute(r({ table: 255 })), false, "local table");
  assert.equal(isManagedRoute(r({ type: 6 })), false, "blackhole");
});

Deno.test("isLegacyRoute(): the previous version's unmarked overlay routes on the device, on ext, or via a gateway", () => {
  const r = (over: Partial<ReturnType<typeof routeOf>>) => ({
    ...routeOf({ dst: net("10.1.2.0/24") }),
    ...over,
  });
  assert.equal(isLegacyRoute(r({ oif: DEV, gateway: ip("10.1.2.0") }), scope), true);
  assert.equal(isLegacyRoute(r({ oif: EXT, gateway: ip("192.168.0.2") }), scope), true);
  assert.equal(isLegacyRoute(r({ oif: EXT, gateway: null }), scope), true);
  assert.equal(isLegacyRoute(r({ oif: 99, gateway: ip("10.9.9.9") }), scope), true);
  assert.equal(isLegacyRoute(r({ oif: 99, gateway: null }), scope), false, "a docker0-like route");
  assert.equal(
    isLegacyRoute(r({ oif: DEV, protocol: 2, kernel: true }), scope),
    false,
    "kernel route",
  );
  assert.equal(isLegacyRoute(r({ oif: DEV, protocol: 4 }), scope), false, "static: an admin's");
  assert.equal(
    isLegacyRoute(r({ dst: net("10.1.1.0/24"), oif: EXT, gateway: ip("1.2.3.4") }), scope),
    false,
    "own subnet",
  );
  assert.equal(
    isLegacyRoute(r({ dst: net("10.2.0.0/24"), oif: DEV }), scope),
    false,
    "outside the network",
  );
  assert.equal(
    isLegacyRoute(r({ dst: net("0.0.0.0/0"), oif: EXT, gateway: ip("192.168.0.1") }), scope),
    false,
  );
  assert.equal(isLegacyRoute(r({ table: 255, oif: DEV }), scope), false, "local table");
});

Deno.test("planSync() leaves right entries untouched, replaces wrong ones, deletes stale ones", () => {
  const b = entries(lease("10.1.2.0/24", "192.168.0.2"));
  const c = entries(lease("10.1.3.0/24", "192.168.0.3", "vxlan", { VNI: 1, VtepMAC: MAC_C }));
  const nl = new FakeNetlink();
  // b fully right; c's ARP has an old MAC, its FDB an old dst and no route; a gone peer d.
  nl.fdbSet(DEV, MAC_B, ip("192.168.0.2"));
  nl.neighSet(DEV, ip("10.1.2.0"), MAC_B);
  nl.routeReplace({
    dst: net("10.1.2.0/24"),
    gateway: ip("10.1.2.0"),
    oif: DEV,
    onlink: true,
    protocol: RTPROT_FLANNEL,
  });
  nl.fdbSet(DEV, MAC_C, ip("192.168.0.99"));
  nl.neighSet(DEV, ip("10.1.3.0"), "aa:bb:cc:00:00:99");
  nl.fdbSet(DEV, "aa:bb:cc:00:00:0d", ip("192.168.0.4"));
  nl.neighSet(DEV, ip("10.1.4.0"), "aa:bb:cc:00:00:0d");
  nl.routeReplace({
    dst: net("10.1.4.0/24"),
    gateway: ip("10.1.4.0"),
    oif: DEV,
    onlink: true,
    protocol: RTPROT_FLANNEL,
  });
  nl.routeReplace({
    dst: net("10.1.5.0/24"),
    gateway: ip("192.168.0.5"),
    oif: EXT,
    protocol: RTPROT_FLANNEL,
  }); // old host-gw route
  nl.routes.push(routeOf({ dst: net("10.1.1.0/24"), oif: 40 }, 2)); // docker0, not ours
  nl.routes.push(routeOf({ dst: net("0.0.0.0/0"), gateway: ip("192.168.0.1"), oif: EXT }));
  nl.fdbs.push({
    index: DEV,
    mac: "33:33:00:00:00:01",
    dst: null,
    state: 0x80,
    flags: 2,
    permanent: true,
  });
  nl.take();

  const plan = planSync([b, c], {
    routes: nl.routeList(),
    neighs: nl.neighList(DEV),
    fdbs: nl.fdbList(DEV),
  }, scope);
  assert.deepEqual(plan.routeDel.map((r) => String(r.dst)), ["10.1.4.0/24", "10.1.5.0/24"]);
  assert.deepEqual(plan.neighDel.map((n) => String(n.ip)), ["10.1.4.0"]);
  assert.deepEqual(plan.fdbDel.map((f) => `${f.mac} ${f.dst}`), [
    `${MAC_C} 192.168.0.99`,
    "aa:bb:cc:00:00:0d 192.168.0.4",
  ]);
  assert.deepEqual(plan.fdbSet, [c.fdb]);
  assert.deepEqual(plan.neighSet, [c.neigh]);
  assert.deepEqual(plan.routeSet, [c.route]);
});

Deno.test("planSync() on a kernel that is already right changes nothing", () => {
  const b = entries(lease("10.1.2.0/24", "192.168.0.2"));
  const nl = new FakeNetlink();
  nl.fdbSet(DEV, MAC_B, ip("192.168.0.2"));
  nl.neighSet(DEV, ip("10.1.2.0"), MAC_B);
  nl.routeReplace({
    dst: net("10.1.2.0/24"),
    gateway: ip("10.1.2.0"),
    oif: DEV,
    onlink: true,
    protocol: RTPROT_FLANNEL,
  });
  const plan = planSync([b], {
    routes: nl.routeList(),
    neighs: nl.neighList(DEV),
    fdbs: nl.fdbList(DEV),
  }, scope);
  assert.deepEqual(Object.values(plan).flat(), []);
});

Deno.test("planSync() removes flannel's routes out of scope, adopts the previous version's, never touches an admin's", () => {
  const b = entries(lease("10.1.2.0/24", "192.168.0.2"));
  const c = entries(lease("10.1.3.0/24", "192.168.0.3", "vxlan", { VNI: 1, VtepMAC: MAC_C }));
  const P = RTPROT_FLANNEL;
  const kernel = [
    // b's route as the previous version left it (protocol boot, otherwise right): adopted.
    routeOf({ dst: net("10.1.2.0/24"), gateway: ip("10.1.2.0"), oif: DEV, onlink: true }),
    // c's route as the previous version left it, at another metric: replaced by the marked one.
    routeOf({
      dst: net("10.1.3.0/24"),
      gateway: ip("10.1.3.0"),
      oif: DEV,
      onlink: true,
      metric: 5,
    }),
    // flannel's own routes from an earlier Network, a hijack lease, a gone device: all removed.
    routeOf({
      dst: net("10.2.7.0/24"),
      gateway: ip("10.2.7.0"),
      oif: DEV,
      onlink: true,
      protocol: P,
    }),
    routeOf({ dst: net("8.8.0.0/16"), gateway: ip("192.168.0.8"), oif: EXT, protocol: P }),
    routeOf({
      dst: net("10.1.9.0/24"),
      gateway: ip("10.1.9.0"),
      oif: 33,
      onlink: true,
      protocol: P,
    }),
    // an admin's routes inside the network: static, and boot where no lease wants a route.
    routeOf({ dst: net("10.1.50.0/24"), gateway: ip("192.168.0.50"), oif: EXT, protocol: 4 }),
    routeOf({
      dst: net("10.1.2.0/24"),
      gateway: ip("192.168.0.51"),
      oif: EXT,
      protocol: 4,
      metric: 10,
    }),
    routeOf({ dst: net("10.1.51.0/24"), gateway: ip("192.168.0.51"), oif: EXT }),
  ];
  const plan = planSync([b, c], { routes: kernel, neighs: [], fdbs: [] }, scope);
  assert.deepEqual(plan.routeDel.map((r) => `${r.dst} ${r.protocol}`), [
    "10.1.3.0/24 3",
    "10.2.7.0/24 102",
    "8.8.0.0/16 102",
    "10.1.9.0/24 102",
  ]);
  assert.deepEqual(plan.routeSet, [b.route, c.route]);
  assert.deepEqual(routeSpecOf(b.route).protocol, RTPROT_FLANNEL);
});

Deno.test("planSync() replaces a non-permanent (learned) ARP entry and deletes extra FDB dsts", () => {
  const b = entries(lease("10.1.2.0/24", "192.168.0.2"));
  const plan = planSync([b], {
    routes: [],
    neighs: [{
      index: DEV,
      ip: ip("10.1.2.0"),
      mac: MAC_B,
      state: 0x02,
      flags: 0,
      permanent: false,
    }],
    fdbs: [
      { index: DEV, mac: MAC_B, dst: ip("192.168.0.2"), state: 0x80, flags: 2, permanent: true },
      { index: DEV, mac: MAC_B, dst: ip("192.168.0.7"), state: 0x80, flags: 2, permanent: true },
    ],
  }, scope);
  assert.deepEqual(plan.neighSet, [b.neigh]);
  assert.deepEqual(plan.fdbDel.map((f) => String(f.dst)), ["192.168.0.7"]);
  assert.deepEqual(plan.fdbSet, []);
});

Deno.test("planUpdate()", async (t) => {
  const b = entries(lease("10.1.2.0/24", "192.168.0.2"));
  await t.step("added: FDB, then ARP, then route", () => {
    const p = planUpdate(null, b, () => false);
    assert.deepEqual([p.fdbSet, p.neighSet, p.routeSet], [[b.fdb], [b.neigh], [b.route]]);
    assert.deepEqual([...p.routeDel, ...p.neighDel, ...p.fdbDel], []);
  });
  await t.step("removed: route, ARP and FDB go", () => {
    const p = planUpdate(b, null, () => false);
    assert.deepEqual(p.routeDel.map((r) => `${r.dst} ${r.gateway} ${r.oif} ${r.flags}`), [
      `10.1.2.0/24 10.1.2.0 ${DEV} 4`,
    ]);
    assert.deepEqual(p.neighDel.map((n) => String(n.ip)), ["10.1.2.0"]);
    assert.deepEqual(p.fdbDel.map((f) => `${f.mac} ${f.dst}`), [`${MAC_B} 192.168.0.2`]);
  });
  await t.step("new VtepMAC: the old MAC's FDB entry goes, the route is replaced in place", () => {
    const b2 = entries(lease("10.1.2.0/24", "192.168.0.2", "vxlan", { VNI: 1, VtepMAC: MAC_C }));
    const p = planUpdate(b, b2, () => false);
    assert.deepEqual(p.routeDel, []);
    assert.deepEqual(p.neighDel, []);
    assert.deepEqual(p.fdbDel.map((f) => f.mac), [MAC_B]);
    assert.deepEqual(p.fdbSet, [b2.fdb]);
  });
  await t.step("removed, but another peer uses the same VtepMAC: the FDB entry stays", () => {
    const p = planUpdate(b, null, (mac) => mac === MAC_B);
    assert.deepEqual(p.fdbDel, []);
  });
  await t.step("switched to direct routing: ARP and FDB go, the route is replaced", () => {
    const d = entries(lease("10.1.2.0/24", "192.168.0.2"), ctx({ directRouting: true }));
    const p = planUpdate(b, d, () => false);
    assert.deepEqual(p.routeDel, []);
    assert.deepEqual(p.neighDel.length, 1);
    assert.deepEqual(p.fdbDel.length, 1);
    assert.deepEqual(p.routeSet, [d.route]);
  });
});

Deno.test("KernelEntryTable follows lease batches on a fake kernel", () => {
  const nl = new FakeNetlink();
  nl.fdbSet(DEV, "aa:bb:cc:00:00:0d", ip("192.168.0.4")); // stale from a gone peer
  nl.neighSet(DEV, ip("10.1.4.0"), "aa:bb:cc:00:00:0d");
  nl.routeReplace({
    dst: net("10.1.4.0/24"),
    gateway: ip("10.1.4.0"),
    oif: DEV,
    onlink: true,
    protocol: RTPROT_FLANNEL,
  });
  nl.fdbSet(DEV, MAC_B, ip("192.168.0.2")); // right already
  nl.neighSet(DEV, ip("10.1.2.0"), MAC_B);
  nl.routeReplace({
    dst: net("10.1.2.0/24"),
    gateway: ip("10.1.2.0"),
    oif: DEV,
    onlink: true,
    protocol: RTPROT_FLANNEL,
  });
  nl.take();
  const table = new KernelEntryTable(nl, scope, (l) => planVxlanPeer(l, ctx()), logger("test"));

  const { lines } = captureLog(() => {
    const changes = table.sync([
      lease("10.1.2.0/24", "192.168.0.2"),
      lease("10.1.6.0/24", "192.168.0.6", "host-gw", null),
    ]);
    assert.equal(changes, 3);
  });
  assert.deepEqual(nl.take(), [
    "routeDel 10.1.4.0/24 via 10.1.4.0 dev 7",
    "neighDel 7 10.1.4.0",
    "fdbDel 7 aa:bb:cc:00:00:0d 192.168.0.4",
  ]);
  assert.equal(lines.length, 1);
  assert.match(
    lines[0],
    /^W.*Skipping peer 10\.1\.6\.0\/24 \(PublicIP 192\.168\.0\.6\): backend type "host-gw"/,
  );

  const c = lease("10.1.3.0/24", "192.168.0.3", "vxlan", { VNI: 1, VtepMAC: MAC_C });
  const again = captureLog(() => {
    table.apply([{ type: "added", lease: c }]);
    // The same skipped lease again (a renewal): no second warning.
    table.apply([{ type: "added", lease: lease("10.1.6.0/24", "192.168.0.6", "host-gw", null) }]);
  });
  assert.deepEqual(again.lines, []);
  assert.deepEqual(nl.take(), [
    `fdbSet 7 ${MAC_C} 192.168.0.3`,
    `neighSet 7 10.1.3.0 ${MAC_C}`,
    "routeReplace 10.1.3.0/24 via 10.1.3.0 dev 7 onlink",
  ]);

  table.apply([{ type: "removed", lease: lease("10.1.2.0/24", "192.168.0.2") }]);
  assert.deepEqual(nl.take(), [
    "routeDel 10.1.2.0/24 via 10.1.2.0 dev 7",
    "neighDel 7 10.1.2.0",
    `fdbDel 7 ${MAC_B} 192.168.0.2`,
  ]);
  assert.equal(table.size, 1);
  assert.deepEqual(nl.routes.map((r) => String(r.dst)), ["10.1.3.0/24"]);

  // A restart: a new table over the same kernel and leases changes nothing.
  const table2 = new KernelEntryTable(nl, scope, (l) => planVxlanPeer(l, ctx()), logger("test"));
  assert.equal(table2.sync([c]), 0);
  assert.deepEqual(nl.take(), []);

  // Self-healing: a deleted route comes back, an unknown one is not invented.
  nl.routes = [];
  assert.equal(
    table2.restoreRoute(routeOf({ dst: net("10.1.3.0/24"), gateway: ip("10.1.3.0"), oif: DEV })),
    true,
  );
  assert.equal(table2.restoreRoute(routeOf({ dst: net("10.1.9.0/24"), oif: DEV })), false);
  assert.deepEqual(nl.take(), ["routeReplace 10.1.3.0/24 via 10.1.3.0 dev 7 onlink"]);
});

Deno.test("KernelEntryTable.resync() before the first lease set leaves the kernel alone", () => {
  const nl = new FakeNetlink();
  nl.fdbSet(DEV, MAC_B, ip("192.168.0.2"));
  nl.neighSet(DEV, ip("10.1.2.0"), MAC_B);
  nl.routeReplace({
    dst: net("10.1.2.0/24"),
    gateway: ip("10.1.2.0"),
    oif: DEV,
    onlink: true,
    protocol: RTPROT_FLANNEL,
  });
  nl.take();
  const table = new KernelEntryTable(nl, scope, (l) => planVxlanPeer(l, ctx()), logger("test"));
  // A repair event (ENOBUFS, device set down) can come before the lease watch's first batch.
  assert.equal(table.resync(), 0);
  assert.deepEqual(nl.take(), []);
  assert.equal(table.sync([lease("10.1.2.0/24", "192.168.0.2")]), 0);
  assert.deepEqual(nl.take(), []);
});

Deno.test("KernelEntryTable logs a failed kernel change and carries on", () => {
  const nl = new FakeNetlink();
  nl.fdbSet = () => {
    throw new Error("RTM_NEWNEIGH: ENODEV (No such device)");
  };
  const table = new KernelEntryTable(nl, scope, (l) => planVxlanPeer(l, ctx()), logger("test"));
  const { lines } = captureLog(() =>
    table.apply([{ type: "added", lease: lease("10.1.2.0/24", "192.168.0.2") }])
  );
  assert.equal(lines.length, 1);
  assert.match(
    lines[0],
    /^E.*Cannot set FDB entry aa:bb:cc:00:00:0b dst 192\.168\.0\.2 on #7: RTM_NEWNEIGH: ENODEV/,
  );
  assert.deepEqual(nl.routes.map((r) => String(r.dst)), ["10.1.2.0/24"]);
});

Deno.test("KernelEntryTable: a zero or multicast VtepMAC changes nothing in the kernel, one warning per change", () => {
  const nl = new FakeNetlink();
  const table = new KernelEntryTable(nl, scope, (l) => planVxlanPeer(l, ctx()), logger("test"));
  const bad = (mac: string, rev: number) => ({
    ...lease("10.1.2.0/24", "192.168.0.2", "vxlan", { VNI: 1, VtepMAC: mac }),
    modRevision: rev,
  });
  const { lines } = captureLog(() => {
    table.sync([bad("00:00:00:00:00:00", 1)]);
    table.sync([bad("00:00:00:00:00:00", 1)]);
    table.resync();
    table.apply([{ type: "added", lease: bad("01:00:5e:00:00:01", 2) }]);
    table.sync([bad("01:00:5e:00:00:01", 2)]);
  });
  assert.deepEqual(nl.take(), []);
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(lines[0], /^W.*VtepMAC 00:00:00:00:00:00 is the zero MAC/);
  assert.match(lines[1], /^W.*VtepMAC 01:00:5e:00:00:01 is a multicast or broadcast MAC/);
});

Deno.test("FakeNetlink keeps the kernel's replace semantics", () => {
  const nl = new FakeNetlink();
  nl.routeReplace({ dst: net("10.1.2.0/24"), gateway: ip("10.1.2.0"), oif: 5, onlink: true });
  nl.routeReplace({ dst: net("10.1.2.0/24"), gateway: ip("192.168.0.2"), oif: 2 });
  assert.equal(nl.routes.length, 1);
  assert.equal(String(nl.routes[0].gateway), "192.168.0.2");
  nl.fdbSet(5, "aa:bb:cc:dd:ee:ff", ip("192.168.0.2"));
  nl.fdbSet(5, "aa:bb:cc:dd:ee:ff", ip("192.168.0.3"));
  assert.deepEqual(nl.fdbs.map((f) => String(f.dst)), ["192.168.0.3"]);
  assert.throws(() => nl.routeDel({ dst: net("10.9.0.0/24") }), { code: "ESRCH" });
  assert.throws(() => nl.neighDel(5, ip("10.1.2.0")), { code: "ENOENT" });
});

Deno.test("isDirect() is true only for a gatewayless unicast route out of the external interface", () => {
  const nl = new FakeNetlink();
  nl.lookups.set("192.168.0.2", routeOf({ dst: net("192.168.0.2/32"), oif: EXT }));
  nl.lookups.set(
    "172.16.0.3",
    routeOf({ dst: net("172.16.0.3/32"), gateway: ip("192.168.0.254"), oif: EXT }),
  );
  nl.lookups.set("10.9.0.4", routeOf({ dst: net("10.9.0.4/32"), oif: 9 }));
  nl.lookups.set("192.168.0.1", { ...routeOf({ dst: net("192.168.0.1/32"), oif: 1 }), type: 2 });
  assert.equal(isDirect(nl, ip("192.168.0.2"), EXT), true);
  assert.equal(isDirect(nl, ip("172.16.0.3"), EXT), false, "behind a router");
  assert.equal(isDirect(nl, ip("10.9.0.4"), EXT), false, "on another interface");
  assert.equal(isDirect(nl, ip("192.168.0.1"), EXT), false, "a local address");
  assert.equal(isDirect(nl, ip("203.0.113.9"), EXT), false, "unreachable");
  nl.routeGet = () => {
    throw new Error("RTM_GETROUTE: ENETUNREACH (Network is unreachable)");
  };
  assert.equal(isDirect(nl, ip("192.168.0.2"), EXT), false, "lookup error");
});

Deno.test("KernelEntryTable never replaces a connected, static or routing-daemon route to a peer's subnet", () => {
  const nl = new FakeNetlink();
  // eth0's connected route (a Network overlapping the underlay), an admin's static route, a bird
  // route (protocol 12), and a plain `ip route add` (boot), which is adopted as before.
  nl.routes.push(
    routeOf({ dst: net("10.1.2.0/24"), oif: EXT, protocol: 2 }),
    routeOf({ dst: net("10.1.3.0/24"), gateway: ip("192.168.0.9"), oif: EXT, protocol: 4 }),
    routeOf({ dst: net("10.1.4.0/24"), gateway: ip("192.168.0.9"), oif: EXT, protocol: 12 }),
    routeOf({ dst: net("10.1.5.0/24"), gateway: ip("10.1.5.0"), oif: DEV, protocol: 3 }),
  );
  const table = new KernelEntryTable(nl, scope, (l) => planVxlanPeer(l, ctx()), logger("test"));
  const peer = (subnet: string, n: number) =>
    lease(subnet, `192.168.0.${n}`, "vxlan", {
      VNI: 1,
      VtepMAC: `aa:bb:cc:00:00:0${n}`,
    });
  const { lines } = captureLog(() => {
    table.sync([peer("10.1.2.0/24", 2), peer("10.1.3.0/24", 3)]);
    // Incremental events and a second full sync warn no more than once per subnet.
    table.apply([{ type: "added", lease: peer("10.1.4.0/24", 4) }]);
    table.apply([{ type: "added", lease: peer("10.1.5.0/24", 5) }]);
    table.resync();
  });
  const routeCalls = nl.take().filter((c) => c.startsWith("route"));
  assert.deepEqual(routeCalls, [
    "routeReplace 10.1.5.0/24 via 10.1.5.0 dev 7 onlink",
  ]);
  assert.deepEqual(
    nl.routes.map((r) => `${r.dst} ${r.protocol}`).sort(),
    ["10.1.2.0/24 2", "10.1.3.0/24 4", "10.1.4.0/24 12", "10.1.5.0/24 102"],
  );
  assert.equal(lines.length, 3, lines.join("\n"));
  assert.match(lines[0], /^W.*Not routing peer subnet 10\.1\.2\.0\/24: .*protocol kernel/);
  assert.match(lines[1], /^W.*Not routing peer subnet 10\.1\.3\.0\/24: .*protocol static/);
  assert.match(lines[2], /^W.*Not routing peer subnet 10\.1\.4\.0\/24: .*protocol 12/);

  // The admin removes the static route: the next sync routes the peer.
  nl.routes = nl.routes.filter((r) => r.protocol !== 4);
  table.resync();
  assert.deepEqual(nl.take().filter((c) => c.startsWith("route")), [
    "routeReplace 10.1.3.0/24 via 10.1.3.0 dev 7 onlink",
  ]);
});

Deno.test("KernelEntryTable: one VtepMAC claimed by two hosts follows the newer lease and comes back when it goes", () => {
  const nl = new FakeNetlink();
  const table = new KernelEntryTable(nl, scope, (l) => planVxlanPeer(l, ctx()), logger("test"));
  const older = { ...lease("10.1.2.0/24", "192.168.0.2"), modRevision: 5 };
  // Same VtepMAC (MAC_B), another host: the same host after an address change (its old lease
  // lingers until it expires), a clone with a machine-id-derived MAC, or a copied lease.
  const newer = { ...lease("10.1.9.0/24", "192.168.0.9"), modRevision: 7 };
  const fdb = () => nl.fdbs.filter((f) => f.mac === MAC_B).map((f) => String(f.dst));
  const routes = () => nl.routes.map((r) => String(r.dst)).sort();

  const { lines } = captureLog(() => {
    table.sync([older]);
    table.apply([{ type: "added", lease: newer }]);
    table.resync(); // no second warning
  });
  assert.deepEqual(fdb(), ["192.168.0.9"]);
  assert.deepEqual(routes(), ["10.1.9.0/24"]);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(
    lines[0],
    /^W.*Skipping peer 10\.1\.2\.0\/24 \(PublicIP 192\.168\.0\.2\): VtepMAC aa:bb:cc:00:00:0b is also claimed by peer 10\.1\.9\.0\/24 \(at 192\.168\.0\.9\)/,
  );

  // A restart, whatever the listing order: the newer lease gets the MAC.
  for (const order of [[older, newer], [newer, older]]) {
    const nl2 = new FakeNetlink();
    const t2 = new KernelEntryTable(nl2, scope, (l) => planVxlanPeer(l, ctx()), logger("test"));
    captureLog(() => t2.sync(order));
    assert.deepEqual(nl2.fdbs.map((f) => String(f.dst)), ["192.168.0.9"]);
  }

  // The newer one goes (a copy deleted, an old address's lease expired): the other gets the MAC
  // back; before, the FDB entry kept pointing at the deleted lease's host.
  captureLog(() => table.apply([{ type: "removed", lease: newer }]));
  assert.deepEqual(fdb(), ["192.168.0.2"]);
  assert.deepEqual(routes(), ["10.1.2.0/24"]);
  captureLog(() => table.apply([{ type: "removed", lease: older }]));
  assert.deepEqual(fdb(), []);
  assert.equal(table.size, 0);
});
