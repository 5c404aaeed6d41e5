/**
 * IPv6 end to end: hosts in namespaces with an IPv6 underlay (fd00:100::/64 beside the IPv4 one),
 * a real etcd, `deno run -A main.ts` per host. Container addresses of both families (base + 1 of
 * each lease as /32 and /128 on `lo`) ping each other in every direction; kernel state, etcd keys
 * and values and subnet.env are read back. Dual-stack vxlan (with a restart that keeps both
 * subnets and a host that leaves), dual-stack host-gw, and an IPv6-only vxlan cluster.
 */

import assert from "node:assert/strict";
import { Cluster, Daemon, ETCD_PREFIX, type Host } from "../harness/cluster.ts";
import { leaseOf } from "../harness/flannel.ts";
import { IP } from "../../ffi/ip.ts";
import { fdbs, linkDetails, waitUntil } from "./mesh_support.ts";

const DUAL_VXLAN = {
  Network: "10.1.0.0/16",
  EnableIPv6: true,
  IPv6Network: "fc00::/48",
  Backend: { Type: "vxlan" },
};
const DUAL_HOSTGW = { ...DUAL_VXLAN, Backend: { Type: "host-gw" } };
const V6ONLY_VXLAN = {
  EnableIPv4: false,
  EnableIPv6: true,
  IPv6Network: "fc00::/48",
  Backend: { Type: "vxlan" },
};

/** A host with flannel running and its container addresses on lo. */
interface Node6 {
  readonly host: Host;
  daemon: Daemon;
  /** `10.1.15.0/24`; null on an IPv6-only network. */
  readonly lease4: string | null;
  /** `fc00:0:0:22::/64`. */
  readonly lease6: string;
  readonly c4: string | null;
  readonly c6: string;
}

/** The base address of a FLANNEL_IPV6_SUBNET value (`fc00:0:0:22::1/64` → `fc00:0:0:22::/64`). */
function lease6Of(subnetEnvValue: string): string {
  const [ip, len] = subnetEnvValue.split("/");
  return `${IP.fromBigInt(IP.mustParse(ip).toBigInt() - 1n, 6)}/${len}`;
}

function base(subnet: string): string {
  return subnet.split("/")[0];
}

async function start6(
  host: Host,
  extra: string[] = [],
  spawn = (h: Host) => h.startFlannel(extra),
): Promise<Node6> {
  const daemon = spawn(host);
  try {
    await daemon.waitReady(30_000);
  } catch (err) {
    throw new Error(`Flannel on ${host.name} did not get ready: ${daemon.tail(30)}`, {
      cause: err,
    });
  }
  const env = await host.readSubnetEnv();
  assert.ok(env?.FLANNEL_IPV6_SUBNET, `no FLANNEL_IPV6_SUBNET in ${host.subnetFile}`);
  const lease4 = env.FLANNEL_SUBNET ? await leaseOf(host) : null;
  const c4 = lease4 ? await host.addContainerAddress() : null;
  const c6 = await host.addContainerAddress6();
  return { host, daemon, lease4, lease6: lease6Of(env.FLANNEL_IPV6_SUBNET), c4, c6 };
}

async function startAll6(cluster: Cluster, config: unknown): Promise<Node6[]> {
  await cluster.putConfig(config);
  return await Promise.all(cluster.hosts.map((h) => start6(h)));
}

/** The etcd key of a node's lease, as upstream writes it. */
function keyOf(n: Node6): string {
  const v4 = n.lease4 ?? "0.0.0.0/0";
  return `${ETCD_PREFIX}/subnets/${v4.replace("/", "-")}&${n.lease6.replace("/", "-")}`;
}

/** Pings between the containers of every ordered pair, IPv4 and IPv6 (ping and ping6). */
async function assertPingMatrix(nodes: Node6[]): Promise<void> {
  const failures: string[] = [];
  await Promise.all(nodes.flatMap((a) =>
    nodes.filter((b) => b !== a).flatMap((b) => {
      const pairs: [string, string][] = [[a.c6, b.c6]];
      if (a.c4 && b.c4) pairs.push([a.c4, b.c4]);
      return pairs.map(async ([from, to]) => {
        const r = await a.host.ping(to, { from, timeoutS: 2 });
        if (!r.ok) failures.push(`${a.host.name} ${from} → ${b.host.name} ${to}`);
      });
    })
  ));
  assert.deepEqual(failures, [], `pings lost: ${failures.join(", ")}`);
}

