/**
 * wireguard backend against a real WireGuard implementation: h1 runs our daemon; h2 is set up
 * the way an upstream flannel wireguard host is, with Debian's `wireguard-go` and `wg`: a
 * device `flannel-wg` with its subnet's base as a /32 and the route to the Network, its lease
 * (BackendType "wireguard", BackendData with its public key and port) written to etcd, and a
 * peer made from our lease in etcd. Ping both ways, iperf3 TCP, no plaintext on the underlay,
 * wireguard-go restarted with the same key (traffic resumes), and a PSK mismatch (no traffic,
 * our counter of refused handshakes rises). Then the single-device modes (Mode ipv6 and auto on
 * a dual-stack underlay): wireguard-go as upstream's one `flannel-wg` for both families, with
 * upstream's lease (BackendV6Data Port 51821, listening on 51820 only), pings of both families
 * and iperf3 TCP over inner IPv6 both ways (our TSO6 segments against an independent receiver).
 *
 * wireguard-go's UAPI socket needs /var/run/wireguard, which every namespace shares: h2's
 * wireguard-go runs in a mount namespace of its own with a tmpfs over /run.
 */

import assert from "node:assert/strict";
import { Cluster, type Host } from "../harness/cluster.ts";
import { leaseKey, leaseOf } from "../harness/flannel.ts";
import { runOk } from "../harness/netns.ts";
import { genkey, WgGoHost } from "../harness/wireguard_go.ts";
import { waitUntil } from "./mesh_support.ts";
import { countersOf, readPcap, tcpdump } from "./capture_support.ts";
import { iperfTcp } from "./wireguard_support.ts";

const NETWORK = "10.1.0.0/16";
const WG_SUBNET = "10.1.99.0/24";
const WG_CONTAINER = "10.1.99.1";
const PORT = 51820;

async function ping(host: Host, to: string, from: string, count = 3, timeoutS = 2) {
  return await host.exec([
    "ping",
    "-n",
    "-q",
    "-c",
    String(count),
    "-i",
    "0.2",
    "-W",
    String(timeoutS),
    "-I",
    from,
    to,
  ]);
}

/** The upstream lease value for the wireguard-go host. */
function upstreamLease(ip: string, pub: string): string {
  return JSON.stringify({
    PublicIP: ip,
    PublicIPv6: null,
    BackendType: "wireguard",
    BackendData: { PublicKey: pub, Port: PORT },
  });
}

