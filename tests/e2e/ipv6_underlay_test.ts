/**
 * A truly IPv6-only underlay: no IPv4 address on br0 or any host's eth0, the hosts' only default
 * route is the IPv6 one, etcd listens on `[fd00:100::1]:2379` (plain, and TLS with a server
 * certificate whose IP SAN is that address), flannel reaches it with
 * `--etcd-endpoints=http(s)://[fd00:100::1]:2379` and runs an IPv6-only network
 * (`EnableIPv4: false`). vxlan and host-gw, three hosts each: subnet.env, the etcd value, the
 * kernel entries and a ping6 matrix between the container addresses; `--iface=<IPv6 address>`
 * and `--public-ipv6` on such a host.
 */

import assert from "node:assert/strict";
import { Cluster, Daemon, ETCD_PREFIX, type Host, HUB_IP6 } from "../harness/cluster.ts";
import { IP } from "../../ffi/ip.ts";
import { fdbs, linkDetails, waitUntil } from "./mesh_support.ts";

const V6ONLY = { EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/48" };
const V6ONLY_VXLAN = { ...V6ONLY, Backend: { Type: "vxlan" } };
const V6ONLY_HOSTGW = { ...V6ONLY, Backend: { Type: "host-gw" } };

/** A host with flannel running and its IPv6 container address on lo. */
interface Node6 {
  readonly host: Host;
  readonly daemon: Daemon;
  /** `fc00:0:0:22::/64`. */
  readonly lease6: string;
  /** FLANNEL_IPV6_SUBNET's address as a /128 on lo. */
  readonly c6: string;
  /** The PublicIPv6 the host advertises. */
  readonly public6: string;
}

async function start6(
  host: Host,
  extra: string[] = [],
  public6 = host.ip6!,
  defaultIface = true,
): Promise<Node6> {
  const daemon = host.startFlannel(extra, {}, { defaultIface });
  try {
    await daemon.waitReady(30_000);
  } catch (err) {
    throw new Error(`Flannel on ${host.name} did not get ready: ${daemon.tail(30)}`, {
      cause: err,
    });
  }
  const env = await host.readSubnetEnv();
  assert.ok(env?.FLANNEL_IPV6_SUBNET, `no FLANNEL_IPV6_SUBNET in ${host.subnetFile}`);
  assert.equal(env.FLANNEL_SUBNET, undefined, "no IPv4 subnet on an IPv6-only network");
  const [ip, len] = env.FLANNEL_IPV6_SUBNET.split("/");
  const lease6 = `${IP.fromBigInt(IP.mustParse(ip).toBigInt() - 1n, 6)}/${len}`;
  const c6 = await host.addContainerAddress6();
  return { host, daemon, lease6, c6, public6 };
}

function keyOf(n: Node6): string {
  return `${ETCD_PREFIX}/subnets/0.0.0.0-0&${n.lease6.replace("/", "-")}`;
}

/** Asserts the underlay really has no IPv4: no IPv4 address on eth0, no IPv4 route. */
async function assertNoIPv4(host: Host): Promise<void> {
  const addrs = await host.ipJson<{ addr_info: unknown[] }[]>([
    "-4",
    "addr",
    "show",
    "dev",
    "eth0",
  ]);
  assert.deepEqual(addrs.flatMap((a) => a.addr_info), [], `IPv4 on ${host.name}'s eth0`);
  assert.deepEqual(await host.ipJson(["-4", "route", "show", "table", "main"]), []);
}

/** ping6 between the containers of every ordered pair. */
async function assertPing6Matrix(nodes: Node6[]): Promise<void> {
  const failures: string[] = [];
  await Promise.all(nodes.flatMap((a) =>
    nodes.filter((b) => b !== a).map(async (b) => {
      const r = await a.host.ping(b.c6, { from: a.c6, timeoutS: 2 });
      if (!r.ok) failures.push(`${a.host.name} ${a.c6} → ${b.host.name} ${b.c6}`);
    })
  ));
  assert.deepEqual(failures, [], `pings lost: ${failures.join(", ")}`);
}

interface Route6 {
  dst: string;
  gateway?: string;
  dev: string;
  protocol?: string;
}

async function overlayRoutes6(host: Host): Promise<Route6[]> {
  return (await host.ipJson<Route6[]>(["-6", "route", "show", "table", "main"]))
    .filter((r) => r.dst.startsWith("fc00:") && r.protocol !== "kernel");
}

/** Checks subnet.env, the etcd value and the "no IPv4" state of each node. */
async function assertLeases(
  cluster: Cluster,
  nodes: Node6[],
  backend: "vxlan" | "host-gw",
): Promise<void> {
  const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
  assert.equal(Object.keys(raw).length, nodes.length, Object.keys(raw).join(" "));
  const mtu = backend === "vxlan" ? 1430 : 1500;
  for (const n of nodes) {
    await assertNoIPv4(n.host);
    assert.match(
      await Deno.readTextFile(n.host.subnetFile),
      new RegExp(
        "^FLANNEL_IPV6_NETWORK=fc00::/48\\nFLANNEL_IPV6_SUBNET=fc00:0:0:[0-9a-f]+::1/64\\n" +
          `FLANNEL_MTU=${mtu}\\nFLANNEL_IPMASQ=false\\n$`,
      ),
    );
    const value = raw[keyOf(n)];
    assert.ok(value, `no key ${keyOf(n)}: ${Object.keys(raw).join(" ")}`);
    const head = `{"PublicIP":"0.0.0.0","PublicIPv6":"${n.public6}","BackendType":"${backend}"`;
    if (backend === "vxlan") {
      assert.match(
        value,
        new RegExp(`^${escape(head)},"BackendV6Data":\\{"VNI":1,"VtepMAC":"[0-9a-f:]{17}"\\}\\}$`),
      );
    } else {
      assert.equal(value, `${head}}`);
    }
    // No log line names an IPv4 address that does not exist (0.0.0.0, 192.168.…).
    const log = n.daemon.logs();
    assert.doesNotMatch(log, /0\.0\.0\.0|192\.168\./, `IPv4 in ${n.host.name}'s log:\n${log}`);
  }
  assert.equal(new Set(nodes.map((n) => n.lease6)).size, nodes.length, "distinct subnets");
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("IPv6-only underlay, vxlan: etcd at http://[fd00:100::1]:2379, --iface=<IPv6 address>, --public-ipv6, ping6 matrix", async () => {
  await using cluster = await Cluster.create({ hosts: 3, ipv6Only: true });
  assert.equal(cluster.etcd.endpoints, `http://[${HUB_IP6}]:2379`);
  await cluster.putConfig(V6ONLY_VXLAN);
  const [h1, h2, h3] = cluster.hosts;
  // h1 finds eth0 by its (only) default route, the IPv6 one; h2 by its IPv6 address; h3 by its
  // first IPv6 address and advertises a second one (--public-ipv6): the device stays on the first.
  const public3 = "fd00:100::113";
  await h3.exec(["ip", "addr", "add", `${public3}/64`, "dev", "eth0", "nodad"]);
  const nodes = await Promise.all([
    start6(h1, [], h1.ip6!, false),
    start6(h2, [`--iface=${h2.ip6}`]),
    start6(h3, [`--iface=${h3.ip6}`, `--public-ipv6=${public3}`], public3),
  ]);
  await nodes[0].daemon.waitForLog(/Using interface eth0 .*with IPv6 address fd00:100::11,/, 1_000);
  await nodes[2].daemon.waitForLog(
    /Using interface eth0 .*with IPv6 address fd00:100::13 \(public IPv6 fd00:100::113\),/,
    1_000,
  );
  await assertLeases(cluster, nodes, "vxlan");
  for (const n of nodes) {
    assert.equal(await linkDetails(n.host, "flannel.1"), null, "no IPv4 device");
    const link = await linkDetails(n.host, "flannel-v6.1");
    assert.ok(link, `no flannel-v6.1 on ${n.host.name}`);
    assert.equal(link.linkinfo.info_data.local6, n.host.ip6, "local = the interface's address");
    assert.equal(link.linkinfo.info_data.link, "eth0");
    assert.equal(link.mtu, 1430);
  }
  await waitUntil("IPv6 mesh converged", async () => {
    for (const a of nodes) if ((await fdbs(a.host, "flannel-v6.1")).length !== 2) return false;
    return true;
  }, 20_000);
  for (const n of nodes) {
    const peers = nodes.filter((p) => p !== n);
    assert.deepEqual(
      (await fdbs(n.host, "flannel-v6.1")).map((f) => f.dst).sort(),
      peers.map((p) => p.public6).sort(),
      `FDB destinations on ${n.host.name} are the peers' PublicIPv6`,
    );
    assert.deepEqual(
      (await overlayRoutes6(n.host)).map((r) => [r.dst, r.dev]).sort(),
      peers.map((p) => [p.lease6, "flannel-v6.1"]).sort(),
    );
  }
  await assertPing6Matrix(nodes);

  // Restarts: h1 without its subnet.env finds its own lease by PublicIPv6 (every PublicIP is
  // 0.0.0.0 here, so that cannot tell the hosts apart); h3 keeps its lease and --public-ipv6.
  const [n1, n2, n3] = nodes;
  for (const n of [n1, n3]) {
    n.daemon.kill("SIGTERM");
    assert.equal(await n.daemon.exitedWithin(10_000), 0, n.daemon.tail());
  }
  await Deno.remove(h1.subnetFile);
  const r1 = await start6(h1, [], h1.ip6!, false);
  const r3 = await start6(h3, [`--iface=${h3.ip6}`, `--public-ipv6=${public3}`], public3);
  assert.equal(r1.lease6, n1.lease6, "h1 found its lease by PublicIPv6");
  assert.equal(r3.lease6, n3.lease6, "h3 kept its lease");
  for (const r of [r1, r3]) {
    await r.daemon.waitForLog(new RegExp(`Reusing lease ${escape(r.lease6)}`), 5_000);
  }
  const after = [r1, n2, r3];
  await assertLeases(cluster, after, "vxlan");
  await assertPing6Matrix(after);
});

Deno.test("IPv6-only underlay, host-gw: etcd over TLS at https://[fd00:100::1]:2379 (IP SAN), --iface-regex on an IPv6 address, ping6 matrix", async () => {
  await using cluster = await Cluster.create({ hosts: 3, ipv6Only: true, etcd: "tls" });
  assert.equal(cluster.etcd.endpoints, `https://[${HUB_IP6}]:2379`);
  const san = await new Deno.Command("openssl", {
    args: [
      "x509",
      "-noout",
      "-ext",
      "subjectAltName",
      "-in",
      cluster.etcd.server!.certs!.serverCertFile,
    ],
    stdout: "piped",
  }).output();
  assert.match(new TextDecoder().decode(san.stdout), /IP Address:FD00:100:0:0:0:0:0:1/i);
  await cluster.putConfig(V6ONLY_HOSTGW);
  // Another way to choose the interface by an IPv6 address: a regex on the address.
  const [h1, h2, h3] = cluster.hosts;
  const nodes = await Promise.all([
    start6(h1),
    start6(h2),
    start6(h3, [`--iface-regex=^fd00:100::13$`]),
  ]);
  await assertLeases(cluster, nodes, "host-gw");
  await waitUntil("IPv6 routes in place", async () => {
    for (const a of nodes) if ((await overlayRoutes6(a.host)).length !== 2) return false;
    return true;
  }, 20_000);
  for (const n of nodes) {
    const peers = nodes.filter((p) => p !== n);
    assert.deepEqual(
      (await overlayRoutes6(n.host)).map((r) => [r.dst, r.gateway, r.dev, r.protocol]).sort(),
      peers.map((p) => [p.lease6, p.host.ip6, "eth0", "102"]).sort(),
      `IPv6 routes on ${n.host.name}`,
    );
  }
  await assertPing6Matrix(nodes);
});

Deno.test("IPv6-only underlay, IPv4 network config: a one-line error naming the interface, exit 1", async () => {
  await using cluster = await Cluster.create({ hosts: 2, ipv6Only: true });
  await cluster.putConfig({ Network: "10.1.0.0/16", Backend: { Type: "vxlan" } });
  const [h1, h2] = cluster.hosts;
  const byName = h1.startFlannel();
  const byRoute = h2.startFlannel([], {}, { defaultIface: false });
  assert.equal(await byName.exitedWithin(30_000), 1, byName.tail());
  assert.equal(await byRoute.exitedWithin(30_000), 1, byRoute.tail());
  assert.match(byName.logs(), /E.* Failed to find IPv4 address for interface eth0\n/);
  assert.match(
    byRoute.logs(),
    /E.* No default IPv4 route to find the external interface: use --iface\n/,
  );
  for (const d of [byName, byRoute]) assert.doesNotMatch(d.logs(), /\n\s+at /, "no stack trace");
  assert.deepEqual(await cluster.leases(), {});
});
