/**
 * The network config changed while the daemon runs (issue 10 part 5): one clear line in the
 * daemon's log per change, and the daemon keeps running on the config it started with.
 */

import assert from "node:assert/strict";
import { Cluster } from "../harness/cluster.ts";
import { ALLOC_CONFIG } from "../harness/flannel.ts";

Deno.test("config watch: invalid, different and deleted configs are each named in one log line; the daemon keeps running", async () => {
  await using cluster = await Cluster.create({ hosts: 1 });
  await cluster.putConfig(ALLOC_CONFIG);
  const [h1] = cluster.hosts;
  const d = h1.startFlannel();
  await d.waitReady(30_000);
  const K = "/coreos.com/network/config";

  await cluster.putConfig('{"Network":"10.1.0.0/16","SubnetLen":33,"Backend":{"Type":"alloc"}}');
  await d.waitForLog(
    new RegExp(
      `^E.* Network config at ${K} changed: keeping the running config, the new one is invalid: ` +
        "SubnetLen 33 is not between 17 and 30$",
      "m",
    ),
  );
  await cluster.putConfig({ Network: "10.2.0.0/16", Backend: { Type: "alloc" } });
  await d.waitForLog(
    new RegExp(
      `^W.* Network config at ${K} changed \\(Network 10\\.1\\.0\\.0/16 → 10\\.2\\.0\\.0/16, ` +
        "SubnetMin 10\\.1\\.1\\.0 → 10\\.2\\.1\\.0, SubnetMax 10\\.1\\.255\\.0 → 10\\.2\\.255\\.0\\): " +
        "it takes effect on restart",
      "m",
    ),
  );
  await cluster.etcd.del(K);
  await d.waitForLog(new RegExp(`^W.* Network config at ${K} was deleted`, "m"));
  await cluster.putConfig(ALLOC_CONFIG);
  await d.waitForLog(/Network config at .* matches the running config again/);
  // The same config written again says nothing more.
  await cluster.putConfig(ALLOC_CONFIG);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(d.logs().match(/Network config at /g)?.length, 4, d.tail(20));
  assert.equal(d.exitCode, null, d.tail(20));
  assert.equal((await h1.readSubnetEnv())?.FLANNEL_NETWORK, "10.1.0.0/16");
  assert.equal(await d.stop(), 0);
});
