/**
 * The userspace WireGuard device: a TUN named `flannel-wg`, a UDP socket on ListenPort, and the
 * data-path Worker (worker.ts) that runs the protocol (device.ts). The {@link WireguardDevice}
 * implementation for hosts without the kernel module — which is every host here.
 *
 * The IPv6 device (`family` 6, `flannel-wg-v6`): an `AF_INET6` socket bound to the external
 * interface's IPv6 address on ListenPortV6, the subnet base as a /128, the IPv6Network routed
 * to it; its TUN has the IPv6 offloads (TSO6: TCP/IPv6 super-packets, segment6.ts).
 *
 * The single device of Mode auto/ipv4/ipv6 (`family` "dual", `flannel-wg`): one dual-stack
 * `AF_INET6` socket on `[::]:ListenPort` (IPv4 peers as v4-mapped addresses), both subnet bases
 * (/32 and /128), both Networks routed to it; its TUN has the offloads of both families.
 *
 * Every device falls back, with a warning, to fewer offloads when the kernel refuses some (the
 * single device to IPv4's only, IPv6 packets then coming one per read), and to a TUN without a
 * vnet header (one packet per read) when it refuses them all.
 */

import { logger } from "../../log.ts";
import { setTxQueueLen, type Tun } from "../../../ffi/tun.ts";
import { bind, bind6, setBufferSizes, udpSocket } from "../../../ffi/udp.ts";
import type { Fd } from "../../../ffi/fd.ts";
import { writeSysctl } from "../../../ffi/sysctl.ts";
import { type CounterName, newCounterMemory, readCounters } from "./counters.ts";
import type { DumpRequest, PeerBatch, WorkerInit, WorkerReport } from "./protocol.ts";
import {
  type OffloadTry,
  openOffloadTun,
  probeUdpOffloads,
  TSO4,
  TSO46,
  TSO6,
} from "../datapath/offload.ts";
import { DataPathWorker } from "../datapath/host.ts";
import type { DeviceSetup, WireguardDevice } from "./mod.ts";
import type { NetlinkHandle } from "../mod.ts";

const log = logger("wireguard");
const SOCKET_BUFFER = 4 << 20;
const TXQUEUELEN = 1000;

/** Opens the TUN and the socket and configures the device; the Worker starts with `start()`. */
export function createUserspaceDevice(setup: DeviceSetup): WireguardDevice {
  const v6 = setup.family === 6;
  const dual = setup.family === "dual";
  const { tun, vnetHdr } = openOffloadTun(
    setup.name,
    setup.offload ? OFFLOADS[setup.family] : [],
    log,
  );
  let sock: Fd | null = null;
  try {
    configureLink(tun, setup);
    sock = udpSocket({ ipv6: v6 || dual, dualStack: dual });
    const where = setup.bindIp;
    if (where === null) bind6(sock, new Uint8Array(16), setup.listenPort); // [::], both families
    else if (v6) bind6(sock, where.bytes, setup.listenPort);
    else bind(sock, where.toU32(), setup.listenPort); // ffi/udp.ts: IPv4 as host-order u32
    setBufferSizes(sock, SOCKET_BUFFER);
  } catch (err) {
    sock?.close();
    tun.fd.close();
    throw err;
  }
  const { udpGso, udpGro } = probeUdpOffloads(sock, vnetHdr, log);
  return new UserspaceDevice(tun, { vnetHdr, gso: udpGso, gro: udpGro }, sock, setup);
}

/**
 * The `TUNSETOFFLOAD` sets each device family tries, best first: TSO for the families it
 * carries (with checksum offload and ECN), the single device then IPv4's alone.
 */
const OFFLOADS: Record<DeviceSetup["family"], OffloadTry[]> = {
  4: [TSO4],
  6: [TSO6],
  dual: [TSO46, TSO4],
};

function configureLink(tun: Tun, setup: DeviceSetup): void {
  const nl = setup.netlink();
  try {
    configureWith(nl, tun, setup);
  } finally {
    nl.close();
  }
}

