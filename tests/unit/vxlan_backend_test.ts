import assert from "node:assert/strict";
import { SyscallError } from "../../ffi/errno.ts";
import type { NetlinkEvent } from "../../ffi/netlink/mod.ts";
import type { NetworkConfig, VxlanBackendConfig } from "../../lib/config.ts";
import type { IPNet } from "../../lib/ip.ts";
import { encodeLeaseValue, type LeaseAttrs, type LeaseSubnets } from "../../lib/lease.ts";
import { logger } from "../../lib/log.ts";
import type { Acquired, LeaseEvent, LeaseSnapshot, SubnetManager } from "../../lib/subnet/mod.ts";
import type { ExternalInterface } from "../../lib/extiface.ts";
import { create } from "../../lib/backend/vxlan/mod.ts";
import {
  type DeviceSpec,
  ensureAddress,
  ensureDevice,
  incompatibility,
} from "../../lib/backend/vxlan/device.ts";
import { fakeContext, FakeNetlink, lease, routeOf } from "./fake_netlink.ts";
import { captureLog, ip, logCapture, net } from "../helpers.ts";

const spec: DeviceSpec = {
  name: "flannel.1",
  vni: 1,
  local: ip("192.168.0.1"),
  lowerIndex: 2,
  port: 8472,
  learning: false,
  gbp: false,
  mtu: 1450,
};

function withDevice(nl: FakeNetlink, over: Partial<DeviceSpec> = {}, mac = "0a:00:00:00:00:99") {
  const s = { ...spec, ...over };
  nl.linkAddVxlan({ ...s, lowerIndex: s.lowerIndex, mac });
  nl.linkSetUp(nl.links.at(-1)!.index);
  nl.take();
  return nl.links.at(-1)!;
}

Deno.test("incompatibility() names the first field that differs", () => {
  const nl = new FakeNetlink();
  const link = withDevice(nl);
  assert.equal(incompatibility(link, spec), null);
  assert.equal(incompatibility(link, { ...spec, vni: 2 }), "VNI 1, want 2");
  assert.equal(
    incompatibility(link, { ...spec, local: ip("192.168.0.9") }),
    "local 192.168.0.1, want 192.168.0.9",
  );
  assert.equal(incompatibility(link, { ...spec, lowerIndex: 3 }), "lower device #2, want #3");
  assert.equal(incompatibility(link, { ...spec, port: 4789 }), "port 8472, want 4789");
  assert.equal(
    incompatibility({ ...link, kind: "veth", vxlan: null }, spec),
    "kind is veth, not vxlan",
  );
  assert.equal(
    incompatibility({ ...link, vxlan: { ...link.vxlan!, group: ip("239.1.1.1") } }, spec),
    "multicast group 239.1.1.1, want none",
  );
  const modes = (over: Partial<NonNullable<typeof link.vxlan>>) => ({
    ...link,
    vxlan: { ...link.vxlan!, ...over },
  });
  assert.equal(incompatibility(modes({ learning: true }), spec), "learning on, want off");
  assert.equal(
    incompatibility(link, { ...spec, learning: true }),
    "learning off, want on",
  );
  assert.equal(incompatibility(link, { ...spec, gbp: true }), "gbp off, want on");
  assert.equal(incompatibility(modes({ gbp: true }), spec), "gbp on, want off");
  assert.equal(incompatibility(modes({ proxy: true }), spec), "proxy on, want off");
  assert.equal(incompatibility(modes({ l2miss: true }), spec), "l2miss on, want off");
  assert.equal(incompatibility(modes({ l3miss: true }), spec), "l3miss on, want off");
  // Upstream v0.4.0's device: the first difference is named.
  assert.equal(
    incompatibility(modes({ learning: true, proxy: true, l2miss: true, l3miss: true }), spec),
    "learning on, want off",
  );
});

