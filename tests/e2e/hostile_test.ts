/**
 * A careless operator and a hostile etcd writer, end to end: each test holds a hole found by
 * trying the daemon as one (see issue 10's follow-up), against real namespaces and a real etcd.
 */

import assert from "node:assert/strict";
import { Cluster, ETCD_PREFIX } from "../harness/cluster.ts";

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
