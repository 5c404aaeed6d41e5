/**
 * The udp backend object driven directly, two hosts in throwaway namespaces joined by a veth,
 * with a fake SubnetManager (no etcd): ping across, MTU limits, ICMP net unreachable after a
 * lease is removed, datagrams from non-peers dropped and counted, shutdown within 1 s.
 *
 * Each host runs this file as a child (`ip netns exec <ns> deno run -A <file> host …`); the child
 * reads `remove` on stdin to post a lease removal, prints `READY` when the data path runs, and on
 * SIGTERM prints its counters as one JSON line.
 */

import assert from "node:assert/strict";
import { createNamespace, deleteNamespace, run, runOk, uniqueTag } from "../harness/netns.ts";
import { TEST_CHILD_ENV } from "../harness/cleanup.ts";
import { asRoot } from "./root.ts";

const SELF = new URL(import.meta.url).pathname;
const PORT = 8285;

interface HostSpec {
  ifaceAddr: string;
  subnet: string; // "10.5.1.0/24"
  peerAddr: string;
  peerSubnet: string;
  offload: boolean;
  /** The lease watch fails (instead of yielding a removal) when told "remove". */
  watchFails?: boolean;
}

async function child(spec: HostSpec): Promise<void> {
  const { create } = await import("../../lib/backend/udp/mod.ts");
  const { Netlink, subscribe } = await import("../../ffi/netlink/mod.ts");
  const { IPNet, parseCIDR, parseIPv4 } = await import("../../lib/ip.ts");
  const { setVerbosity } = await import("../../lib/log.ts");
  setVerbosity(1);
  const own = parseCIDR(spec.subnet) as InstanceType<typeof IPNet>;
  const peer = parseCIDR(spec.peerSubnet) as InstanceType<typeof IPNet>;
  const lease = (subnet: InstanceType<typeof IPNet>, ip: string) => ({
    subnet,
    ipv6Subnet: null,
    attrs: {
      publicIP: parseIPv4(ip)!,
      publicIPv6: null,
      backendType: "",
      backendData: null,
      backendV6Data: null,
    },
    expiration: null,
    modRevision: 1,
    etcdLeaseId: null,
  });
  const removed = Promise.withResolvers<void>();
  const config = {
    ipv4: {
      network: new IPNet(parseIPv4("10.5.0.0")!, 16),
      subnetLen: 24,
      subnetMin: parseIPv4("10.5.1.0")!,
      subnetMax: parseIPv4("10.5.255.0")!,
    },
    ipv6: null,
    backend: { type: "udp" as const, port: PORT, offload: spec.offload },
  };
  const subnets = {
    config,
    acquireLease: () =>
      Promise.resolve({ lease: lease(own, spec.ifaceAddr), peers: { revision: 0, entries: [] } }),
    keepLease: () => Promise.resolve(),
    async *watchLeases(_own: unknown, _from: unknown, signal: AbortSignal) {
      yield [{ type: "added" as const, lease: lease(peer, spec.peerAddr) }];
      await Promise.race([
        removed.promise,
        new Promise((r) => signal.addEventListener("abort", r, { once: true })),
      ]);
      if (signal.aborted) return;
      if (spec.watchFails) throw new Error("the lease watch broke");
      yield [{ type: "removed" as const, lease: lease(peer, spec.peerAddr) }];
      await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
    },
  };
  const ext = {
    name: "eth0",
    index: 0,
    ifaceAddr: parseIPv4(spec.ifaceAddr)!,
    publicIP: parseIPv4(spec.ifaceAddr)!,
    ifaceV6Addr: null,
    publicIPv6: null,
    mtu: 1500,
  };
  const backend = create({
    config,
    ext,
    subnets,
    netlink: Netlink.open,
    events: (kinds, signal) => subscribe(kinds, signal),
    env: {},
  });
  const ac = new AbortController();
  Deno.addSignalListener("SIGTERM", () => ac.abort());
  const network = await backend.init(ac.signal);
  const running = network.run(ac.signal);
  console.log(`READY ${network.device} mtu=${network.mtu}`);
  (async () => {
    const dec = new TextDecoder();
    for await (const chunk of Deno.stdin.readable) {
      if (dec.decode(chunk).includes("remove")) removed.resolve();
    }
  })();
  try {
    await running;
  } catch (err) {
    console.log(`RUN FAILED: ${(err as Error).message}`);
    Deno.exit(3);
  }
  console.log(JSON.stringify(network.counters()));
  Deno.exit(0);
}

