/**
 * The udp backend: a userspace TUN ↔ UDP data path, wire-compatible with flannel's udp backend.
 *
 * Design note.
 * - Installs: a TUN device `flannel%d` (`IFF_TUN|IFF_NO_PI`, with `IFF_VNET_HDR` and TSO/checksum
 *   offloads unless `"Offload": false`), address `<own subnet base>/32`, MTU = external MTU − 28,
 *   txqueuelen 1000, up, and the route `<Network> dev flannel0`; a UDP socket bound to the
 *   external interface's address (not `--public-ip`, which may be a NAT address) on `Port`, with
 *   4 MiB buffers, `UDP_GRO` and `UDP_SEGMENT` when the kernel accepts them.
 * - Data path: a Worker (worker.ts) making synchronous FFI calls on non-blocking fds. Each UDP
 *   payload is exactly one inner IPv4 packet. TUN → UDP: peer lookup by masked destination
 *   (O(1)), TTL decrement, ICMP net-unreachable / time-exceeded into the TUN. UDP → TUN: only
 *   from a current peer's PublicIP:Port, exactly one well-formed IPv4 packet, inner destination
 *   in our lease, inner source in the subnet of that peer (its flannel address included);
 *   everything else is dropped and counted by reason (`counters()`). TTL is
 *   decremented once per tunnel hop, on the sending side (upstream does it on both sides).
 * - Offloads (default on): TCP super-packets from the TUN are cut into MTU-sized packets in
 *   TypeScript (segment.ts) and sent as UDP GSO batches; `UDP_GRO` receives are split, checked
 *   packet by packet, and runs of one TCP flow are merged into one GSO write to the TUN. The wire
 *   format does not change: one whole inner packet per datagram. Each offload the kernel
 *   refuses is turned off with a warning (at setup, or at the first refused GSO send).
 * - `accept_local` on the TUN: our ICMP errors come from the TUN's own (local) address.
 * - Lease added → route the subnet to `PublicIP:Port` (our configured port, as upstream);
 *   removed → forget it (its traffic then gets ICMP net unreachable). Posted to the Worker as
 *   messages; the data path never stops for them.
 * - Survives a restart: nothing. The TUN device disappears with its fd when the process exits,
 *   and with it the address and route; the lease is reused by PublicIP on the next start.
 */

import {
  type Backend,
  backendConfig,
  type BackendContext,
  ipv4Attrs,
  ipv4Only,
  type Network,
  ownIPv4,
} from "../mod.ts";
import type { UdpBackendConfig } from "../../config.ts";
import type { Lease } from "../../lease.ts";
import type { LeaseSnapshot } from "../../subnet/mod.ts";
import type { IP, IPNet } from "../../ip.ts";
import { errText, logger } from "../../log.ts";
import { describeProtocol } from "../kernel_plan.ts";
import { setTxQueueLen, type Tun } from "../../../ffi/tun.ts";
import { bind, setBufferSizes, udpSocket } from "../../../ffi/udp.ts";
import { openOffloadTun, probeUdpOffloads, TSO4 } from "../datapath/offload.ts";
import { DataPathWorker } from "../datapath/host.ts";
import type { Fd } from "../../../ffi/fd.ts";
import { RT_TABLE_MAIN } from "../../../ffi/netlink/mod.ts";
import { writeSysctl } from "../../../ffi/sysctl.ts";
import { peersInUse } from "../../health/catalog.ts";
import { type CounterName, formatCounters, newCounterMemory, readCounters } from "./counters.ts";
import type { PeerBatch, PeerChange, WorkerInit } from "./protocol.ts";
import { registerUdpCounters } from "./metrics.ts";

const log = logger("udp");

/** Overhead of the outer IPv4 + UDP headers. */
const ENCAP_OVERHEAD = 28;
const SOCKET_BUFFER = 4 << 20;
const TXQUEUELEN = 1000;

/** The udp network, with its device name and counters for metrics. */
export interface UdpNetwork extends Network {
  /** The TUN device name (`flannel0` unless taken). */
  readonly device: string;
  /** A snapshot of the data path's counters (zeros before `run`). */
  counters(): Record<CounterName, number>;
}

/** The udp backend: its network carries the data path's counters. */
export interface UdpBackend extends Backend {
  init(signal: AbortSignal): Promise<UdpNetwork>;
}

/** Creates the udp backend (registered as `"udp"`). */
export function create(ctx: BackendContext): UdpBackend {
  const cfg = backendConfig(ctx, "udp");
  return { init: (signal) => init(ctx, cfg, signal) };
}

