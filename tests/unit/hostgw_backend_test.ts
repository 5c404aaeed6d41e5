import assert from "node:assert/strict";
import type { NetlinkEvent } from "../../ffi/netlink/mod.ts";
import type { NetworkConfig } from "../../lib/config.ts";
import type { IP, IPNet } from "../../lib/ip.ts";
import { encodeLeaseValue, type LeaseAttrs, type LeaseSubnets } from "../../lib/lease.ts";
import type { Acquired, LeaseEvent, LeaseSnapshot, SubnetManager } from "../../lib/subnet/mod.ts";
import type { ExternalInterface } from "../../lib/extiface.ts";
import { create, type HostGwPeerContext, planHostGwPeer } from "../../lib/backend/hostgw/mod.ts";
import { RTPROT_FLANNEL } from "../../lib/backend/kernel_plan.ts";
import { fakeContext, FakeNetlink, lease, noEvents, routeOf } from "./fake_netlink.ts";
import { ip, logCapture, net } from "../helpers.ts";

const EXT = 2;
const NETWORK: IPNet = net("10.1.0.0/16");
const OWN: IPNet = net("10.1.1.0/24");
const config: NetworkConfig = {
  ipv4: {
    network: NETWORK,
    subnetLen: 24,
    subnetMin: ip("10.1.1.0"),
    subnetMax: ip("10.1.255.0"),
  },
  ipv6: null,
  backend: { type: "host-gw" },
};
const ext: ExternalInterface = {
  name: "eth0",
  index: EXT,
  ifaceAddr: ip("192.168.0.1"),
  publicIP: ip("192.168.0.1"),
  ifaceV6Addr: null,
  publicIPv6: null,
  mtu: 1500,
};
const c = {
  extIndex: EXT,
  extName: "eth0",
  ownIP: ip("192.168.0.1"),
  isDirect: (a: IP) => a.toString().startsWith("192.168.0."),
};

Deno.test("planHostGwPeer", async (t) => {
  await t.step(
    "a directly connected peer: route via its PublicIP on the external interface",
    () => {
      const d = planHostGwPeer(lease("10.1.2.0/24", "192.168.0.2", "host-gw", null), c);
      assert.deepEqual(d, {
        ok: true,
        entries: {
          route: { dst: net("10.1.2.0/24"), gateway: ip("192.168.0.2"), oif: EXT, onlink: false },
          neigh: null,
          fdb: null,
        },
      });
    },
  );
  await t.step("a peer behind a router: skipped with a warning naming it", () => {
    const d = planHostGwPeer(lease("10.1.3.0/24", "172.16.0.3", "host-gw", null), c);
    assert.equal(d.ok, false);
    if (!d.ok) {
      assert.equal(
        d.reason,
        "Skipping peer 10.1.3.0/24 (PublicIP 172.16.0.3): 172.16.0.3 is not on a directly " +
          "connected subnet of eth0, host-gw needs the peers on the same link (no route installed)",
      );
    }
  });
  await t.step("a lease with our own PublicIP: skipped", () => {
    const d = planHostGwPeer(lease("10.1.9.0/24", "192.168.0.1", "host-gw", null), c);
    assert.equal(d.ok, false);
  });
  await t.step("a vxlan peer: skipped", () => {
    const d = planHostGwPeer(lease("10.1.4.0/24", "192.168.0.4"), c);
    assert.equal(d.ok, false);
    if (!d.ok) assert.match(d.reason, /backend type "vxlan" is not host-gw/);
  });
});

class FakeSubnets implements SubnetManager {
  acquired: LeaseAttrs[] = [];
  constructor(readonly config: NetworkConfig, private readonly batches: LeaseEvent[][]) {}
  own: LeaseSubnets = { subnet: OWN, ipv6Subnet: null };
  acquireLease(attrs: LeaseAttrs): Promise<Acquired> {
    this.acquired.push(attrs);
    return Promise.resolve({
      lease: { ...this.own, attrs, expiration: null, modRevision: 1, etcdLeaseId: null },
      peers: { revision: 1, entries: [] },
    });
  }
  keepLease(): Promise<void> {
    return Promise.resolve();
  }
  async *watchLeases(
    _own: LeaseSubnets,
    _from: LeaseSnapshot | null,
    signal: AbortSignal,
  ): AsyncIterable<LeaseEvent[]> {
    for (const b of this.batches) yield b;
    await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
  }
}