Deno.test("ensureDevice()", async (t) => {
  await t.step("creates a missing device and sets it up", () => {
    const nl = new FakeNetlink();
    const { result } = captureLog(() => ensureDevice(nl, spec, logger("test")));
    assert.equal(result.up, true);
    assert.deepEqual(nl.take(), ["linkAddVxlan flannel.1 vni 1 mac random", "linkSetUp 10"]);
  });
  await t.step("reuses a compatible device as it is: same MAC, no change", () => {
    const nl = new FakeNetlink();
    const before = withDevice(nl);
    const { result } = captureLog(() => ensureDevice(nl, spec, logger("test")));
    assert.equal(result.mac, before.mac);
    assert.equal(result.index, before.index);
    assert.deepEqual(nl.take(), []);
  });
  await t.step("fixes the MTU of a reused device in place", () => {
    const nl = new FakeNetlink();
    withDevice(nl, { mtu: 1400 });
    captureLog(() => ensureDevice(nl, spec, logger("test")));
    assert.deepEqual(nl.take(), ["linkSetMtu 10 1450"]);
  });
  await t.step("recreates an incompatible device with a warning, keeping its MAC", () => {
    const nl = new FakeNetlink();
    withDevice(nl, { local: ip("192.168.0.77") });
    const { result, lines } = captureLog(() => ensureDevice(nl, spec, logger("test")));
    assert.deepEqual(nl.take(), [
      "linkDelete 10",
      "linkAddVxlan flannel.1 vni 1 mac 0a:00:00:00:00:99",
      "linkSetUp 11",
    ]);
    assert.equal(result.mac, "0a:00:00:00:00:99");
    assert.deepEqual(result.vxlan?.local, ip("192.168.0.1"));
    assert.match(
      lines[0],
      /^W.*Device flannel\.1 already exists with incompatible configuration \(local 192\.168\.0\.77, want 192\.168\.0\.1\): recreating it/,
    );
  });
});

Deno.test("ensureDevice() reports the kernel's EEXIST when another device holds the VNI and port", () => {
  const nl = new FakeNetlink();
  nl.linkAddVxlan = (s) => {
    nl.calls.push(`linkAddVxlan ${s.name}`);
    throw new SyscallError(
      "RTM_NEWLINK",
      17,
      "A VXLAN device with the specified VNI already exists",
    );
  };
  assert.throws(() => captureLog(() => ensureDevice(nl, spec, logger("test"))), {
    message:
      "RTM_NEWLINK: EEXIST (File exists): A VXLAN device with the specified VNI already exists",
  });
});

Deno.test("ensureAddress() leaves the right address alone and removes others", () => {
  const nl = new FakeNetlink();
  const dev = withDevice(nl);
  nl.addrAdd(dev.index, ip("10.1.2.0"), 32);
  nl.take();
  captureLog(() =>
    assert.equal(ensureAddress(nl, dev.index, ip("10.1.2.0"), 32, logger("test")), 0)
  );
  assert.deepEqual(nl.take(), []);
  nl.addrAdd(dev.index, ip("10.1.9.0"), 16);
  nl.take();
  captureLog(() => ensureAddress(nl, dev.index, ip("10.1.3.0"), 32, logger("test")));
  assert.deepEqual(nl.take(), [
    "addrDel 10 10.1.2.0/32",
    "addrDel 10 10.1.9.0/16",
    "addrAdd 10 10.1.3.0/32",
  ]);
});

// --- the backend over a fake kernel and a fake subnet manager

const NETWORK: IPNet = net("10.1.0.0/16");
const OWN: IPNet = net("10.1.1.0/24");

function config(over: Partial<VxlanBackendConfig> = {}): NetworkConfig {
  return {
    ipv4: {
      network: NETWORK,
      subnetLen: 24,
      subnetMin: ip("10.1.1.0"),
      subnetMax: ip("10.1.255.0"),
    },
    ipv6: null,
    backend: {
      type: "vxlan",
      vni: 1,
      port: 8472,
      mtu: null,
      directRouting: false,
      learning: false,
      gbp: false,
      ...over,
    },
  };
}

const ext: ExternalInterface = {
  name: "eth0",
  index: 2,
  ifaceAddr: ip("192.168.0.1"),
  publicIP: ip("192.168.0.1"),
  ifaceV6Addr: null,
  publicIPv6: null,
  mtu: 1500,
};

