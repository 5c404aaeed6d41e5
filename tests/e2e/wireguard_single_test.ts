/**
 * wireguard's single-device modes end to end (upstream's `Mode` `ipv6`, `auto`): both address
 * families through the one device `flannel-wg` on ListenPort, on dual-stack hosts (the
 * harness's IPv6 underlay fd00:100::/64 beside the IPv4 one) with a real etcd and
 * `deno run -A main.ts` per host.
 *
 * - Mode ipv6: the tunnel runs between the hosts' IPv6 addresses (a tcpdump on the underlay
 *   sees WireGuard only as IPv6 UDP), IPv4 and IPv6 containers ping through it, `wg show`
 *   lists one peer per host with both subnets as allowed IPs, a departed host's peer goes.
 * - Mode auto on this underlay (both families private, RFC 1918 and fc00::/7): IPv4 endpoints,
 *   as upstream's choice; on an IPv6-only network, IPv6 endpoints.
 */

import assert from "node:assert/strict";
import { Cluster, ETCD_PREFIX, type Host } from "../harness/cluster.ts";
import { waitUntil } from "./mesh_support.ts";
import { readPcap, tcpdump } from "./capture_support.ts";
import {
  converge,
  iperfTcp,
  lease6Of,
  startDualNode,
  startDualNodeWith,
  startWgDaemon,
  wgDump,
  type WgNode,
} from "./wireguard_support.ts";

const PORT = 51820;
const dualConfig = (mode: string) => ({
  Network: "10.1.0.0/16",
  EnableIPv6: true,
  IPv6Network: "fc00::/48",
  Backend: { Type: "wireguard", Mode: mode },
});

/** The flannel links of a host, by name. */
async function flannelLinks(host: Host): Promise<string[]> {
  const links = await host.ipJson<{ ifname: string }[]>(["link", "show"]);
  return links.map((l) => l.ifname).filter((n) => n.startsWith("flannel"));
}

