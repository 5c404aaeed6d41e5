/**
 * udp backend end to end: hosts in namespaces on one hub, a real etcd, `deno run -A main.ts` per
 * host. Full-mesh ping between container addresses, iperf3 TCP, the MTU limit, the wire format
 * (a tcpdump on the underlay: UDP 8285 whose payload is byte for byte the inner packet), a
 * departed peer's subnet answered with ICMP net unreachable, and datagrams that must not be
 * delivered (a non-peer source; 100,000 random datagrams from a peer's address) counted and
 * dropped while the daemon keeps forwarding.
 */

import assert from "node:assert/strict";
import { Cluster, type Host, REPO_ROOT } from "../harness/cluster.ts";
import { leaseKey } from "../harness/flannel.ts";
import { iperf } from "../harness/iperf.ts";
import { assertFullMesh, pingOnce, startNode, waitUntil } from "./mesh_support.ts";
import { countersOf, readPcap, tcpdump } from "./capture_support.ts";

const UDP_CONFIG = { Network: "10.1.0.0/16", Backend: { Type: "udp" } };
const PORT = 8285;

/** Code for `deno eval` that sends datagrams from `src:8285` to `dst:8285` (see kinds below). */
function senderCode(src: string, dst: string, kind: "crafted" | "random", n: number, inner: {
  from: string;
  to: string;
}): string {
  const mod = (p: string) => JSON.stringify(new URL(p, `file://${REPO_ROOT}/`).href);
  return `
    const { udpSocket, bind, sendto } = await import(${mod("ffi/udp.ts")});
    const { parseIPv4: parseIP } = await import(${mod("lib/ip.ts")});
    const parseIPv4 = (s) => parseIP(s).toU32(); // ffi/udp.ts and the packet code take u32
    const { setHeaderChecksum, checksum } = await import(${mod("lib/backend/udp/packet.ts")});
    const s = udpSocket({ nonBlocking: false });
    bind(s, parseIPv4(${JSON.stringify(src)}), ${PORT});
    const dst = parseIPv4(${JSON.stringify(dst)});
    const from = parseIPv4(${JSON.stringify(inner.from)});
    const to = parseIPv4(${JSON.stringify(inner.to)});
    const put32 = (p, o, v) => { p[o] = v >>> 24; p[o+1] = (v >>> 16) & 255; p[o+2] = (v >>> 8) & 255; p[o+3] = v & 255; };
    function echo(len, id) {
      const p = new Uint8Array(len);
      p.set([0x45, 0, len >> 8, len & 255, 0, 1, 0, 0, 64, 1, 0, 0]);
      put32(p, 12, from); put32(p, 16, to);
      setHeaderChecksum(p, 0);
      p.set([8, 0, 0, 0, id >> 8, id & 255, 0, 1], 20);
      const c = checksum(p, 20, len - 20); p[22] = c >> 8; p[23] = c & 255;
      return p;
    }
    const kind = ${JSON.stringify(kind)};
    let sent = 0;
    for (let i = 0; i < ${n}; i++) {
      let p;
      if (kind === "crafted") p = echo(84, 0x7e57);
      else {
        const len = 1 + Math.floor(Math.random() * 1400);
        const r = i % 4;
        if (r === 0 || len < 28) p = crypto.getRandomValues(new Uint8Array(len)); // noise
        else {
          p = echo(len, i & 0xffff);
          if (r === 1) { p[2] ^= 0x40; } // total length ≠ datagram length
          else if (r === 2) { p[11] ^= 0xff; } // header checksum wrong
          else { put32(p, 16, (to & 0xffff0000) | 0xfa00 | (i & 255)); setHeaderChecksum(p, 0); } // not our subnet
        }
      }
      sendto(s, p, dst, ${PORT});
      sent++;
      if (i % 200 === 199) await new Promise((r) => setTimeout(r, 4));
    }
    s.close();
    console.log(sent);`;
}

async function udpRcvbufErrors(host: Host): Promise<number> {
  const r = await host.exec(["cat", "/proc/net/snmp"]);
  const lines = r.stdout.split("\n").filter((l) => l.startsWith("Udp:"));
  const names = lines[0].split(/\s+/);
  const values = lines[1].split(/\s+/);
  return Number(values[names.indexOf("RcvbufErrors")]);
}

