/**
 * host-gw end to end: three hosts on one L2 segment, a real etcd, `deno run -A main.ts` per host.
 * Full-mesh ping between container addresses, routes read back with `ip -j route`, a host that
 * leaves and one that joins (within 2 s), stale routes removed on start, a deleted peer route
 * restored (also after eth0 went down and up), and peers that cannot be served (another type, not directly connected) skipped with
 * a warning.
 */

import assert from "node:assert/strict";
import { Cluster, ETCD_PREFIX } from "../harness/cluster.ts";
import { leaseKey } from "../harness/flannel.ts";
import {
  assertFullMesh,
  HOSTGW_CONFIG,
  type Node,
  pingOnce,
  routes,
  startAll,
  startNode,
  waitUntil,
} from "./mesh_support.ts";

async function assertRoutes(node: Node, peers: Node[]) {
  const overlay = (await routes(node.host)).filter((r) => r.dst.startsWith("10.1."));
  assert.deepEqual(
    overlay.map((r) => [r.dst, r.gateway, r.dev, r.flags]).sort(),
    peers.map((p) => [p.lease, p.host.ip, "eth0", []]).sort(),
    `routes on ${node.host.name}`,
  );
}

Deno.test("host-gw: three hosts, full mesh, routes, leave and join within 2 s, unusable peers skipped", async () => {
  await using cluster = await Cluster.create({ hosts: 3 });
  // A stale route from an earlier life of h1 that no lease explains: removed on start. Flannel
  // marks its routes with protocol 102 (an unmarked one would be an admin's, never touched).
  const [h1] = cluster.hosts;
  const stale = await h1.exec([
    "ip",
    "route",
    "add",
    "10.1.77.0/24",
    "via",
    "192.168.100.77",
    "dev",
    "eth0",
    "proto",
    "102",
  ]);
  assert.equal(stale.code, 0, stale.stderr);

  const nodes = await startAll(cluster, HOSTGW_CONFIG);
  const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
  for (const n of nodes) {
    assert.equal(
      raw[leaseKey(n.lease)],
      `{"PublicIP":"${n.host.ip}","PublicIPv6":null,"BackendType":"host-gw"}`,
    );
    assert.equal((await n.host.readSubnetEnv())?.FLANNEL_MTU, "1500");
  }
  await waitUntil("mesh converged", async () => {
    for (const a of nodes) {
      const n = (await routes(a.host)).filter((r) => r.dst.startsWith("10.1.")).length;
      if (n !== nodes.length - 1) return false;
    }
    return true;
  }, 2_000);
  for (const n of nodes) await assertRoutes(n, nodes.filter((p) => p !== n));
  await assertFullMesh(nodes);

  // Self-healing: a peer route deleted by hand comes back.
  const victim = nodes[1].lease;
  const del = await h1.exec(["ip", "route", "del", victim]);
  assert.equal(del.code, 0, del.stderr);
  await waitUntil("route restored", async () => {
    return (await routes(h1)).some((r) => r.dst === victim);
  }, 2_000);
  await assertRoutes(nodes[0], nodes.slice(1));

  // eth0 down and up: IPv4 drops the routes through it without notifications; they come back.
  for (const state of ["down", "up"]) {
    const r = await h1.exec(["ip", "link", "set", "eth0", state]);
    assert.equal(r.code, 0, r.stderr);
  }
  await waitUntil("routes back after eth0 down/up", async () => {
    return (await routes(h1)).filter((r) => r.dst.startsWith("10.1.")).length === 2;
  }, 2_000);
  await assertRoutes(nodes[0], nodes.slice(1));
  await nodes[0].daemon.waitForLog(/eth0 is up again: restoring peer routes/, 1_000);

  // Unusable peers: a vxlan lease, and a host-gw peer behind a router (10.99.0.5 via the hub).
  await cluster.etcd.put(
    leaseKey("10.1.250.0/24"),
    '{"PublicIP":"192.168.100.250","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}}',
  );
  await cluster.etcd.put(
    leaseKey("10.1.251.0/24"),
    '{"PublicIP":"10.99.0.5","PublicIPv6":null,"BackendType":"host-gw"}',
  );
  for (const n of nodes) {
    await n.daemon.waitForLog(
      /W.*Skipping peer 10\.1\.250\.0\/24 \(PublicIP 192\.168\.100\.250\): backend type "vxlan" is not host-gw/,
      5_000,
    );
    await n.daemon.waitForLog(
      /W.*Skipping peer 10\.1\.251\.0\/24 \(PublicIP 10\.99\.0\.5\): 10\.99\.0\.5 is not on a directly connected subnet of eth0/,
      5_000,
    );
    await assertRoutes(n, nodes.filter((p) => p !== n));
  }
  await assertFullMesh(nodes);
  await cluster.etcd.del(leaseKey("10.1.250.0/24"));
  await cluster.etcd.del(leaseKey("10.1.251.0/24"));

  // h3 leaves.
  const [n1, n2, n3] = nodes;
  n3.daemon.kill("SIGTERM");
  assert.equal(await n3.daemon.exitedWithin(2_000), 0, n3.daemon.tail());
  await cluster.etcd.del(leaseKey(n3.lease));
  for (const n of [n1, n2]) {
    const ms = await waitUntil(
      `${n3.lease} gone from ${n.host.name}`,
      async () => !(await routes(n.host)).some((r) => r.dst === n3.lease),
      2_000,
    );
    console.log(`leave: ${n.host.name} dropped ${n3.lease} after ${ms.toFixed(0)} ms`);
    await assertRoutes(n, [n1, n2].filter((p) => p !== n));
  }

  // h4 joins.
  const n4 = await startNode(await cluster.addHost());
  const ms = await waitUntil("h4 reachable from all", async () => {
    const ok = await Promise.all([n1, n2].map((o) => pingOnce(o, n4, 0.2)));
    return ok.every(Boolean);
  }, 2_000);
  console.log(`join: h4 reachable from all after ${ms.toFixed(0)} ms`);
  const all = [n1, n2, n4];
  await waitUntil("h4 converged", async () => {
    return (await routes(n4.host)).filter((r) => r.dst.startsWith("10.1.")).length === 2;
  }, 2_000);
  for (const n of all) await assertRoutes(n, all.filter((p) => p !== n));
  await assertFullMesh(all);
});