class HostProc {
  readonly lines: string[] = [];
  readonly #proc: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #done: Promise<void>;
  stderr = "";
  constructor(ns: string, spec: HostSpec) {
    const proc = new Deno.Command("ip", {
      args: ["netns", "exec", ns, Deno.execPath(), "run", "-A", SELF, JSON.stringify(spec)],
      // The child stops on SIGTERM by itself; the harness's kill cleanup must not exit it first.
      env: { [TEST_CHILD_ENV]: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#proc = proc;
    this.#stdin = proc.stdin.getWriter();
    const dec = new TextDecoder();
    const out = (async () => {
      let buf = "";
      for await (const c of proc.stdout) {
        buf += dec.decode(c);
        const parts = buf.split("\n");
        buf = parts.pop()!;
        this.lines.push(...parts);
      }
    })();
    const err = (async () => {
      for await (const c of proc.stderr) this.stderr += dec.decode(c);
    })();
    this.#done = Promise.all([out, err]).then(() => {});
  }
  async waitLine(re: RegExp, ms = 15000): Promise<string> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const l = this.lines.find((x) => re.test(x));
      if (l) return l;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`No line matching ${re} within ${ms} ms; stderr: ${this.stderr}`);
  }
  async send(text: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(text + "\n"));
  }
  /** SIGTERM, then the exit code, the time to exit and the counters line. */
  async stop(): Promise<{ code: number; ms: number; counters: Record<string, number> }> {
    const t0 = performance.now();
    this.#proc.kill("SIGTERM");
    const status = await this.#proc.status;
    const ms = performance.now() - t0;
    await this.#stdin.close().catch(() => {});
    await this.#done;
    const json = this.lines.find((l) => l.startsWith("{"));
    return { code: status.code, ms, counters: json ? JSON.parse(json) : {} };
  }
  async kill(): Promise<void> {
    try {
      this.#proc.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.#proc.status;
    await this.#stdin.close().catch(() => {});
    await this.#done;
  }
}

/**
 * `n` datagrams from `src` (bound in `ns`) to `dst:8285`, each a valid echo for 10.5.2.0; with
 * `gso`, all in one UDP GSO send (a receiver with UDP_GRO gets them as one coalesced read).
 */
async function sendCrafted(
  ns: string,
  src: string,
  srcPort: number,
  dst: string,
  n = 1,
  gso = false,
) {
  const code = `
    const { udpSocket, bind, sendto, setsockoptInt, SOL_UDP, UDP_SEGMENT } = await import(${
    JSON.stringify(new URL("../../ffi/udp.ts", import.meta.url).href)
  });
    const { parseIPv4: parseIP } = await import(${
    JSON.stringify(new URL("../../lib/ip.ts", import.meta.url).href)
  });
    const parseIPv4 = (s) => parseIP(s).toU32(); // ffi/udp.ts takes u32
    const { setHeaderChecksum, checksum } = await import(${
    JSON.stringify(new URL("../../lib/backend/udp/packet.ts", import.meta.url).href)
  });
    const s = udpSocket({ nonBlocking: false });
    bind(s, parseIPv4(${JSON.stringify(src)}), ${srcPort});
    const p = new Uint8Array(28);
    p.set([0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 10, 5, 1, 9, 10, 5, 2, 0, 8, 0, 0, 0, 0, 1, 0, 1]);
    setHeaderChecksum(p, 0);
    const c = checksum(p, 20, 8); p[22] = c >> 8; p[23] = c & 255;
    if (${gso}) {
      setsockoptInt(s, SOL_UDP, UDP_SEGMENT, p.length);
      const all = new Uint8Array(${n} * p.length);
      for (let i = 0; i < ${n}; i++) all.set(p, i * p.length);
      sendto(s, all, parseIPv4(${JSON.stringify(dst)}), ${PORT});
    } else {
      for (let i = 0; i < ${n}; i++) sendto(s, p, parseIPv4(${JSON.stringify(dst)}), ${PORT});
    }
    s.close();`;
  await runOk(["ip", "netns", "exec", ns, Deno.execPath(), "eval", code]);
}

async function scenario(offload: boolean): Promise<void> {
  const tag = uniqueTag();
  const nsA = `${tag}-a`;
  const nsB = `${tag}-b`;
  const hosts: HostProc[] = [];
  try {
    await createNamespace(nsA);
    await createNamespace(nsB);
    await runOk([
      "ip",
      "link",
      "add",
      `${tag}a`,
      "netns",
      nsA,
      "type",
      "veth",
      "peer",
      "name",
      `${tag}b`,
      "netns",
      nsB,
    ]);
    await runOk(["ip", "-n", nsA, "addr", "add", "192.168.50.1/24", "dev", `${tag}a`]);
    await runOk(["ip", "-n", nsA, "addr", "add", "192.168.50.3/24", "dev", `${tag}a`]);
    await runOk(["ip", "-n", nsB, "addr", "add", "192.168.50.2/24", "dev", `${tag}b`]);
    await runOk(["ip", "-n", nsA, "link", "set", `${tag}a`, "up"]);
    await runOk(["ip", "-n", nsB, "link", "set", `${tag}b`, "up"]);
    const a = new HostProc(nsA, {
      ifaceAddr: "192.168.50.1",
      subnet: "10.5.1.0/24",
      peerAddr: "192.168.50.2",
      peerSubnet: "10.5.2.0/24",
      offload,
    });
    hosts.push(a);
    const b = new HostProc(nsB, {
      ifaceAddr: "192.168.50.2",
      subnet: "10.5.2.0/24",
      peerAddr: "192.168.50.1",
      peerSubnet: "10.5.1.0/24",
      offload,
    });
    hosts.push(b);
    assert.match(await a.waitLine(/^READY/), /^READY flannel0 mtu=1472$/);
    await b.waitLine(/^READY/);

    // The device as iproute2 sees it.
    const link =
      JSON.parse(await runOk(["ip", "-n", nsA, "-j", "-d", "link", "show", "flannel0"]))[0];
    assert.equal(link.mtu, 1472);
    assert.equal(link.txqlen, 1000);
    assert.ok(link.flags.includes("UP"));
    const addrs =
      JSON.parse(await runOk(["ip", "-n", nsA, "-4", "-j", "addr", "show", "flannel0"]))[0];
    assert.deepEqual(
      addrs.addr_info.map((x: { local: string; prefixlen: number }) => `${x.local}/${x.prefixlen}`),
      ["10.5.1.0/32"],
    );
    const routes = JSON.parse(await runOk(["ip", "-n", nsA, "-j", "route", "show", "10.5.0.0/16"]));
    assert.equal(routes[0]?.dev, "flannel0");

    const ping = (ns: string, ...args: string[]) =>
      run(["ip", "netns", "exec", ns, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", ...args]);
    let r = await ping(nsA, "10.5.2.0");
    assert.equal(r.code, 0, `ping A → B failed: ${r.stdout}${r.stderr}`);
    r = await ping(nsB, "10.5.1.0");
    assert.equal(r.code, 0, `ping B → A failed: ${r.stdout}${r.stderr}`);
    r = await ping(nsA, "-M", "do", "-s", "1444", "10.5.2.0");
    assert.equal(r.code, 0, `1444-byte DF ping failed: ${r.stdout}${r.stderr}`);
    r = await ping(nsA, "-M", "do", "-s", "1445", "10.5.2.0");
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /message too long|Frag needed|mtu = 1472/i);

    // TCP across (with offloads: TSO super-packets segmented, UDP GSO, GRO split).
    const server = new Deno.Command("ip", {
      args: ["netns", "exec", nsB, "iperf3", "-s", "-1", "-B", "10.5.2.0"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      // A client that connects before the server listens fails with "Connection refused".
      const t0 = Date.now();
      for (;;) {
        const ss = await run(["ip", "netns", "exec", nsB, "ss", "-Hltn", "sport", "=", ":5201"]);
        if (ss.stdout.trim() !== "") break;
        if (Date.now() - t0 > 10_000) throw new Error("iperf3 server not listening after 10 s");
        await new Promise((res) => setTimeout(res, 20));
      }
      const ip3 = await run([
        "ip",
        "netns",
        "exec",
        nsA,
        "iperf3",
        "-c",
        "10.5.2.0",
        "-t",
        "2",
        "-J",
      ]);
      assert.equal(ip3.code, 0, ip3.stdout + ip3.stderr);
      const bps = JSON.parse(ip3.stdout).end.sum_received.bits_per_second;
      assert.ok(bps > 50e6, `iperf3 TCP only ${bps} bit/s`);
    } finally {
      // The one-shot server has exited after a run; after a failed one it would wait forever.
      try {
        server.kill("SIGTERM");
      } catch {
        // already exited
      }
      await server.status;
    }

    // From the peer's address but another port, and from a non-peer address: dropped.
    await sendCrafted(nsA, "192.168.50.3", PORT, "192.168.50.2", 5);
    await sendCrafted(nsA, "192.168.50.1", 9999, "192.168.50.2", 3);
    // Coalesced by UDP_GRO into one read: still counted per datagram.
    await sendCrafted(nsA, "192.168.50.3", PORT, "192.168.50.2", 4, true);

    // TTL 1 leaves the host as is (locally generated) and expires in our data path.
    r = await run([
      "ip",
      "netns",
      "exec",
      nsA,
      "ping",
      "-n",
      "-c",
      "1",
      "-W",
      "2",
      "-t",
      "1",
      "10.5.2.0",
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /From 10\.5\.1\.0 icmp_seq=1 Time to live exceeded/);

    // The peer departs: its subnet now gets ICMP net unreachable from our TUN address.
    await a.send("remove");
    await new Promise((res) => setTimeout(res, 300));
    r = await run(["ip", "netns", "exec", nsA, "ping", "-n", "-c", "1", "-W", "2", "10.5.2.0"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /From 10\.5\.1\.0 icmp_seq=1 Destination Net Unreachable/);

    const sa = await a.stop();
    const sb = await b.stop();
    for (const s of [sa, sb]) {
      assert.equal(s.code, 0);
      assert.ok(s.ms < 1500, `exit took ${s.ms} ms`);
    }
    assert.equal(sb.counters.rx_not_peer, 12, JSON.stringify(sb.counters));
    assert.ok(sa.counters.tx_no_route >= 1);
    assert.equal(sa.counters.tx_ttl_expired, 1);
    assert.ok(sa.counters.tx_icmp >= 1);
    assert.ok(sa.counters.tx_packets >= 9 && sb.counters.rx_packets >= 9);
    assert.equal(sb.counters.rx_malformed + sb.counters.rx_not_our_subnet, 0);
    assert.equal(sa.counters.tx_malformed, 0);
    if (offload) {
      assert.ok(sa.counters.tx_gso_sends > 0, "no UDP GSO send with offloads on");
      assert.ok(sb.counters.rx_gso_writes > 0, "no GRO run merged into a GSO TUN write");
      // A GRO batch normally holds one TSO super-packet: about one merged run each.
      assert.ok(
        sb.counters.rx_gso_writes <= 2 * sb.counters.rx_gro_batches,
        `runs break too often: ${JSON.stringify(sb.counters)}`,
      );
    }
  } finally {
    for (const h of hosts) await h.kill();
    deleteNamespace(nsA);
    deleteNamespace(nsB);
  }
}

/** A failing lease watch must end run() (the daemon then exits), not leave stale peers. */
async function watchFailure(): Promise<void> {
  const ns = `${uniqueTag()}-w`;
  let host: HostProc | null = null;
  try {
    await createNamespace(ns);
    await runOk(["ip", "-n", ns, "addr", "add", "192.168.52.1/32", "dev", "lo"]);
    await runOk(["ip", "-n", ns, "link", "set", "lo", "up"]);
    host = new HostProc(ns, {
      ifaceAddr: "192.168.52.1",
      subnet: "10.5.1.0/24",
      peerAddr: "192.168.52.2",
      peerSubnet: "10.5.2.0/24",
      offload: false,
      watchFails: true,
    });
    await host.waitLine(/^READY/);
    await host.send("remove");
    assert.match(await host.waitLine(/^RUN FAILED/, 3000), /the lease watch broke/);
  } finally {
    await host?.kill();
    deleteNamespace(ns);
  }
}

if (import.meta.main) {
  await child(JSON.parse(Deno.args[0]));
} else {
  Deno.test(
    asRoot("udp backend, offloads off: ping, MTU, departed peer, non-peer drops"),
    () => scenario(false),
  );
  Deno.test(
    asRoot("udp backend, offloads on: ping, MTU, departed peer, non-peer drops"),
    () => scenario(true),
  );
  Deno.test(asRoot("udp backend: run() rejects when the lease watch fails"), watchFailure);
}
