/**
 * The namespace cluster itself: hosts on the hub bridge reach each other and etcd, the default
 * route points at the hub, and teardown removes every namespace.
 */

import assert from "node:assert/strict";
import { Cluster, HUB_IP } from "../harness/cluster.ts";
import { listNamespaces } from "../harness/netns.ts";

Deno.test("Cluster.create() wires hosts to the hub bridge and etcd, and teardown removes them", async () => {
  let tag = "";
  {
    await using cluster = await Cluster.create({ hosts: 2, mtu: 1400 });
    tag = cluster.tag;
    const [h1, h2] = cluster.hosts;
    assert.match(h1.ns, /^fl[0-9a-f]{4}-h1$/);
    assert.equal(h1.ip, "192.168.100.11");
    assert.equal(cluster.etcd.endpoints, `http://${HUB_IP}:2379`);

    const links = await h1.ipJson<{ ifname: string; mtu: number; operstate: string }[]>([
      "link",
      "show",
      "eth0",
    ]);
    assert.equal(links[0].mtu, 1400);
    const routes = await h1.ipJson<{ dst: string; gateway?: string; dev: string }[]>(["route"]);
    assert.ok(
      routes.some((r) => r.dst === "default" && r.gateway === HUB_IP && r.dev === "eth0"),
      JSON.stringify(routes),
    );

    const p = await h1.ping(h2.ip, { count: 1, timeoutS: 2 });
    assert.ok(p.ok, p.output);
    assert.ok(p.rttMs !== null && p.rttMs >= 0);

    // etcd is reachable from a host namespace on the hub address, not only from the hub.
    const health = await h2.exec([
      "etcdctl",
      `--endpoints=${cluster.etcd.endpoints}`,
      "endpoint",
      "health",
    ]);
    assert.equal(health.code, 0, health.stderr);

    await cluster.putConfig({ Network: "10.1.0.0/16", Backend: { Type: "alloc" } });
    assert.equal(
      await cluster.etcd.get("/coreos.com/network/config"),
      '{"Network":"10.1.0.0/16","Backend":{"Type":"alloc"}}',
    );
    assert.equal(listNamespaces().filter((n) => n.startsWith(tag)).length, 3);
  }
  assert.deepEqual(listNamespaces().filter((n) => n.startsWith(tag)), []);
});
