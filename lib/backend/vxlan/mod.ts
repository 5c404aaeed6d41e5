/**
 * The vxlan backend: the kernel's VXLAN device carries the traffic, this process only programs it.
 *
 * Installs: the device `flannel.<VNI>` (vxlan id VNI, local = external interface address, lower
 * device = external interface, dstport `Port`, learning off unless `Learning`, no group, MTU =
 * `MTU` or external MTU − 50) holding `<own subnet base>/32`, up. Lease attrs: BackendType
 * "vxlan", BackendData `{"VNI":…,"VtepMAC":…}` (the device MAC).
 *
 * Lease added or changed: permanent FDB `VtepMAC → dst PublicIP`, permanent ARP `<peer base> →
 * VtepMAC`, route `<peer subnet> via <peer base> dev flannel.<VNI> onlink` (all replace); with
 * DirectRouting a peer on a directly connected subnet gets `<subnet> via <PublicIP> dev <ext>`
 * instead. A peer of another backend type or VNI: one warning, skipped. Removed: route, ARP and
 * FDB entries are deleted.
 *
 * Restart: nothing is removed on exit. On start a compatible device is reused as it is (same MAC,
 * address left alone when right) and the first lease batch reconciles: entries of peers that are
 * gone are removed, right ones are not touched, so traffic does not blink. While running, a
 * deleted device is recreated with the same MAC and reprogrammed, and a deleted peer route or ARP
 * entry is restored (netlink subscription), and the entries are reconciled when the external
 * interface comes back up (the kernel drops routes through it silently when it goes down).
 */

import { Netlink, type NetlinkEvent, subscribe } from "../../../ffi/netlink/mod.ts";
import type { VxlanBackendConfig } from "../../config.ts";
import type { IP } from "../../ip.ts";
import type { Lease } from "../../lease.ts";
import { errText, logger } from "../../log.ts";
import { sleep } from "../../async.ts";
import type { Backend, BackendContext, BackendReady } from "../mod.ts";
import { type DeviceOps, type DeviceSpec, ensureAddress, ensureDevice } from "./device.ts";
import { planVxlanPeer, vxlanLeaseData } from "./peers.ts";
import { followLeases, isDirect, type KernelOps, PeerTable, type Scope } from "../peersync.ts";

const log = logger("vxlan");

/** The netlink verbs the vxlan backend uses. */
export type VxlanKernelOps = KernelOps & DeviceOps & Pick<Netlink, "routeGet" | "close">;

/** Test seams: a netlink handle and an event source instead of the real ones. */
export interface VxlanDeps {
  readonly netlink?: () => VxlanKernelOps;
  readonly subscribe?: (signal: AbortSignal) => AsyncIterable<NetlinkEvent>;
}

/** The vxlan device name for a VNI. */
export function deviceName(vni: number): string {
  return `flannel.${vni}`;
}

/** Creates the vxlan backend for `ctx` (config.backend must be vxlan). */
export function create(ctx: BackendContext, deps: VxlanDeps = {}): Backend {
  return new VxlanBackend(ctx, deps);
}

class VxlanBackend implements Backend {
  readonly #cfg: VxlanBackendConfig;
  #nl: VxlanKernelOps | null = null;
  #spec: DeviceSpec;
  #devIndex = 0;
  #mac = "";
  #lease: Lease | null = null;
  #table: PeerTable | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #extUp = true;

  constructor(private readonly ctx: BackendContext, private readonly deps: VxlanDeps) {
    if (ctx.config.backend.type !== "vxlan") {
      throw new Error(`Backend type ${ctx.config.backend.type} given to the vxlan backend`);
    }
    this.#cfg = ctx.config.backend;
    this.#spec = {
      name: deviceName(this.#cfg.vni),
      vni: this.#cfg.vni,
      local: ctx.ext.ifaceAddr,
      lowerIndex: ctx.ext.index,
      port: this.#cfg.port,
      learning: this.#cfg.learning,
      gbp: this.#cfg.gbp,
      mtu: this.#cfg.mtu ?? ctx.ext.mtu - 50,
    };
  }

  async init(signal: AbortSignal): Promise<BackendReady> {
    const nl = this.#nl ??= (this.deps.netlink ?? Netlink.open)();
    try {
      return await this.#init(nl, signal);
    } catch (err) {
      nl.close();
      this.#nl = null;
      throw err;
    }
  }

  async #init(nl: VxlanKernelOps, signal: AbortSignal): Promise<BackendReady> {
    const dev = await this.#retry(signal, () => ensureDevice(nl, this.#spec, log));
    if (!dev.mac) throw new Error(`Device ${this.#spec.name} has no MAC address`);
    this.#devIndex = dev.index;
    this.#mac = dev.mac;
    const lease = await this.ctx.subnets.acquireLease({
      publicIP: this.ctx.ext.publicIP,
      backendType: "vxlan",
      backendData: vxlanLeaseData(this.#cfg.vni, dev.mac),
    }, signal);
    this.#lease = lease;
    ensureAddress(nl, dev.index, lease.subnet.ip, 32, log);
    const mtu = nl.linkGet(dev.index)?.mtu ?? dev.mtu;
    this.#table = new PeerTable(nl, this.#scope(), this.#decider(), log);
    return { lease, mtu };
  }

