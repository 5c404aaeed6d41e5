/**
 * vxlan on a host where an upstream v0.4.0 flanneld ran before (issue 10, part 7): its
 * `flannel.1` has learning on and `proxy l2miss l3miss`. Our daemon must not reuse it: it is
 * recreated with learning off and no miss/proxy modes, with the same MAC (peers' ARP/FDB entries
 * name it), and the mesh works. A config with `"GBP": true` likewise replaces a device without
 * gbp.
 */

import assert from "node:assert/strict";
import { Cluster, type Host } from "../harness/cluster.ts";
import { leaseKey } from "../harness/flannel.ts";
import { assertFullMesh, linkDetails, pingOnce, startNode, waitUntil } from "./mesh_support.ts";

const MAC = "0e:40:00:00:00:01";

/** Creates flannel.1 on `host` as `ip link add … type vxlan id 1 …` with `modes`. */
async function preCreate(host: Host, modes: string[]): Promise<void> {
  const r = await host.exec([
    "ip",
    "link",
    "add",
    "flannel.1",
    "address",
    MAC,
    "type",
    "vxlan",
    "id",
    "1",
    "local",
    host.ip,
    "dev",
    "eth0",
    "dstport",
    "8472",
    ...modes,
  ]);
  assert.equal(r.code, 0, r.stderr);
}

function modesOf(d: NonNullable<Awaited<ReturnType<typeof linkDetails>>>) {
  const i = d.linkinfo.info_data;
  return {
    learning: i.learning === true,
    gbp: i.gbp === true,
    proxy: i.proxy === true,
    l2miss: i.l2miss === true,
    l3miss: i.l3miss === true,
  };
}

for (
  const c of [
    {
      what: "upstream v0.4.0's device (learning proxy l2miss l3miss)",
      modes: ["learning", "proxy", "l2miss", "l3miss"],
      backend: {},
      why: "learning on, want off",
      want: { learning: false, gbp: false, proxy: false, l2miss: false, l3miss: false },
    },
    {
      what: 'a device without gbp under "GBP": true',
      modes: ["nolearning"],
      backend: { GBP: true },
      why: "gbp off, want on",
      want: { learning: false, gbp: true, proxy: false, l2miss: false, l3miss: false },
    },
  ]
) {
  Deno.test(`vxlan: ${c.what} is recreated with the configured modes and the same MAC`, async () => {
    await using cluster = await Cluster.create({ hosts: 2 });
    await cluster.putConfig({ Network: "10.1.0.0/16", Backend: { Type: "vxlan", ...c.backend } });
    const [h1, h2] = cluster.hosts;
    await preCreate(h1, c.modes);
    const [n1, n2] = await Promise.all([startNode(h1), startNode(h2)]);
    const log = n1.daemon.logs();
    assert.match(
      log,
      new RegExp(
        `Device flannel\\.1 already exists with incompatible configuration \\(${c.why}\\)`,
      ),
    );
    assert.doesNotMatch(log, /Reusing device flannel\.1/);
    const dev = await linkDetails(h1, "flannel.1");
    assert.ok(dev);
    assert.deepEqual(modesOf(dev), c.want);
    assert.equal(dev.address, MAC);
    const lease = await cluster.etcd.get(leaseKey(n1.lease));
    assert.match(lease ?? "", new RegExp(`"VtepMAC":"${MAC}"`));
    await waitUntil("mesh", async () => await pingOnce(n1, n2, 0.5), 10_000);
    await assertFullMesh([n1, n2]);
    // Restarted, the daemon now finds its own device and reuses it.
    assert.equal(await n1.daemon.stop(), 0);
    const again = await startNode(h1);
    assert.match(
      again.daemon.logs(),
      new RegExp(`Reusing device flannel\\.1 \\(VtepMAC ${MAC}\\)`),
    );
    await assertFullMesh([again, n2]);
  });
}
