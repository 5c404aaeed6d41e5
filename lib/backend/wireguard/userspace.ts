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

import { errText, logger } from "../../log.ts";
import {
  openTun,
  setTxQueueLen,
  type Tun,
  TUN_F_CSUM,
  TUN_F_TSO4,
  TUN_F_TSO6,
  TUN_F_TSO_ECN,
  tunSetOffload,
} from "../../../ffi/tun.ts";
import {
  bind,
  bind6,
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
import { type CounterName, newCounterMemory, readCounters } from "./counters.ts";
import {
  CTL_PENDING,
  CTL_STOP,
  CTL_WORDS,
  type DumpRequest,
  type PeerBatch,
  type WorkerInit,
  type WorkerReport,
} from "./protocol.ts";
import type { DeviceSetup, WireguardDevice } from "./mod.ts";
import type { NetlinkHandle } from "../mod.ts";

const log = logger("wireguard");
const SOCKET_BUFFER = 4 << 20;
const TXQUEUELEN = 1000;
const STOP_GRACE_MS = 800;

/** Opens the TUN and the socket and configures the device; the Worker starts with `start()`. */
export function createUserspaceDevice(setup: DeviceSetup): WireguardDevice {
  const v6 = setup.family === 6;
  const dual = setup.family === "dual";
  const { tun, vnetHdr } = openOffloadTun(setup.name, OFFLOADS[setup.family]);
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
  const gso = vnetHdr && probe(sock, UDP_SEGMENT, 0, "UDP GSO");
  const gro = vnetHdr && probe(sock, UDP_GRO, 1, "UDP GRO");
  return new UserspaceDevice(tun, { vnetHdr, gso, gro }, sock, setup);
}

/** Sets a UDP socket option; false (with a warning) when the kernel refuses it. */
function probe(sock: Fd, opt: number, value: number, what: string): boolean {
  try {
    // UDP_SEGMENT 0 sets no default segment size but proves the kernel knows the option.
    setsockoptInt(sock, SOL_UDP, opt, value);
    return true;
  } catch (err) {
    log.warn(`${what} refused, continuing without: ${errText(err)}`);
    return false;
  }
}

const TSO4 = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN;
const TSO6 = TUN_F_CSUM | TUN_F_TSO6 | TUN_F_TSO_ECN;

/**
 * The `TUNSETOFFLOAD` sets each device family tries, best first: TSO for the families it
 * carries (with checksum offload and ECN), the single device then IPv4's alone.
 */
const OFFLOADS: Record<DeviceSetup["family"], { bits: number; what: string }[]> = {
  4: [{ bits: TSO4, what: "TSO4" }],
  6: [{ bits: TSO6, what: "TSO6" }],
  dual: [{ bits: TSO4 | TSO6, what: "TSO4 and TSO6" }, { bits: TSO4, what: "TSO4" }],
};

/**
 * The TUN with TSO and checksum offloads when the kernel accepts them: the kernel then hands us
 * TCP super-packets of up to 64 KiB (cut into MTU-sized packets before sealing, one TUN read
 * instead of ~45). The first of `tries` the kernel takes; a refusal is a warning. Without any,
 * a TUN without a vnet header: one packet per read.
 */
function openOffloadTun(
  name: string,
  tries: { bits: number; what: string }[],
): { tun: Tun; vnetHdr: boolean } {
  const tun = openTun({ name, vnetHdr: true });
  for (const t of tries) {
    try {
      tunSetOffload(tun.fd, t.bits);
      return { tun, vnetHdr: true };
    } catch (err) {
      log.warn(`TUN offloads (${t.what}) refused: ${errText(err)}`);
    }
  }
  log.warn("No TUN offloads: continuing with one packet per read");
  tun.fd.close();
  return { tun: openTun({ name }), vnetHdr: false };
}

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
  readonly #ctl = new SharedArrayBuffer(CTL_WORDS * 4);
  readonly #ctlView = new Int32Array(this.#ctl);
  #wake: Wakeup | null = null;
  #worker: Worker | null = null;
  #failed: string | null = null;
  readonly #died = Promise.withResolvers<string>();
  readonly #stopped = Promise.withResolvers<void>();
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
    const wake = new Wakeup();
    this.#wake = wake;
    const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
    this.#worker = worker;
    const ready = Promise.withResolvers<void>();
    worker.onmessage = (ev: MessageEvent<WorkerReport>) => {
      const r = ev.data;
      if (r.type === "ready") ready.resolve();
      else if (r.type === "stopped") this.#stopped.resolve();
      else if (r.type === "dump") {
        this.#dumps.get(r.id)?.(r.text);
        this.#dumps.delete(r.id);
      } else if (r.type === "warn") log.warn(r.message);
      else this.#fail(`Data path failed: ${r.message}`);
    };
    worker.onerror = (ev) => {
      ev.preventDefault();
      this.#fail(`Data path Worker failed: ${ev.message}`);
    };
    const init: WorkerInit = {
      op: "init",
      tunFd: this.#tun.fd.fd,
      udpFd: this.#sock.fd,
      wakeFd: wake.fd.fd,
      vnetHdr: this.#offloads.vnetHdr,
      udpGso: this.#offloads.gso,
      udpGro: this.#offloads.gro,
      mtu: this.#setup.mtu,
      privateKey: this.#setup.privateKey,
      listenPort: this.#setup.listenPort,
      family: this.#setup.family,
      ctl: this.#ctl,
      counters: this.#counterMem,
    };
    worker.postMessage(init);
    const failed = this.#died.promise.then((m) => Promise.reject(new Error(m)));
    await Promise.race([ready.promise, failed]);
  }

  #fail(message: string): void {
    this.#failed ??= message;
    this.#died.resolve(message);
  }

  /** Resolves with the failure message when the data path dies. */
  get died(): Promise<string> {
    return this.#died.promise;
  }

  #post(m: PeerBatch | DumpRequest): void {
    if (this.#worker === null) throw new Error("The WireGuard data path is not running");
    this.#worker.postMessage(m);
    Atomics.add(this.#ctlView, CTL_PENDING, 1);
    this.#wake!.signal();
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
    if (this.#worker !== null) {
      Atomics.store(this.#ctlView, CTL_STOP, 1);
      this.#wake!.signal();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<boolean>((r) => timer = setTimeout(() => r(false), STOP_GRACE_MS));
      const clean = await Promise.race([this.#stopped.promise.then(() => true), grace]);
      clearTimeout(timer);
      this.#worker.terminate();
      this.#worker = null;
      if (!clean) log.warn("Data path Worker did not stop in time: terminated");
      this.#wake!.fd.close();
    }
    for (const resolve of this.#dumps.values()) resolve("errno=5\n\n");
    this.#dumps.clear();
    this.#sock.close();
    this.#tun.fd.close();
  }
}
