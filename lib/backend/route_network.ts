/**
 * The run loop every routed backend shares (upstream flannel's `route_network.go` idea): follow
 * the peer leases into a {@link KernelEntryTable}, heal what someone deletes, reconcile when the
 * external interface comes back up or notifications were lost, close the handle at the end.
 *
 * A backend supplies, per address family ({@link FamilyPlane}), only what a peer lease becomes in
 * the kernel (`peer`) and, when it has a device of its own (vxlan), the hooks to recreate it.
 * host-gw is the case without a device. Each family gets its own kernel table, fed by the one
 * lease watch: IPv6 is a second instance of the same code, not a copy of it.
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
import type { IP } from "../ip.ts";
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

/**
 * One address family of a routed backend: what a peer lease becomes in the kernel for that
 * family, and the family's own device if it has one. A dual-stack vxlan network is two of these
 * (`flannel.<VNI>` and `flannel-v6.<VNI>`), a dual-stack host-gw network two without a device.
 */
export interface FamilyPlane {
  readonly family: 4 | 6;
  /**
   * What one peer lease becomes in the kernel for this family, or why it is skipped; called only
   * for leases with a subnet of this family. Called again after the device was recreated, so it
   * reads the device's index when it is called.
   */
  readonly peer: (lease: Lease) => PeerDecision;
  readonly device?: DeviceHooks;
}

/** What a routed backend hands to {@link routeNetwork}. */
export interface RouteNetworkSpec {
  readonly ctx: BackendContext;
  /** Opened by the backend's init; closed when `run` ends. */
  readonly nl: NetlinkHandle;
  readonly lease: Lease;
  /** The listing the lease was acquired against: the lease watch starts from it. */
  readonly peers: LeaseSnapshot | null;
  readonly mtu: number;
  readonly log: Logger;
  /** One per enabled family, each with its own kernel table. */
  readonly planes: readonly FamilyPlane[];
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
 * Feeds the peer leases into every family's table until `signal` aborts: the first batch (the
 * full set) as a full sync against the kernel, later batches incrementally. Rejects when the
 * watch fails.
 */
async function followLeases(
  planes: readonly Plane[],
  subnets: SubnetManager,
  own: Lease,
  from: LeaseSnapshot | null,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  let first = true;
  for await (const batch of subnets.watchLeases(own, from, signal)) {
    if (signal.aborted) break;
    if (first) {
      first = false;
      const leases = batch.filter((e) => e.type === "added").map((e) => e.lease);
      for (const p of planes) {
        const changes = p.table.sync(leases);
        // One family keeps the single-stack line; two say which table each count is for.
        const which = planes.length > 1 ? ` (IPv${p.family})` : "";
        log.info(`Reconciled ${batch.length} peer leases${which}: ${changes} kernel changes`);
      }
    } else {
      for (const p of planes) p.table.apply(batch);
    }
  }
}

/** One family's plane with its kernel table. */
interface Plane extends FamilyPlane {
  readonly table: KernelEntryTable;
}

class RouteRun {
  readonly #s: RouteNetworkSpec;
  readonly #planes: Plane[];
  #extUp = true;
  readonly #retryTimers = new Map<number, ReturnType<typeof setTimeout>>();

