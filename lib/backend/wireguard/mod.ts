/**
 * The wireguard backend: an encrypted overlay that speaks the real WireGuard protocol, in
 * userspace (device.ts, worker.ts), so it works on hosts without the kernel module and with
 * any standard WireGuard peer — upstream flannel's wireguard hosts included.
 *
 * Design note.
 * - Installs: a TUN `flannel-wg` (MTU `MTU`, default external MTU − 80, as upstream), address
 *   `<own subnet base>/32`, up, the route `<Network> dev flannel-wg`; a UDP socket on the external
 *   interface's address, port `ListenPort` (51820); the UAPI socket
 *   `/var/run/wireguard/flannel-wg.sock` (root only, read-only) for `wg show flannel-wg`.
 * - Keys: the private key in `/run/flannel/wgkey` (`WIREGUARD_KEY_FILE`), generated 0600 on
 *   first start and kept. The lease carries `BackendType "wireguard"` and BackendData
 *   `{"PublicKey":"<base64>","Port":<ListenPort>}`, byte for byte as upstream writes it
 *   (`ownLeaseAttrs`, which also writes upstream's `BackendV6Data` `{PublicKey, Port:
 *   ListenPortV6}` with EnableIPv6).
 * - EnableIPv6 in upstream's `separate` mode (the default): a second device `flannel-wg-v6`
 *   with its own UDP socket on the external interface's IPv6 address, port ListenPortV6, the
 *   IPv6 subnet base as a /128, the route `<IPv6Network> dev flannel-wg-v6`, its own UAPI
 *   socket; each lease's IPv6 side (PublicIPv6, BackendV6Data, IPv6 subnet) is a peer of that
 *   device. The same key on both. IPv6-only networks run only that device.
 * - Mode `auto`, `ipv4`, `ipv6` (upstream's single-device modes): only `flannel-wg`, on a
 *   dual-stack socket `[::]:ListenPort`, with both subnet bases and both Networks; a lease is
 *   one peer with both its subnets as allowed IPs, reached at the address modes.ts picks. Our
 *   BackendV6Data then advertises ListenPort (lease_peers.ts `singlePeerFromLease` says why).
 * - Lease added → a peer: its PublicKey, endpoint PublicIP:Port (a lease without `Port`, from
 *   upstream before v0.26.6, means our own ListenPort, as upstream reads it), allowed IPs = its
 *   subnet, the PSK and PersistentKeepaliveInterval of the config. Lease removed → the peer and
 *   its keys are gone. A lease of another backend type is ignored with a warning (upstream).
 * - Data path: only packets that authenticate as a peer and whose inner source is in that
 *   peer's allowed IPs reach the TUN; drops are counted by reason (counters.ts).
 * - Survives a restart: the key file (so peers keep our public key) and the lease. The TUN,
 *   its address and route, the sessions and the UAPI socket go with the process; peers
 *   handshake again on the next packet.
 * - The seam for a kernel implementation is {@link WireguardDevice}: a device that takes
 *   peers and answers `dump()`; `createUserspaceDevice` is the one implementation today (this
 *   kernel has no `wireguard` module to drive or test against).
 */

import {
  type Backend,
  backendConfig,
  type BackendContext,
  type NetlinkHandle,
  type Network,
} from "../mod.ts";
import type { LeaseSnapshot } from "../../subnet/mod.ts";
import type { WireguardBackendConfig } from "../../config.ts";
import type { Lease } from "../../lease.ts";
import type { IP, IPNet } from "../../ip.ts";

export { leasePeerSide, ownLeaseAttrs, peerFromLease } from "./lease_peers.ts";
import { errText, logger } from "../../log.ts";
import type { CounterName } from "./counters.ts";
import type { PeerBatch } from "./protocol.ts";
import { type Family, LeasePeers, ownLeaseAttrs, type SinglePlane } from "./lease_peers.ts";
import type { SingleMode } from "./modes.ts";
import type { DeviceFamily } from "./protocol.ts";
import { keyFilePath, loadOrCreateKey } from "./keyfile.ts";
import { publicKey, toBase64 } from "./keys.ts";
import { socketDir, UapiServer } from "./uapi_server.ts";
import { createUserspaceDevice } from "./userspace.ts";
import { registerWireguardCounters } from "./metrics.ts";

const log = logger("wireguard");

