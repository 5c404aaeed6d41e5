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
 * flannel installed that no lease explains are removed, right ones are not touched. While
 * running, a deleted peer route is restored, and so are the routes the kernel flushed silently
 * when the external interface went down, once it is up again (route_network.ts).
 */

import type { IP } from "../../ip.ts";
import type { Lease } from "../../lease.ts";
import { logger } from "../../log.ts";
import { type Backend, backendConfig, type BackendContext } from "../mod.ts";
import type { PeerDecision } from "../kernel_plan.ts";
import { isDirect, routeNetwork } from "../route_network.ts";

const log = logger("hostgw");

/** What the planner needs to know about this host. */
export interface HostGwPeerContext {
  /** Index of the external interface. */
  readonly extIndex: number;
  /** Name of the external interface (for warnings). */
  readonly extName: string;
  /** Our own PublicIP: a lease carrying it is a stale one of ours, not a peer. */
  readonly ownIP: IP;
  /** True when `ip` is reachable without a gateway through the external interface. */
  readonly isDirect: (ip: IP) => boolean;
}

/** Creates the host-gw backend for `ctx`. */
export function create(ctx: BackendContext): Backend {
  backendConfig(ctx, "host-gw");
  return {
    async init(signal) {
      if (!ctx.ext.publicIP.equals(ctx.ext.ifaceAddr)) {
        throw new Error(
          `Cannot use host-gw with public IP ${ctx.ext.publicIP}: it differs from ` +
            `the address ${ctx.ext.ifaceAddr} of ${ctx.ext.name} (NAT is not supported)`,
        );
      }
      const { lease, peers } = await ctx.subnets.acquireLease(
        { publicIP: ctx.ext.publicIP, backendType: "host-gw", backendData: null },
        signal,
      );
      const nl = ctx.netlink();
      const c: HostGwPeerContext = {
        extIndex: ctx.ext.index,
        extName: ctx.ext.name,
        ownIP: ctx.ext.publicIP,
        isDirect: (ip) => isDirect(nl, ip, ctx.ext.index),
      };
      return routeNetwork({
        ctx,
        nl,
        lease,
        peers,
        mtu: ctx.ext.mtu,
        log,
        peer: (l) => planHostGwPeer(l, c),
      });
    },
  };
}

/**
 * The route for one peer lease, or why it is skipped: `<peer subnet> via <peer PublicIP> dev
 * <ext>`, only when the peer is on a directly connected subnet of the external interface.
 */
export function planHostGwPeer(lease: Lease, c: HostGwPeerContext): PeerDecision {
  const subnet = lease.subnet;
  const pub = lease.attrs.publicIP;
  const who = `peer ${subnet} (PublicIP ${pub})`;
  if (lease.attrs.backendType !== "host-gw") {
    const type = lease.attrs.backendType || "udp";
    return {
      ok: false,
      reason: `Skipping ${who}: backend type ${JSON.stringify(type)} is not host-gw`,
    };
  }
  if (pub.equals(c.ownIP)) {
    return { ok: false, reason: `Skipping ${who}: that is our own PublicIP` };
  }
  if (!c.isDirect(pub)) {
    return {
      ok: false,
      reason: `Skipping ${who}: ${pub} is not on a directly connected subnet of ${c.extName}, ` +
        `host-gw needs the peers on the same link (no route installed)`,
    };
  }
  return {
    ok: true,
    entries: {
      route: { dst: subnet, gateway: pub, oif: c.extIndex, onlink: false },
      neigh: null,
      fdb: null,
    },
  };
}