/** What init set up and run uses. */
interface Parts {
  readonly ctx: BackendContext;
  readonly cfg: UdpBackendConfig;
  readonly lease: Lease;
  /** Our IPv4 subnet (udp is IPv4 only, as upstream). */
  readonly own: IPNet;
  /** The listing the lease was acquired against. */
  readonly peers: LeaseSnapshot;
  readonly mtu: number;
  readonly tun: Tun;
  readonly sock: Fd;
  readonly vnetHdr: boolean;
  readonly udpGso: boolean;
  readonly udpGro: boolean;
  readonly counterMem: SharedArrayBuffer;
}

async function init(
  ctx: BackendContext,
  cfg: UdpBackendConfig,
  signal: AbortSignal,
): Promise<UdpNetwork> {
  const { ext, subnets } = ctx;
  const v4 = ipv4Only(ctx, "udp");
  refuseRoutedNetwork(ctx, v4.range.network);
  const { lease, peers } = await subnets.acquireLease(ipv4Attrs(v4.publicIP), signal);
  const own = ownIPv4(lease);
  const network = v4.range.network;
  const mtu = ext.mtu - ENCAP_OVERHEAD;
  const { tun, vnetHdr } = openOffloadTun("flannel%d", cfg.offload ? [TSO4] : [], log);
  let sock: Fd | null = null;
  let gso = { udpGso: false, udpGro: false };
  try {
    configureDevice(ctx, tun.name, mtu, network, own);
    sock = udpSocket();
    gso = setUpSocket(sock, v4.ifaceAddr, cfg.port, vnetHdr);
  } catch (err) {
    sock?.close();
    tun.fd.close();
    throw err;
  }
  log.info(
    `Device ${tun.name} up: ${own.ip}/32, mtu ${mtu}, ` +
      `route ${network}; UDP ${v4.ifaceAddr}:${cfg.port}` +
      ` (offloads: tun ${vnetHdr ? "on" : "off"}, gso ${gso.udpGso ? "on" : "off"}, ` +
      `gro ${gso.udpGro ? "on" : "off"})`,
  );
  const p: Parts = {
    ctx,
    cfg,
    lease,
    own,
    peers,
    mtu,
    tun,
    sock,
    vnetHdr,
    ...gso,
    counterMem: newCounterMemory(),
  };
  const counters = () => readCounters(p.counterMem);
  return {
    lease,
    mtu,
    device: tun.name,
    counters,
    registerMetrics: (m) => registerUdpCounters(m, counters),
    run: (signal) => run(p, signal),
  };
}

/**
 * Throws when the host already routes exactly `network` (metric 0, main table): the TUN route
 * `<Network> dev flannel0` would replace it, and take it along when the device goes. A Network
 * equal to the underlay's own subnet replaced eth0's connected route (the host lost etcd and
 * every neighbour, also after flannel stopped); `0.0.0.0/0` replaced the default route.
 */
function refuseRoutedNetwork(ctx: BackendContext, network: IPNet): void {
  const nl = ctx.netlink();
  let clash;
  let dev: string | null = null;
  try {
    clash = nl.routeList(RT_TABLE_MAIN).find((r) =>
      r.dst.equals(network) && (r.priority ?? 0) === 0
    );
    if (clash?.oif != null) dev = nl.linkGet(clash.oif)?.name ?? null;
  } finally {
    nl.close();
  }
  if (clash) {
    const via = clash.gateway ? ` via ${clash.gateway}` : "";
    const on = dev ? ` dev ${dev}` : "";
    // Our own TUN route of a previous run dies with its device: a live one is another daemon's.
    const hint = dev?.startsWith("flannel")
      ? "is another flannel daemon running on this host?"
      : "choose a Network that is not a local route";
    throw new Error(
      `Network ${network} is already routed on this host (${clash.dst}${via}${on}, ` +
        `${describeProtocol(clash.protocol)}): the udp backend's route to it through the TUN ` +
        `device would replace that route; ${hint}`,
    );
  }
}

