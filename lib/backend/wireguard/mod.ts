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
 *   ListenPortV6}` for an IPv6 side — not used until the data path carries IPv6).
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
  ipv4Only,
  type NetlinkHandle,
  type Network,
  ownIPv4,
} from "../mod.ts";
import type { LeaseSnapshot } from "../../subnet/mod.ts";
import type { WireguardBackendConfig } from "../../config.ts";
import type { Lease } from "../../lease.ts";
import type { IP, IPNet } from "../../ip.ts";

export { leasePeerSide, ownLeaseAttrs, peerFromLease } from "./lease_peers.ts";
import { errText, logger } from "../../log.ts";
import type { CounterName } from "./counters.ts";
import type { PeerBatch } from "./protocol.ts";
import { LeasePeers, ownLeaseAttrs } from "./lease_peers.ts";
import { keyFilePath, loadOrCreateKey } from "./keyfile.ts";
import { publicKey, toBase64 } from "./keys.ts";
import { socketDir, UapiServer } from "./uapi_server.ts";
import { createUserspaceDevice } from "./userspace.ts";

const log = logger("wireguard");

/** The device name (upstream's). */
export const DEVICE_NAME = "flannel-wg";
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
  /** The address to bind (the external interface's). */
  readonly bindIp: IP;
  /** The interface MTU. */
  readonly mtu: number;
  /** The interface address (our subnet's base, as a /32). */
  readonly address: IP;
  /** The flannel Network, routed to the interface. */
  readonly network: IPNet;
  /** Opens an rtnetlink handle (the daemon's); the caller closes it. */
  readonly netlink: () => NetlinkHandle;
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
  /** The device name, `flannel-wg`. */
  readonly device: string;
  /** A snapshot of the data path's counters. */
  counters(): Record<CounterName, number>;
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
  const v4 = ipv4Only(ctx, "wireguard");
  const keyFile = keyFilePath((n) => ctx.env[n]);
  const { key, created, warning } = await loadOrCreateKey(keyFile);
  if (warning !== undefined) log.warn(warning);
  const pub = toBase64(publicKey(key));
  log.info(`${created ? "Generated" : "Loaded"} the private key in ${keyFile}; public key ${pub}`);
  const attrs = ownLeaseAttrs({
    publicKey: pub,
    publicIP: v4.publicIP,
    publicIPv6: null,
    port: cfg.listenPort,
    portV6: cfg.listenPortV6,
  });
  const { lease, peers } = await subnets.acquireLease(attrs, signal);
  const own = ownIPv4(lease);
  const network = v4.range.network;
  const mtu = cfg.mtu ?? ext.mtu - OVERHEAD;
  const dev = makeDevice({
    name: DEVICE_NAME,
    privateKey: key,
    listenPort: cfg.listenPort,
    bindIp: v4.ifaceAddr,
    mtu,
    address: own.ip,
    network,
    netlink: ctx.netlink,
  });
  log.info(
    `Device ${DEVICE_NAME} up: ${own.ip}/32, mtu ${mtu}, route ${network}; ` +
      `UDP ${v4.ifaceAddr}:${cfg.listenPort}`,
  );
  const socketDirectory = socketDir((n) => ctx.env[n]);
  return {
    lease,
    mtu,
    device: dev.name,
    counters: () => dev.counters(),
    run: (s) => run(subnets, cfg, dev, lease, own, peers, socketDirectory, s),
  };
}

/** Runs the data path and the UAPI socket, and follows leases until `signal` aborts. */
async function run(
  subnets: BackendContext["subnets"],
  cfg: WireguardBackendConfig,
  dev: WireguardDevice,
  lease: Lease,
  own: IPNet,
  snapshot: LeaseSnapshot,
  socketDirectory: string,
  signal: AbortSignal,
): Promise<void> {
  let uapi: UapiServer | null = null;
  let failed: string | null = null;
  try {
    await dev.start();
    try {
      uapi = await UapiServer.start(socketDirectory, dev.name, () => dev.dump());
    } catch (err) {
      log.warn(`wg show will not work: ${errText(err)}`);
    }
    const peers = new LeasePeers(own, {
      port: cfg.listenPort,
      psk: cfg.psk,
      keepalive: cfg.persistentKeepaliveInterval,
    });
    const watch = (async () => {
      let first = true;
      for await (const batch of subnets.watchLeases(lease, snapshot, signal)) {
        const r = peers.apply(batch);
        for (const w of r.warnings) log.warn(w);
        // The first batch is the whole set (thousands of lines on a big network): -v=1.
        for (const line of r.lines) {
          if (first) log.v(1, line);
          else log.info(line);
        }
        if (first) log.info(`Following ${peers.size} peer leases`);
        first = false;
        if (r.changes.length > 0) dev.apply({ op: "peers", changes: r.changes });
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
    const died = dev.died.then((m) => {
      failed ??= m;
    });
    await Promise.race([aborted, watchEnded, died]);
    if (failed) throw new Error(failed);
  } finally {
    if (uapi !== null) await uapi[Symbol.asyncDispose]();
    await dev.close();
    const c = dev.counters();
    const parts = Object.entries(c).filter(([, v]) => v !== 0).map(([k, v]) => `${k}=${v}`);
    log.info(`Data path stopped: ${parts.length ? parts.join(" ") : "all zero"}`);
  }
}
