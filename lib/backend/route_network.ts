/**
 * The run loop every routed backend shares (upstream flannel's `route_network.go` idea): follow
 * the peer leases into a {@link KernelEntryTable}, heal what someone deletes, reconcile when the
 * external interface comes back up or notifications were lost, close the handle at the end.
 *
 * A backend supplies only what a peer lease becomes in the kernel (`peer`) and, when it has a
 * device of its own (vxlan), the hooks to recreate it. host-gw is the case without a device.
 *
 * Healing, from the kernel's notifications:
 * - a peer route (or, with a device, an ARP entry on it) deleted → put back;
 * - the device deleted → recreated (retried every second while it fails) and every peer's
 *   entries reprogrammed against its new index; set down → set up again and reconciled;
 * - the external interface up again → reconciled (the kernel flushes the routes through an
 *   interface set down without sending RTM_DELROUTE);
 * - notifications lost (`resync`) → the device checked as above, then reconciled.
 */

import { type Netlink, type NetlinkEvent, RTN_UNICAST } from "../../ffi/netlink/mod.ts";
import type { IP, IPNet } from "../ip.ts";
import type { Lease } from "../lease.ts";
import { errText, type Logger } from "../log.ts";
import type { LeaseSnapshot, SubnetManager } from "../subnet/mod.ts";
import type { BackendContext, EventKind, NetlinkHandle, Network } from "./mod.ts";
import type { PeerDecision, Scope } from "./kernel_plan.ts";
import { KernelEntryTable } from "./kernel_table.ts";

/** A routed backend's own device (vxlan's `flannel.<VNI>`). */
export interface DeviceHooks {
  readonly name: string;
  /** The device's current index (it changes when the device is recreated). */
  index(): number;
  /**
   * Recreates the vanished device with its address; returns a detail for the log line (e.g.
   * `VtepMAC …`). Throws when it cannot: retried every second while the device stays gone.
   */
  recreate(): string;
}

/** What a routed backend hands to {@link routeNetwork}. */
export interface RouteNetworkSpec {
  readonly ctx: BackendContext;
  /** Opened by the backend's init; closed when `run` ends. */
  readonly nl: NetlinkHandle;
  readonly lease: Lease;
  /** The listing the lease was acquired against: the lease watch starts from it. */
  readonly peers: LeaseSnapshot;
  readonly mtu: number;
  readonly log: Logger;
  /** What one peer lease becomes in the kernel, or why it is skipped. Called again after a
   * device was recreated, so it reads the device's index when it is called. */
  readonly peer: (lease: Lease) => PeerDecision;
  readonly device?: DeviceHooks;
}

/** The {@link Network} of a routed backend. */
export function routeNetwork(spec: RouteNetworkSpec): Network {
  return { lease: spec.lease, mtu: spec.mtu, run: (signal) => new RouteRun(spec).run(signal) };
}

/**
 * True when the kernel reaches `ip` through `extIndex` without a gateway (the peer is on a
 * directly connected subnet).
 */
export function isDirect(nl: Pick<Netlink, "routeGet">, ip: IP, extIndex: number): boolean {
  try {
    const r = nl.routeGet(ip);
    return r !== null && r.gateway === null && r.oif === extIndex && r.type === RTN_UNICAST;
  } catch {
    return false;
  }
}

/**
 * Feeds the peer leases into `table` until `signal` aborts: the first batch (the full set) as a
 * full sync against the kernel, later batches incrementally. Rejects when the watch fails.
 */
async function followLeases(
  table: KernelEntryTable,
  subnets: SubnetManager,
  own: IPNet,
  from: LeaseSnapshot | null,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  let first = true;
  for await (const batch of subnets.watchLeases(own, from, signal)) {
    if (signal.aborted) break;
    if (first) {
      first = false;
      const changes = table.sync(batch.filter((e) => e.type === "added").map((e) => e.lease));
      log.info(`Reconciled ${batch.length} peer leases: ${changes} kernel changes`);
    } else {
      table.apply(batch);
    }
  }
}

