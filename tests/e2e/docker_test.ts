/**
 * Real Docker on two flannel hosts (vxlan, `--ip-masq`): each host's dockerd gets its options
 * from scripts/mk-docker-opts.sh as the shipped drop-in does (`--bip`, `--mtu`, and
 * `--ip-masq=false` because flannel masquerades), runs with its iptables on (FORWARD policy
 * DROP), and a busybox container on each host pings the other across the overlay:
 * - without flannel's forward rules on the receiving host, Docker's DROP policy eats the ping;
 * - with them (installed before or after dockerd's own), it gets through both ways and arrives
 *   with the container's own source address;
 * - a ping to an address outside the Network (the hub) leaves masqueraded as the host.
 */

import assert from "node:assert/strict";
import { Cluster, type Host, HUB_IP, REPO_ROOT } from "../harness/cluster.ts";
import { captureEchoRequests } from "../harness/capture.ts";
import { busyboxRootfsTar, Dockerd, dockerUnavailable, IMAGE } from "../harness/docker.ts";
import { leaseOf } from "../harness/flannel.ts";
import { runOk } from "../harness/netns.ts";
import { VXLAN_CONFIG } from "./mesh_support.ts";

const unavailable = dockerUnavailable();
if (unavailable) console.warn(`docker_test: skipped: ${unavailable}`);

/** dockerd's options from subnet.env, through mk-docker-opts.sh (-c), as the drop-in does. */
async function dockerOpts(h: Host): Promise<string[]> {
  const out = `${h.dir}/docker_opts.env`;
  await runOk([
    "sh",
    `${REPO_ROOT}/scripts/mk-docker-opts.sh`,
    "-c",
    "-f",
    h.subnetFile,
    "-d",
    out,
  ]);
  const m = /^DOCKER_OPTS="(.*)"$/m.exec(await Deno.readTextFile(out));
  assert.ok(m, `no DOCKER_OPTS in ${out}`);
  return m[1].trim().split(/\s+/);
}

/** Starts dockerd on `h` and one busybox container; returns the daemon and the container's IP. */
async function dockerHost(h: Host, tar: string): Promise<{ d: Dockerd; ip: string }> {
  const opts = await dockerOpts(h);
  const env = (await h.readSubnetEnv())!;
  assert.deepEqual(opts, [
    `--bip=${env.FLANNEL_SUBNET}`,
    "--ip-masq=false",
    `--mtu=${env.FLANNEL_MTU}`,
  ]);
  const d = await Dockerd.start(h.ns, `${h.dir}/docker`, opts);
  try {
    await d.dockerOk(["import", tar, IMAGE]);
    await d.dockerOk(["run", "-d", "--name", "box", IMAGE, "/bin/busybox", "sleep", "600"]);
    const ip = (await d.dockerOk(["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "box"]))
      .trim();
    const base = env.FLANNEL_SUBNET.split("/")[0].replace(/\.1$/, ".");
    assert.ok(ip.startsWith(base), `container address ${ip} outside ${env.FLANNEL_SUBNET}`);
    const mtu =
      (await d.dockerOk(["exec", "box", "/bin/busybox", "cat", "/sys/class/net/eth0/mtu"]))
        .trim();
    assert.equal(mtu, env.FLANNEL_MTU);
    return { d, ip };
  } catch (err) {
    await d[Symbol.asyncDispose]();
    throw err;
  }
}

/** `docker exec c ping` from a container; true when the reply came back. */
async function ping(d: Dockerd, ip: string): Promise<boolean> {
  const r = await d.docker(["exec", "box", "/bin/busybox", "ping", "-c", "1", "-W", "2", ip]);
  return r.code === 0;
}

Deno.test({
  name: "Docker containers on two flannel hosts talk across vxlan with their own addresses",
  ignore: unavailable !== null,
  fn: async () => {
    const tar = await busyboxRootfsTar();
    await using cluster = await Cluster.create({ hosts: 2 });
    await cluster.putConfig(VXLAN_CONFIG);
    const [h1, h2] = cluster.hosts;
    const f1 = h1.startFlannel(["--ip-masq"]);
    // h2 first without the forward rules, to show what Docker's FORWARD DROP does.
    let f2 = h2.startFlannel(["--ip-masq", "--iptables-forward-rules=false"]);
    await Promise.all([f1.waitReady(30_000), f2.waitReady(30_000)]);
    const lease2 = await leaseOf(h2);

    // Both dockerds start (and stop) in parallel: each takes seconds.
    const started = await Promise.allSettled([dockerHost(h1, tar), dockerHost(h2, tar)]);
    const up = started.flatMap((r) => r.status === "fulfilled" ? [r.value.d] : []);
    await using _stop = {
      [Symbol.asyncDispose]: async () =>
        void await Promise.all(up.map((d) => d[Symbol.asyncDispose]())),
    };
    for (const r of started) if (r.status === "rejected") throw r.reason;
    const [a, b] = started.map((r) =>
      (r as PromiseFulfilledResult<{ d: Dockerd; ip: string }>).value
    );
    assert.match(
      await runOk(["ip", "netns", "exec", h2.ns, "iptables-save", "-t", "filter"]),
      /^:FORWARD DROP /m,
    );

    assert.equal(await ping(a.d, b.ip), false, "forwarded without flannel's forward rules");

    // flannel restarted with its defaults: same lease, forward rules installed.
    await f2.stop();
    f2 = h2.startFlannel(["--ip-masq"]);
    await f2.waitReady(30_000);
    assert.equal(await leaseOf(h2), lease2);
    const across = await captureEchoRequests(h2.ns, "flannel.1", async () => {
      assert.ok(await ping(a.d, b.ip), "container ping across the overlay");
    });
    assert.deepEqual(across, [{ src: a.ip, dst: b.ip }], "the container's source address");

    // And back: on h1 flannel installed its rules before dockerd started and added its own.
    const back = await captureEchoRequests(h1.ns, "flannel.1", async () => {
      assert.ok(await ping(b.d, a.ip), "container ping back across the overlay");
    });
    assert.deepEqual(back, [{ src: b.ip, dst: a.ip }]);

    const outside = await captureEchoRequests(cluster.hub, "br0", async () => {
      assert.ok(await ping(a.d, HUB_IP), "container ping to the hub");
    });
    assert.deepEqual(outside, [{ src: h1.ip, dst: HUB_IP }], "masqueraded as the host");
  },
});
