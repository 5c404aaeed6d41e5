/**
 * vxlan restarts are invisible to traffic: while another host pings every 20 ms, the daemon is
 * stopped (SIGTERM, then `kill -9`) and started again; no ping is lost, the VtepMAC and the
 * subnet stay the same, and the kernel entries are not re-created (no blink). A peer that left
 * while the daemon was down is cleaned up at start.
 */

import assert from "node:assert/strict";
import { Cluster } from "../harness/cluster.ts";
import { leaseKey, leaseOf } from "../harness/flannel.ts";
import {
  assertFullMesh,
  baseOf,
  fdbs,
  linkDetails,
  neighs,
  type Node,
  routes,
  startAll,
  startNode,
  VXLAN_CONFIG,
  waitUntil,
} from "./mesh_support.ts";

/** Starts `ping -i 0.02` from `from`'s container to `to`'s; resolves to [sent, received]. */
function pingEvery20ms(from: Node, to: Node, seconds: number): Promise<[number, number, string]> {
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      from.host.ns,
      "ping",
      "-n",
      "-q",
      "-i",
      "0.02",
      "-c",
      String(Math.round(seconds * 50)),
      "-W",
      "1",
      "-I",
      from.container,
      to.container,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return child.output().then((o) => {
    const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
    const m = /(\d+) packets transmitted, (\d+) received/.exec(text);
    if (!m) throw new Error(`Unexpected ping output: ${text}`);
    return [Number(m[1]), Number(m[2]), text];
  });
}

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  Deno.test(`vxlan: restart after ${signal} under 20 ms pings loses nothing, same VtepMAC and subnet`, async () => {
    await using cluster = await Cluster.create({ hosts: 2 });
    const [n1, n2] = await startAll(cluster, VXLAN_CONFIG);
    await waitUntil("mesh", async () => {
      const r = await n2.host.ping(n1.container, { from: n2.container, timeoutS: 1 });
      return r.ok;
    }, 3_000);
    await assertFullMesh([n1, n2]);
    const before = await linkDetails(n1.host, "flannel.1");
    assert.ok(before);
    const ifindexBefore =
      (await n1.host.ipJson<{ ifindex: number }[]>(["link", "show", "flannel.1"]))[0].ifindex;

    const t0 = performance.now();
    const pings = pingEvery20ms(n2, n1, 8);
    pings.catch(() => {}); // awaited below; this only keeps an early assertion from leaving it unhandled
    await new Promise((r) => setTimeout(r, 500));
    n1.daemon.kill(signal);
    const code = await n1.daemon.exitedWithin(3_000);
    if (signal === "SIGTERM") assert.equal(code, 0, n1.daemon.tail());
    const again = await startNode(n1.host);
    const restartedAt = performance.now() - t0;
    assert.ok(restartedAt < 7_000, `restart done ${restartedAt} ms into an 8 s ping run`);
    assert.match(again.daemon.logs(), /Reusing device flannel\.1/);
    // READY (subnet.env) comes before the start-up reconcile's summary line: wait for it.
    await again.daemon.waitForLog(/Reconciled \d+ peer leases: \d+ kernel changes/, 3_000);
    assert.match(again.daemon.logs(), /Reconciled \d+ peer leases: 0 kernel changes/);
    const [sent, received, text] = await pings;
    assert.equal(received, sent, `pings lost across the restart: ${text}`);
    assert.ok(sent >= 350, text);

    const after = await linkDetails(n1.host, "flannel.1");
    assert.equal(after?.address, before.address, "same VtepMAC");
    const ifindexAfter =
      (await n1.host.ipJson<{ ifindex: number }[]>(["link", "show", "flannel.1"]))[0].ifindex;
    assert.equal(ifindexAfter, ifindexBefore, "the device was not recreated");
    assert.equal(await leaseOf(n1.host), n1.lease, "same subnet");
    assert.equal(again.lease, n1.lease);
    const value = (await cluster.leases())[leaseKey(n1.lease)] as {
      BackendData: { VtepMAC: string };
    };
    assert.equal(value.BackendData.VtepMAC, before.address, "the lease keeps the VtepMAC");
    await assertFullMesh([again, n2]);
  });
}

Deno.test("vxlan: a peer that left while the daemon was down is removed at start, the others stay", async () => {
  await using cluster = await Cluster.create({ hosts: 3 });
  const [n1, n2, n3] = await startAll(cluster, VXLAN_CONFIG);
  await waitUntil("mesh", async () => (await fdbs(n1.host, "flannel.1")).length === 2, 3_000);

  n1.daemon.kill("SIGTERM");
  assert.equal(await n1.daemon.exitedWithin(3_000), 0, n1.daemon.tail());
  n3.daemon.kill("SIGTERM");
  assert.equal(await n3.daemon.exitedWithin(3_000), 0, n3.daemon.tail());
  await cluster.etcd.del(leaseKey(n3.lease));
  // Nothing removes h3's entries while h1's daemon is down.
  assert.ok((await routes(n1.host)).some((r) => r.dst === n3.lease));

  const again = await startNode(n1.host);
  await again.daemon.waitForLog(/Reconciled 1 peer leases: 3 kernel changes/, 5_000);
  assert.deepEqual(
    (await routes(n1.host)).filter((r) => r.dst.startsWith("10.1.")).map((r) => r.dst),
    [n2.lease],
  );
  assert.deepEqual((await neighs(n1.host, "flannel.1")).map((n) => n.dst), [baseOf(n2.lease)]);
  assert.deepEqual((await fdbs(n1.host, "flannel.1")).map((f) => f.dst), [n2.host.ip]);
  await assertFullMesh([again, n2]);
});
