/**
 * The daemon's process contract: SIGUSR1 opens no inspector, unknown flags exit 2, `--help` exits 0.
 */

import assert from "node:assert/strict";
import { Cluster } from "../harness/cluster.ts";
import { ALLOC_CONFIG } from "../harness/flannel.ts";

Deno.test("SIGUSR1 leaves no listener on 9229 and the daemon keeps running", async () => {
  await using cluster = await Cluster.create({ hosts: 1 });
  await cluster.putConfig(ALLOC_CONFIG);
  const [h1] = cluster.hosts;
  const d = h1.startFlannel();
  await d.waitReady(20_000);
  // Deno installs its inspector trigger ~0.5 s after start: signal after that, and twice.
  await new Promise((r) => setTimeout(r, 1_000));
  for (let i = 0; i < 2; i++) {
    d.kill("SIGUSR1");
    await new Promise((r) => setTimeout(r, 750));
  }
  const ss = await h1.exec(["ss", "-Hltn"]);
  assert.equal(ss.code, 0, ss.stderr);
  assert.doesNotMatch(ss.stdout, /:9229\b/, ss.stdout);
  assert.equal(d.exitCode, null, d.tail());
  assert.doesNotMatch(d.logs(), /Debugger listening/);
  // Still healthy: a clean SIGTERM exit.
  assert.equal(await d.stop(), 0);
});

Deno.test("an unknown flag exits 2 with a line naming it", async () => {
  await using cluster = await Cluster.create({ hosts: 1, startEtcd: false });
  const d = cluster.hosts[0].startFlannel(["--no-such-flag=1"]);
  assert.equal(await d.exitedWithin(15_000), 2, d.tail());
  const lines = d.logs().split("\n");
  assert.match(lines[0], /no-such-flag/);
  assert.equal(lines.filter((l) => l.includes("no-such-flag")).length, 1);
});

Deno.test("a bad flag value exits 2 naming the flag", async () => {
  await using cluster = await Cluster.create({ hosts: 1, startEtcd: false });
  const d = cluster.hosts[0].startFlannel(["--subnet-lease-renew-margin=0"]);
  assert.equal(await d.exitedWithin(15_000), 2, d.tail());
  assert.match(d.logs().split("\n")[0], /subnet-lease-renew-margin/);
});

Deno.test("--help prints the usage with defaults and exits 0", async () => {
  await using cluster = await Cluster.create({ hosts: 1, startEtcd: false });
  const d = cluster.hosts[0].startFlannel(["--help"]);
  assert.equal(await d.exitedWithin(15_000), 0, d.tail());
  assert.match(d.logs(), /etcd-endpoints/);
  assert.match(d.logs(), /http:\/\/127\.0\.0\.1:2379/);
  assert.match(d.logs(), /subnet-file/);
});

Deno.test("the flags upstream units pass are accepted; --kube-* is refused as out of scope", async () => {
  await using cluster = await Cluster.create({ hosts: 1 });
  await cluster.putConfig(ALLOC_CONFIG);
  const h = cluster.hosts[0];
  const d = h.startFlannel([
    "--ip-masq",
    "--ip-masq-fully-random-disable",
    "--iptables-forward-rules=true",
    "--iptables-resync=5",
    "--ip-blackhole-route",
    "--iface-can-reach=192.168.100.1",
    "--healthz-ip=0.0.0.0",
    "--healthz-port=0",
  ]);
  await d.waitReady(20_000);
  assert.equal((await h.readSubnetEnv())?.FLANNEL_IPMASQ, "true");
  assert.equal(await d.stop(), 0);

  const kube = h.startFlannel(["--kube-subnet-mgr"]);
  assert.equal(await kube.exitedWithin(15_000), 2, kube.tail());
  assert.match(
    kube.logs().split("\n")[0],
    /^-kube-subnet-mgr is out of scope: this flannel has no Kubernetes subnet manager/,
  );
});
