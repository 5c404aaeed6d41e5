/**
 * wireguard with IPv6 (upstream's `separate` mode) end to end: three dual-stack hosts (the
 * harness's IPv6 underlay fd00:100::/64 beside the IPv4 one), a real etcd, `deno run -A main.ts`
 * per host. Each host runs `flannel-wg` on ListenPort and `flannel-wg-v6` on ListenPortV6 bound
 * to its IPv6 address; container addresses of both families ping each other in every direction
 * through the tunnels; the lease carries upstream's BackendV6Data; `wg show flannel-wg-v6` lists
 * the IPv6 peers; iperf3 TCP over IPv6 both ways (TSO6 super-packets cut on send, segments
 * merged on receive) completes with no malformed packets or send errors in the v6 data path's
 * counters; a departed host's IPv6 allowed IPs go.
 *
 * Every host gets its own key file and UAPI directory under its temp dir.
 */

import assert from "node:assert/strict";
import { Cluster, ETCD_PREFIX } from "../harness/cluster.ts";
import { waitUntil } from "./mesh_support.ts";
import {
  converge,
  iperfTcp,
  lease6Of,
  startDualNode,
  startWgDaemon,
  wgDump,
} from "./wireguard_support.ts";

const PORT6 = 51821;
const DUAL_WG = {
  Network: "10.1.0.0/16",
  EnableIPv6: true,
  IPv6Network: "fc00::/48",
  Backend: { Type: "wireguard" },
};

Deno.test("wireguard IPv6 (separate mode): three dual-stack hosts, ping and ping6 matrix, BackendV6Data, wg show flannel-wg-v6, a departed host's IPv6 allowed IPs go", async () => {
  await using cluster = await Cluster.create({ hosts: 3, ipv6: true });
  await cluster.putConfig(DUAL_WG);
  const nodes = await Promise.all(cluster.hosts.map(startDualNode));
  const [n1, n2, n3] = nodes;

  // The lease: one key in both families' data, the IPv6 side on ListenPortV6, as upstream.
  const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
  const pubs: string[] = [];
  for (const n of nodes) {
    const key = `${ETCD_PREFIX}/subnets/${n.lease4.replace("/", "-")}&${
      n.lease6.replace("/", "-")
    }`;
    const value = raw[key];
    assert.ok(value, `no key ${key} in etcd: ${Object.keys(raw).join(" ")}`);
    const m =
      /^\{"PublicIP":"([\d.]+)","PublicIPv6":"([0-9a-f:]+)","BackendType":"wireguard","BackendData":\{"PublicKey":"([A-Za-z0-9+/=]{44})","Port":51820\},"BackendV6Data":\{"PublicKey":"([A-Za-z0-9+/=]{44})","Port":51821\}\}$/
        .exec(value);
    assert.ok(m, `lease value ${value}`);
    assert.deepEqual([m[1], m[2]], [n.host.ip, n.host.ip6]);
    assert.equal(m[3], m[4], "one key for both devices");
    pubs.push(m[3]);
  }

  // Kernel state: the v6 device holds the subnet base as /128 and routes the IPv6Network.
  for (const n of nodes) {
    const addrs = await n.host.ipJson<
      { addr_info: { family: string; local: string; prefixlen: number }[] }[]
    >(
      ["addr", "show", "dev", "flannel-wg-v6"],
    );
    const v6 = addrs[0].addr_info.filter((a) =>
      a.family === "inet6" && a.local.startsWith("fc00:")
    );
    assert.deepEqual(v6.map((a) => `${a.local}/${a.prefixlen}`), [`${n.lease6.split("/")[0]}/128`]);
    const routes = await n.host.ipJson<{ dst: string; dev: string }[]>(
      ["-6", "route", "show", "fc00::/48"],
    );
    assert.deepEqual(routes.map((r) => `${r.dst} ${r.dev}`), ["fc00::/48 flannel-wg-v6"]);
  }

  // Ping and ping6 between every pair of containers, through both tunnels.
  await converge(nodes, ["flannel-wg", "flannel-wg-v6"]);

  // wg show flannel-wg-v6: our key and port, both IPv6 peers with [v6]:51821 and their /64.
  const dump = await wgDump(n1.host, "flannel-wg-v6");
  assert.equal(dump[0][1], pubs[0], "our public key");
  assert.equal(dump[0][2], String(PORT6), "listen port");
  const peers = new Map(dump.slice(1).map((f) => [f[0], f]));
  assert.equal(peers.size, 2);
  for (const [i, n] of [[1, n2], [2, n3]] as const) {
    const f = peers.get(pubs[i]);
    assert.ok(f, `peer ${n.host.name} in wg show flannel-wg-v6`);
    assert.equal(f[2], `[${n.host.ip6}]:${PORT6}`, "endpoint");
    assert.equal(f[3], n.lease6, "allowed ips");
    assert.ok(Number(f[4]) > 0, "latest handshake");
    assert.ok(Number(f[5]) > 0 && Number(f[6]) > 0, "transfer both ways");
  }
  // The IPv4 device is unchanged: IPv4 peers, IPv4 endpoints and subnets.
  const dump4 = await wgDump(n1.host, "flannel-wg");
  assert.deepEqual(
    dump4.slice(1).map((f) => `${f[2]} ${f[3]}`).sort(),
    [`${n2.host.ip}:51820 ${n2.lease4}`, `${n3.host.ip}:51820 ${n3.lease4}`].sort(),
  );

  // TCP over IPv6 through flannel-wg-v6, both ways with h3: h3's data path cuts TSO6
  // super-packets when it sends and merges segments when it receives. Functional, not a speed
  // claim: both runs complete and h3's counters (logged when it stops) show no packet the data
  // path could not handle.
  for (const [c, s] of [[n3, n1], [n1, n3]] as const) {
    const bps = await iperfTcp(c.host, s.host, c.c6, s.c6);
    console.log(`iperf3 TCP ${c.c6} → ${s.c6}: ${(bps / 1e9).toFixed(2)} Gbit/s`);
    assert.ok(bps > 0, "iperf3 over IPv6 moved data");
  }

  // Departed: h3 stops and its lease goes; h1 drops its peer (IPv6 allowed IPs included).
  await n3.daemon.stop();
  const logs3 = n3.daemon.logs();
  assert.doesNotMatch(logs3, /TUN offloads \(TSO6\) refused/, "TSO6 on for flannel-wg-v6");
  const stopLine = /Data path flannel-wg-v6 stopped: (.*)/.exec(logs3);
  assert.ok(stopLine, `no v6 data path stop line in h3's log: ${n3.daemon.tail(20)}`);
  const counters = Object.fromEntries(
    stopLine[1].split(" ").map((kv) => kv.split("=")).map(([k, v]) => [k, Number(v)]),
  );
  for (const bad of ["tx_malformed", "tx_send_errors", "rx_malformed", "rx_tun_errors"]) {
    assert.equal(counters[bad] ?? 0, 0, `${bad} in "${stopLine[0]}"`);
  }
  // Two 2-second runs of at least ~1 Mbit/s each way: thousands of packets, not a few pings.
  assert.ok(counters.tx_packets > 1000 && counters.rx_packets > 1000, stopLine[0]);
  const key3 = `${ETCD_PREFIX}/subnets/${n3.lease4.replace("/", "-")}&${
    n3.lease6.replace("/", "-")
  }`;
  await cluster.etcd.del(key3);
  await waitUntil("h3's IPv6 peer removed on h1", async () => {
    const d = await wgDump(n1.host, "flannel-wg-v6");
    return d.length === 2 && !d.some((f) => f[3] === n3.lease6);
  }, 15_000);
  const d4 = await wgDump(n1.host, "flannel-wg");
  assert.equal(d4.length, 2, "h3's IPv4 peer removed too");
  const r = await n1.host.ping(n3.c6, { from: n1.c6, timeoutS: 1 });
  assert.equal(r.ok, false, "no route to a departed host's IPv6 subnet through the tunnel");
  const still = await n1.host.ping(n2.c6, { from: n1.c6, timeoutS: 2 });
  assert.ok(still.ok, "h2 still reachable over IPv6");
});