interface Route6 {
  dst: string;
  gateway?: string;
  dev: string;
  flags: string[];
  protocol?: string;
}

async function routes6(host: Host): Promise<Route6[]> {
  return (await host.ipJson<Route6[]>(["-6", "route", "show", "table", "main"]))
    // Not the kernel's routes of local /128s (the containers', the device's own address).
    .filter((r) => r.dst.startsWith("fc00:") && r.protocol !== "kernel");
}

async function neighs6(host: Host, dev: string) {
  return await host.ipJson<{ dst: string; lladdr?: string; state: string[] }[]>(
    ["-6", "neigh", "show", "dev", dev],
  );
}

/** Host name → [v4 VtepMAC, v6 VtepMAC] from etcd, checking each value's exact shape. */
async function vtepMacs(cluster: Cluster, nodes: Node6[]): Promise<Map<string, [string, string]>> {
  const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
  const out = new Map<string, [string, string]>();
  for (const n of nodes) {
    const value = raw[keyOf(n)];
    assert.ok(value, `no key ${keyOf(n)} in etcd: ${Object.keys(raw).join(" ")}`);
    const m =
      /^\{"PublicIP":"([\d.]+)","PublicIPv6":"([0-9a-f:]+)","BackendType":"vxlan","BackendData":\{"VNI":1,"VtepMAC":"([0-9a-f:]{17})"\},"BackendV6Data":\{"VNI":1,"VtepMAC":"([0-9a-f:]{17})"\}\}$/
        .exec(value);
    assert.ok(m, `lease value ${value}`);
    assert.equal(m[1], n.host.ip);
    assert.equal(m[2], n.host.ip6);
    out.set(n.host.name, [m[3], m[4]]);
  }
  return out;
}

/** Asserts `node` holds exactly the IPv6 tunnel entries for `peers` on flannel-v6.1. */
async function assertV6Tunnels(node: Node6, peers: Node6[], mac6: (n: Node6) => string) {
  const h = node.host;
  const link = await linkDetails(h, "flannel-v6.1");
  assert.ok(link, `no flannel-v6.1 on ${h.name}`);
  const d = link.linkinfo.info_data;
  assert.equal(d.id, 1);
  assert.equal(d.local6, h.ip6, "vxlan over the IPv6 underlay (IFLA_VXLAN_LOCAL6)");
  assert.equal(d.link, "eth0");
  assert.equal(d.port, 8472);
  assert.equal(d.learning, false);
  assert.equal(link.mtu, 1430);
  assert.equal(link.address, mac6(node));
  const addrs = await h.ipJson<
    { addr_info: { local: string; prefixlen: number; scope: string }[] }[]
  >(
    ["-6", "addr", "show", "dev", "flannel-v6.1", "scope", "global"],
  );
  assert.deepEqual(
    addrs[0].addr_info.filter((a) => a.local).map((a) => `${a.local}/${a.prefixlen}`),
    [
      `${base(node.lease6)}/128`,
    ],
  );
  assert.deepEqual(
    (await routes6(h)).map((r) => [r.dst, r.gateway, r.dev, r.flags]).sort(),
    peers.map((p) => [p.lease6, base(p.lease6), "flannel-v6.1", ["onlink"]]).sort(),
    `IPv6 routes on ${h.name}`,
  );
  assert.deepEqual(
    (await neighs6(h, "flannel-v6.1")).filter((n) => !n.dst.startsWith("fe80:"))
      .map((n) => [n.dst, n.lladdr, n.state]).sort(),
    peers.map((p) => [base(p.lease6), mac6(p), ["PERMANENT"]]).sort(),
    `NDP on ${h.name}`,
  );
  assert.deepEqual(
    (await fdbs(h, "flannel-v6.1")).map((f) => [f.mac, f.dst, f.state]).sort(),
    peers.map((p) => [mac6(p), p.host.ip6, "permanent"]).sort(),
    `FDB on ${h.name}`,
  );
}

