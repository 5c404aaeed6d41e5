/**
 * The alloc daemon and its inputs: a bad network config, etcd that comes up late, TLS with
 * client certificates, its own lease deleted under it.
 */

import assert from "node:assert/strict";
import { Cluster } from "../harness/cluster.ts";
import { ALLOC_CONFIG, expectedSubnetEnv, leaseKey, leaseOf } from "../harness/flannel.ts";

Deno.test("a bad config logs the key at fault and the corrected config is taken without restart", async () => {
  await using cluster = await Cluster.create({ hosts: 1 });
  await cluster.putConfig({ Network: "10.1.0.0/16", SubnetLen: 33, Backend: { Type: "alloc" } });
  const [h1] = cluster.hosts;
  const d = h1.startFlannel();
  const line = await d.waitForLog(/SubnetLen 33/, 20_000);
  assert.match(line, /^[EW]/, `logged as an error or warning: ${line}`);
  assert.equal(await d.exitedWithin(1_000), null, d.tail());
  assert.equal(await h1.readSubnetEnv(), null);

  await cluster.putConfig(ALLOC_CONFIG);
  await d.waitReady(20_000);
  const lease = await leaseOf(h1);
  assert.ok(lease);
  assert.equal(await Deno.readTextFile(h1.subnetFile), expectedSubnetEnv(lease));
  assert.equal(d.exitCode, null);
});

Deno.test("a missing config is waited for, naming the key", async () => {
  await using cluster = await Cluster.create({ hosts: 1 });
  const [h1] = cluster.hosts;
  const d = h1.startFlannel();
  await d.waitForLog(/\/coreos\.com\/network\/config/, 20_000);
  assert.equal(await d.exitedWithin(1_000), null, d.tail());
  await cluster.putConfig(ALLOC_CONFIG);
  await d.waitReady(20_000);
});

Deno.test("etcd started 5 s after the daemon is found", async () => {
  await using cluster = await Cluster.create({ hosts: 1, startEtcd: false });
  const [h1] = cluster.hosts;
  const d = h1.startFlannel();
  await new Promise((r) => setTimeout(r, 5_000));
  assert.equal(d.exitCode, null, d.tail());
  assert.equal(await h1.readSubnetEnv(), null);

  await cluster.etcd.start();
  await cluster.putConfig(ALLOC_CONFIG);
  const t0 = performance.now();
  await d.waitReady(20_000);
  const lease = await leaseOf(h1);
  assert.ok(lease);
  assert.equal(
    await cluster.etcd.get(leaseKey(lease)),
    `{"PublicIP":"${h1.ip}","PublicIPv6":null}`,
  );
  // Capped backoff: found within a few seconds of etcd coming up, not minutes.
  assert.ok(performance.now() - t0 < 15_000);
});

Deno.test("TLS etcd with client certificates, endpoint given by IP", async () => {
  await using cluster = await Cluster.create({ hosts: 1, etcd: "tls" });
  assert.match(cluster.etcd.endpoints, /^https:\/\/192\.168\.100\.1:2379$/);
  await cluster.putConfig(ALLOC_CONFIG);
  const [h1] = cluster.hosts;
  const d = h1.startFlannel(); // adds --etcd-cafile/--etcd-certfile/--etcd-keyfile
  await d.waitReady(30_000);
  const lease = await leaseOf(h1);
  assert.ok(lease);
  assert.equal(
    await cluster.etcd.get(leaseKey(lease)),
    `{"PublicIP":"${h1.ip}","PublicIPv6":null}`,
  );
});

Deno.test("TLS etcd without a client certificate is refused with a clear error", async () => {
  await using cluster = await Cluster.create({ hosts: 1, etcd: "tls" });
  await cluster.putConfig(ALLOC_CONFIG);
  const [h1] = cluster.hosts;
  const tls = cluster.etcd.tlsFiles!;
  // A later flag wins (Go flag semantics): drop the client certificate and key.
  const d = h1.startFlannel([`--etcd-cafile=${tls.caFile}`, "--etcd-certfile=", "--etcd-keyfile="]);
  // Some attempts only see "write EPIPE" (the server closes first); one must name the cause.
  await d.waitForLog(/^[EW].*192\.168\.100\.1:2379.*certificate/i, 20_000);
  assert.equal(await d.exitedWithin(1_000), null, d.tail());
  assert.equal(await h1.readSubnetEnv(), null);
});

Deno.test("own lease deleted in etcd: the daemon exits 1 with a clear line", async () => {
  await using cluster = await Cluster.create({ hosts: 1 });
  await cluster.putConfig(ALLOC_CONFIG);
  const [h1] = cluster.hosts;
  const d = h1.startFlannel();
  await d.waitReady(20_000);
  const lease = await leaseOf(h1);
  assert.ok(lease);
  await cluster.etcd.del(leaseKey(lease));
  assert.equal(await d.exitedWithin(5_000), 1, d.tail());
  assert.match(d.logs(), /^E.*(revoked|deleted|lost)/im);
});
