/**
 * udp backend across a restart: the TUN device (and with it its address and route) goes away
 * with the process, the lease is reused by PublicIP on the next start, and traffic flows again.
 */

import assert from "node:assert/strict";
import { Cluster } from "../harness/cluster.ts";
import { leaseOf } from "../harness/flannel.ts";
import { assertFullMesh, pingOnce, startAll, startNode, waitUntil } from "./mesh_support.ts";

Deno.test("udp: a restarted daemon leaves no device behind, keeps its lease, and forwards again", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  const nodes = await startAll(cluster, {
    Network: "10.1.0.0/16",
    Backend: { Type: "udp", Offload: false },
  });
  const [n1, n2] = nodes;
  await waitUntil("mesh", async () => await pingOnce(n1, n2, 0.5), 10_000);

  n1.daemon.kill("SIGTERM");
  assert.equal(await n1.daemon.exitedWithin(2_000), 0, n1.daemon.tail());
  const gone = await n1.host.exec(["ip", "link", "show", "flannel0"]);
  assert.notEqual(gone.code, 0, "flannel0 outlived the daemon");
  const routes = await n1.host.exec(["ip", "route", "show", "10.1.0.0/16"]);
  assert.equal(routes.stdout.trim(), "", "the overlay route outlived the daemon");

  const again = await startNode(n1.host);
  assert.equal(await leaseOf(n1.host), n1.lease, "lease reused by PublicIP");
  assert.equal(again.container, n1.container);
  const ms = await waitUntil(
    "forwarding again",
    async () => await pingOnce(again, n2, 0.5),
    10_000,
  );
  console.log(`restart: forwarding again ${ms.toFixed(0)} ms after READY`);
  await assertFullMesh([again, n2]);
});