Deno.test("wireguard Mode ipv6: one flannel-wg carries both families over the IPv6 underlay; wg show, lease ports, departure", async () => {
  await using cluster = await Cluster.create({ hosts: 3, ipv6: true });
  await cluster.putConfig(dualConfig("ipv6"));
  const nodes = await Promise.all(cluster.hosts.map(startDualNode));
  const [n1, n2, n3] = nodes;

  // The lease: both sides advertise ListenPort, where the one device listens.
  const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
  const keyOf = (n: WgNode) =>
    `${ETCD_PREFIX}/subnets/${n.lease4.replace("/", "-")}&${n.lease6.replace("/", "-")}`;
  const pubs: string[] = [];
  for (const n of nodes) {
    const value = raw[keyOf(n)] ?? "";
    const m =
      /^\{"PublicIP":"[\d.]+","PublicIPv6":"[0-9a-f:]+","BackendType":"wireguard","BackendData":\{"PublicKey":"([A-Za-z0-9+/=]{44})","Port":51820\},"BackendV6Data":\{"PublicKey":"([A-Za-z0-9+/=]{44})","Port":51820\}\}$/
        .exec(value);
    assert.ok(m, `lease value of ${n.host.name}: ${value}`);
    assert.equal(m[1], m[2]);
    pubs.push(m[1]);
  }

  // Kernel state: one device, both subnet bases, both Networks routed to it.
  for (const n of nodes) {
    assert.deepEqual(await flannelLinks(n.host), ["flannel-wg"]);
    const addrs = await n.host.ipJson<
      { addr_info: { family: string; local: string; prefixlen: number }[] }[]
    >(["addr", "show", "dev", "flannel-wg"]);
    const got = addrs[0].addr_info
      .filter((a) => a.family === "inet" || a.local.startsWith("fc00:"))
      .map((a) => `${a.local}/${a.prefixlen}`);
    assert.deepEqual(
      got.sort(),
      [
        `${n.lease4.split("/")[0]}/32`,
        `${n.lease6.split("/")[0]}/128`,
      ].sort(),
    );
    const r4 = await n.host.ipJson<{ dst: string; dev: string }[]>([
      "route",
      "show",
      "10.1.0.0/16",
    ]);
    const r6 = await n.host.ipJson<{ dst: string; dev: string }[]>(
      ["-6", "route", "show", "fc00::/48"],
    );
    assert.deepEqual([...r4, ...r6].map((r) => `${r.dst} ${r.dev}`), [
      "10.1.0.0/16 flannel-wg",
      "fc00::/48 flannel-wg",
    ]);
  }

  // Both families through the one tunnel, which runs over IPv6 only.
  const dir = await Deno.makeTempDir({ prefix: "fl-wg-single-" });
  try {
    const under = await tcpdump(n1.host, "eth0", ["udp", "port", String(PORT)], `${dir}/u.pcap`);
    await converge(nodes, ["flannel-wg"]);
    await under.stop();
    const { frames } = readPcap(await Deno.readFile(`${dir}/u.pcap`));
    const types = frames.map((f) => (f[12] << 8) | f[13]);
    assert.ok(types.length > 0, "WireGuard datagrams on h1's underlay");
    assert.equal(types.filter((t) => t !== 0x86dd).length, 0, "every datagram is IPv6");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  // wg show: one peer per host, its IPv6 endpoint on ListenPort, both subnets allowed.
  const dump = await wgDump(n1.host, "flannel-wg");
  assert.equal(dump[0][1], pubs[0]);
  assert.equal(dump[0][2], String(PORT));
  const peers = new Map(dump.slice(1).map((f) => [f[0], f]));
  assert.equal(peers.size, 2);
  for (const [i, n] of [[1, n2], [2, n3]] as const) {
    const f = peers.get(pubs[i]);
    assert.ok(f, `peer ${n.host.name} in wg show`);
    assert.equal(f[2], `[${n.host.ip6}]:${PORT}`, "endpoint");
    assert.deepEqual(f[3].split(",").sort(), [n.lease4, n.lease6].sort(), "allowed ips");
    assert.ok(Number(f[4]) > 0, "latest handshake");
  }

  // Departed: h3's lease goes; its one peer (both families) goes on h1.
  await n3.daemon.stop();
  await cluster.etcd.del(keyOf(n3));
  await waitUntil("h3's peer removed on h1", async () => {
    const d = await wgDump(n1.host, "flannel-wg");
    return d.length === 2 && !d.some((f) => f[0] === pubs[2]);
  }, 15_000);
  for (const to of [n3.c4, n3.c6]) {
    const r = await n1.host.ping(to, { from: to === n3.c4 ? n1.c4 : n1.c6, timeoutS: 1 });
    assert.equal(r.ok, false, `no route to ${to} of the departed host`);
  }
  const still = await n1.host.ping(n2.c6, { from: n1.c6, timeoutS: 2 });
  assert.ok(still.ok, "h2 still reachable");
});

Deno.test("wireguard Mode auto: IPv4 endpoints on a private dual-stack underlay (upstream's choice), IPv6 endpoints on an IPv6-only network", async (t) => {
  await t.step("dual-stack network: both families through flannel-wg, peers at IPv4", async () => {
    await using cluster = await Cluster.create({ hosts: 2, ipv6: true });
    await cluster.putConfig(dualConfig("auto"));
    const nodes = await Promise.all(cluster.hosts.map(startDualNode));
    await converge(nodes, ["flannel-wg"]);
    const dump = await wgDump(nodes[0].host, "flannel-wg");
    assert.deepEqual(dump.slice(1).map((f) => f[2]), [`${nodes[1].host.ip}:${PORT}`]);
    assert.deepEqual(await flannelLinks(nodes[0].host), ["flannel-wg"]);
    // TCP of both families: IPv4 super-packets go out as UDP GSO sends to a v4-mapped
    // destination on the dual-stack socket; nothing refused, nothing dropped as malformed.
    const [a, b] = nodes;
    for (const [from, to] of [[a.c4, b.c4], [a.c6, b.c6]]) {
      const bps = await iperfTcp(a.host, b.host, from, to);
      console.log(`iperf3 TCP ${from} → ${to} (Mode auto): ${(bps / 1e9).toFixed(2)} Gbit/s`);
      assert.ok(bps > 10e6, `only ${bps} bit/s`);
    }
    await a.daemon.stop();
    const logs = a.daemon.logs();
    assert.doesNotMatch(logs, /refused/, "an offload or GSO send was refused");
    const stopped = logs.split("\n").findLast((l) => l.includes("Data path stopped:")) ?? "";
    assert.doesNotMatch(stopped, /malformed|send_errors/, stopped);
    assert.match(stopped, /tx_packets=\d+/);
  });
  await t.step("IPv6-only network: peers at IPv6", async () => {
    await using cluster = await Cluster.create({ hosts: 2, ipv6: true });
    await cluster.putConfig({
      EnableIPv4: false,
      EnableIPv6: true,
      IPv6Network: "fc00::/48",
      Backend: { Type: "wireguard", Mode: "auto" },
    });
    const nodes = await Promise.all(cluster.hosts.map(async (host) => {
      const daemon = await startWgDaemon(host);
      const env = await host.readSubnetEnv();
      assert.ok(env?.FLANNEL_IPV6_SUBNET);
      return {
        host,
        daemon,
        lease6: lease6Of(env.FLANNEL_IPV6_SUBNET),
        c6: await host.addContainerAddress6(),
      };
    }));
    const [a, b] = nodes;
    await waitUntil("ping6 both ways", async () => {
      const r = await Promise.all([
        a.host.ping(b.c6, { from: a.c6, timeoutS: 2 }),
        b.host.ping(a.c6, { from: b.c6, timeoutS: 2 }),
      ]);
      return r.every((x) => x.ok);
    }, 60_000).catch((err) => {
      throw new Error(`${(err as Error).message}\n${a.daemon.tail(20)}\n${b.daemon.tail(20)}`);
    });
    const dump = await wgDump(a.host, "flannel-wg");
    assert.deepEqual(dump.slice(1).map((f) => `${f[2]} ${f[3]}`), [
      `[${b.host.ip6}]:${PORT} ${b.lease6}`,
    ]);
    assert.deepEqual(await flannelLinks(a.host), ["flannel-wg"]);
  });
});

Deno.test("wireguard with FLANNEL_WG_OFFLOAD=off (Mode auto, dual-stack): one packet per read and datagram, both families, TCP, clean counters", async () => {
  await using cluster = await Cluster.create({ hosts: 2, ipv6: true });
  await cluster.putConfig(dualConfig("auto"));
  const nodes = await Promise.all(
    cluster.hosts.map(startDualNodeWith({ FLANNEL_WG_OFFLOAD: "off" })),
  );
  await converge(nodes, ["flannel-wg"]);
  const [a, b] = nodes;
  const runs: [WgNode, WgNode, string, string][] = [
    [a, b, a.c4, b.c4],
    [a, b, a.c6, b.c6],
    [b, a, b.c4, a.c4],
  ];
  for (const [c, srv, from, to] of runs) {
    const bps = await iperfTcp(c.host, srv.host, from, to);
    console.log(`iperf3 TCP ${from} → ${to} (offloads off): ${(bps / 1e9).toFixed(2)} Gbit/s`);
    assert.ok(bps > 10e6, `only ${bps} bit/s`);
  }
  for (const n of nodes) await n.daemon.stop();
  for (const n of nodes) {
    const logs = n.daemon.logs();
    assert.match(logs, /FLANNEL_WG_OFFLOAD=off: no TUN or UDP offloads/);
    assert.doesNotMatch(logs, /refused/);
    const stopped = logs.split("\n").findLast((l) => l.includes("Data path stopped:")) ?? "";
    assert.doesNotMatch(stopped, /malformed|send_errors|tun_errors/, stopped);
    assert.match(stopped, /rx_packets=\d{4,}/, stopped);
  }
});
