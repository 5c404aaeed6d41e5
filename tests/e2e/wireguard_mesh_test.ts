/**
 * wireguard backend end to end between three of our hosts (namespaces on one hub, a real etcd):
 * the lease format, the key file, full-mesh ping, `wg show flannel-wg` through the UAPI socket,
 * no plaintext on the underlay, a datagram replayed from a capture dropped and counted, 100,000
 * random datagrams to the port changing nothing, a departed peer removed, and a restart that
 * keeps the key.
 *
 * Every host gets its own key file and UAPI directory under its temp dir (WIREGUARD_KEY_FILE,
 * FLANNEL_WG_SOCKET_DIR): the machine's /run/flannel and /var/run/wireguard are not touched.
 */

import assert from "node:assert/strict";
import { Cluster, type Host, REPO_ROOT } from "../harness/cluster.ts";
import { leaseKey, leaseOf } from "../harness/flannel.ts";
import { assertFullMesh, type Node, pingOnce, waitUntil } from "./mesh_support.ts";
import { countersOf, readPcap, tcpdump } from "./capture_support.ts";
import { startWgDaemon, wgEnv, wgShowText } from "./wireguard_support.ts";

const WG_CONFIG = { Network: "10.1.0.0/16", Backend: { Type: "wireguard" } };
const PORT = 51820;
const HEALTHZ = 9299;

async function startWg(host: Host): Promise<Node> {
  const daemon = await startWgDaemon(host, {}, [`--healthz-port=${HEALTHZ}`]);
  const lease = await leaseOf(host);
  assert.ok(lease, `no lease in ${host.subnetFile}`);
  const container = await host.addContainerAddress();
  return { host, daemon, lease, container };
}

/** `wg show flannel-wg <what…>` (default `dump`) from the host's own UAPI directory. */
function wgShow(host: Host, what: string[] = ["dump"]): Promise<string> {
  return wgShowText(host, "flannel-wg", what);
}

async function meshConverged(nodes: Node[]): Promise<void> {
  await waitUntil("mesh converged", async () => {
    const ok = await Promise.all(
      nodes.flatMap((a) => nodes.filter((b) => b !== a).map((b) => pingOnce(a, b, 0.5))),
    );
    return ok.every(Boolean);
  }, 20_000);
}

/** Code for `deno eval`: sends the given datagrams (hex) or `n` random ones to `dst:51820`. */
function senderCode(dst: string, datagrams: string[], random: number): string {
  const mod = (p: string) => JSON.stringify(new URL(p, `file://${REPO_ROOT}/`).href);
  return `
    const { udpSocket, sendto } = await import(${mod("ffi/udp.ts")});
    const { parseIPv4 } = await import(${mod("lib/ip.ts")});
    const s = udpSocket({ nonBlocking: false });
    const dst = parseIPv4(${JSON.stringify(dst)}).toU32(); // ffi/udp.ts takes u32
    for (const h of ${JSON.stringify(datagrams)}) {
      sendto(s, Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16)), dst, ${PORT});
    }
    for (let i = 0; i < ${random}; i++) {
      const len = 1 + Math.floor(Math.random() * 1400);
      const p = crypto.getRandomValues(new Uint8Array(len));
      // A quarter look like WireGuard messages: a type byte 1–4, zero reserved bytes, right sizes.
      const r = i % 8;
      if (r < 4) { p[0] = r + 1; p[1] = p[2] = p[3] = 0; }
      const q = r === 0 ? p.subarray(0, 148) : r === 1 ? p.subarray(0, 92) : r === 2 ? p.subarray(0, 64) : p;
      sendto(s, q.length === p.length ? p : q.slice(), dst, ${PORT});
      if (i % 200 === 199) await new Promise((r) => setTimeout(r, 4));
    }
    s.close();`;
}