  constructor(spec: RouteNetworkSpec) {
    this.#s = spec;
    this.#planes = spec.planes.map((p) => ({
      ...p,
      table: new KernelEntryTable(spec.nl, this.#scope(p), p.peer, spec.log),
    }));
  }

  async run(signal: AbortSignal): Promise<void> {
    const { ctx, nl, lease, log, peers } = this.#s;
    // The repair loop ends with the watch, also when the watch fails.
    const stop = new AbortController();
    const healing = this.#heal(AbortSignal.any([signal, stop.signal]));
    try {
      await followLeases(this.#planes, ctx.subnets, lease, peers, signal, log);
    } finally {
      stop.abort();
      await healing;
      for (const t of this.#retryTimers.values()) clearTimeout(t);
      nl.close();
    }
  }

  #scope(p: FamilyPlane): Scope {
    const { ctx, lease } = this.#s;
    const range = p.family === 4 ? ctx.config.ipv4 : ctx.config.ipv6;
    const own = p.family === 4 ? lease.subnet : lease.ipv6Subnet;
    if (!range || !own) throw new Error(`IPv${p.family} plane without an IPv${p.family} lease`);
    return {
      family: p.family,
      network: range.network,
      own,
      extIndex: ctx.ext.index,
      devIndex: p.device ? p.device.index() : null,
    };
  }

  async #heal(signal: AbortSignal): Promise<void> {
    const { ctx, log } = this.#s;
    const withDevice = this.#planes.some((p) => p.device);
    const kinds: EventKind[] = withDevice ? ["link", "route", "neigh"] : ["route", "link"];
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
    const { ctx, nl, log } = this.#s;
    switch (ev.kind) {
      case "link": {
        if (ev.link.index === ctx.ext.index) {
          const wasUp = this.#extUp;
          this.#extUp = ev.type === "new" && ev.link.up;
          if (this.#extUp && !wasUp) {
            log.info(`${ctx.ext.name} is up again: restoring peer routes`);
            for (const p of this.#planes) p.table.resync();
          }
          return;
        }
        const p = this.#planes.find((x) => x.device && ev.link.index === x.device.index());
        if (!p) return;
        const device = p.device!;
        if (ev.type === "del") {
          log.warn(`Device ${device.name} was deleted: recreating it`);
          this.#recreate(p, signal);
        } else if (!ev.link.up && nl.linkGet(device.index())?.up === false) {
          // Deletion also announces the link going down first: act only if it is still there.
          log.warn(`Device ${device.name} was set down: setting it up`);
          nl.linkSetUp(device.index());
          p.table.resync();
        }
        return;
      }
      case "route": {
        const p = this.#planes.find((x) => x.family === ev.route.dst.family);
        if (p && ev.type === "del" && this.#devAlive(p) && p.table.restoreRoute(ev.route)) {
          log.warn(`Route ${ev.route.dst} was deleted: restored it`);
        }
        return;
      }
      case "neigh": {
        const p = this.#planes.find((x) => x.device && ev.neigh.index === x.device.index());
        if (p && ev.type === "del" && this.#devAlive(p) && p.table.restoreNeigh(ev.neigh)) {
          const what = ev.neigh.ip.family === 4 ? "ARP" : "NDP";
          log.warn(`${what} entry ${ev.neigh.ip} was deleted: restored it`);
        }
        return;
      }
      case "resync": {
        for (const p of this.#planes) {
          const device = p.device;
          if (device) {
            // The lost notifications may include the device's own: deleting a device with a few
            // thousand peers floods the socket with RTM_DELNEIGH, and its RTM_DELLINK comes last.
            const dev = nl.linkGet(device.index());
            if (dev === null) {
              log.warn(`Device ${device.name} is gone (notifications were lost): recreating it`);
              this.#recreate(p, signal);
              continue;
            }
            if (!dev.up) {
              log.warn(`Device ${device.name} is down (notifications were lost): setting it up`);
              nl.linkSetUp(device.index());
            }
          }
          p.table.resync();
        }
        return;
      }
    }
  }

  /** False while the plane's device is gone (its entries vanish with it; the link event recreates it). */
  #devAlive(p: Plane): boolean {
    return !p.device || this.#s.nl.linkGet(p.device.index()) != null;
  }

  #recreate(p: Plane, signal: AbortSignal): void {
    const { nl, log } = this.#s;
    const device = p.device!;
    try {
      const detail = device.recreate();
      const changes = p.table.rescope(this.#scope(p), p.peer);
      log.info(`Recreated ${device.name} (${detail}): ${changes} kernel changes`);
    } catch (err) {
      log.error(`Cannot recreate ${device.name}: ${errText(err)}`);
      clearTimeout(this.#retryTimers.get(p.family));
      if (signal.aborted) return;
      this.#retryTimers.set(
        p.family,
        setTimeout(() => {
          if (!signal.aborted && nl.linkGet(device.name) === null) this.#recreate(p, signal);
        }, 1000),
      );
    }
  }
}