function configureWith(nl: NetlinkHandle, tun: Tun, setup: DeviceSetup): void {
  const link = nl.linkGet(tun.name);
  if (link === null) throw new Error(`TUN device ${tun.name} vanished after TUNSETIFF`);
  nl.linkSetMtu(link.index, setup.mtu);
  setTxQueueLen(tun.name, TXQUEUELEN);
  const have = nl.addrList(link.index);
  for (const addr of setup.addresses) {
    const prefix = addr.bits;
    if (!have.some((a) => a.address.equals(addr) && a.prefix === prefix)) {
      nl.addrAdd(link.index, addr, prefix);
    }
  }
  if (setup.family === 4) {
    // The IPv4 device carries no IPv6 (no link-local address, no router solicitations).
    try {
      writeSysctl(`/proc/sys/net/ipv6/conf/${tun.name}/disable_ipv6`, "1");
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  nl.linkSetUp(link.index);
  for (const dst of setup.networks) nl.routeReplace({ dst, oif: link.index, scope: 0 });
}

class UserspaceDevice implements WireguardDevice {
  readonly name: string;
  readonly #tun: Tun;
  readonly #sock: Fd;
  readonly #setup: DeviceSetup;
  readonly #counterMem = newCounterMemory();
  #worker: DataPathWorker<WorkerInit, PeerBatch | DumpRequest, WorkerReport> | null = null;
  readonly #died = Promise.withResolvers<string>();
  readonly #dumps = new Map<number, (text: string) => void>();
  #nextDump = 1;

  readonly #offloads: { vnetHdr: boolean; gso: boolean; gro: boolean };

  constructor(
    tun: Tun,
    offloads: { vnetHdr: boolean; gso: boolean; gro: boolean },
    sock: Fd,
    setup: DeviceSetup,
  ) {
    this.name = tun.name;
    this.#tun = tun;
    this.#offloads = offloads;
    this.#sock = sock;
    this.#setup = setup;
  }

  async start(): Promise<void> {
    const worker = new DataPathWorker<WorkerInit, PeerBatch | DumpRequest, WorkerReport>(
      new URL("./worker.ts", import.meta.url),
      {
        tunFd: this.#tun.fd.fd,
        udpFd: this.#sock.fd,
        vnetHdr: this.#offloads.vnetHdr,
        udpGso: this.#offloads.gso,
        udpGro: this.#offloads.gro,
        mtu: this.#setup.mtu,
        privateKey: this.#setup.privateKey,
        listenPort: this.#setup.listenPort,
        family: this.#setup.family,
        counters: this.#counterMem,
      },
      log,
      (r) => {
        if (r.type !== "dump") return;
        this.#dumps.get(r.id)?.(r.text);
        this.#dumps.delete(r.id);
      },
    );
    this.#worker = worker;
    worker.died.then((m) => this.#died.resolve(m));
    await worker.ready();
  }

  /** Resolves with the failure message when the data path dies. */
  get died(): Promise<string> {
    return this.#died.promise;
  }

  #post(m: PeerBatch | DumpRequest): void {
    if (this.#worker === null) throw new Error("The WireGuard data path is not running");
    this.#worker.post(m);
  }

  apply(batch: PeerBatch): void {
    this.#post(batch);
  }

  dump(): Promise<string> {
    const id = this.#nextDump++;
    const p = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#dumps.delete(id);
        reject(new Error("The data path did not answer in 2 s"));
      }, 2000);
      this.#dumps.set(id, (t) => {
        clearTimeout(timer);
        resolve(t);
      });
    });
    this.#post({ op: "dump", id });
    return p;
  }

  counters(): Record<CounterName, number> {
    return readCounters(this.#counterMem);
  }

  async close(): Promise<void> {
    await this.#worker?.stop();
    this.#worker = null;
    for (const resolve of this.#dumps.values()) resolve("errno=5\n\n");
    this.#dumps.clear();
    this.#sock.close();
    this.#tun.fd.close();
  }
}