Deno.test("wireguard: mesh, lease format, key file, wg show, encrypted wire, replay, random datagrams, departure, restart", async () => {
  await using cluster = await Cluster.create({ hosts: 3 });
  await cluster.putConfig(WG_CONFIG);
  const nodes = await Promise.all(cluster.hosts.map((h) => startWg(h)));
  const [n1, n2, n3] = nodes;

  // Lease: BackendType wireguard, BackendData {"PublicKey","Port"} as upstream writes it.
  const raw = await cluster.etcd.list("/coreos.com/network/subnets/");
  const pubs: string[] = [];
  for (const n of nodes) {
    const key = (await Deno.readTextFile(`${n.host.dir}/wgkey`)).trim();
    const st = await Deno.stat(`${n.host.dir}/wgkey`);
    assert.equal(st.mode! & 0o777, 0o600, "key file mode");
    const p = new Deno.Command("wg", { args: ["pubkey"], stdin: "piped", stdout: "piped" }).spawn();
    const w = p.stdin.getWriter();
    await w.write(new TextEncoder().encode(key));
    await w.close();
    const pk = new TextDecoder().decode((await p.output()).stdout).trim();
    pubs.push(pk);
    assert.equal(
      raw[leaseKey(n.lease)],
      `{"PublicIP":"${n.host.ip}","PublicIPv6":null,"BackendType":"wireguard",` +
        `"BackendData":{"PublicKey":"${pk}","Port":${PORT}}}`,
    );
    assert.equal((await n.host.readSubnetEnv())?.FLANNEL_MTU, String(n.host.mtu - 80));
  }

  await meshConverged(nodes);
  await assertFullMesh(nodes);

  // iperf3 TCP h1 → h2 (TSO segments sealed and sent with UDP GSO, received with UDP_GRO and
  // coalesced back into one TUN write per run).
  const server = new Deno.Command("ip", {
    args: ["netns", "exec", n2.host.ns, "iperf3", "-s", "-1", "-B", n2.container],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitUntil("iperf3 server listening", async () => {
      const ss = await n2.host.exec(["ss", "-Hltn", "sport", "=", ":5201"]);
      return ss.stdout.trim() !== "";
    }, 10_000);
    const r = await n1.host.exec([
      "iperf3",
      "-c",
      n2.container,
      "-B",
      n1.container,
      "-t",
      "3",
      "-J",
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const bps = JSON.parse(r.stdout).end.sum_received.bits_per_second;
    console.log(`iperf3 TCP h1 → h2: ${(bps / 1e9).toFixed(2)} Gbit/s`);
    assert.ok(bps > 100e6, `only ${bps} bit/s`);
  } finally {
    try {
      server.kill("SIGTERM");
    } catch {
      // exited
    }
    await server.status;
  }

  // wg show: our key, both peers with their endpoints, allowed IPs and a handshake.
  const dump = (await wgShow(n1.host)).trim().split("\n").map((l) => l.split("\t"));
  assert.equal(dump[0][1], pubs[0], "our public key");
  assert.equal(dump[0][2], String(PORT), "listen port");
  const peers = new Map(dump.slice(1).map((f) => [f[0], f]));
  for (const [i, n] of [[1, n2], [2, n3]] as const) {
    const f = peers.get(pubs[i]);
    assert.ok(f, `peer ${n.host.name} in wg show`);
    assert.equal(f[2], `${n.host.ip}:${PORT}`, "endpoint");
    assert.equal(f[3], n.lease, "allowed ips");
    assert.ok(Number(f[4]) > 0, "latest handshake");
  }
  const st = await Deno.stat(`${n1.host.dir}/wg/flannel-wg.sock`);
  assert.equal(st.mode! & 0o777, 0o600, "UAPI socket mode");
  assert.equal((await Deno.stat(`${n1.host.dir}/wg`)).mode! & 0o777, 0o700, "UAPI dir mode");
  // A non-root user cannot reach the socket (it would answer with the private key).
  const nobody = await n1.host.exec([
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "python3",
    "-c",
    `import socket; s = socket.socket(socket.AF_UNIX); s.connect("${n1.host.dir}/wg/flannel-wg.sock"); s.sendall(b"get=1\\n\\n"); print(s.recv(100))`,
  ]);
  assert.notEqual(nobody.code, 0, `nobody read the UAPI socket: ${nobody.stdout}`);
  assert.match(nobody.stderr, /PermissionError|Permission denied/);
  // set is refused: the peers are flannel's.
  const set = await n1.host.exec([
    "python3",
    "-c",
    `import socket; s = socket.socket(socket.AF_UNIX); s.connect("${n1.host.dir}/wg/flannel-wg.sock"); s.sendall(b"set=1\\nlisten_port=1\\n\\n"); print(s.recv(100).decode(), end="")`,
  ]);
  assert.equal(set.stdout, "errno=1\n\n", set.stderr);

  // The underlay carries only WireGuard messages: no inner ICMP in clear; one datagram kept.
  const dir = await Deno.makeTempDir({ prefix: "fl-wg-pcap-" });
  let captured: Uint8Array | null = null;
  try {
    const under = await tcpdump(n2.host, "eth0", ["udp", "port", String(PORT)], `${dir}/u.pcap`);
    const r = await n1.host.exec(
      [
        "ping",
        "-n",
        "-c",
        "3",
        "-i",
        "0.2",
        "-p",
        "c0ffeec0ffee",
        "-I",
        n1.container,
        n2.container,
      ],
    );
    assert.equal(r.code, 0, r.stdout);
    await under.stop();
    const u = readPcap(await Deno.readFile(`${dir}/u.pcap`));
    let transport = 0;
    for (const f of u.frames) {
      const ip = f.subarray(14);
      const payload = ip.subarray((ip[0] & 15) * 4 + 8);
      assert.ok(payload[0] >= 1 && payload[0] <= 4, "a WireGuard message type");
      const hex = Array.from(payload, (b) => b.toString(16).padStart(2, "0")).join("");
      assert.ok(!hex.includes("c0ffeec0ffee"), "the ping pattern is not visible on the wire");
      if (
        payload[0] === 4 && payload.length > 32 && ip[12] === 192 &&
        ip[15] === n1.host.ip.split(".").map(Number)[3]
      ) {
        captured ??= payload.slice();
        transport++;
      }
    }
    assert.ok(transport >= 3, `${transport} transport datagrams from h1 captured`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  // Replay the captured datagram and send 100,000 random ones from h1's address to h2's port:
  // nothing gets in, the replay is counted, and h2 keeps forwarding.
  // What h2's device holds (keys, endpoints, allowed IPs) before: it must not change.
  const peersOf = async (h: Host) =>
    (await wgShow(h)).trim().split("\n").map((l) => l.split("\t").slice(0, 4).join(" ")).sort();
  const before = await peersOf(n2.host);
  const hex = Array.from(captured!, (b) => b.toString(16).padStart(2, "0")).join("");
  const send = await n1.host.exec(["deno", "eval", senderCode(n2.host.ip, [hex, hex], 100_000)]);
  assert.equal(send.code, 0, send.stderr);
  await assertFullMesh(nodes);
  assert.deepEqual(await peersOf(n2.host), before, "keys, endpoints and allowed IPs unchanged");
  // The drops are in h2's /metrics while it runs.
  const scrape = await n2.host.exec(
    ["curl", "-s", "-m", "5", `http://127.0.0.1:${HEALTHZ}/metrics`],
  );
  assert.equal(scrape.code, 0, scrape.stderr);
  const sample = (series: string) => {
    const line = scrape.stdout.split("\n").find((l) => l.startsWith(series + " "));
    return line === undefined ? NaN : Number(line.slice(series.length + 1));
  };
  const replays = sample('flannel_wireguard_dropped_total{direction="rx",reason="replay"}');
  assert.ok(replays >= 2, `replays in /metrics: ${replays}`);
  assert.ok(sample('flannel_wireguard_packets_total{direction="rx"}') > 0);
  assert.doesNotMatch(scrape.stdout, /flannel_udp_|NaN|undefined/);

  // Departed: h3 stops and its lease goes; h1 and h2 drop the peer.
  await n3.daemon.stop();
  await cluster.etcd.del(leaseKey(n3.lease));
  await waitUntil("h3's peer removed on h1", async () => {
    const d = await wgShow(n1.host);
    return !d.includes(pubs[2]);
  }, 10_000);
  assert.equal(await pingOnce(n1, n3, 1), false);

  // Restart h2: the key file is reused, the lease keeps the same key, traffic resumes.
  await n2.daemon.stop();
  const c2 = countersOf(n2.daemon.logs());
  assert.ok(c2.rx_replay >= 2, `replayed datagrams counted: ${JSON.stringify(c2)}`);
  assert.ok(c2.rx_replay >= replays, "the stop line counts what /metrics showed");
  assert.ok(
    (c2.rx_malformed ?? 0) + (c2.rx_unknown_index ?? 0) + (c2.hs_bad_mac ?? 0) > 90_000,
    `random datagrams dropped and counted: ${JSON.stringify(c2)}`,
  );
  assert.equal(c2.rx_not_allowed ?? 0, 0);
  console.log(`h2 counters: ${JSON.stringify(c2)}`);
  n2.daemon = n2.host.startFlannel([], wgEnv(n2.host));
  await n2.daemon.waitReady(30_000);
  await n2.host.addContainerAddress();
  assert.match(n2.daemon.logs(), /Loaded the private key/);
  const raw2 = await cluster.etcd.list("/coreos.com/network/subnets/");
  assert.ok(raw2[leaseKey(n2.lease)].includes(pubs[1]), "same public key after the restart");
  await meshConverged([n1, n2]);
});
