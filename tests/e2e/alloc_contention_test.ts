/**
 * The alloc backend under contention: many hosts racing for subnets, and a network with no room
 * left.
 */

import assert from "node:assert/strict";
import { Cluster } from "../harness/cluster.ts";
import { ALLOC_CONFIG, etcdLeases, leaseOf } from "../harness/flannel.ts";

Deno.test("ten hosts started at the same instant get ten distinct subnets", async () => {
  await using cluster = await Cluster.create({ hosts: 10 });
  await cluster.putConfig(ALLOC_CONFIG);
  const daemons = cluster.hosts.map((h) => h.startFlannel());
  // Ten deno processes starting on a shared 2-core machine: allow time.
  await Promise.all(daemons.map((d) => d.waitReady(90_000)));

  const subnets = await Promise.all(cluster.hosts.map((h) => leaseOf(h)));
  assert.equal(new Set(subnets).size, 10, subnets.join(" "));
  const leases = await etcdLeases(cluster);
  assert.deepEqual(Object.keys(leases).sort(), [...subnets].sort());
  for (const [i, h] of cluster.hosts.entries()) {
    assert.equal(JSON.parse(leases[subnets[i]!]).PublicIP, h.ip);
  }
  for (const d of daemons) assert.equal(d.exitCode, null, d.tail());
});

Deno.test("a full network gives a clear error on the host that finds no room, which keeps running", async () => {
  await using cluster = await Cluster.create({ hosts: 4 });
  // /22 in /24s with the first skipped: room for three hosts.
  await cluster.putConfig({ Network: "10.1.0.0/22", SubnetLen: 24, Backend: { Type: "alloc" } });
  const first = cluster.hosts.slice(0, 3).map((h) => h.startFlannel());
  await Promise.all(first.map((d) => d.waitReady(40_000)));
  const taken = await Promise.all(cluster.hosts.slice(0, 3).map((h) => leaseOf(h)));
  assert.deepEqual([...taken].sort(), ["10.1.1.0/24", "10.1.2.0/24", "10.1.3.0/24"]);

  const h4 = cluster.hosts[3];
  const late = h4.startFlannel();
  const line = await late.waitForLog(/^E.*(no free subnet|out of subnets)/i, 20_000);
  assert.match(line, /10\.1\.0\.0\/22/, `the error names the network: ${line}`);
  assert.equal(await late.exitedWithin(3_000), null, late.tail());
  assert.equal(await h4.readSubnetEnv(), null, "no subnet.env without a lease");

  // Room appears (a host leaves for good): the waiting host takes it.
  const gone = await leaseOf(cluster.hosts[0]);
  assert.equal(await first[0].stop(), 0);
  await cluster.etcd.del(`/coreos.com/network/subnets/${gone!.replace("/", "-")}`);
  await late.waitReady(30_000);
  assert.equal(await leaseOf(h4), gone);
});