/** The device name (upstream's). */
export const DEVICE_NAME = "flannel-wg";
/** The IPv6 device's name in `separate` mode (upstream's). */
export const DEVICE_NAME_V6 = "flannel-wg-v6";
/** Upstream's MTU overhead: IPv4/IPv6 header room, UDP, WireGuard header and tag. */
export const OVERHEAD = 80;

/** What a device implementation is given. */
export interface DeviceSetup {
  /** The interface name. */
  readonly name: string;
  /** Our private key. */
  readonly privateKey: Uint8Array;
  /** The UDP port to listen on. */
  readonly listenPort: number;
  /**
   * The address to bind: the external interface's, of `family`; null for the single device
   * (`dual`), whose dual-stack socket binds `[::]` as the kernel's WireGuard binds both
   * families' wildcard.
   */
  readonly bindIp: IP | null;
  /**
   * 4; 6 for the IPv6 device (upstream's `flannel-wg-v6` in `separate` mode): an IPv6 socket;
   * `"dual"` for the one device of a single-device mode, carrying both families.
   */
  readonly family: DeviceFamily;
  /** The interface MTU. */
  readonly mtu: number;
  /** The interface addresses: our subnets' bases, an IPv4 one as /32, an IPv6 one as /128. */
  readonly addresses: readonly IP[];
  /** The flannel Networks routed to the interface (Network and/or IPv6Network). */
  readonly networks: readonly IPNet[];
  /** Opens an rtnetlink handle (the daemon's); the caller closes it. */
  readonly netlink: () => NetlinkHandle;
  /**
   * TUN and UDP offloads (TSO, GSO, GRO) where the kernel takes them; false (environment
   * `FLANNEL_WG_OFFLOAD=off`, an escape hatch like the udp backend's `Offload`): one packet per
   * read and per datagram.
   */
  readonly offload: boolean;
}

/**
 * A WireGuard interface that flannel configures: the seam between the backend (leases → peers)
 * and an implementation (userspace today; the kernel module through its generic-netlink API
 * would be a second one).
 */
export interface WireguardDevice {
  /** The interface name. */
  readonly name: string;
  /** Starts moving packets. */
  start(): Promise<void>;
  /** Resolves with a message if the device fails while running. */
  readonly died: Promise<string>;
  /** Adds, updates or removes peers. */
  apply(batch: PeerBatch): void;
  /** The UAPI `get=1` answer. */
  dump(): Promise<string>;
  /** Data-path counters. */
  counters(): Record<CounterName, number>;
  /** Stops and releases everything that does not outlive the process. */
  close(): Promise<void>;
}

/** The lease BackendData, as upstream marshals `wireguardLeaseAttrs`. */
export interface WireguardLeaseData {
  /** The host's public key, base64. */
  readonly PublicKey: string;
  /** The host's ListenPort (absent from upstream before v0.26.6). */
  readonly Port?: number;
}

/** The wireguard network, with its data-path counters for metrics. */
export interface WireguardNetwork extends Network {
  /** The first device's name: `flannel-wg`, or `flannel-wg-v6` on an IPv6-only network. */
  readonly device: string;
  /** Every device's name, IPv4 first. */
  readonly devices: readonly string[];
  /** A snapshot of the data path's counters, summed over the devices. */
  counters(): Record<CounterName, number>;
}

/** A device as init set it up. */
interface FamilyDevice {
  /** 4 or 6 in `separate` mode; the single device's {@link SinglePlane}. */
  readonly plane: Family | SinglePlane;
  readonly dev: WireguardDevice;
  /** Our subnet of this family (the single device: the lease's name, IPv4 unless IPv6-only). */
  readonly own: IPNet;
  /** ListenPort resp. ListenPortV6. */
  readonly port: number;
}

/** The wireguard backend: its network carries the data path's counters. */
export interface WireguardBackend extends Backend {
  init(signal: AbortSignal): Promise<WireguardNetwork>;
}

/**
 * Creates the wireguard backend (registered as `"wireguard"`). `makeDevice` is the seam for
 * another {@link WireguardDevice} implementation (tests; the kernel module one day).
 */
export function create(
  ctx: BackendContext,
  makeDevice: (s: DeviceSetup) => WireguardDevice = createUserspaceDevice,
): WireguardBackend {
  const cfg = backendConfig(ctx, "wireguard");
  return { init: (signal) => init(ctx, cfg, makeDevice, signal) };
}