function configureDevice(
  ctx: BackendContext,
  name: string,
  mtu: number,
  network: IPNet,
  own: IPNet,
): void {
  const nl = ctx.netlink();
  try {
    const link = nl.linkGet(name);
    if (link === null) throw new Error(`TUN device ${name} vanished after TUNSETIFF`);
    nl.linkSetMtu(link.index, mtu);
    setTxQueueLen(name, TXQUEUELEN);
    const addr = own.ip;
    const have = nl.addrList(link.index).some((a) => a.address.equals(addr) && a.prefix === 32);
    if (!have) nl.addrAdd(link.index, addr, 32);
    // Our ICMP errors come from the TUN address, which is local: without accept_local the
    // kernel drops them as martians before the host's own sender (e.g. ping) sees them.
    writeSysctl(`/proc/sys/net/ipv4/conf/${name}/accept_local`, "1");
    // The overlay is IPv4 only: no link-local address, router solicitations or MLD reports.
    try {
      writeSysctl(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, "1");
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err; // IPv6 disabled in the kernel
    }
    nl.linkSetUp(link.index);
    nl.routeReplace({ dst: network, oif: link.index, scope: 0 });
  } finally {
    nl.close();
  }
}

/** Binds and tunes the socket; returns which UDP offloads the kernel accepted. */
function setUpSocket(
  sock: Fd,
  ifaceAddr: IP,
  port: number,
  vnetHdr: boolean,
): { udpGso: boolean; udpGro: boolean } {
  // ffi/udp.ts is the data path's socket layer: IPv4 as host-order u32, like the Worker.
  bind(sock, ifaceAddr.toU32(), port);
  setBufferSizes(sock, SOCKET_BUFFER);
  return probeUdpOffloads(sock, vnetHdr, log);
}

function close(p: Parts): void {
  p.sock.close();
  p.tun.fd.close();
}

async function run(p: Parts, signal: AbortSignal): Promise<void> {
  const worker = new DataPathWorker<WorkerInit, PeerBatch>(
    new URL("./worker.ts", import.meta.url),
    {
      tunFd: p.tun.fd.fd,
      udpFd: p.sock.fd,
      // The Worker's per-packet path keeps IPv4 as host-order u32: convert at its boundary.
      ownNet: p.own.ip.toU32(),
      ownPrefix: p.own.prefix,
      tunAddr: p.own.ip.toU32(),
      mtu: p.mtu,
      vnetHdr: p.vnetHdr,
      udpGso: p.udpGso,
      udpGro: p.udpGro,
      counters: p.counterMem,
    },
    log,
  );
  let failed: string | null = null;
  const workerDied = worker.died.then((m) => {
    failed ??= m;
  });
  const post = (m: PeerBatch) => worker.post(m);
  const statsTimer = log.enabled(2)
    ? setInterval(
      () => log.v(2, `Data path counters: ${formatCounters(readCounters(p.counterMem))}`),
      5000,
    )
    : null;
  try {
    await worker.ready();
    const own = p.own;
    const port = p.cfg.port;
    const watch = (async () => {
      let first = true;
      const peers = new Set<string>(); // for flannel_peers only
      for await (const batch of p.ctx.subnets.watchLeases(p.lease, p.peers, signal)) {
        const changes: PeerChange[] = [];
        for (const ev of batch) {
          const { subnet, attrs } = ev.lease;
          const pub = attrs.publicIP;
          // An IPv6-only peer has nothing for an IPv4 overlay.
          if (subnet === null || pub === null || subnet.equals(own)) continue;
          const op = ev.type === "added" ? "set" : "del";
          if (op === "set") peers.add(subnet.toString());
          else peers.delete(subnet.toString());
          // u32 for the Worker's peer table (see WorkerInit).
          const net = subnet.ip.toU32();
          changes.push({ op, net, prefix: subnet.prefix, ip: pub.toU32(), port });
          // The first batch is the whole set (thousands of lines on a big network): -v=1.
          const line = `${ev.type === "added" ? "Route" : "Unroute"} ${subnet}` +
            (ev.type === "added" ? ` via ${pub}:${port}` : "");
          if (first) log.v(1, line);
          else log.info(line);
        }
        peersInUse.set(peers.size);
        if (first) log.info(`Following ${changes.length} peer leases`);
        first = false;
        if (changes.length > 0) post({ op: "peers", changes });
      }
    })();
    const aborted = new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener("abort", () => resolve(), { once: true });
    });
    // The watch retries by itself and ends only with the signal: anything else would leave
    // the data path with stale peers for good, so it ends run() (the daemon exits, as with
    // the other backends).
    const watchEnded = watch.then(
      () => {
        if (!signal.aborted) failed ??= "Lease watch ended";
      },
      (err) => {
        if (!signal.aborted) failed ??= `Lease watch failed: ${errText(err)}`;
      },
    );
    await Promise.race([aborted, workerDied, watchEnded]);
    if (failed) throw new Error(failed);
  } finally {
    if (statsTimer !== null) clearInterval(statsTimer);
    await worker.stop();
    log.info(`Data path stopped: ${formatCounters(readCounters(p.counterMem))}`);
    close(p);
  }
}
