/**
 * The alloc backend end to end: hosts in namespaces, a real etcd, `deno run -A main.ts` per host.
 * Leases, subnet.env, restarts and reservations.
 */

import assert from "node:assert/strict";
import { Cluster } from "../harness/cluster.ts";
import {
  ALLOC_CONFIG,
  etcdLeaseIdOf,
  etcdLeases,
  expectedSubnetEnv,
  leaseKey,
  leaseOf,
  ttlOf,
} from "../harness/flannel.ts";

Deno.test("three alloc hosts get three distinct subnets with exact subnet.env and lease values", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  await cluster.addHost({ mtu: 1400 }); // FLANNEL_MTU follows the underlay MTU
  await cluster.putConfig(ALLOC_CONFIG);
  const hosts = cluster.hosts;
  const daemons = hosts.map((h) => h.startFlannel());
  await Promise.all(daemons.map((d) => d.waitReady(30_000)));

  const leases = await etcdLeases(cluster);
  assert.equal(Object.keys(leases).length, 3, JSON.stringify(leases));
  const seen = new Set<string>();
  for (const h of hosts) {
    const lease = await leaseOf(h);
    assert.ok(lease !== null, `no FLANNEL_SUBNET on ${h.name}`);
    assert.match(lease, /^10\.1\.\d+\.0\/24$/);
    assert.notEqual(lease, "10.1.0.0/24", "the first subnet is skipped");
    seen.add(lease);
    assert.equal(
      await Deno.readTextFile(h.subnetFile),
      expectedSubnetEnv(lease, "10.1.0.0/16", h.mtu),
    );
    assert.equal((await Deno.stat(h.subnetFile)).mode! & 0o777, 0o644);
    assert.equal(leases[lease], `{"PublicIP":"${h.ip}","PublicIPv6":null}`);
    const ttl = await ttlOf(cluster, leaseKey(lease));
    assert.ok(ttl > 86_000 && ttl <= 86_400, `TTL of ${lease} is ${ttl}`);
  }
  assert.equal(seen.size, 3);
  for (const d of daemons) assert.match(d.logs(), /^I\d{4} [\d:.]+ +\d+ \S+\] /m);
});

Deno.test("SIGTERM exits 0 within 2 s keeping the lease, and a restart gets the same subnet", async () => {
  await using cluster = await Cluster.create({ hosts: 1 });
  await cluster.putConfig(ALLOC_CONFIG);
  const [h1] = cluster.hosts;
  const first = h1.startFlannel();
  await first.waitReady(20_000);
  const lease = await leaseOf(h1);
  assert.ok(lease);

  first.kill("SIGTERM");
  assert.equal(await first.exitedWithin(2_000), 0, first.tail());
  assert.equal(
    (await etcdLeases(cluster))[lease],
    `{"PublicIP":"${h1.ip}","PublicIPv6":null}`,
    "the lease stays in etcd after SIGTERM",
  );

  const second = h1.startFlannel();
  await second.waitReady(20_000);
  assert.equal(await leaseOf(h1), lease);
  assert.equal(Object.keys(await etcdLeases(cluster)).length, 1);

  second.kill("SIGINT");
  assert.equal(await second.exitedWithin(2_000), 0, second.tail());
});

Deno.test("an emptied subnet file and a restart keep the subnet (reuse by PublicIP)", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  await cluster.putConfig(ALLOC_CONFIG);
  const [h1, h2] = cluster.hosts;
  const first = h1.startFlannel();
  const other = h2.startFlannel();
  await Promise.all([first.waitReady(20_000), other.waitReady(20_000)]);
  const lease = await leaseOf(h1);
  assert.ok(lease);
  assert.equal(await first.stop(), 0);

  await Deno.writeTextFile(h1.subnetFile, "");
  const second = h1.startFlannel();
  await second.waitReady(20_000);
  assert.equal(await leaseOf(h1), lease);
  assert.equal(await Deno.readTextFile(h1.subnetFile), expectedSubnetEnv(lease));
  assert.equal(Object.keys(await etcdLeases(cluster)).length, 2);
});

Deno.test("a reservation for the host's IP is used as is; another host's is never allocated", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  // /22 in /24s: 10.1.0.0 is skipped, so only 10.1.1.0, 10.1.2.0 and 10.1.3.0 can be leased.
  await cluster.putConfig({ Network: "10.1.0.0/22", SubnetLen: 24, Backend: { Type: "alloc" } });
  const [h1, h2] = cluster.hosts;
  const mine = leaseKey("10.1.3.0/24");
  const foreign = leaseKey("10.1.2.0/24");
  const mineValue = `{"PublicIP":"${h1.ip}","PublicIPv6":null}`;
  await cluster.etcd.put(mine, mineValue);
  await cluster.etcd.put(foreign, '{"PublicIP":"192.168.100.99","PublicIPv6":null}');

  const d1 = h1.startFlannel();
  const d2 = h2.startFlannel();
  await Promise.all([d1.waitReady(20_000), d2.waitReady(20_000)]);
  assert.equal(await leaseOf(h1), "10.1.3.0/24");
  assert.equal(
    await Deno.readTextFile(h1.subnetFile),
    expectedSubnetEnv("10.1.3.0/24", "10.1.0.0/22"),
  );
  assert.equal(await leaseOf(h2), "10.1.1.0/24");

  // Still reservations: no etcd lease was attached to them, values untouched.
  assert.equal(await etcdLeaseIdOf(cluster, mine), "0");
  assert.equal(await etcdLeaseIdOf(cluster, foreign), "0");
  assert.equal(await cluster.etcd.get(mine), mineValue);

  // Stopping the daemon never deletes a reservation.
  assert.equal(await d1.stop(), 0);
  assert.equal(await cluster.etcd.get(mine), mineValue);
});
