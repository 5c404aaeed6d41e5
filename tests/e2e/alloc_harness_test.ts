/**
 * The namespace cluster itself: hosts on the hub bridge reach each other and etcd, the default
 * route points at the hub, and teardown removes every namespace.
 */

import assert from "node:assert/strict";
import { Cluster, Daemon, HUB_IP } from "../harness/cluster.ts";
import { listNamespaces } from "../harness/netns.ts";

Deno.test("Cluster.create() wires hosts to the hub bridge and etcd, and teardown removes them", async () => {
  let tag = "";
  let dirs: string[] = [];
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
    dirs = [cluster.dir, cluster.etcd.server!.tmpDir];
  }
  assert.deepEqual(listNamespaces().filter((n) => n.startsWith(tag)), []);
  for (const d of dirs) await assert.rejects(Deno.stat(d), Deno.errors.NotFound);
});

Deno.test("Daemon captures output, sees the subnet file, and reports exit codes", async () => {
  await using cluster = await Cluster.create({ hosts: 1, startEtcd: false });
  const h1 = cluster.hosts[0];
  const spawn = (script: string) =>
    Daemon.spawn({
      ns: h1.ns,
      cmd: ["sh", "-c", script],
      env: { PATH: "/usr/bin:/bin:/usr/sbin:/sbin" },
      cwd: h1.dir,
      logFile: `${h1.dir}/fake.log`,
      subnetFile: h1.subnetFile,
    });

  const d = spawn(
    `echo "I1127 subnet] Acquired lease 10.1.15.0/24" >&2; sleep 0.2; echo X > ${h1.subnetFile}; ` +
      `trap 'exit 0' TERM; while :; do sleep 0.05; done`,
  );
  assert.match(await d.waitForLog(/Acquired lease/), /10\.1\.15\.0\/24/);
  await d.waitReady(5_000);
  assert.equal(await d.exitedWithin(200), null);
  d.kill("SIGTERM");
  assert.equal(await d.exited(), 0);
  assert.match(await Deno.readTextFile(`${h1.dir}/fake.log`), /Acquired lease/);

  const failing = spawn("echo boom >&2; exit 3");
  await assert.rejects(failing.waitForLog(/never/, 5_000), /exited with code 3.*\n.*boom/);
  await assert.rejects(failing.waitReady(5_000), /exited with code 3/);

  const killed = spawn("sleep 30; echo never");
  killed.kill("SIGKILL");
  assert.equal(await killed.exited(), 137);

  const slow = spawn("exec sleep 30");
  await assert.rejects(slow.waitForLog(/x/, 100), /Timed out after 100 ms/);
  assert.equal(await slow.stop(500), 143);
});