Deno.test("host-gw backend: lease without BackendData, MTU of ext, stale routes removed on start", async () => {
  const nl = new FakeNetlink();
  nl.lookups.set("192.168.0.2", routeOf({ dst: net("192.168.0.2/32"), oif: EXT }));
  nl.lookups.set("192.168.0.3", routeOf({ dst: net("192.168.0.3/32"), oif: EXT }));
  nl.lookups.set(
    "172.16.0.5",
    routeOf({ dst: net("172.16.0.5/32"), gateway: ip("192.168.0.254"), oif: EXT }),
  );
  // Installed by flannel before the restart (marked): one right, one of a peer now gone.
  const P = RTPROT_FLANNEL;
  nl.routeReplace({ dst: net("10.1.2.0/24"), gateway: ip("192.168.0.2"), oif: EXT, protocol: P });
  nl.routeReplace({ dst: net("10.1.9.0/24"), gateway: ip("192.168.0.9"), oif: EXT, protocol: P });
  // An admin's routes inside the network: never touched.
  nl.routes.push(routeOf({ dst: net("10.1.50.0/24"), gateway: ip("192.168.0.50"), oif: EXT }, 4));
  nl.routes.push(routeOf({ dst: net("10.1.51.0/24"), gateway: ip("192.168.0.51"), oif: EXT }, 3));
  nl.routes.push(routeOf({ dst: net("10.1.1.0/24"), oif: 30 }, 2)); // own bridge
  nl.routes.push(routeOf({ dst: net("0.0.0.0/0"), gateway: ip("192.168.0.254"), oif: EXT }));
  nl.take();
  const subnets = new FakeSubnets(config, [
    [
      { type: "added", lease: lease("10.1.2.0/24", "192.168.0.2", "host-gw", null) },
      { type: "added", lease: lease("10.1.5.0/24", "172.16.0.5", "host-gw", null) },
    ],
    [{ type: "added", lease: lease("10.1.3.0/24", "192.168.0.3", "host-gw", null) }],
    [{ type: "removed", lease: lease("10.1.2.0/24", "192.168.0.2", "host-gw", null) }],
  ]);
  const backend = create(fakeContext({ config, ext, subnets, nl, events: noEvents }));
  const ac = new AbortController();
  using _init = logCapture();
  const network = await backend.init(ac.signal);
  assert.equal(network.mtu, 1500);
  assert.equal(
    encodeLeaseValue(subnets.acquired[0]),
    '{"PublicIP":"192.168.0.1","PublicIPv6":null,"BackendType":"host-gw"}',
  );
  using log = logCapture();
  const lines = log.lines;
  const running = network.run(ac.signal);
  await new Promise((r) => setTimeout(r, 20));
  ac.abort();
  await running;
  assert.deepEqual(nl.take(), [
    "routeDel 10.1.9.0/24 via 192.168.0.9 dev 2",
    "routeReplace 10.1.3.0/24 via 192.168.0.3 dev 2",
    "routeDel 10.1.2.0/24 via 192.168.0.2 dev 2",
  ]);
  assert.equal(lines.filter((l) => l.startsWith("W")).length, 1);
  assert.match(
    lines.find((l) => l.startsWith("W"))!,
    /Skipping peer 10\.1\.5\.0\/24 \(PublicIP 172\.16\.0\.5\)/,
  );
  assert.equal(nl.closed, true);
});

Deno.test("host-gw backend refuses a public IP that is not the interface address", async () => {
  const nl = new FakeNetlink();
  const subnets = new FakeSubnets(config, []);
  const backend = create(
    fakeContext({ config, ext: { ...ext, publicIP: ip("1.2.3.4") }, subnets, nl }),
  );
  await assert.rejects(backend.init(new AbortController().signal), {
    message:
      "Cannot use host-gw with public IP 1.2.3.4: it differs from the address 192.168.0.1 of eth0 (NAT is not supported)",
  });
  assert.deepEqual(subnets.acquired, []);
});

