/**
 * The host-gw backend: plain routes through the peers' addresses, no encapsulation.
 *
 * Installs no device. Lease attrs: BackendType "host-gw", no BackendData; MTU = external MTU.
 * Refuses a public IP that differs from the interface address (NAT): peers could not route to it.
 *
 * Lease added or changed: route `<peer subnet> via <peer PublicIP> dev <ext>` (replace). A peer
 * not on a directly connected subnet of the external interface, or of another backend type: one
 * warning naming it, no route. Removed: the route is deleted.
 *
 * Restart: routes stay in the kernel on exit. On start the first lease batch reconciles: routes
 * inside the overlay network on the external interface (or via any gateway) that no lease
 * explains are removed, right ones are not touched. While running, a deleted peer route is
 * restored (netlink subscription), and so are the routes the kernel flushed silently when the
 * external interface went down, once it is up again.
 */

import { Netlink, type NetlinkEvent, subscribe } from "../../../ffi/netlink/mod.ts";
import type { IP } from "../../ip.ts";
import type { Lease } from "../../lease.ts";
import { errText, logger } from "../../log.ts";
import type { Backend, BackendContext, BackendReady } from "../mod.ts";
import { followLeases, isDirect, type KernelOps, PeerTable } from "../peersync.ts";
import { planHostGwPeer } from "./peers.ts";

const log = logger("hostgw");

/** The netlink verbs the host-gw backend uses. */
export type HostGwKernelOps = KernelOps & Pick<Netlink, "routeGet" | "close">;

/** Test seams: a netlink handle and an event source instead of the real ones. */
export interface HostGwDeps {
  readonly netlink?: () => HostGwKernelOps;
  readonly subscribe?: (signal: AbortSignal) => AsyncIterable<NetlinkEvent>;
}

/** Creates the host-gw backend for `ctx`. */
export function create(ctx: BackendContext, deps: HostGwDeps = {}): Backend {
  let nl: HostGwKernelOps | null = null;
  let lease: Lease | null = null;
  const open = () => nl ??= (deps.netlink ?? Netlink.open)();

  return {
    async init(signal: AbortSignal): Promise<BackendReady> {
      if (!ctx.ext.publicIP.equals(ctx.ext.ifaceAddr)) {
        throw new Error(
          `Cannot use host-gw with public IP ${ctx.ext.publicIP}: it differs from ` +
            `the address ${ctx.ext.ifaceAddr} of ${ctx.ext.name} (NAT is not supported)`,
        );
      }
      lease = await ctx.subnets.acquireLease(
        { publicIP: ctx.ext.publicIP, backendType: "host-gw", backendData: null },
        signal,
      );
      return { lease, mtu: ctx.ext.mtu };
    },

    async run(signal: AbortSignal): Promise<void> {
      if (!lease) throw new Error("The host-gw backend ran before init");
      const own = lease;
      const k = open();
      const c = {
        extIndex: ctx.ext.index,
        extName: ctx.ext.name,
        ownIP: ctx.ext.publicIP,
        isDirect: (ip: IP) => isDirect(k, ip, ctx.ext.index),
      };
      const table = new PeerTable(
        k,
        { network: ctx.config.network, own: own.subnet, extIndex: ctx.ext.index, devIndex: null },
        (l) => planHostGwPeer(l, c),
        log,
      );
      // The kernel flushes the routes through an interface set down without RTM_DELROUTE
      // notifications: when the external interface comes back up, reconcile.
      let extUp = true;
      const heal = async (until: AbortSignal) => {
        const source = deps.subscribe ?? ((s: AbortSignal) => subscribe(["route", "link"], s));
        try {
          for await (const ev of source(until)) {
            if (until.aborted) break;
            try {
              if (ev.kind === "route" && ev.type === "del" && table.restoreRoute(ev.route)) {
                log.warn(`Route ${ev.route.dst} was deleted: restored it`);
              } else if (ev.kind === "link" && ev.link.index === ctx.ext.index) {
                const wasUp = extUp;
                extUp = ev.type === "new" && ev.link.up;
                if (extUp && !wasUp) {
                  log.info(`${ctx.ext.name} is up again: restoring peer routes`);
                  table.resync();
                }
              } else if (ev.kind === "resync") {
                table.resync();
              }
            } catch (err) {
              log.error(`Cannot repair after a ${ev.kind} event: ${errText(err)}`);
            }
          }
        } catch (err) {
          if (!until.aborted) log.warn(`Self-healing stopped: ${errText(err)}`);
        }
      };
      // The repair loop ends with the watch, also when the watch fails.
      const stop = new AbortController();
      const healing = heal(AbortSignal.any([signal, stop.signal]));
      try {
        await followLeases(table, ctx.subnets, own.subnet, signal, log);
      } finally {
        stop.abort();
        await healing;
        k.close();
        nl = null;
      }
    },
  };
}