Deno.test("wireguard IPv6-only (EnableIPv4 false): only flannel-wg-v6, ping6 matrix, upstream's 0.0.0.0-0& keys", async () => {
  await using cluster = await Cluster.create({ hosts: 3, ipv6: true });
  await cluster.putConfig({
    EnableIPv4: false,
    EnableIPv6: true,
    IPv6Network: "fc00::/48",
    Backend: { Type: "wireguard" },
  });
  const nodes = await Promise.all(cluster.hosts.map(async (host) => {
    const daemon = await startWgDaemon(host);
    const env = await host.readSubnetEnv();
    assert.ok(env?.FLANNEL_IPV6_SUBNET, `no FLANNEL_IPV6_SUBNET in ${host.subnetFile}`);
    return {
      host,
      daemon,
      lease6: lease6Of(env.FLANNEL_IPV6_SUBNET),
      c6: await host.addContainerAddress6(),
    };
  }));
  const raw = await cluster.etcd.list(`${ETCD_PREFIX}/subnets/`);
  for (const n of nodes) {
    const value = raw[`${ETCD_PREFIX}/subnets/0.0.0.0-0&${n.lease6.replace("/", "-")}`];
    assert.match(
      value ?? "",
      /^\{"PublicIP":"0\.0\.0\.0","PublicIPv6":"[0-9a-f:]+","BackendType":"wireguard","BackendV6Data":\{"PublicKey":"[A-Za-z0-9+/=]{44}","Port":51821\}\}$/,
    );
    const links = await n.host.ipJson<{ ifname: string }[]>(["link", "show"]);
    const wg = links.map((l) => l.ifname).filter((name) => name.startsWith("flannel"));
    assert.deepEqual(wg, ["flannel-wg-v6"], "no IPv4 device on an IPv6-only network");
  }
  let failures: string[] = [];
  await waitUntil("ping6 matrix", async () => {
    failures = [];
    await Promise.all(nodes.flatMap((a) =>
      nodes.filter((b) => b !== a).map(async (b) => {
        const r = await a.host.ping(b.c6, { from: a.c6, timeoutS: 2 });
        if (!r.ok) failures.push(`${a.host.name} → ${b.host.name}`);
      })
    ));
    return failures.length === 0;
  }, 60_000).catch((err) => {
    throw new Error(`${(err as Error).message}: ${failures.join(", ")}`);
  });
  const dump = await wgDump(nodes[0].host, "flannel-wg-v6");
  assert.deepEqual(
    dump.slice(1).map((f) => `${f[2]} ${f[3]}`).sort(),
    nodes.slice(1).map((n) => `[${n.host.ip6}]:${PORT6} ${n.lease6}`).sort(),
  );
  // The v6 device's stop line names it (the IPv4 device's keeps the historical form).
  await nodes[0].daemon.stop();
  assert.match(nodes[0].daemon.logs(), /Data path flannel-wg-v6 stopped: /);
});