Deno.test("wireguard: interop with wireguard-go as an upstream host (ping, iperf3, wire, restart, PSK mismatch)", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  const [h1, h2] = cluster.hosts;
  await cluster.putConfig({ Network: NETWORK, Backend: { Type: "wireguard" } });
  const env = { WIREGUARD_KEY_FILE: `${h1.dir}/wgkey`, FLANNEL_WG_SOCKET_DIR: `${h1.dir}/wg` };
  let daemon = h1.startFlannel([], env);
  await daemon.waitReady(30_000);
  const ourLease = (await leaseOf(h1))!;
  const ourContainer = await h1.addContainerAddress();
  const ourValue = JSON.parse((await cluster.etcd.get(leaseKey(ourLease)))!);
  const ourPub = ourValue.BackendData.PublicKey as string;

  await using wg = await WgGoHost.start(h2);
  const wgKey = await genkey();
  const wgUp = (psk?: string) =>
    wg.up({
      priv: wgKey.priv,
      peers: [{ pub: ourPub, ip: h1.ip, allowed: ourLease }],
      address: "10.1.99.0",
      route: NETWORK,
      container: WG_CONTAINER,
      psk,
    });
  await wgUp();
  // Its lease, as upstream writes it (with an etcd lease, like a live host).
  await cluster.etcd.put(leaseKey(WG_SUBNET), upstreamLease(h2.ip, wgKey.pub), {
    ttlSeconds: 3600,
  });
  await daemon.waitForLog(/Subnet added: 10\.1\.99\.0\/24 via 192\.168\.100\.12:51820/, 15_000);

  // Ping both ways (ours first: our side initiates).
  let r = await ping(h1, WG_CONTAINER, ourContainer);
  assert.equal(r.code, 0, `h1 → wireguard-go: ${r.stdout}${r.stderr}`);
  r = await ping(h2, ourContainer, WG_CONTAINER);
  assert.equal(r.code, 0, `wireguard-go → h1: ${r.stdout}${r.stderr}`);
  const dump = await wg.dump();
  assert.equal(dump[1][0], ourPub);
  assert.ok(Number(dump[1][4]) > 0, "wireguard-go saw a handshake");

  // iperf3 TCP from our host to the wireguard-go host, and back.
  for (
    const [client, server, cAddr, sAddr] of [[h1, h2, ourContainer, WG_CONTAINER], [
      h2,
      h1,
      WG_CONTAINER,
      ourContainer,
    ]] as const
  ) {
    const bps = await iperfTcp(client, server, cAddr, sAddr, 3);
    console.log(`iperf3 TCP ${client.name} → ${server.name}: ${(bps / 1e9).toFixed(2)} Gbit/s`);
    assert.ok(bps > 50e6, `only ${bps} bit/s`);
  }

  // The underlay shows WireGuard messages only, never the inner ping's pattern.
  const dir = await Deno.makeTempDir({ prefix: "fl-wg-pcap-" });
  try {
    const cap = await tcpdump(h1, "eth0", ["udp", "port", String(PORT)], `${dir}/u.pcap`);
    r = await h1.exec([
      "ping",
      "-n",
      "-c",
      "3",
      "-i",
      "0.2",
      "-p",
      "deadbeefdeadbeef",
      "-I",
      ourContainer,
      WG_CONTAINER,
    ]);
    assert.equal(r.code, 0, r.stdout);
    await cap.stop();
    const frames = readPcap(await Deno.readFile(`${dir}/u.pcap`)).frames;
    assert.ok(frames.length >= 6, `${frames.length} frames captured`);
    for (const f of frames) {
      const ip = f.subarray(14);
      const payload = ip.subarray((ip[0] & 15) * 4 + 8);
      assert.ok(payload[0] >= 1 && payload[0] <= 4 && payload[1] === 0, "a WireGuard message");
      const hex = Array.from(payload, (b) => b.toString(16).padStart(2, "0")).join("");
      assert.ok(!hex.includes("deadbeefdeadbeef"), "no plaintext on the wire");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  // wireguard-go restarts with the same key: our stale session is noticed (no answer to data
  // for KEEPALIVE + REKEY_TIMEOUT) and a new handshake brings traffic back.
  await wg.down();
  await wgUp();
  const took = await waitUntil("traffic resumes after the wireguard-go restart", async () => {
    const p = await ping(h1, WG_CONTAINER, ourContainer, 1, 1);
    return p.code === 0;
  }, 40_000);
  console.log(`traffic resumed ${(took / 1000).toFixed(1)} s after wireguard-go restarted`);
  r = await ping(h2, ourContainer, WG_CONTAINER);
  assert.equal(r.code, 0, "and the other way");

  // PSK mismatch: wireguard-go now has a PSK, we have none. Restart both so no session survives.
  await daemon.stop();
  const before = countersOf(daemon.logs());
  await wg.down();
  await wgUp((await runOk(["wg", "genpsk"])).trim());
  daemon = h1.startFlannel([], env);
  await daemon.waitReady(30_000);
  await daemon.waitForLog(/Following 1 peer leases/, 15_000);
  r = await ping(h1, WG_CONTAINER, ourContainer, 5, 1);
  assert.notEqual(r.code, 0, "no traffic with mismatched PSKs");
  r = await ping(h2, ourContainer, WG_CONTAINER, 2, 1);
  assert.notEqual(r.code, 0, "none the other way either");
  await daemon.stop();
  const after = countersOf(daemon.logs());
  assert.ok((after.hs_refused ?? 0) >= 1, `refused handshakes counted: ${JSON.stringify(after)}`);
  assert.equal(after.rx_packets ?? 0, 0);
  assert.ok((before.rx_packets ?? 0) > 0);
});

for (const mode of ["ipv6", "auto"] as const) {
  // auto on this underlay (RFC 1918 and fc00::/7 addresses): IPv4, through the dual-stack
  // socket's v4-mapped addresses.
  const over = mode === "ipv6" ? "IPv6" : "IPv4";
  Deno.test(`wireguard Mode ${mode}: interop with wireguard-go as an upstream single-device host (its lease's BackendV6Data says 51821, it listens on 51820; both families both ways over ${over})`, async () => {
    await using cluster = await Cluster.create({ hosts: 2, ipv6: true });
    const [h1, h2] = cluster.hosts;
    await cluster.putConfig({
      Network: NETWORK,
      EnableIPv6: true,
      IPv6Network: "fc00::/48",
      Backend: { Type: "wireguard", Mode: mode },
    });
    const env = { WIREGUARD_KEY_FILE: `${h1.dir}/wgkey`, FLANNEL_WG_SOCKET_DIR: `${h1.dir}/wg` };
    const daemon = h1.startFlannel([], env);
    await daemon.waitReady(30_000);
    const ourLease = (await leaseOf(h1))!;
    const ourLease6 = (await h1.readSubnetEnv())!.FLANNEL_IPV6_SUBNET.replace("::1/", "::/");
    const ourC4 = await h1.addContainerAddress();
    const ourC6 = await h1.addContainerAddress6();
    const key = `${leaseKey(ourLease)}&${ourLease6.replace("/", "-")}`;
    const ourValue = JSON.parse((await cluster.etcd.get(key))!);
    const ourPub = ourValue.BackendData.PublicKey as string;
    // What an upstream host in Mode ipv6 dials: our PublicIPv6 and our BackendV6Data Port.
    assert.equal(ourValue.BackendV6Data.Port, PORT, "we advertise where we listen");

    await using wg = await WgGoHost.start(h2);
    const wgKey = await genkey();
    await wg.up({
      priv: wgKey.priv,
      peers: [{
        pub: ourPub,
        ip: h1.ip,
        endpoint: mode === "ipv6"
          ? `[${ourValue.PublicIPv6}]:${ourValue.BackendV6Data.Port}`
          : `${ourValue.PublicIP}:${ourValue.BackendData.Port}`,
        allowed: `${ourLease},${ourLease6}`,
      }],
      address: "10.1.99.0",
      route: NETWORK,
      container: WG_CONTAINER,
      v6: { address: "fc00:0:0:99::", route: "fc00::/48", container: "fc00:0:0:99::1" },
    });
    // Its lease, byte for byte as upstream's newSubnetAttrs writes it in Mode ipv6.
    await cluster.etcd.put(
      `${leaseKey(WG_SUBNET)}&fc00:0:0:99::-64`,
      JSON.stringify({
        PublicIP: h2.ip,
        PublicIPv6: h2.ip6,
        BackendType: "wireguard",
        BackendData: { PublicKey: wgKey.pub, Port: PORT },
        BackendV6Data: { PublicKey: wgKey.pub, Port: 51821 },
      }),
      { ttlSeconds: 3600 },
    );
    const via = mode === "ipv6" ? "\\[fd00:100::12\\]" : "192\\.168\\.100\\.12";
    await daemon.waitForLog(
      new RegExp(`Subnet added: 10\\.1\\.99\\.0/24 and fc00:0:0:99::/64 via ${via}:51820`),
      15_000,
    );
    for (
      const [host, to, from] of [
        [h1, WG_CONTAINER, ourC4],
        [h1, "fc00:0:0:99::1", ourC6],
        [h2, ourC4, WG_CONTAINER],
        [h2, ourC6, "fc00:0:0:99::1"],
      ] as const
    ) {
      const r = await ping(host, to, from);
      assert.equal(r.code, 0, `${host.name} ${from} → ${to}: ${r.stdout}${r.stderr}`);
    }
    const dump = await wg.dump();
    assert.equal(dump[1][0], ourPub);
    const ours = mode === "ipv6" ? `[${h1.ip6}]:${PORT}` : `${h1.ip}:${PORT}`;
    assert.equal(dump[1][2], ours, `wireguard-go sees us at our ${over} address`);

    // TCP over inner IPv6 both ways: the segments we cut from TSO6 super-packets taken by an
    // independent implementation (and its kernel's TCP), its segments merged by us; nothing the
    // data path could not handle on our side.
    for (
      const [c, srv, from, to] of [
        [h1, h2, ourC6, "fc00:0:0:99::1"],
        [h2, h1, "fc00:0:0:99::1", ourC6],
      ] as const
    ) {
      const bps = await iperfTcp(c, srv, from, to);
      console.log(`iperf3 TCP ${from} → ${to} (Mode ${mode}): ${(bps / 1e9).toFixed(2)} Gbit/s`);
      assert.ok(bps > 0, "iperf3 over inner IPv6 moved data");
    }
    await daemon.stop();
    const c = countersOf(daemon.logs());
    for (const bad of ["tx_malformed", "tx_send_errors", "rx_malformed", "rx_tun_errors"]) {
      assert.equal(c[bad] ?? 0, 0, `${bad}: ${JSON.stringify(c)}`);
    }
  });
}