  async run(signal: AbortSignal): Promise<void> {
    const nl = this.#nl, table = this.#table, lease = this.#lease;
    if (!nl || !table || !lease) throw new Error("The vxlan backend ran before init");
    // The repair loop ends with the watch, also when the watch fails.
    const stop = new AbortController();
    const healing = this.#heal(table, AbortSignal.any([signal, stop.signal]));
    try {
      await followLeases(table, this.ctx.subnets, lease.subnet, signal, log);
    } finally {
      stop.abort();
      await healing;
      clearTimeout(this.#retryTimer);
      nl.close();
      this.#nl = null;
    }
  }

  /** Self-healing: device deleted → recreate and reprogram; peer route/ARP deleted → restore. */
  async #heal(table: PeerTable, signal: AbortSignal): Promise<void> {
    const source = this.deps.subscribe ??
      ((s: AbortSignal) => subscribe(["link", "route", "neigh"], s));
    try {
      for await (const ev of source(signal)) {
        if (signal.aborted) break;
        try {
          this.#onEvent(table, ev, signal);
        } catch (err) {
          log.error(`Cannot repair after a ${ev.kind} event: ${errText(err)}`);
        }
      }
    } catch (err) {
      if (!signal.aborted) log.warn(`Self-healing stopped: ${errText(err)}`);
    }
  }

  #onEvent(table: PeerTable, ev: NetlinkEvent, signal: AbortSignal): void {
    const nl = this.#nl;
    if (!nl) return;
    switch (ev.kind) {
      case "link":
        if (ev.link.index === this.ctx.ext.index) {
          // Setting the external interface down drops the DirectRouting routes through it
          // without RTM_DELROUTE: reconcile when it is up again.
          const wasUp = this.#extUp;
          this.#extUp = ev.type === "new" && ev.link.up;
          if (this.#extUp && !wasUp) {
            log.info(`${this.ctx.ext.name} is up again: reconciling peer entries`);
            table.resync();
          }
          return;
        }
        if (ev.link.index !== this.#devIndex) return;
        if (ev.type === "del") {
          log.warn(`Device ${this.#spec.name} was deleted: recreating it`);
          this.#recreate(table, signal);
        } else if (!ev.link.up && nl.linkGet(this.#devIndex)?.up === false) {
          // Deletion also announces the link going down first: act only if it is still there.
          log.warn(`Device ${this.#spec.name} was set down: setting it up`);
          nl.linkSetUp(this.#devIndex);
          table.resync();
        }
        return;
      case "route":
        if (ev.type === "del" && this.#devAlive() && table.restoreRoute(ev.route)) {
          log.warn(`Route ${ev.route.dst} was deleted: restored it`);
        }
        return;
      case "neigh":
        if (
          ev.type === "del" && ev.neigh.index === this.#devIndex && this.#devAlive() &&
          table.restoreNeigh(ev.neigh)
        ) {
          log.warn(`ARP entry ${ev.neigh.ip} was deleted: restored it`);
        }
        return;
      case "resync": {
        // The lost notifications may include the device's own: deleting a device with a few
        // thousand peers floods the socket with RTM_DELNEIGH, and its RTM_DELLINK comes last.
        const dev = nl.linkGet(this.#devIndex);
        if (dev === null) {
          log.warn(`Device ${this.#spec.name} is gone (notifications were lost): recreating it`);
          this.#recreate(table, signal);
          return;
        }
        if (!dev.up) {
          log.warn(`Device ${this.#spec.name} is down (notifications were lost): setting it up`);
          nl.linkSetUp(this.#devIndex);
        }
        table.resync();
        return;
      }
    }
  }

  /** False while the device is gone (its entries vanish with it; the link event recreates it). */
  #devAlive(): boolean {
    return this.#nl?.linkGet(this.#devIndex) != null;
  }

  #recreate(table: PeerTable, signal: AbortSignal): void {
    const nl = this.#nl, lease = this.#lease;
    if (!nl || !lease) return;
    try {
      const dev = ensureDevice(nl, this.#spec, log, this.#mac);
      this.#devIndex = dev.index;
      ensureAddress(nl, dev.index, lease.subnet.ip, 32, log);
      const changes = table.rescope(this.#scope(), this.#decider());
      log.info(`Recreated ${this.#spec.name} (VtepMAC ${dev.mac}): ${changes} kernel changes`);
    } catch (err) {
      log.error(`Cannot recreate ${this.#spec.name}: ${errText(err)}`);
      clearTimeout(this.#retryTimer);
      if (!signal.aborted) {
        this.#retryTimer = setTimeout(() => this.#recreateIfGone(table, signal), 1000);
      }
    }
  }

  #recreateIfGone(table: PeerTable, signal: AbortSignal): void {
    if (signal.aborted || !this.#nl) return;
    if (this.#nl.linkGet(this.#spec.name) === null) this.#recreate(table, signal);
  }

  #scope(): Scope {
    const lease = this.#lease!;
    return {
      network: this.ctx.config.network,
      own: lease.subnet,
      extIndex: this.ctx.ext.index,
      devIndex: this.#devIndex,
    };
  }

  #decider(): (lease: Lease) => ReturnType<typeof planVxlanPeer> {
    const nl = this.#nl!;
    const extIndex = this.ctx.ext.index;
    const c = {
      vni: this.#cfg.vni,
      devIndex: this.#devIndex,
      extIndex,
      directRouting: this.#cfg.directRouting,
      ownIP: this.ctx.ext.publicIP,
      isDirect: (ip: IP) => isDirect(nl, ip, extIndex),
    };
    return (lease) => planVxlanPeer(lease, c);
  }

  /** Retries `fn` every second (as upstream does for device creation) until it works or aborts. */
  async #retry<T>(signal: AbortSignal, fn: () => T): Promise<T> {
    for (;;) {
      signal.throwIfAborted();
      try {
        return fn();
      } catch (err) {
        log.error(`Cannot set up ${this.#spec.name}: ${errText(err)}; retrying in 1 s`);
      }
      await sleep(1000, signal);
    }
  }
}
