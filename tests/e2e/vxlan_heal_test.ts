/**
 * vxlan self-healing and DirectRouting end to end: a deleted `flannel.1` comes back with the
 * same MAC and its peer entries, deleted peer routes and ARP entries are restored, and with
 * DirectRouting peers on the same segment get plain routes via their PublicIP (on a 1400-byte
 * underlay, where the device and FLANNEL_MTU are 1350).
 */

import assert from "node:assert/strict";
import { Cluster } from "../harness/cluster.ts";
import {
  assertFullMesh,
  baseOf,
  fdbs,
  linkDetails,
  neighs,
  routes,
  startAll,
  VXLAN_CONFIG,
  waitUntil,
} from "./mesh_support.ts";

Deno.test("vxlan: a deleted device, route or ARP entry is put back while the daemon runs", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  const [n1, n2] = await startAll(cluster, VXLAN_CONFIG);
  await waitUntil(
    "mesh",
    async () =>
      (await fdbs(n1.host, "flannel.1")).length === 1 &&
      (await fdbs(n2.host, "flannel.1")).length === 1,
    5_000,
  );
  await assertFullMesh([n1, n2]);
  const before = await linkDetails(n1.host, "flannel.1");
  assert.ok(before);

  const del = await n1.host.exec(["ip", "link", "del", "flannel.1"]);
  assert.equal(del.code, 0, del.stderr);
  const ms = await waitUntil("flannel.1 back with its peer route", async () => {
    return (await routes(n1.host)).some((r) => r.dst === n2.lease && r.dev === "flannel.1");
  }, 2_000);
  console.log(`device recreated and reprogrammed after ${ms.toFixed(0)} ms`);
  const after = await linkDetails(n1.host, "flannel.1");
  assert.equal(after?.address, before.address, "same VtepMAC");
  assert.ok(after?.flags.includes("UP"));
  assert.deepEqual(
    (await neighs(n1.host, "flannel.1")).map((n) => [n.dst, n.state]),
    [[baseOf(n2.lease), ["PERMANENT"]]],
  );
  assert.deepEqual((await fdbs(n1.host, "flannel.1")).map((f) => f.dst), [n2.host.ip]);
  await assertFullMesh([n1, n2]);
  await n1.daemon.waitForLog(/W.*Device flannel\.1 was deleted: recreating it/, 1_000);

  const r = await n1.host.exec(["ip", "route", "del", n2.lease]);
  assert.equal(r.code, 0, r.stderr);
  await waitUntil("route restored", async () => {
    return (await routes(n1.host)).some((x) => x.dst === n2.lease && x.flags.includes("onlink"));
  }, 2_000);
  const a = await n1.host.exec(["ip", "neigh", "del", baseOf(n2.lease), "dev", "flannel.1"]);
  assert.equal(a.code, 0, a.stderr);
  await waitUntil("ARP restored", async () => {
    return (await neighs(n1.host, "flannel.1")).some((x) => x.dst === baseOf(n2.lease));
  }, 2_000);
  await assertFullMesh([n1, n2]);
});

Deno.test("vxlan DirectRouting: peers on the same segment get a plain route via their PublicIP; MTU follows eth0", async () => {
  await using cluster = await Cluster.create({ hosts: 2, mtu: 1400 });
  const nodes = await startAll(cluster, {
    Network: "10.1.0.0/16",
    Backend: { Type: "vxlan", DirectRouting: true },
  });
  const [n1, n2] = nodes;
  for (const n of nodes) {
    assert.equal((await n.host.readSubnetEnv())?.FLANNEL_MTU, "1350");
    assert.equal((await linkDetails(n.host, "flannel.1"))?.mtu, 1350);
  }
  await waitUntil("direct routes", async () => {
    return (await routes(n1.host)).some((r) => r.dst === n2.lease) &&
      (await routes(n2.host)).some((r) => r.dst === n1.lease);
  }, 2_000);
  for (const [a, b] of [[n1, n2], [n2, n1]]) {
    const overlay = (await routes(a.host)).filter((r) => r.dst.startsWith("10.1."));
    assert.deepEqual(overlay.map((r) => [r.dst, r.gateway, r.dev]), [[b.lease, b.host.ip, "eth0"]]);
    assert.deepEqual(await neighs(a.host, "flannel.1"), []);
    assert.deepEqual(await fdbs(a.host, "flannel.1"), []);
  }
  await assertFullMesh(nodes);
});