Deno.test("udp: mesh, TCP, MTU, wire format, departed peer, non-peer and random datagrams dropped", async () => {
  await using cluster = await Cluster.create({ hosts: 3 });
  // -v=1: the daemons log the routes of their first lease batch too (see below).
  await cluster.putConfig(UDP_CONFIG);
  const nodes = await Promise.all(cluster.hosts.map((h) => startNode(h, ["-v=1"])));
  const [n1, n2, n3] = nodes;
  // No ping before every daemon routes every peer: the daemons start at once, and one that has
  // not seen a peer's lease yet counts that peer's echo requests as rx_not_peer and its own
  // requests to it as tx_no_route (answered with tx_icmp), which the counter checks at the end
  // would take for the crafted datagrams.
  for (const a of nodes) {
    for (const b of nodes) {
      if (a === b) continue;
      await a.daemon.waitForLog(new RegExp(`Route ${b.lease.replaceAll(".", "\\.")} via`), 15_000);
    }
  }

  // Lease attrs: PublicIP only (BackendType "" is omitted), MTU − 28 in subnet.env.
  const raw = await cluster.etcd.list("/coreos.com/network/subnets/");
  for (const n of nodes) {
    assert.equal(raw[leaseKey(n.lease)], `{"PublicIP":"${n.host.ip}","PublicIPv6":null}`);
    assert.equal((await n.host.readSubnetEnv())?.FLANNEL_MTU, String(n.host.mtu - 28));
  }
  await waitUntil("mesh converged", async () => {
    const ok = await Promise.all(
      nodes.flatMap((a) => nodes.filter((b) => b !== a).map((b) => pingOnce(a, b, 0.5))),
    );
    return ok.every(Boolean);
  }, 10_000);
  await assertFullMesh(nodes);

  // MTU: 1444 + 28 = 1472 fits the TUN, 1445 does not (DF set).
  const big = await n1.host.exec(
    [
      "ping",
      "-n",
      "-c",
      "2",
      "-i",
      "0.2",
      "-W",
      "2",
      "-M",
      "do",
      "-s",
      "1444",
      "-I",
      n1.container,
      n2.container,
    ],
  );
  assert.equal(big.code, 0, big.stdout + big.stderr);
  const tooBig = await n1.host.exec(
    [
      "ping",
      "-n",
      "-c",
      "1",
      "-W",
      "2",
      "-M",
      "do",
      "-s",
      "1445",
      "-I",
      n1.container,
      n2.container,
    ],
  );
  assert.notEqual(tooBig.code, 0);
  assert.match(tooBig.stdout + tooBig.stderr, /message too long|mtu = 1472/i);

  // iperf3 TCP across.
  const bps = (await iperf(n1.host, n2.host, n1.container, n2.container, 3)).sum_received
    .bits_per_second;
  console.log(`iperf3 TCP h1 → h2: ${(bps / 1e9).toFixed(2)} Gbit/s`);
  assert.ok(bps > 100e6, `only ${bps} bit/s`);

  // Wire format: the UDP payload on h2's eth0 equals the packet h2's kernel gets from flannel0.
  const dir = await Deno.makeTempDir({ prefix: "fl-udp-pcap-" });
  try {
    const under = await tcpdump(n2.host, "eth0", ["udp", "port", String(PORT)], `${dir}/u.pcap`);
    const over = await tcpdump(n2.host, "flannel0", ["icmp"], `${dir}/o.pcap`);
    const r = await n1.host.exec(
      ["ping", "-n", "-c", "3", "-i", "0.2", "-p", "c0ffee", "-I", n1.container, n2.container],
    );
    assert.equal(r.code, 0, r.stdout);
    await under.stop();
    await over.stop();
    const u = readPcap(await Deno.readFile(`${dir}/u.pcap`));
    const o = readPcap(await Deno.readFile(`${dir}/o.pcap`));
    assert.equal(u.linkType, 1, "Ethernet on eth0");
    const inner = new Set(o.frames.map((f) => f.join(",")));
    let matched = 0;
    for (const f of u.frames) {
      const ip = f.subarray(14);
      const ihl = (ip[0] & 15) * 4;
      const udp = ip.subarray(ihl);
      assert.equal((udp[0] << 8) | udp[1], PORT, "source port");
      assert.equal((udp[2] << 8) | udp[3], PORT, "destination port");
      const payload = udp.subarray(8);
      if (payload[9] === 1 && payload[20] === 8 && inner.has(payload.join(","))) matched++;
    }
    assert.ok(matched >= 3, `${matched} echo requests on the wire matched flannel0 byte for byte`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  // A fake peer h4 (a lease, no daemon) and a non-peer address on h3's side.
  const h4 = await cluster.addHost();
  await cluster.etcd.put(leaseKey("10.1.200.0/24"), `{"PublicIP":"${h4.ip}","PublicIPv6":null}`);
  await n2.daemon.waitForLog(/Route 10\.1\.200\.0\/24 via/, 5_000);
  const rcvbuf0 = await udpRcvbufErrors(n2.host);
  // Non-peer: h3's address on another port cannot be used (flannel holds 8285), so add one.
  const stranger = "192.168.100.222";
  assert.equal(
    (await n3.host.exec(["ip", "addr", "add", `${stranger}/24`, "dev", "eth0"])).code,
    0,
  );
  const crafted = await n3.host.exec([
    Deno.execPath(),
    "eval",
    senderCode(stranger, n2.host.ip, "crafted", 5, { from: n1.container, to: n2.container }),
  ]);
  assert.equal(crafted.code, 0, crafted.stderr);
  const RANDOM = 100_000;
  const fuzz = await h4.exec([
    Deno.execPath(),
    "eval",
    senderCode(h4.ip, n2.host.ip, "random", RANDOM, { from: "10.1.200.9", to: n2.container }),
  ]);
  assert.equal(fuzz.code, 0, fuzz.stderr);
  assert.equal(fuzz.stdout.trim(), String(RANDOM));
  await new Promise((r) => setTimeout(r, 500));
  const lostInKernel = (await udpRcvbufErrors(n2.host)) - rcvbuf0;
  // Still alive and forwarding.
  assert.equal(n2.daemon.exitCode, null, "h2's daemon died");
  await assertFullMesh(nodes);

  // h3 departs: its subnet gets ICMP net unreachable from the others' TUN address, from the
  // first packet after the "Unroute" line (the Worker is woken at once, not at its poll timeout).
  n3.daemon.kill("SIGTERM");
  assert.equal(await n3.daemon.exitedWithin(2_000), 0, n3.daemon.tail());
  await cluster.etcd.del(leaseKey(n3.lease));
  await n1.daemon.waitForLog(new RegExp(`Unroute ${n3.lease.replaceAll(".", "\\.")}`), 5_000);
  const unreach = await n1.host.exec([
    "ping",
    "-n",
    "-c",
    "1",
    "-W",
    "2",
    "-I",
    n1.container,
    n3.container,
  ]);
  assert.notEqual(unreach.code, 0);
  const tunAddr = n1.lease.split("/")[0];
  assert.match(
    unreach.stdout,
    new RegExp(`From ${tunAddr.replaceAll(".", "\\.")} .*Destination Net Unreachable`),
    n1.daemon.tail(8),
  );

  // Counters at shutdown (SIGTERM → exit within 2 s).
  n2.daemon.kill("SIGTERM");
  assert.equal(await n2.daemon.exitedWithin(2_000), 0, n2.daemon.tail());
  const c = countersOf(n2.daemon.logs());
  console.log(`h2 counters: ${JSON.stringify(c)} (kernel receive-buffer drops ${lostInKernel})`);
  assert.equal(c.rx_not_peer, 5, "the crafted datagrams from a non-peer");
  const dropped = (c.rx_malformed ?? 0) + (c.rx_not_our_subnet ?? 0);
  if (lostInKernel === 0) {
    assert.equal(dropped, RANDOM, "every random datagram dropped and counted");
  } else {
    // RcvbufErrors counts skbs, and with UDP_GRO one skb holds up to 64 datagrams
    // (UDP_GRO_CNT_MAX): the kernel's losses only bound what the daemon saw.
    assert.ok(
      dropped < RANDOM && dropped + 64 * lostInKernel >= RANDOM,
      `${dropped} counted + ${lostInKernel} skbs lost in the kernel ≠ ${RANDOM} datagrams`,
    );
  }
  assert.ok(c.rx_not_our_subnet > 0 && c.rx_malformed > 0);
  for (const n of [n1]) {
    n.daemon.kill("SIGTERM");
    assert.equal(await n.daemon.exitedWithin(2_000), 0);
    assert.ok(countersOf(n.daemon.logs()).tx_no_route >= 1);
  }
});