async function init(
  ctx: BackendContext,
  cfg: WireguardBackendConfig,
  makeDevice: (s: DeviceSetup) => WireguardDevice,
  signal: AbortSignal,
): Promise<WireguardNetwork> {
  const { ext, subnets } = ctx;
  // Upstream's `separate` mode: one device per enabled family, each on its own port.
  const families: { family: Family; bindIp: IP; publicIP: IP; network: IPNet }[] = [];
  if (ctx.config.ipv4) {
    if (!ext.publicIP || !ext.ifaceAddr) {
      throw new Error("The external interface has no IPv4 address");
    }
    families.push({
      family: 4,
      bindIp: ext.ifaceAddr,
      publicIP: ext.publicIP,
      network: ctx.config.ipv4.network,
    });
  }
  if (ctx.config.ipv6) {
    if (!ext.publicIPv6 || !ext.ifaceV6Addr) {
      throw new Error("The external interface has no IPv6 address");
    }
    families.push({
      family: 6,
      bindIp: ext.ifaceV6Addr,
      publicIP: ext.publicIPv6,
      network: ctx.config.ipv6.network,
    });
  }
  if (families.length === 0) throw new Error("Neither EnableIPv4 nor EnableIPv6 is set");
  // A single-device mode carries both families; on an IPv4-only network it is the IPv4 device
  // (one family, IPv4 endpoints), on an IPv4 socket, so a host without IPv6 runs it too.
  const single = cfg.mode !== "separate" && ctx.config.ipv6 !== null;
  const keyFile = keyFilePath((n) => ctx.env[n]);
  const { key, created, warning } = await loadOrCreateKey(keyFile);
  if (warning !== undefined) log.warn(warning);
  const pub = toBase64(publicKey(key));
  log.info(`${created ? "Generated" : "Loaded"} the private key in ${keyFile}; public key ${pub}`);
  const attrs = ownLeaseAttrs({
    publicKey: pub,
    publicIP: families.find((f) => f.family === 4)?.publicIP ?? null,
    publicIPv6: families.find((f) => f.family === 6)?.publicIP ?? null,
    port: cfg.listenPort,
    portV6: single ? cfg.listenPort : cfg.listenPortV6,
  });
  const { lease, peers } = await subnets.acquireLease(attrs, signal);
  const mtu = cfg.mtu ?? ext.mtu - OVERHEAD;
  const offload = ctx.env["FLANNEL_WG_OFFLOAD"] !== "off";
  if (!offload) log.info("FLANNEL_WG_OFFLOAD=off: no TUN or UDP offloads");
  const devs: FamilyDevice[] = [];
  try {
    if (single) {
      const mode = cfg.mode as SingleMode;
      const own = lease.subnet ?? lease.ipv6Subnet!;
      const subnets = [lease.subnet, lease.ipv6Subnet].filter((n) => n !== null);
      const dev = makeDevice({
        name: DEVICE_NAME,
        privateKey: key,
        listenPort: cfg.listenPort,
        bindIp: null,
        family: "dual",
        mtu,
        addresses: subnets.map((n) => n.ip),
        networks: families.map((f) => f.network),
        netlink: ctx.netlink,
        offload,
      });
      const ours = {
        publicIP: families.find((f) => f.family === 4)?.publicIP ?? ext.publicIP,
        publicIPv6: families.find((f) => f.family === 6)?.publicIP ?? ext.publicIPv6,
      };
      devs.push({ plane: { mode, ours }, dev, own, port: cfg.listenPort });
      log.info(
        `Device ${DEVICE_NAME} up (Mode ${mode}): ${
          subnets.map((n) => `${n.ip}/${n.ip.bits}`).join(" ")
        }, mtu ${mtu}, routes ${
          families.map((f) => f.network).join(" ")
        }; UDP [::]:${cfg.listenPort} (both families)`,
      );
    }
    for (const f of single ? [] : families) {
      const own = f.family === 4 ? lease.subnet : lease.ipv6Subnet;
      if (!own) throw new Error(`The lease has no IPv${f.family} subnet`);
      const name = f.family === 4 ? DEVICE_NAME : DEVICE_NAME_V6;
      const port = f.family === 4 ? cfg.listenPort : cfg.listenPortV6;
      const dev = makeDevice({
        name,
        privateKey: key,
        listenPort: port,
        bindIp: f.bindIp,
        family: f.family,
        mtu,
        addresses: [own.ip],
        networks: [f.network],
        netlink: ctx.netlink,
        offload,
      });
      devs.push({ plane: f.family, dev, own, port });
      const udp = f.family === 4 ? `${f.bindIp}:${port}` : `[${f.bindIp}]:${port}`;
      log.info(
        `Device ${name} up: ${own.ip}/${own.ip.bits}, mtu ${mtu}, route ${f.network}; UDP ${udp}`,
      );
    }
  } catch (err) {
    for (const d of devs) await d.dev.close();
    throw err;
  }
  const socketDirectory = socketDir((n) => ctx.env[n]);
  const counters = () => sumCounters(devs.map((d) => d.dev.counters()));
  return {
    lease,
    mtu,
    device: devs[0].dev.name,
    devices: devs.map((d) => d.dev.name),
    counters,
    registerMetrics: (m) => registerWireguardCounters(m, counters),
    run: (s) => run(subnets, cfg, devs, lease, peers, socketDirectory, s),
  };
}