class RouteRun {
  readonly #s: RouteNetworkSpec;
  readonly #table: KernelEntryTable;
  #extUp = true;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(spec: RouteNetworkSpec) {
    this.#s = spec;
    this.#table = new KernelEntryTable(spec.nl, this.#scope(), spec.peer, spec.log);
  }

  async run(signal: AbortSignal): Promise<void> {
    const { ctx, nl, lease, log } = this.#s;
    // The repair loop ends with the watch, also when the watch fails.
    const stop = new AbortController();
    const healing = this.#heal(AbortSignal.any([signal, stop.signal]));
    try {
      await followLeases(this.#table, ctx.subnets, lease.subnet, this.#s.peers, signal, log);
    } finally {
      stop.abort();
      await healing;
      clearTimeout(this.#retryTimer);
      nl.close();
    }
  }

  #scope(): Scope {
    const { ctx, lease, device } = this.#s;
    return {
      network: ctx.config.network,
      own: lease.subnet,
      extIndex: ctx.ext.index,
      devIndex: device ? device.index() : null,
    };
  }

  async #heal(signal: AbortSignal): Promise<void> {
    const { ctx, log, device } = this.#s;
    const kinds: EventKind[] = device ? ["link", "route", "neigh"] : ["route", "link"];
    try {
      for await (const ev of ctx.events(kinds, signal)) {
        if (signal.aborted) break;
        try {
          this.#onEvent(ev, signal);
        } catch (err) {
          log.error(`Cannot repair after a ${ev.kind} event: ${errText(err)}`);
        }
      }
    } catch (err) {
      if (!signal.aborted) log.warn(`Self-healing stopped: ${errText(err)}`);
    }
  }

  #onEvent(ev: NetlinkEvent, signal: AbortSignal): void {
    const { ctx, nl, log, device } = this.#s;
    const table = this.#table;
    switch (ev.kind) {
      case "link":
        if (ev.link.index === ctx.ext.index) {
          const wasUp = this.#extUp;
          this.#extUp = ev.type === "new" && ev.link.up;
          if (this.#extUp && !wasUp) {
            log.info(`${ctx.ext.name} is up again: restoring peer routes`);
            table.resync();
          }
          return;
        }
        if (!device || ev.link.index !== device.index()) return;
        if (ev.type === "del") {
          log.warn(`Device ${device.name} was deleted: recreating it`);
          this.#recreate(device, signal);
        } else if (!ev.link.up && nl.linkGet(device.index())?.up === false) {
          // Deletion also announces the link going down first: act only if it is still there.
          log.warn(`Device ${device.name} was set down: setting it up`);
          nl.linkSetUp(device.index());
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
          device && ev.type === "del" && ev.neigh.index === device.index() && this.#devAlive() &&
          table.restoreNeigh(ev.neigh)
        ) {
          log.warn(`ARP entry ${ev.neigh.ip} was deleted: restored it`);
        }
        return;
      case "resync": {
        if (device) {
          // The lost notifications may include the device's own: deleting a device with a few
          // thousand peers floods the socket with RTM_DELNEIGH, and its RTM_DELLINK comes last.
          const dev = nl.linkGet(device.index());
          if (dev === null) {
            log.warn(`Device ${device.name} is gone (notifications were lost): recreating it`);
            this.#recreate(device, signal);
            return;
          }
          if (!dev.up) {
            log.warn(`Device ${device.name} is down (notifications were lost): setting it up`);
            nl.linkSetUp(device.index());
          }
        }
        table.resync();
        return;
      }
    }
  }

  /** False while the device is gone (its entries vanish with it; the link event recreates it). */
  #devAlive(): boolean {
    const device = this.#s.device;
    return !device || this.#s.nl.linkGet(device.index()) != null;
  }

  #recreate(device: DeviceHooks, signal: AbortSignal): void {
    const { nl, log, peer } = this.#s;
    try {
      const detail = device.recreate();
      const changes = this.#table.rescope(this.#scope(), peer);
      log.info(`Recreated ${device.name} (${detail}): ${changes} kernel changes`);
    } catch (err) {
      log.error(`Cannot recreate ${device.name}: ${errText(err)}`);
      clearTimeout(this.#retryTimer);
      if (signal.aborted) return;
      this.#retryTimer = setTimeout(() => {
        if (!signal.aborted && nl.linkGet(device.name) === null) this.#recreate(device, signal);
      }, 1000);
    }
  }
}