/** A subnet manager whose watch yields the batches pushed into it. */
class FakeSubnets implements SubnetManager {
  acquired: LeaseAttrs[] = [];
  #queue: LeaseEvent[][] = [];
  #wake: (() => void) | null = null;
  constructor(readonly config: NetworkConfig) {}
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
  push(batch: LeaseEvent[]): void {
    this.#queue.push(batch);
    this.#wake?.();
  }
  async *watchLeases(
    _own: LeaseSubnets,
    _from: LeaseSnapshot | null,
    signal: AbortSignal,
  ): AsyncIterable<LeaseEvent[]> {
    const onAbort = () => this.#wake?.();
    signal.addEventListener("abort", onAbort);
    try {
      while (!signal.aborted) {
        const b = this.#queue.shift();
        if (b) {
          yield b;
          continue;
        }
        await new Promise<void>((r) => this.#wake = r);
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
}

/** An event source that ends on abort. */
function events(queue: NetlinkEvent[]) {
  let wake: (() => void) | null = null;
  return {
    push(e: NetlinkEvent) {
      queue.push(e);
      wake?.();
    },
    source: async function* (signal: AbortSignal): AsyncIterable<NetlinkEvent> {
      signal.addEventListener("abort", () => wake?.());
      while (!signal.aborted) {
        const e = queue.shift();
        if (e) yield e;
        else await new Promise<void>((r) => wake = r);
      }
    },
  };
}

async function until(cond: () => boolean, ms = 1000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("Condition not met in time");
    await new Promise((r) => setTimeout(r, 2));
  }
}

Deno.test("vxlan backend: init advertises VNI then VtepMAC, MTU ext − 50, address base/32", async () => {
  const nl = new FakeNetlink();
  const subnets = new FakeSubnets(config());
  const backend = create(
    fakeContext({ config: subnets.config, ext, subnets, nl, events: events([]).source }),
  );
  const ac = new AbortController();
  using _log = logCapture();
  const network = await backend.init(ac.signal);
  assert.equal(network.mtu, 1450);
  assert.equal(
    encodeLeaseValue(subnets.acquired[0]),
    '{"PublicIP":"192.168.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"}}',
  );
  assert.deepEqual(nl.take(), [
    "linkAddVxlan flannel.1 vni 1 mac random",
    "linkSetUp 10",
    "addrAdd 10 10.1.1.0/32",
  ]);
  assert.deepEqual(nl.links[0].vxlan, {
    vni: 1,
    local: ip("192.168.0.1"),
    lowerIndex: 2,
    port: 8472,
    learning: false,
    ttl: 0,
    group: null,
    gbp: false,
    proxy: false,
    l2miss: false,
    l3miss: false,
  });
});

Deno.test("vxlan backend: a configured MTU wins over ext − 50", async () => {
  const nl = new FakeNetlink();
  const subnets = new FakeSubnets(config({ mtu: 1380, vni: 4, port: 4789 }));
  const backend = create(
    fakeContext({ config: subnets.config, ext, subnets, nl, events: events([]).source }),
  );
  using _log = logCapture();
  assert.equal((await backend.init(new AbortController().signal)).mtu, 1380);
  assert.equal(nl.links[0].name, "flannel.4");
  assert.equal(nl.links[0].vxlan?.port, 4789);
  nl.close();
});

Deno.test("vxlan backend: run follows leases, heals a deleted device with the same MAC, stops on abort", async () => {
  const nl = new FakeNetlink();
  const subnets = new FakeSubnets(config());
  const ev = events([]);
  const backend = create(
    fakeContext({ config: subnets.config, ext, subnets, nl, events: ev.source }),
  );
  const ac = new AbortController();
  using log = logCapture();
  const lines = log.lines;
  const network = await backend.init(ac.signal);
  const mac = nl.links[0].mac;
  nl.take();
  const running = network.run(ac.signal);
  subnets.push([{ type: "added", lease: lease("10.1.2.0/24", "192.168.0.2") }]);
  await until(() => nl.routes.length === 1);
  assert.deepEqual(nl.take(), [
    "fdbSet 10 aa:bb:cc:00:00:0b 192.168.0.2",
    "neighSet 10 10.1.2.0 aa:bb:cc:00:00:0b",
    "routeReplace 10.1.2.0/24 via 10.1.2.0 dev 10 onlink",
  ]);

  // Someone deletes flannel.1: it comes back with the same MAC, address and peer entries.
  const old = nl.links[0];
  nl.linkDelete(old.index);
  nl.take();
  ev.push({ kind: "link", type: "del", link: old });
  await until(() => nl.routes.length === 1);
  assert.deepEqual(nl.take(), [
    `linkAddVxlan flannel.1 vni 1 mac ${mac}`,
    "linkSetUp 11",
    "addrAdd 11 10.1.1.0/32",
    "fdbSet 11 aa:bb:cc:00:00:0b 192.168.0.2",
    "neighSet 11 10.1.2.0 aa:bb:cc:00:00:0b",
    "routeReplace 10.1.2.0/24 via 10.1.2.0 dev 11 onlink",
  ]);

  subnets.push([{ type: "removed", lease: lease("10.1.2.0/24", "192.168.0.2") }]);
  await until(() => nl.routes.length === 0);
  const t0 = Date.now();
  ac.abort();
  await running;
  assert.ok(Date.now() - t0 < 1000);
  assert.equal(nl.closed, true);
  assert.ok(
    lines.some((l) => /^W.*Device flannel\.1 was deleted: recreating it/.test(l)),
    lines.join(""),
  );
});

Deno.test("vxlan backend: a resync after lost notifications recreates a vanished device or sets it up", async () => {
  const nl = new FakeNetlink();
  const subnets = new FakeSubnets(config());
  const ev = events([]);
  const backend = create(
    fakeContext({ config: subnets.config, ext, subnets, nl, events: ev.source }),
  );
  const ac = new AbortController();
  using log = logCapture();
  const lines = log.lines;
  const network = await backend.init(ac.signal);
  const mac = nl.links[0].mac;
  const running = network.run(ac.signal);
  subnets.push([{ type: "added", lease: lease("10.1.2.0/24", "192.168.0.2") }]);
  await until(() => nl.routes.length === 1);
  nl.take();

  // Deleting a device with thousands of peers overflows the subscription: its RTM_DELLINK is
  // lost and only a resync arrives.
  nl.linkDelete(nl.links[0].index);
  nl.take();
  ev.push({ kind: "resync" });
  await until(() => nl.routes.length === 1);
  assert.deepEqual(nl.take(), [
    `linkAddVxlan flannel.1 vni 1 mac ${mac}`,
    "linkSetUp 11",
    "addrAdd 11 10.1.1.0/32",
    "fdbSet 11 aa:bb:cc:00:00:0b 192.168.0.2",
    "neighSet 11 10.1.2.0 aa:bb:cc:00:00:0b",
    "routeReplace 10.1.2.0/24 via 10.1.2.0 dev 11 onlink",
  ]);

  // Set down while events were lost: up again, then the entries the kernel flushed come back.
  nl.links[0] = { ...nl.links[0], up: false };
  nl.routes = [];
  ev.push({ kind: "resync" });
  await until(() => nl.routes.length === 1);
  assert.deepEqual(nl.take(), [
    "linkSetUp 11",
    "routeReplace 10.1.2.0/24 via 10.1.2.0 dev 11 onlink",
  ]);
  ac.abort();
  await running;
  assert.ok(lines.some((l) => /^W.*Device flannel\.1 is gone/.test(l)), lines.join(""));
});

Deno.test("vxlan backend: DirectRouting routes the kernel flushed with ext come back when it is up again", async () => {
  const nl = new FakeNetlink();
  nl.lookups.set("192.168.0.2", routeOf({ dst: net("192.168.0.2/32"), oif: ext.index }));
  const subnets = new FakeSubnets(config({ directRouting: true }));
  const ev = events([]);
  const backend = create(
    fakeContext({ config: subnets.config, ext, subnets, nl, events: ev.source }),
  );
  const ac = new AbortController();
  using log = logCapture();
  const lines = log.lines;
  const network = await backend.init(ac.signal);
  const running = network.run(ac.signal);
  subnets.push([{ type: "added", lease: lease("10.1.2.0/24", "192.168.0.2") }]);
  await until(() => nl.routes.length === 1);
  nl.take();
  const eth0 = (up: boolean): NetlinkEvent => ({
    kind: "link",
    type: "new",
    link: { index: 2, name: "eth0", kind: null, mtu: 1500, mac: null, flags: 0, up, vxlan: null },
  });
  // `ip link set eth0 down`: IPv4 drops the routes through it and sends no RTM_DELROUTE.
  ev.push(eth0(false));
  nl.routes = [];
  ev.push(eth0(true));
  await until(() => nl.routes.length === 1);
  ev.push(eth0(true)); // another change while up: nothing to do
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(nl.take(), ["routeReplace 10.1.2.0/24 via 192.168.0.2 dev 2"]);
  ac.abort();
  await running;
  assert.ok(lines.some((l) => /eth0 is up again/.test(l)), lines.join(""));
});

Deno.test("vxlan backend: a failing lease watch ends run() and the repair loop with it", async () => {
  const nl = new FakeNetlink();
  const subnets = new FakeSubnets(config());
  subnets.watchLeases = async function* () {
    await Promise.resolve();
    yield [];
    throw new Error("Watch failed: etcd gone");
  };
  let healSignal: AbortSignal | null = null;
  const backend = create(fakeContext({
    config: subnets.config,
    ext,
    subnets,
    nl,
    events: (s) => {
      healSignal = s;
      return events([]).source(s);
    },
  }));
  const ac = new AbortController();
  using _log = logCapture(); // keep the expected error lines out of the test output
  const network = await backend.init(ac.signal);
  await assert.rejects(network.run(ac.signal), { message: "Watch failed: etcd gone" });
  assert.equal((healSignal as AbortSignal | null)?.aborted, true);
  assert.equal(nl.closed, true);
  assert.equal(ac.signal.aborted, false);
});

// --- IPv6: flannel-v6.<VNI> as a second instance of the route network

const ext6: ExternalInterface = { ...ext, ifaceV6Addr: ip("fd00::1"), publicIPv6: ip("fd00::1") };

function config6(ipv4 = true): NetworkConfig {
  const c = config();
  return {
    ...c,
    ipv4: ipv4 ? c.ipv4 : null,
    ipv6: {
      network: net("fc00::/48"),
      subnetLen: 64,
      subnetMin: ip("fc00:0:0:1::"),
      subnetMax: ip("fc00:0:0:ffff::"),
    },
  };
}

const V6_PEER = { subnet: "fc00:0:0:2::/64", publicIPv6: "fd00::2" };

Deno.test("vxlan backend, dual-stack: two devices, both advertised, /32 and /128 (nodad), the smaller MTU", async () => {
  const nl = new FakeNetlink();
  const subnets = new FakeSubnets(config6());
  subnets.own = { subnet: OWN, ipv6Subnet: net("fc00:0:0:1::/64") };
  const backend = create(
    fakeContext({ config: subnets.config, ext: ext6, subnets, nl, events: events([]).source }),
  );
  using _log = logCapture();
  const network = await backend.init(new AbortController().signal);
  assert.equal(network.mtu, 1430);
  assert.equal(
    encodeLeaseValue(subnets.acquired[0]),
    '{"PublicIP":"192.168.0.1","PublicIPv6":"fd00::1","BackendType":"vxlan",' +
      '"BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"},' +
      '"BackendV6Data":{"VNI":1,"VtepMAC":"0a:00:00:00:00:02"}}',
  );
  assert.deepEqual(nl.take(), [
    "linkAddVxlan flannel.1 vni 1 mac random",
    "linkSetUp 10",
    "linkAddVxlan flannel-v6.1 vni 1 mac random",
    "linkSetUp 11",
    "addrAdd 10 10.1.1.0/32",
    "addrAdd 11 fc00:0:0:1::/128 nodad",
  ]);
  assert.equal(nl.links[1].mtu, 1430);
  assert.deepEqual(nl.links[1].vxlan?.local, ip("fd00::1"));
  nl.close();
});

Deno.test("vxlan backend, dual-stack: peers get NDP, FDB (IPv6 dst) and onlink routes on flannel-v6.1; IPv4-only peers only IPv4", async () => {
  const nl = new FakeNetlink();
  const subnets = new FakeSubnets(config6());
  subnets.own = { subnet: OWN, ipv6Subnet: net("fc00:0:0:1::/64") };
  const backend = create(
    fakeContext({ config: subnets.config, ext: ext6, subnets, nl, events: events([]).source }),
  );
  const ac = new AbortController();
  using _log = logCapture();
  const network = await backend.init(ac.signal);
  nl.take();
  const running = network.run(ac.signal);
  const data6 = { VNI: 1, VtepMAC: "aa:bb:cc:00:00:6b" };
  const dual = lease("10.1.2.0/24", "192.168.0.2", "vxlan", undefined, {
    ...V6_PEER,
    backendV6Data: data6,
  });
  subnets.push([{ type: "added", lease: dual }]);
  await until(() => nl.routes.length === 2);
  assert.deepEqual(nl.take(), [
    "fdbSet 10 aa:bb:cc:00:00:0b 192.168.0.2",
    "neighSet 10 10.1.2.0 aa:bb:cc:00:00:0b",
    "routeReplace 10.1.2.0/24 via 10.1.2.0 dev 10 onlink",
    "fdbSet 11 aa:bb:cc:00:00:6b fd00::2",
    "neighSet 11 fc00:0:0:2:: aa:bb:cc:00:00:6b",
    "routeReplace fc00:0:0:2::/64 via fc00:0:0:2:: dev 11 onlink",
  ]);
  const data3 = { VNI: 1, VtepMAC: "aa:bb:cc:00:00:0c" };
  subnets.push([{ type: "added", lease: lease("10.1.3.0/24", "192.168.0.3", "vxlan", data3) }]);
  await until(() => nl.routes.length === 3);
  assert.deepEqual(nl.take(), [
    "fdbSet 10 aa:bb:cc:00:00:0c 192.168.0.3",
    "neighSet 10 10.1.3.0 aa:bb:cc:00:00:0c",
    "routeReplace 10.1.3.0/24 via 10.1.3.0 dev 10 onlink",
  ]);
  subnets.push([{ type: "removed", lease: dual }]);
  await until(() => nl.routes.length === 1);
  assert.deepEqual(nl.take(), [
    "routeDel 10.1.2.0/24 via 10.1.2.0 dev 10",
    "neighDel 10 10.1.2.0",
    "fdbDel 10 aa:bb:cc:00:00:0b 192.168.0.2",
    "routeDel fc00:0:0:2::/64 via fc00:0:0:2:: dev 11",
    "neighDel 11 fc00:0:0:2::",
    "fdbDel 11 aa:bb:cc:00:00:6b fd00::2",
  ]);
  ac.abort();
  await running;
});

Deno.test("vxlan backend, IPv6-only: only flannel-v6.1, no BackendData, a peer without BackendV6Data skipped", async () => {
  const nl = new FakeNetlink();
  const subnets = new FakeSubnets(config6(false));
  subnets.own = { subnet: null, ipv6Subnet: net("fc00:0:0:1::/64") };
  const v6only: ExternalInterface = { ...ext6, ifaceAddr: null, publicIP: null };
  const backend = create(
    fakeContext({ config: subnets.config, ext: v6only, subnets, nl, events: events([]).source }),
  );
  const ac = new AbortController();
  using log = logCapture();
  const network = await backend.init(ac.signal);
  assert.deepEqual(nl.links.map((l) => l.name), ["flannel-v6.1"]);
  assert.equal(
    encodeLeaseValue(subnets.acquired[0]),
    '{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::1","BackendType":"vxlan",' +
      '"BackendV6Data":{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"}}',
  );
  nl.take();
  const running = network.run(ac.signal);
  subnets.push([{ type: "added", lease: lease("", "", "vxlan", null, V6_PEER) }]);
  await until(() => log.lines.some((l) => l.includes("BackendV6Data is not a JSON object")));
  assert.deepEqual(nl.take(), []);
  ac.abort();
  await running;
});
