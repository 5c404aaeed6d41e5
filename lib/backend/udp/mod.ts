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

import type { Backend, BackendContext, BackendReady } from "../mod.ts";
import type { UdpBackendConfig } from "../../config.ts";
import type { Lease } from "../../lease.ts";
import type { IP, IPNet } from "../../ip.ts";
import { errText, logger } from "../../log.ts";
import { Netlink } from "../../../ffi/netlink/mod.ts";
import {
  openTun,
  setTxQueueLen,
  type Tun,
  TUN_F_CSUM,
  TUN_F_TSO4,
  TUN_F_TSO_ECN,
  tunSetOffload,
} from "../../../ffi/tun.ts";
import {
  bind,
  setBufferSizes,
  setsockoptInt,
  SOL_UDP,
  UDP_GRO,
  UDP_SEGMENT,
  udpSocket,
  Wakeup,
} from "../../../ffi/udp.ts";
import type { Fd } from "../../../ffi/fd.ts";
import { writeSysctl } from "../../../ffi/sysctl.ts";
import { type CounterName, formatCounters, newCounterMemory, readCounters } from "./counters.ts";
import {
  CTL_PENDING,
  CTL_STOP,
  CTL_WORDS,
  type PeerBatch,
  type PeerChange,
  type WorkerInit,
  type WorkerReport,
} from "./protocol.ts";

const log = logger("udp");

/** Overhead of the outer IPv4 + UDP headers. */
const ENCAP_OVERHEAD = 28;
const SOCKET_BUFFER = 4 << 20;
const TXQUEUELEN = 1000;
/** How long `run` waits for the Worker to stop before terminating it. */
const STOP_GRACE_MS = 800;

/** The udp backend object, with its counters for metrics. */
export interface UdpBackend extends Backend {
  /** A snapshot of the data path's counters (zeros before `run`). */
  counters(): Record<CounterName, number>;
  /** The TUN device name once `init` has run. */
  readonly deviceName: string | null;
}

/** Creates the udp backend (registered as `"udp"`). */
export function create(ctx: BackendContext): UdpBackend {
  return new UdpBackendImpl(ctx);
}

class UdpBackendImpl implements UdpBackend {
  readonly #ctx: BackendContext;
  readonly #cfg: UdpBackendConfig;
  readonly #counterMem = newCounterMemory();
  #tun: Tun | null = null;
  #sock: Fd | null = null;
  #lease: Lease | null = null;
  #mtu = 0;
  #vnetHdr = false;
  #udpGso = false;
  #udpGro = false;

  constructor(ctx: BackendContext) {
    if (ctx.config.backend.type !== "udp") {
      throw new Error(`Backend type ${ctx.config.backend.type} is not udp`);
    }
    this.#ctx = ctx;
    this.#cfg = ctx.config.backend;
  }

  get deviceName(): string | null {
    return this.#tun?.name ?? null;
  }