Deno.test("IPv6 vxlan: three dual-stack hosts, ping and ping6 matrix, restart keeps both subnets, a leaving host's IPv6 entries go", async () => {
  await using cluster = await Cluster.create({ hosts: 3, ipv6: true });
  const nodes = await startAll6(cluster, DUAL_VXLAN);
  for (const n of nodes) {
    const text = await Deno.readTextFile(n.host.subnetFile);
    assert.match(
      text,
      /^FLANNEL_NETWORK=10\.1\.0\.0\/16\nFLANNEL_SUBNET=10\.1\.\d+\.1\/24\nFLANNEL_IPV6_NETWORK=fc00::\/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:[0-9a-f]+::1\/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n$/,
      "upstream's order; the MTU fits both devices",
    );
    assert.ok(n.lease4);
  }
  assert.equal(new Set(nodes.map((n) => n.lease6)).size, 3, "distinct IPv6 subnets");
  const macs = await vtepMacs(cluster, nodes);
  const mac6 = (n: Node6) => macs.get(n.host.name)![1];
  await waitUntil("IPv6 mesh converged", async () => {
    for (const a of nodes) if ((await fdbs(a.host, "flannel-v6.1")).length !== 2) return false;
    return true;
  }, 5_000);
  for (const n of nodes) {
    assert.ok(await linkDetails(n.host, "flannel.1"), "the IPv4 device as well");
    await assertV6Tunnels(n, nodes.filter((p) => p !== n), mac6);
  }
  await assertPingMatrix(nodes);

  // Restart h1: the same key, both subnets kept, the mesh works again.
  const [n1, n2, n3] = nodes;
  n1.daemon.kill("SIGTERM");
  assert.equal(await n1.daemon.exitedWithin(5_000), 0, n1.daemon.tail());
  const r1 = await start6(n1.host);
  assert.equal(r1.lease4, n1.lease4);
  assert.equal(r1.lease6, n1.lease6);
  await r1.daemon.waitForLog(/Reusing lease 10\.1\.\d+\.0\/24 \+ fc00:0:0:[0-9a-f]+::\/64/, 5_000);
  // Every entry was right: nothing touched, no blink (IPv6 routes read back with metric 1024).
  await r1.daemon.waitForLog(/Reconciled 2 peer leases \(IPv4\): 0 kernel changes/, 5_000);
  await r1.daemon.waitForLog(/Reconciled 2 peer leases \(IPv6\): 0 kernel changes/, 5_000);
  assert.equal(Object.keys(await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`)).length, 3);
  const after = [r1, n2, n3];
  await assertPingMatrix(after);

  // h3 leaves: daemon stopped, lease deleted; the others drop its IPv6 route, NDP and FDB entries.
  n3.daemon.kill("SIGTERM");
  assert.equal(await n3.daemon.exitedWithin(5_000), 0, n3.daemon.tail());
  await cluster.etcd.del(keyOf(n3));
  for (const n of [r1, n2]) {
    const ms = await waitUntil(`${n3.lease6} gone from ${n.host.name}`, async () => {
      const r = (await routes6(n.host)).some((x) => x.dst === n3.lease6);
      const a = (await neighs6(n.host, "flannel-v6.1")).some((x) => x.dst === base(n3.lease6));
      const f = (await fdbs(n.host, "flannel-v6.1")).some((x) => x.dst === n3.host.ip6);
      return !r && !a && !f;
    }, 5_000);
    console.log(`leave: ${n.host.name} dropped ${n3.lease6} after ${ms.toFixed(0)} ms`);
    await assertV6Tunnels(n, [r1, n2].filter((p) => p !== n), mac6);
  }
  await assertPingMatrix([r1, n2]);
});

Deno.test("IPv6 host-gw: three dual-stack hosts, IPv6 routes via PublicIPv6, ping and ping6 matrix, hostile IPv6 keys change nothing, a departed host's route goes", async () => {
  await using cluster = await Cluster.create({ hosts: 3, ipv6: true });
  const nodes = await startAll6(cluster, DUAL_HOSTGW);
  const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
  for (const n of nodes) {
    assert.equal(
      raw[keyOf(n)],
      `{"PublicIP":"${n.host.ip}","PublicIPv6":"${n.host.ip6}","BackendType":"host-gw"}`,
    );
    assert.equal((await n.host.readSubnetEnv())?.FLANNEL_MTU, "1500");
  }
  await waitUntil("IPv6 routes in place", async () => {
    for (const a of nodes) if ((await routes6(a.host)).length !== 2) return false;
    return true;
  }, 5_000).catch(async (err) => {
    for (const n of nodes) console.log(n.host.name, JSON.stringify(await routes6(n.host)));
    throw err;
  });
  for (const n of nodes) {
    const peers = nodes.filter((p) => p !== n);
    assert.deepEqual(
      (await routes6(n.host)).map((r) => [r.dst, r.gateway, r.dev, r.protocol]).sort(),
      peers.map((p) => [p.lease6, p.host.ip6, "eth0", "102"]).sort(),
      `IPv6 routes on ${n.host.name}`,
    );
    assert.equal(await linkDetails(n.host, "flannel-v6.1"), null, "host-gw makes no device");
  }
  await assertPingMatrix(nodes);

  // Peer checks for the IPv6 half: outside IPv6Network, the whole of it, another length, and a
  // copy of a host's IPv6 subnet under another key: one warning each, no kernel change anywhere.
  const hostile: [string, string][] = [
    ["10.1.250.0-24&fc01::-64", "outside"],
    ["10.1.251.0-24&::-0", "::/0"],
    ["10.1.252.0-24&fc00:0:0:fe::-80", "IPv6SubnetLen"],
    [`10.1.253.0-24&${nodes[0].lease6.replace("/", "-")}`, "already held"],
  ];
  for (const [name] of hostile) {
    await cluster.etcd.put(
      `${ETCD_PREFIX}/subnets/${name}`,
      '{"PublicIP":"192.168.100.12","PublicIPv6":"fd00:100::12","BackendType":"host-gw"}',
    );
  }
  for (const n of nodes) {
    await n.daemon.waitForLog(
      /W.*Ignoring lease .*10\.1\.250\.0-24&fc01::-64.*not inside IPv6Network/,
      5_000,
    );
    await n.daemon.waitForLog(
      /W.*Ignoring lease .*10\.1\.251\.0-24&::-0.*not inside IPv6Network/,
      5_000,
    );
    await n.daemon.waitForLog(
      /W.*Ignoring lease .*10\.1\.252\.0-24&fc00:0:0:fe::-80.*IPv6SubnetLen 64/,
      5_000,
    );
    await n.daemon.waitForLog(
      /W.*Ignoring lease .*10\.1\.253\.0-24&.*(already held|our own lease)/,
      5_000,
    );
  }
  for (const n of nodes) {
    const peers = nodes.filter((p) => p !== n);
    const got = await n.host.ipJson<Route6[]>(["-6", "route", "show", "table", "main"]);
    assert.ok(!got.some((r) => r.dst === "default" && r.protocol === "102"), "no default route");
    assert.deepEqual(
      (await routes6(n.host)).map((r) => r.dst).sort(),
      peers.map((p) => p.lease6).sort(),
      `IPv6 routes on ${n.host.name} after the hostile keys`,
    );
    assert.ok(!got.some((r) => r.dst.startsWith("fc01:")));
  }
  for (const [name] of hostile) await cluster.etcd.del(`${ETCD_PREFIX}/subnets/${name}`);
  await assertPingMatrix(nodes);

  // A departed host's IPv6 route goes.
  const [n1, n2, n3] = nodes;
  n3.daemon.kill("SIGTERM");
  assert.equal(await n3.daemon.exitedWithin(5_000), 0, n3.daemon.tail());
  await cluster.etcd.del(keyOf(n3));
  for (const n of [n1, n2]) {
    await waitUntil(`${n3.lease6} route gone from ${n.host.name}`, async () => {
      return !(await routes6(n.host)).some((x) => x.dst === n3.lease6);
    }, 5_000);
  }
  await assertPingMatrix([n1, n2]);
});

Deno.test("IPv6-only vxlan (EnableIPv4 false): upstream's 0.0.0.0-0& keys, only flannel-v6.1, ping6 matrix", async () => {
  await using cluster = await Cluster.create({ hosts: 3, ipv6: true });
  const nodes = await startAll6(cluster, V6ONLY_VXLAN);
  const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
  for (const n of nodes) {
    assert.equal(n.lease4, null);
    const text = await Deno.readTextFile(n.host.subnetFile);
    assert.match(
      text,
      /^FLANNEL_IPV6_NETWORK=fc00::\/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:[0-9a-f]+::1\/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n$/,
    );
    const value = raw[keyOf(n)];
    assert.ok(value, `no key ${keyOf(n)}: ${Object.keys(raw).join(" ")}`);
    assert.match(
      value,
      new RegExp(
        `^\\{"PublicIP":"0\\.0\\.0\\.0","PublicIPv6":"${n.host.ip6}","BackendType":"vxlan",` +
          `"BackendV6Data":\\{"VNI":1,"VtepMAC":"[0-9a-f:]{17}"\\}\\}$`,
      ),
    );
    assert.equal(await linkDetails(n.host, "flannel.1"), null, "no IPv4 device");
  }
  assert.equal(new Set(nodes.map((n) => n.lease6)).size, 3);
  await waitUntil("IPv6 mesh converged", async () => {
    for (const a of nodes) if ((await fdbs(a.host, "flannel-v6.1")).length !== 2) return false;
    return true;
  }, 5_000);
  await assertPingMatrix(nodes);
});

/** Upstream flannel v0.20.2 (built by scripts/setup.sh; speaks etcd v3 with our key layout). */
const UPSTREAM = "/var/cache/flannel-tests/upstream/flanneld-v0.20.2";
const haveUpstream = (() => {
  try {
    return Deno.statSync(UPSTREAM).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "IPv6 vxlan with upstream v0.20.2: its dual-stack lease read byte for byte, ours read by it, ping and ping6 both ways",
  ignore: !haveUpstream,
  fn: async () => {
    await using cluster = await Cluster.create({ hosts: 2, ipv6: true });
    await cluster.putConfig(DUAL_VXLAN);
    const [h1, h2] = cluster.hosts;
    const up = await start6(h1, [], (h) => {
      const d = Daemon.spawn({
        ns: h.ns,
        cmd: [
          UPSTREAM,
          `--etcd-endpoints=${cluster.etcd.endpoints}`,
          "--iface=eth0",
          `--subnet-file=${h.subnetFile}`,
        ],
        env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin:/usr/sbin:/sbin" },
        cwd: h.dir,
        logFile: `${h.dir}/flanneld-upstream.log`,
        subnetFile: h.subnetFile,
      });
      h.daemons.push(d);
      return d;
    });
    const ours = await start6(h2);
    const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
    // Upstream's key and value, as written by it: the same form ours takes.
    const upValue = raw[keyOf(up)];
    assert.ok(upValue, `no upstream key ${keyOf(up)}: ${Object.keys(raw).join(" ")}`);
    const macs = await vtepMacs(cluster, [up, ours]);
    const [, upMac6] = macs.get(h1.name)!;
    const [, ourMac6] = macs.get(h2.name)!;
    // Ours programmed upstream's IPv6 peer, and upstream ours.
    await waitUntil("both IPv6 tunnels programmed", async () => {
      const a = await fdbs(h2, "flannel-v6.1");
      const b = await fdbs(h1, "flannel-v6.1");
      return a.some((f) => f.mac === upMac6 && f.dst === h1.ip6) &&
        b.some((f) => f.mac === ourMac6 && f.dst === h2.ip6);
    }, 10_000);
    await assertPingMatrix([up, ours]);
  },
});

Deno.test("IPv6 alloc: both families leased in one key, subnet.env with both, nothing on the host; udp refuses EnableIPv6", async () => {
  await using cluster = await Cluster.create({ hosts: 2, ipv6: true });
  const nodes = await startAll6(cluster, { ...DUAL_VXLAN, Backend: { Type: "alloc" } });
  const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
  for (const n of nodes) {
    assert.equal(raw[keyOf(n)], `{"PublicIP":"${n.host.ip}","PublicIPv6":"${n.host.ip6}"}`);
    assert.equal(await linkDetails(n.host, "flannel-v6.1"), null);
    assert.deepEqual(await routes6(n.host), []);
  }
  // udp is IPv4 only (as upstream): the config is refused naming the key, the daemon waits.
  const h3 = await cluster.addHost();
  await cluster.putConfig({ ...DUAL_VXLAN, Backend: { Type: "udp" } });
  const d = h3.startFlannel();
  await d.waitForLog(
    /Backend\.Type "udp" does not support EnableIPv6 true \(IPv4 only, as upstream\)/,
    20_000,
  );
});
