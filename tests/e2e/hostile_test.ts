/**
 * A careless operator and a hostile etcd writer, end to end: each test holds a hole found by
 * trying the daemon as one (see issue 10's follow-up), against real namespaces and a real etcd.
 */

import assert from "node:assert/strict";
import { Cluster, ETCD_PREFIX } from "../harness/cluster.ts";
import {
  fdbs,
  linkDetails,
  type Node,
  pingOnce,
  startAll,
  VXLAN_CONFIG,
  waitUntil,
} from "./mesh_support.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface JsonRoute {
  dst: string;
  dev?: string;
  gateway?: string;
  protocol?: string;
}

for (const type of ["vxlan", "host-gw"]) {
  Deno.test(`${type}: a peer lease on the underlay's own /24 never replaces the connected route`, async () => {
    // A Network that overlaps the hosts' own network (192.168.100.0/24, where etcd is), and a
    // lease for exactly that /24: replacing eth0's connected route would cut the host off.
    await using cluster = await Cluster.create({ hosts: 1 });
    const [h1] = cluster.hosts;
    await cluster.putConfig({
      Network: "192.168.0.0/16",
      SubnetMin: "192.168.101.0",
      SubnetMax: "192.168.102.0",
      Backend: { Type: type },
    });
    const data = type === "vxlan" ? { VNI: 1, VtepMAC: "aa:bb:cc:00:00:32" } : undefined;
    await cluster.etcd.put(
      `${ETCD_PREFIX}/subnets/192.168.100.0-24`,
      JSON.stringify({
        PublicIP: "192.168.100.50",
        PublicIPv6: null,
        BackendType: type,
        BackendData: data,
      }),
    );
    const d = h1.startFlannel();
    await d.waitReady(30_000);
    // The peer leases are programmed right after READY: give them time to (not) land.
    await sleep(3_000);
    const routes = await h1.ipJson<JsonRoute[]>(["route", "show", "192.168.100.0/24"]);
    assert.deepEqual(
      routes.map((r) => [r.dst, r.dev, r.protocol]),
      [["192.168.100.0/24", "eth0", "kernel"]],
      d.tail(),
    );
    assert.ok((await h1.ping("192.168.100.1")).ok, "the host lost its own network");
    await d.waitForLog(
      /^W.*Not routing peer subnet 192\.168\.100\.0\/24: .*protocol kernel/,
      15_000,
    );
    assert.equal(await d.stop(), 0, d.tail());
  });
}

Deno.test("vxlan: a lease copying a host's VtepMAC leaves no wrong FDB entry once it is deleted", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  const [n1, n2] = await startAll(cluster, VXLAN_CONFIG);
  const both = async () => await pingOnce(n1, n2, 2) && await pingOnce(n2, n1, 2);
  await waitUntil("ping both ways before the copied lease", both, 15_000);
  const mac2 = (await linkDetails(n2.host, "flannel.1"))?.address;
  assert.ok(mac2);
  const key = `${ETCD_PREFIX}/subnets/10.1.250.0-24`;
  await cluster.etcd.put(
    key,
    JSON.stringify({
      PublicIP: "192.168.100.61",
      PublicIPv6: null,
      BackendType: "vxlan",
      BackendData: { VNI: 1, VtepMAC: mac2 },
    }),
  );
  const dstOf = async (h: Node) =>
    (await fdbs(h.host, "flannel.1")).filter((f) => f.mac === mac2).map((f) => f.dst);
  // One FDB entry per MAC: it follows the newer lease (the copy), with one warning for n2's.
  await waitUntil(
    "FDB entry on the copy",
    async () => (await dstOf(n1))[0] === "192.168.100.61",
    10_000,
  );
  await n1.daemon.waitForLog(
    new RegExp(
      `^W.*Skipping peer ${
        n2.lease.replace(/\./g, "\\.")
      } .*VtepMAC ${mac2} is also claimed by peer 10\\.1\\.250\\.0/24`,
    ),
  );
  await cluster.etcd.del(key);
  await sleep(2_000);
  // Before: the entry stayed on the deleted copy's address, n2 unreachable until a restart.
  assert.deepEqual(await dstOf(n1), [n2.host.ip]);
  assert.ok(await both(), "no ping after the copied lease was deleted");
});

// 0.0.0.0/0 (the default route) is refused by the config now: see the reserved ranges below.
for (const network of ["192.168.100.0/24"]) {
  Deno.test(`udp: Network ${network}, already a route on the host, is refused and the route kept`, async () => {
    // The TUN route `<Network> dev flannel0` replaced eth0's connected route (or the default
    // route), and the kernel dropped it with the device: the host stayed cut off after exit.
    await using cluster = await Cluster.create({ hosts: 1 });
    const [h1] = cluster.hosts;
    await cluster.putConfig({ Network: network, Backend: { Type: "udp" } });
    const before = (await h1.exec(["ip", "route"])).stdout;
    const d = h1.startFlannel();
    const code = await d.exitedWithin(20_000);
    assert.equal((await h1.exec(["ip", "route"])).stdout, before, d.tail());
    assert.ok((await h1.ping("192.168.100.1")).ok, "the host lost its own network");
    assert.equal(code, 1, d.tail());
    const errors = d.logs().split("\n").filter((l) => /^[EF]\d/.test(l));
    assert.equal(errors.length, 1, d.tail());
    assert.match(
      errors[0],
      new RegExp(`Network ${network.replace(/\./g, "\\.")} is already routed on this host`),
    );
    assert.doesNotMatch(d.logs(), /^\s+at /m);
    assert.deepEqual(await cluster.leases(), {}, "a lease taken that cannot be used");
  });
}