Deno.test("host-gw backend: routes the kernel flushed with the external interface come back when it is up again", async () => {
  const nl = new FakeNetlink();
  nl.lookups.set("192.168.0.2", routeOf({ dst: net("192.168.0.2/32"), oif: EXT }));
  const subnets = new FakeSubnets(config, [
    [{ type: "added", lease: lease("10.1.2.0/24", "192.168.0.2", "host-gw", null) }],
  ]);
  const queue: NetlinkEvent[] = [];
  let wake: (() => void) | null = null;
  const push = (e: NetlinkEvent) => {
    queue.push(e);
    wake?.();
  };
  const source = async function* (signal: AbortSignal): AsyncIterable<NetlinkEvent> {
    signal.addEventListener("abort", () => wake?.(), { once: true });
    while (!signal.aborted) {
      const e = queue.shift();
      if (e) yield e;
      else await new Promise<void>((r) => wake = r);
    }
  };
  const backend = create(fakeContext({ config, ext, subnets, nl, events: source }));
  const ac = new AbortController();
  using log = logCapture();
  const lines = log.lines;
  const network = await backend.init(ac.signal);
  const running = network.run(ac.signal);
  const until = async (cond: () => boolean) => {
    for (let i = 0; !cond(); i++) {
      if (i > 500) throw new Error("Condition not met in time");
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  await until(() => nl.routes.length === 1);
  nl.take();
  const link = (up: boolean): NetlinkEvent => ({
    kind: "link",
    type: "new",
    link: {
      index: EXT,
      name: "eth0",
      kind: null,
      mtu: 1500,
      mac: null,
      flags: 0,
      up,
      vxlan: null,
    },
  });
  // `ip link set eth0 down`: IPv4 drops the routes through it and sends no RTM_DELROUTE.
  push(link(false));
  nl.routes = [];
  push(link(true));
  await until(() => nl.routes.length === 1);
  push(link(true)); // another change while up (carrier, MTU): nothing to do
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(nl.take(), ["routeReplace 10.1.2.0/24 via 192.168.0.2 dev 2"]);
  ac.abort();
  await running;
  assert.ok(lines.some((l) => /eth0 is up again: restoring peer routes/.test(l)), lines.join(""));
});

Deno.test("planHostGwPeer, IPv6: the peer's IPv6 subnet via its PublicIPv6", async (t) => {
  const c6: HostGwPeerContext = {
    family: 6,
    extIndex: EXT,
    extName: "eth0",
    ownIP: ip("fd00::1"),
    isDirect: (a: IP) => a.toString().startsWith("fd00::"),
  };
  const v6 = (subnet: string, publicIPv6: string) =>
    lease("10.1.2.0/24", "192.168.0.2", "host-gw", null, { subnet, publicIPv6 });
  await t.step("directly connected: route via PublicIPv6 on eth0", () => {
    assert.deepEqual(planHostGwPeer(v6("fc00:0:0:2::/64", "fd00::2"), c6), {
      ok: true,
      entries: {
        route: { dst: net("fc00:0:0:2::/64"), gateway: ip("fd00::2"), oif: EXT, onlink: false },
        neigh: null,
        fdb: null,
      },
    });
  });
  await t.step("behind a router: skipped, named by its PublicIPv6", () => {
    const d = planHostGwPeer(v6("fc00:0:0:3::/64", "2001:db8::3"), c6);
    assert.equal(d.ok, false);
    if (!d.ok) {
      assert.match(d.reason, /peer fc00:0:0:3::\/64 \(PublicIPv6 2001:db8::3\).*not on a directly/);
    }
  });
  await t.step("an IPv4-only peer has nothing for the IPv6 table", () => {
    const d = planHostGwPeer(lease("10.1.4.0/24", "192.168.0.4", "host-gw", null), c6);
    assert.equal(d.ok, false);
  });
  await t.step("our own PublicIPv6: skipped", () => {
    assert.equal(planHostGwPeer(v6("fc00:0:0:9::/64", "fd00::1"), c6).ok, false);
  });
});
