/**
 * vxlan end to end: three hosts in namespaces, a real etcd, `deno run -A main.ts` per host.
 * Full-mesh ping between container addresses, kernel state read back with iproute2's JSON, a host
 * that leaves and one that joins (within 2 s), and peers of another type or VNI skipped.
 */

import assert from "node:assert/strict";
import { Cluster, ETCD_PREFIX } from "../harness/cluster.ts";
import { leaseKey } from "../harness/flannel.ts";
import {
  assertFullMesh,
  baseOf,
  fdbs,
  linkDetails,
  neighs,
  type Node,
  pingOnce,
  routes,
  startAll,
  startNode,
  VXLAN_CONFIG,
  waitUntil,
} from "./mesh_support.ts";

/** Asserts `node`'s kernel holds exactly the tunnel entries for `peers`, read with iproute2. */
async function assertTunnelState(node: Node, peers: Node[], vtep: Map<string, string>) {
  const h = node.host;
  const link = await linkDetails(h, "flannel.1");
  assert.ok(link, `no flannel.1 on ${h.name}`);
  assert.equal(link.linkinfo.info_kind, "vxlan");
  const d = link.linkinfo.info_data;
  assert.equal(d.id, 1);
  assert.equal(d.local, h.ip);
  assert.equal(d.link, "eth0");
  assert.equal(d.port, 8472);
  assert.equal(d.learning, false);
  assert.equal(d.group, undefined);
  assert.equal(link.mtu, 1450);
  assert.ok(link.flags.includes("UP"));
  assert.equal(link.address, vtep.get(node.lease));
  const addrs = await h.ipJson<
    { addr_info: { family: string; local: string; prefixlen: number }[] }[]
  >(
    ["addr", "show", "dev", "flannel.1"],
  );
  assert.deepEqual(
    addrs[0].addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`),
    [`${baseOf(node.lease)}/32`],
  );

  const overlay = (await routes(h)).filter((r) => r.dst.startsWith("10.1."));
  assert.deepEqual(
    overlay.map((r) => [r.dst, r.gateway, r.dev, r.flags]).sort(),
    peers.map((p) => [p.lease, baseOf(p.lease), "flannel.1", ["onlink"]]).sort(),
    `routes on ${h.name}`,
  );
  assert.deepEqual(
    (await neighs(h, "flannel.1")).map((n) => [n.dst, n.lladdr, n.state]).sort(),
    peers.map((p) => [baseOf(p.lease), vtep.get(p.lease), ["PERMANENT"]]).sort(),
    `ARP on ${h.name}`,
  );
  assert.deepEqual(
    (await fdbs(h, "flannel.1")).map((f) => [f.mac, f.dst, f.state]).sort(),
    peers.map((p) => [vtep.get(p.lease), p.host.ip, "permanent"]).sort(),
    `FDB on ${h.name}`,
  );
}

/** Lease → VtepMAC from etcd, checking the lease value's exact shape. */
async function vtepMacs(cluster: Cluster, nodes: Node[]): Promise<Map<string, string>> {
  const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
  const out = new Map<string, string>();
  for (const n of nodes) {
    const value = raw[leaseKey(n.lease)];
    assert.ok(value, `no lease ${n.lease} in etcd`);
    const m =
      /^\{"PublicIP":"([\d.]+)","PublicIPv6":null,"BackendType":"vxlan","BackendData":\{"VNI":1,"VtepMAC":"([0-9a-f:]{17})"\}\}$/
        .exec(value);
    assert.ok(m, `lease value ${value}`);
    assert.equal(m[1], n.host.ip);
    out.set(n.lease, m[2]);
  }
  return out;
}

Deno.test("vxlan: three hosts, full mesh, kernel state, leave and join within 2 s, foreign peers skipped", async () => {
  await using cluster = await Cluster.create({ hosts: 3 });
  const nodes = await startAll(cluster, VXLAN_CONFIG);
  for (const n of nodes) {
    const env = await n.host.readSubnetEnv();
    assert.equal(env?.FLANNEL_MTU, "1450");
  }
  let vtep = await vtepMacs(cluster, nodes);
  // Peers are programmed from the watch right after READY: allow them a moment to converge.
  await waitUntil("mesh converged", async () => {
    for (const a of nodes) {
      const n = (await fdbs(a.host, "flannel.1")).length;
      if (n !== nodes.length - 1) return false;
    }
    return true;
  }, 2_000);
  for (const n of nodes) await assertTunnelState(n, nodes.filter((p) => p !== n), vtep);
  await assertFullMesh(nodes);

  // Peers of another backend type and another VNI: one warning each, nothing programmed.
  const foreign = [
    ["10.1.250.0/24", '{"PublicIP":"192.168.100.250","PublicIPv6":null,"BackendType":"host-gw"}'],
    [
      "10.1.251.0/24",
      '{"PublicIP":"192.168.100.251","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":2,"VtepMAC":"aa:bb:cc:dd:ee:02"}}',
    ],
  ];
  for (const [subnet, value] of foreign) await cluster.etcd.put(leaseKey(subnet), value);
  for (const n of nodes) {
    await n.daemon.waitForLog(
      /W.*Skipping peer 10\.1\.250\.0\/24 \(PublicIP 192\.168\.100\.250\): backend type "host-gw" is not vxlan/,
      5_000,
    );
    await n.daemon.waitForLog(
      /W.*Skipping peer 10\.1\.251\.0\/24 \(PublicIP 192\.168\.100\.251\): VNI 2 differs from ours \(1\)/,
      5_000,
    );
  }
  for (const [subnet, value] of foreign) await cluster.etcd.put(leaseKey(subnet), value); // renewal
  await new Promise((r) => setTimeout(r, 300));
  for (const n of nodes) {
    assert.equal(n.daemon.logs().match(/Skipping peer 10\.1\.250\.0/g)?.length, 1, "warned once");
    await assertTunnelState(n, nodes.filter((p) => p !== n), vtep);
  }
  await assertFullMesh(nodes);
  for (const [subnet] of foreign) await cluster.etcd.del(leaseKey(subnet));

  // h3 leaves: its daemon stops, its lease is deleted; the others drop its entries within 2 s.
  const [n1, n2, n3] = nodes;
  n3.daemon.kill("SIGTERM");
  assert.equal(await n3.daemon.exitedWithin(2_000), 0, n3.daemon.tail());
  await cluster.etcd.del(leaseKey(n3.lease));
  for (const n of [n1, n2]) {
    const ms = await waitUntil(`${n3.lease} gone from ${n.host.name}`, async () => {
      const r = (await routes(n.host)).some((x) => x.dst === n3.lease);
      const a = (await neighs(n.host, "flannel.1")).some((x) => x.dst === baseOf(n3.lease));
      const f = (await fdbs(n.host, "flannel.1")).some((x) => x.dst === n3.host.ip);
      return !r && !a && !f;
    }, 2_000);
    console.log(`leave: ${n.host.name} dropped ${n3.lease} after ${ms.toFixed(0)} ms`);
    await assertTunnelState(n, [n1, n2].filter((p) => p !== n), vtep);
  }

  // A new host joins: reachable from all within 2 s of its READY.
  const h4 = await cluster.addHost();
  const n4 = await startNode(h4);
  const others = [n1, n2];
  const ms = await waitUntil("h4 reachable from all", async () => {
    const ok = await Promise.all(others.map((o) => pingOnce(o, n4, 0.2)));
    return ok.every(Boolean);
  }, 2_000);
  console.log(`join: h4 reachable from all after ${ms.toFixed(0)} ms`);
  const all = [n1, n2, n4];
  vtep = await vtepMacs(cluster, all);
  await waitUntil("h4 converged", async () => (await fdbs(h4, "flannel.1")).length === 2, 2_000);
  for (const n of all) await assertTunnelState(n, all.filter((p) => p !== n), vtep);
  await assertFullMesh(all);
});
