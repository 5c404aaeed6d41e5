/**
 * Flannel's routes carry its own routing protocol number (102): a restart removes the routes
 * flannel installed earlier that are now out of scope (a peer gone while the daemon was down, an
 * earlier Network) and never touches an admin's routes, inside or near the Network.
 */

import assert from "node:assert/strict";
import { leaseKey } from "../harness/flannel.ts";
import { Cluster, type Host } from "../harness/cluster.ts";
import {
  fdbs,
  HOSTGW_CONFIG,
  routes,
  startAll,
  startNode,
  VXLAN_CONFIG,
  waitUntil,
} from "./mesh_support.ts";

/** The destinations of `host`'s routes with flannel's protocol, sorted. */
async function marked(host: Host): Promise<string[]> {
  const rs = await host.ipJson<{ dst: string }[]>([
    "route",
    "show",
    "table",
    "main",
    "proto",
    "102",
  ]);
  return rs.map((r) => r.dst).sort();
}

/** Adds a route as an admin would (`ip route add …`, `proto` as given). */
async function adminRoute(host: Host, dst: string, via: string, proto?: string): Promise<void> {
  const args = ["ip", "route", "add", dst, "via", via, "dev", "eth0"];
  if (proto) args.push("proto", proto);
  const r = await host.exec(args);
  assert.equal(r.code, 0, r.stderr);
}

/** `host`'s main-table routes to `dsts` as `dst via gw proto p`, sorted. */
async function routesTo(host: Host, dsts: string[]): Promise<string[]> {
  const rs = await host.ipJson<{ dst: string; gateway?: string; protocol?: string }[]>(
    ["route", "show", "table", "main"],
  );
  return rs.filter((r) => dsts.includes(r.dst))
    .map((r) => `${r.dst} via ${r.gateway} proto ${r.protocol ?? "boot"}`).sort();
}

Deno.test("vxlan: a restart removes flannel's route of a peer gone while down, never an admin's route", async () => {
  await using cluster = await Cluster.create({ hosts: 3 });
  const [n1, n2, n3] = await startAll(cluster, VXLAN_CONFIG);
  await waitUntil("mesh", async () => (await fdbs(n1.host, "flannel.1")).length === 2, 5_000);
  assert.deepEqual(await marked(n1.host), [n2.lease, n3.lease].sort(), "peer routes are marked");

  n1.daemon.kill("SIGTERM");
  assert.equal(await n1.daemon.exitedWithin(3_000), 0, n1.daemon.tail());
  n3.daemon.kill("SIGTERM");
  assert.equal(await n3.daemon.exitedWithin(3_000), 0, n3.daemon.tail());
  await cluster.etcd.del(leaseKey(n3.lease));
  // An admin's routes, inside the Network (static, and boot for a subnet no lease holds) and
  // just outside it.
  const admin = ["10.1.200.0/24", "10.1.201.0/24", "10.2.0.0/24"];
  await adminRoute(n1.host, admin[0], n2.host.ip, "static");
  await adminRoute(n1.host, admin[1], n2.host.ip);
  await adminRoute(n1.host, admin[2], n2.host.ip, "static");
  const adminBefore = await routesTo(n1.host, admin);
  assert.equal(adminBefore.length, 3, adminBefore.join("\n"));

  const again = await startNode(n1.host);
  await again.daemon.waitForLog(/Reconciled 1 peer leases: \d+ kernel changes/, 10_000);
  assert.deepEqual(await marked(n1.host), [n2.lease]);
  assert.ok(!(await routes(n1.host)).some((r) => r.dst === n3.lease), "the gone peer's route");
  assert.deepEqual(await routesTo(n1.host, admin), adminBefore, "the admin's routes are untouched");
});

Deno.test("host-gw: a restart on a new Network removes flannel's routes of the old one, never an admin's", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  const [n1, n2] = await startAll(cluster, HOSTGW_CONFIG);
  await waitUntil("route", async () => (await marked(n1.host)).length === 1, 5_000);
  assert.deepEqual(await marked(n1.host), [n2.lease]);

  for (const n of [n1, n2]) {
    n.daemon.kill("SIGTERM");
    assert.equal(await n.daemon.exitedWithin(3_000), 0, n.daemon.tail());
    await cluster.etcd.del(leaseKey(n.lease));
  }
  const B = { ...HOSTGW_CONFIG, Network: "10.5.0.0/16" };
  await cluster.putConfig(B);
  // An admin's routes near the old Network and inside the new one.
  const admin = ["10.1.77.0/24", "10.5.77.0/24"];
  await adminRoute(n1.host, admin[0], n2.host.ip, "static");
  await adminRoute(n1.host, admin[1], n2.host.ip, "static");
  const adminBefore = await routesTo(n1.host, admin);
  assert.equal(adminBefore.length, 2, adminBefore.join("\n"));

  const [m1, m2] = [await startNode(n1.host), await startNode(n2.host)];
  assert.match(m2.lease, /^10\.5\./);
  await waitUntil("route in B", async () => (await marked(m1.host)).includes(m2.lease), 5_000);
  assert.deepEqual(await marked(m1.host), [m2.lease], "only the route of the lease in B");
  const stale = (await routes(m1.host)).filter((r) => r.dst === n2.lease);
  assert.deepEqual(stale, [], "the route to the old Network's lease is gone");
  assert.deepEqual(await routesTo(m1.host, admin), adminBefore, "the admin's routes are untouched");
});