for (
  const [network, reserved] of [
    ["127.0.0.0/8", "127.0.0.0/8"],
    ["224.0.0.0/4", "224.0.0.0/4"],
    ["0.0.0.0/0", "0.0.0.0/8"],
  ]
) {
  Deno.test(`udp: Network ${network} (reserved) is refused: no route, no lease`, async () => {
    // Before: udp installed `127.0.0.0/8 dev flannel0` and leased 127.0.92.0/24.
    await using cluster = await Cluster.create({ hosts: 1 });
    const [h1] = cluster.hosts;
    await cluster.putConfig({ Network: network, Backend: { Type: "udp" } });
    const before = (await h1.exec(["ip", "route"])).stdout;
    const d = h1.startFlannel();
    const line = await d.waitForLog(/^E.*Invalid network config/, 20_000);
    assert.match(
      line,
      new RegExp(
        `Network "${network.replace(/\./g, "\\.")}" overlaps ${reserved.replace(/\./g, "\\.")} `,
      ),
    );
    await sleep(1_000);
    assert.equal((await h1.exec(["ip", "route"])).stdout, before, d.tail());
    assert.deepEqual(await cluster.leases(), {}, "a lease taken in a reserved range");
    assert.doesNotMatch(d.logs(), /^\s+at /m);
    await d.stop();
  });
}

Deno.test("two daemons started at once on one host: one runs, the other exits 1 naming the lock", async () => {
  // Before: both ran, took two leases for one PublicIP and fought over flannel.1 and subnet.env.
  await using cluster = await Cluster.create({ hosts: 1 });
  const [h1] = cluster.hosts;
  await cluster.putConfig(VXLAN_CONFIG);
  const a = h1.startFlannel();
  const b = h1.startFlannel();
  const ended: { loser: typeof a; winner: typeof a; code: number }[] = [];
  a.exited().then((code) => ended.push({ loser: a, winner: b, code }));
  b.exited().then((code) => ended.push({ loser: b, winner: a, code }));
  await waitUntil("one of the two daemons exits", () => Promise.resolve(ended.length > 0), 30_000);
  const first = ended[0];
  assert.equal(first.code, 1, `${a.tail()}\n---\n${b.tail()}`);
  await first.winner.waitReady(30_000);
  const errors = first.loser.logs().split("\n").filter((l) => /^[EF]\d/.test(l));
  assert.equal(errors.length, 1, first.loser.tail());
  const pid = first.winner.denoPid();
  assert.match(
    errors[0],
    new RegExp(
      `Another flanneld holds the lock file ${h1.subnetFile.replace(/\./g, "\\.")}\\.lock${
        pid ? ` \\(pid ${pid}\\)` : ""
      }`,
    ),
  );
  await sleep(2_000);
  assert.equal(Object.keys(await cluster.leases()).length, 1, "two leases for one host");
  assert.equal(await first.winner.stop(), 0, first.winner.tail());
});

Deno.test("SIGHUP ends the daemon as it ends upstream's flanneld: exit 129, the lease kept", async () => {
  // flanneld v0.20.2 handles only SIGINT and SIGTERM (main.go): SIGHUP takes the default action.
  await using cluster = await Cluster.create({ hosts: 1 });
  const [h1] = cluster.hosts;
  await cluster.putConfig(VXLAN_CONFIG);
  const d = h1.startFlannel();
  await d.waitReady(30_000);
  const before = await cluster.leases();
  assert.equal(Object.keys(before).length, 1);
  d.kill("SIGHUP");
  assert.equal(await d.exitedWithin(10_000), 129, d.tail());
  assert.deepEqual(Object.keys(await cluster.leases()), Object.keys(before));
});

Deno.test("a Network holding the hosts' /24: the host never leases its own underlay /24", async () => {
  // Before: subnet.env (or the random pick) handed the host 192.168.100.0/24, and Docker got
  // --bip=192.168.100.1/24, the hub's address.
  await using cluster = await Cluster.create({ hosts: 1 });
  const [h1] = cluster.hosts;
  await cluster.putConfig({
    Network: "192.168.0.0/16",
    SubnetMin: "192.168.100.0",
    SubnetMax: "192.168.101.0",
    Backend: { Type: "host-gw" },
  });
  await Deno.mkdir(h1.subnetFile.slice(0, h1.subnetFile.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(
    h1.subnetFile,
    "FLANNEL_NETWORK=192.168.0.0/16\nFLANNEL_SUBNET=192.168.100.1/24\nFLANNEL_MTU=1500\n" +
      "FLANNEL_IPMASQ=false\n",
  );
  const d = h1.startFlannel();
  // (waitReady would see the old subnet.env at once.)
  await d.waitForLog(/^I.*Wrote .* \(subnet /, 30_000);
  assert.deepEqual(
    Object.keys(await cluster.leases()).map((k) => k.split("/").pop()),
    ["192.168.101.0-24"],
    d.tail(),
  );
  assert.equal((await h1.readSubnetEnv())?.FLANNEL_SUBNET, "192.168.101.1/24");
  await d.waitForLog(
    /^W.*Network 192\.168\.0\.0\/16 contains the external address 192\.168\.100\.\d+ of eth0/,
  );
  assert.ok((await h1.ping("192.168.100.1")).ok, "the host lost its own network");
  assert.equal(await d.stop(), 0, d.tail());
});