  counters(): Record<CounterName, number> {
    return readCounters(this.#counterMem);
  }

  async init(signal: AbortSignal): Promise<BackendReady> {
    const { ext, subnets, config } = this.#ctx;
    const lease = await subnets.acquireLease(
      { publicIP: ext.publicIP, backendType: "", backendData: null },
      signal,
    );
    this.#lease = lease;
    this.#mtu = ext.mtu - ENCAP_OVERHEAD;
    try {
      this.#openTun();
      this.#configureDevice(config.network, lease);
      this.#openSocket(ext.ifaceAddr);
    } catch (err) {
      this.#close();
      throw err;
    }
    log.info(
      `Device ${this.#tun!.name} up: ${lease.subnet.ip}/32, mtu ${this.#mtu}, ` +
        `route ${config.network}; UDP ${ext.ifaceAddr}:${this.#cfg.port}` +
        ` (offloads: tun ${this.#vnetHdr ? "on" : "off"}, gso ${this.#udpGso ? "on" : "off"}, ` +
        `gro ${this.#udpGro ? "on" : "off"})`,
    );
    return { lease, mtu: this.#mtu };
  }

  #openTun(): void {
    if (this.#cfg.offload) {
      const tun = openTun({ name: "flannel%d", vnetHdr: true });
      try {
        tunSetOffload(tun.fd, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN);
        this.#tun = tun;
        this.#vnetHdr = true;
        return;
      } catch (err) {
        log.warn(`TUN offloads refused, continuing without: ${errText(err)}`);
        tun.fd.close();
      }
    }
    this.#tun = openTun({ name: "flannel%d" });
  }

  #configureDevice(network: IPNet, lease: Lease): void {
    const name = this.#tun!.name;
    using nl = Netlink.open();
    const link = nl.linkGet(name);
    if (link === null) throw new Error(`TUN device ${name} vanished after TUNSETIFF`);
    nl.linkSetMtu(link.index, this.#mtu);
    setTxQueueLen(name, TXQUEUELEN);
    const addr = lease.subnet.ip;
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
  }

  #openSocket(ifaceAddr: IP): void {
    const sock = udpSocket();
    this.#sock = sock;
    // ffi/udp.ts is the data path's socket layer: IPv4 as host-order u32, like the Worker.
    bind(sock, ifaceAddr.toU32(), this.#cfg.port);
    setBufferSizes(sock, SOCKET_BUFFER);
    if (this.#vnetHdr) {
      try {
        // Probe: UDP_SEGMENT as a socket option sets a default segment size; 0 turns it off
        // again but proves the kernel knows it.
        setsockoptInt(sock, SOL_UDP, UDP_SEGMENT, 0);
        this.#udpGso = true;
      } catch (err) {
        log.warn(`UDP GSO refused, sending one datagram per call: ${errText(err)}`);
      }
      try {
        setsockoptInt(sock, SOL_UDP, UDP_GRO, 1);
        this.#udpGro = true;
      } catch (err) {
        log.warn(`UDP GRO refused, receiving one datagram per slot: ${errText(err)}`);
      }
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    if (!this.#tun || !this.#sock || !this.#lease) {
      throw new Error("Cannot run the udp backend before init");
    }
    const ctl = new SharedArrayBuffer(CTL_WORDS * 4);
    const ctlView = new Int32Array(ctl);
    const wake = new Wakeup();
    const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
    let reports: (r: WorkerReport) => void = () => {};
    let failed: string | null = null;
    const stopped = Promise.withResolvers<void>();
    const workerDied = Promise.withResolvers<void>();
    worker.onmessage = (ev: MessageEvent<WorkerReport>) => reports(ev.data);
    worker.onerror = (ev) => {
      ev.preventDefault();
      failed = `Data path Worker failed: ${ev.message}`;
      workerDied.resolve();
    };
    const ready = Promise.withResolvers<void>();
    reports = (r) => {
      if (r.type === "ready") ready.resolve();
      else if (r.type === "stopped") stopped.resolve();
      else if (r.type === "warn") log.warn(r.message);
      else {
        failed = `Data path failed: ${r.message}`;
        workerDied.resolve();
      }
    };
    const init: WorkerInit = {
      op: "init",
      tunFd: this.#tun.fd.fd,
      udpFd: this.#sock.fd,
      wakeFd: wake.fd.fd,
      // The Worker's per-packet path keeps IPv4 as host-order u32: convert at its boundary.
      ownNet: this.#lease.subnet.ip.toU32(),
      ownPrefix: this.#lease.subnet.prefix,
      tunAddr: this.#lease.subnet.ip.toU32(),
      mtu: this.#mtu,
      vnetHdr: this.#vnetHdr,
      udpGso: this.#udpGso,
      udpGro: this.#udpGro,
      ctl,
      counters: this.#counterMem,
    };
    worker.postMessage(init);
    const post = (m: PeerBatch) => {
      worker.postMessage(m);
      Atomics.add(ctlView, CTL_PENDING, 1);
      wake.signal(); // poll returns now, not after its timeout
    };
    const statsTimer = log.enabled(2)
      ? setInterval(() => log.v(2, `Data path counters: ${formatCounters(this.counters())}`), 5000)
      : null;
    try {
      await Promise.race([ready.promise, workerDied.promise]);
      if (failed) throw new Error(failed);
      const own = this.#lease.subnet;
      const port = this.#cfg.port;
      const watch = (async () => {
        let first = true;
        for await (const batch of this.#ctx.subnets.watchLeases(own, signal)) {
          const changes: PeerChange[] = [];
          for (const ev of batch) {
            const { subnet, attrs } = ev.lease;
            if (subnet.equals(own)) continue;
            const op = ev.type === "added" ? "set" : "del";
            // u32 for the Worker's peer table (see WorkerInit).
            const net = subnet.ip.toU32();
            changes.push({ op, net, prefix: subnet.prefix, ip: attrs.publicIP.toU32(), port });
            // The first batch is the whole set (thousands of lines on a big network): -v=1.
            const line = `${ev.type === "added" ? "Route" : "Unroute"} ${subnet}` +
              (ev.type === "added" ? ` via ${attrs.publicIP}:${port}` : "");
            if (first) log.v(1, line);
            else log.info(line);
          }
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
      await Promise.race([aborted, workerDied.promise, watchEnded]);
      if (failed) throw new Error(failed);
    } finally {
      if (statsTimer !== null) clearInterval(statsTimer);
      Atomics.store(ctlView, CTL_STOP, 1);
      wake.signal();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<boolean>((r) => timer = setTimeout(() => r(false), STOP_GRACE_MS));
      const clean = await Promise.race([stopped.promise.then(() => true), grace]);
      clearTimeout(timer);
      worker.terminate();
      wake.fd.close();
      if (!clean) log.warn("Data path Worker did not stop in time: terminated");
      log.info(`Data path stopped: ${formatCounters(this.counters())}`);
      this.#close();
    }
  }

  #close(): void {
    this.#sock?.close();
    this.#tun?.fd.close();
  }
}
