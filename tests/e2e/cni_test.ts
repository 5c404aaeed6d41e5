/**
 * The real CNI `flannel` plugin (upstream flannel-io/cni-plugin, built from source by
 * scripts/build-cni-plugin.sh into /var/cache/flannel-tests/cni/) with Debian's `bridge` and
 * `host-local`, on two flannel hosts (vxlan, `--ip-masq`): a pod namespace per host gets an
 * address in FLANNEL_SUBNET with FLANNEL_MTU from subnet.env, pods ping across hosts with their
 * own source address (the plugin turns the bridge's masquerade off because flannel does it), and
 * DEL removes the pod's interface and releases its address.
 */

import assert from "node:assert/strict";
import { Cluster, type Host } from "../harness/cluster.ts";
import { captureEchoRequests } from "../harness/capture.ts";
import { createNamespace, deleteNamespace, run } from "../harness/netns.ts";
import { VXLAN_CONFIG, waitUntil } from "./mesh_support.ts";

const PLUGIN_DIR = "/var/cache/flannel-tests/cni";
const DEBIAN_CNI = "/usr/lib/cni";

function missing(): string | null {
  const has = (p: string) => {
    try {
      Deno.statSync(p);
      return true;
    } catch {
      return false;
    }
  };
  if (!has(`${PLUGIN_DIR}/flannel`)) {
    return `no CNI flannel plugin in ${PLUGIN_DIR} (build it: scripts/build-cni-plugin.sh ` +
      "<flannel-io/cni-plugin source dir>)";
  }
  for (const p of ["bridge", "host-local"]) {
    if (!has(`${DEBIAN_CNI}/${p}`)) {
      return `${DEBIAN_CNI}/${p} is missing (apt-get install containernetworking-plugins)`;
    }
  }
  return null;
}
const skip = missing();
if (skip) console.warn(`cni_test: skipped: ${skip}`);

interface CniResult {
  interfaces?: { name: string; sandbox?: string }[];
  ips: { address: string; gateway?: string }[];
}

/** Runs the flannel plugin in `host` for pod namespace `pod`. */
async function cni(host: Host, cmd: "ADD" | "DEL", pod: string): Promise<string> {
  const conf = {
    cniVersion: "0.3.1",
    name: "flnet",
    type: "flannel",
    subnetFile: host.subnetFile,
    dataDir: `${host.dir}/cni-data`,
    ipam: { dataDir: `${host.dir}/ipam` },
    delegate: { bridge: "cni0" },
  };
  const r = await run([
    "ip",
    "netns",
    "exec",
    host.ns,
    "env",
    `CNI_COMMAND=${cmd}`,
    `CNI_CONTAINERID=${pod}`,
    `CNI_NETNS=/run/netns/${pod}`,
    "CNI_IFNAME=eth0",
    `CNI_PATH=${PLUGIN_DIR}:${DEBIAN_CNI}`,
    `${PLUGIN_DIR}/flannel`,
  ], { stdin: JSON.stringify(conf) });
  if (r.code !== 0) throw new Error(`CNI ${cmd} on ${host.name}: ${r.stdout} ${r.stderr}`);
  return r.stdout;
}

Deno.test({
  name: "The CNI flannel plugin wires pods on two hosts; they ping with their own addresses",
  ignore: skip !== null,
  fn: async () => {
    await using cluster = await Cluster.create({ hosts: 2 });
    await cluster.putConfig(VXLAN_CONFIG);
    const hosts = cluster.hosts;
    const daemons = hosts.map((h) => h.startFlannel(["--ip-masq"]));
    await Promise.all(daemons.map((d) => d.waitReady(30_000)));
    const pods = hosts.map((_, i) => `${cluster.tag}-p${i + 1}`);
    try {
      const addrs: string[] = [];
      for (const [i, h] of hosts.entries()) {
        await createNamespace(pods[i]);
        const res = JSON.parse(await cni(h, "ADD", pods[i])) as CniResult;
        const env = (await h.readSubnetEnv())!;
        const [ip, len] = res.ips[0].address.split("/");
        const base = env.FLANNEL_SUBNET.split("/")[0].replace(/\.1$/, ".");
        assert.ok(ip.startsWith(base), `pod address ${ip} outside ${env.FLANNEL_SUBNET}`);
        assert.equal(len, env.FLANNEL_SUBNET.split("/")[1]);
        const [eth0] = JSON.parse(
          (await run(["ip", "-n", pods[i], "-j", "link", "show", "eth0"])).stdout,
        ) as { mtu: number }[];
        assert.equal(String(eth0.mtu), env.FLANNEL_MTU);
        // The plugin routes the whole Network through the bridge.
        const routes = JSON.parse(
          (await run(["ip", "-n", pods[i], "-j", "route", "show", "10.1.0.0/16"])).stdout,
        ) as { dst: string; gateway: string }[];
        assert.deepEqual(routes.map((r) => [r.dst, r.gateway]), [[
          "10.1.0.0/16",
          env.FLANNEL_SUBNET.split("/")[0],
        ]]);
        addrs.push(ip);
      }
      // No masquerade by the bridge plugin: flannel does it, and not inside the Network.
      const nat = (await hosts[0].exec(["iptables-save", "-t", "nat"])).stdout;
      assert.doesNotMatch(nat, /CNI-/, "bridge plugin masquerade rules");

      // The daemons learn each other's lease by watch: ping until the overlay carries it (the
      // first ping after start-up may precede h1's FDB entry for h2), then capture one.
      const podPing = (waitS: number) =>
        run([
          "ip",
          "netns",
          "exec",
          pods[0],
          "ping",
          "-n",
          "-c",
          "1",
          "-W",
          String(waitS),
          addrs[1],
        ]);
      await waitUntil("pod 1 reaches pod 2", async () => (await podPing(1)).code === 0, 20_000);
      const seen = await captureEchoRequests(pods[1], "eth0", async () => {
        const r = await podPing(3);
        assert.equal(r.code, 0, `pod ping: ${r.stdout}${r.stderr}`);
      });
      assert.deepEqual(seen, [{ src: addrs[0], dst: addrs[1] }]);

      // DEL: the pod's interface and its address lease are gone.
      for (const [i, h] of hosts.entries()) {
        await cni(h, "DEL", pods[i]);
        const link = await run(["ip", "-n", pods[i], "link", "show", "eth0"]);
        assert.notEqual(link.code, 0, "eth0 still in the pod after DEL");
        const leased = [...Deno.readDirSync(`${h.dir}/ipam/flnet`)].map((e) => e.name)
          .filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n));
        assert.deepEqual(leased, [], "host-local still holds an address");
        const veths = JSON.parse(
          (await run(["ip", "-n", h.ns, "-j", "link", "show", "master", "cni0"])).stdout || "[]",
        );
        assert.deepEqual(veths, [], "a veth is left on cni0");
      }
    } finally {
      for (const p of pods) deleteNamespace(p);
    }
  },
});
