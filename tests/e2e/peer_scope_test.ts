/**
 * Peer leases that do not fit the network config never reach the kernel (issue 10 part 1):
 * a host-gw `0.0.0.0-0` key with a host's PublicIP leaves every default route alone, also when
 * it is deleted; `8.8.0.0-16` becomes no route on host-gw or vxlan hosts; a vxlan `/25` inside
 * a peer's `/24` leaves the peer's ARP entry alone and traffic to the peer flowing. Each bad key
 * gets one warning naming it. A valid marker lease written after the bad keys shows when the
 * daemons have processed them (one watch, in revision order).
 */

import assert from "node:assert/strict";
import { Cluster } from "../harness/cluster.ts";
import { leaseKey } from "../harness/flannel.ts";
import {
  assertFullMesh,
  baseOf,
  HOSTGW_CONFIG,
  neighs,
  type Node,
  routes,
  startAll,
  VXLAN_CONFIG,
  waitUntil,
} from "./mesh_support.ts";

const MARKER = "10.1.250.0/24";

async function defaultRoutes(node: Node): Promise<string[]> {
  return (await routes(node.host)).filter((r) => r.dst === "default").map((r) =>
    `${r.gateway} ${r.dev}`
  );
}

async function waitForRoute(nodes: Node[], dst: string, present: boolean): Promise<void> {
  for (const n of nodes) {
    await waitUntil(
      `${dst} ${present ? "on" : "gone from"} ${n.host.name}`,
      async () => (await routes(n.host)).some((r) => r.dst === dst) === present,
      10_000,
    );
  }
}

function warnedOnce(n: Node, key: string, reason: RegExp): void {
  const lines = n.daemon.logs().split("\n").filter((l) => l.includes(`Ignoring lease ${key} `));
  assert.equal(lines.length, 1, `${n.host.name}: ${lines.join("\n") || n.daemon.tail(30)}`);
  assert.match(lines[0], /^W/);
  assert.match(lines[0], reason);
}

Deno.test("peer scope, host-gw: 0.0.0.0-0 and 8.8.0.0-16 never become routes; deleting them leaves the default route", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  const nodes = await startAll(cluster, HOSTGW_CONFIG);
  const [n1, n2] = nodes;
  const before = await Promise.all(nodes.map(defaultRoutes));
  assert.deepEqual(before, [["192.168.100.1 eth0"], ["192.168.100.1 eth0"]]);

  const value = (ip: string) => `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"host-gw"}`;
  await cluster.etcd.put(leaseKey("0.0.0.0/0"), value(n2.host.ip));
  await cluster.etcd.put(leaseKey("8.8.0.0/16"), value(n2.host.ip));
  await cluster.etcd.put(leaseKey(MARKER), value("192.168.100.250"));
  await waitForRoute(nodes, MARKER, true);
  assert.deepEqual(await Promise.all(nodes.map(defaultRoutes)), before);
  for (const n of nodes) {
    assert.ok(!(await routes(n.host)).some((r) => r.dst === "8.8.0.0/16"), n.host.name);
    warnedOnce(n, leaseKey("0.0.0.0/0"), /0\.0\.0\.0\/0 is not inside Network 10\.1\.0\.0\/16/);
    warnedOnce(n, leaseKey("8.8.0.0/16"), /8\.8\.0\.0\/16 is not inside Network 10\.1\.0\.0\/16/);
  }

  await cluster.etcd.del(leaseKey("0.0.0.0/0"));
  await cluster.etcd.del(leaseKey("8.8.0.0/16"));
  await cluster.etcd.del(leaseKey(MARKER));
  await waitForRoute(nodes, MARKER, false);
  assert.deepEqual(await Promise.all(nodes.map(defaultRoutes)), before);
  await assertFullMesh([n1, n2]);
});

Deno.test("peer scope, vxlan: 8.8.0.0-16 is no route, and a /25 inside a peer's /24 leaves its ARP entry and traffic alone", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  const nodes = await startAll(cluster, VXLAN_CONFIG);
  const [n1, n2] = nodes;
  const arpOf = async (n: Node, ip: string) =>
    (await neighs(n.host, "flannel.1")).find((e) => e.dst === ip)?.lladdr;
  await waitUntil("mesh converged", async () => {
    return (await arpOf(n1, baseOf(n2.lease))) !== undefined &&
      (await arpOf(n2, baseOf(n1.lease))) !== undefined;
  }, 10_000);
  const peerMac = await arpOf(n1, baseOf(n2.lease));
  const value = (ip: string, mac: string) =>
    `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`;
  const half = `${baseOf(n2.lease)}/25`; // the lower half of n2's /24: the same base address
  await cluster.etcd.put(leaseKey(half), value("192.168.100.251", "aa:bb:cc:dd:ee:25"));
  await cluster.etcd.put(leaseKey("8.8.0.0/16"), value("192.168.100.252", "aa:bb:cc:dd:ee:88"));
  await cluster.etcd.put(leaseKey(MARKER), value("192.168.100.250", "aa:bb:cc:dd:ee:50"));
  await waitForRoute(nodes, MARKER, true);
  assert.equal(await arpOf(n1, baseOf(n2.lease)), peerMac, "n2's ARP entry on n1");
  for (const n of nodes) {
    const rs = await routes(n.host);
    assert.ok(!rs.some((r) => r.dst === "8.8.0.0/16"), `8.8.0.0/16 on ${n.host.name}`);
    assert.ok(!rs.some((r) => r.dst === half), `${half} on ${n.host.name}`);
    warnedOnce(n, leaseKey("8.8.0.0/16"), /8\.8\.0\.0\/16 is not inside Network/);
  }
  warnedOnce(n1, leaseKey(half), /is not of SubnetLen 24/);
  await assertFullMesh([n1, n2]);

  await cluster.etcd.del(leaseKey(half));
  await cluster.etcd.del(leaseKey("8.8.0.0/16"));
  await cluster.etcd.del(leaseKey(MARKER));
  await waitForRoute(nodes, MARKER, false);
  assert.equal(await arpOf(n1, baseOf(n2.lease)), peerMac, "n2's ARP entry after the deletes");
  await assertFullMesh([n1, n2]);
});