function sumCounters(all: Record<CounterName, number>[]): Record<CounterName, number> {
  const sum = { ...all[0] };
  for (const c of all.slice(1)) {
    for (const k of Object.keys(c) as CounterName[]) sum[k] = (sum[k] ?? 0) + c[k];
  }
  return sum;
}

/**
 * Runs the data paths and their UAPI sockets, and follows leases (each family's side to its
 * device) until `signal` aborts or a device or the watch fails.
 */
async function run(
  subnets: BackendContext["subnets"],
  cfg: WireguardBackendConfig,
  devs: readonly FamilyDevice[],
  lease: Lease,
  snapshot: LeaseSnapshot,
  socketDirectory: string,
  signal: AbortSignal,
): Promise<void> {
  const uapis: UapiServer[] = [];
  let failed: string | null = null;
  try {
    for (const { dev } of devs) {
      await dev.start();
      try {
        uapis.push(await UapiServer.start(socketDirectory, dev.name, () => dev.dump()));
      } catch (err) {
        log.warn(`wg show ${dev.name} will not work: ${errText(err)}`);
      }
    }
    const sides = devs.map((d) => ({
      dev: d.dev,
      peers: new LeasePeers(d.own, {
        port: d.port,
        psk: cfg.psk,
        keepalive: cfg.persistentKeepaliveInterval,
      }, d.plane),
    }));
    const watch = (async () => {
      let first = true;
      for await (const batch of subnets.watchLeases(lease, snapshot, signal)) {
        for (const { dev, peers } of sides) {
          const r = peers.apply(batch);
          for (const w of r.warnings) log.warn(w);
          // The first batch is the whole set (thousands of lines on a big network): -v=1.
          for (const line of r.lines) {
            if (first) log.v(1, line);
            else log.info(line);
          }
          if (first) {
            log.info(
              peers.family === 6
                ? `Following ${peers.size} IPv6 peer leases on ${dev.name}`
                : `Following ${peers.size} peer leases`,
            );
          }
          if (r.changes.length > 0) dev.apply({ op: "peers", changes: r.changes });
        }
        first = false;
      }
    })();
    const aborted = new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener("abort", () => resolve(), { once: true });
    });
    // The watch retries by itself and ends only with the signal: anything else would leave the
    // device with stale peers for good, so it ends run() (the daemon exits 1).
    const watchEnded = watch.then(
      () => {
        if (!signal.aborted) failed ??= "Lease watch ended";
      },
      (err) => {
        if (!signal.aborted) failed ??= `Lease watch failed: ${errText(err)}`;
      },
    );
    const died = Promise.race(devs.map((d) => d.dev.died)).then((m) => {
      failed ??= m;
    });
    await Promise.race([aborted, watchEnded, died]);
    if (failed) throw new Error(failed);
  } finally {
    for (const u of uapis) await u[Symbol.asyncDispose]();
    for (const { dev } of devs) {
      await dev.close();
      const c = dev.counters();
      const parts = Object.entries(c).filter(([, v]) => v !== 0).map(([k, v]) => `${k}=${v}`);
      // The IPv4 device's line keeps its historical form (tests and scripts read it).
      const what = dev.name === DEVICE_NAME ? "Data path" : `Data path ${dev.name}`;
      log.info(`${what} stopped: ${parts.length ? parts.join(" ") : "all zero"}`);
    }
  }
}
