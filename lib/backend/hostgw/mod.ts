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
 * With `EnableIPv6` the same for the IPv6 subnets: `<peer IPv6 subnet> via <peer PublicIPv6> dev
 * <ext>`, from a second instance of the route network (one kernel table per family).
 *
 * Restart: routes stay in the kernel on exit. On start the first lease batch reconciles: routes
 * flannel installed that no lease explains are removed, right ones are not touched. While
 * running, a deleted peer route is restored, and so are the routes the kernel flushed silently
 * when the external interface went down, once it is up again (route_network.ts).
 */

import type { IP } from "../../ip.ts";
import type { Lease } from "../../lease.ts";
import { logger, quote } from "../../log.ts";
import { type Backend, backendConfig, type BackendContext } from "../mod.ts";
import type { PeerDecision } from "../kernel_plan.ts";
import { type FamilyPlane, isDirect, routeNetwork } from "../route_network.ts";

const log = logger("hostgw");

/** What the planner needs to know about this host, for one address family. */
export interface HostGwPeerContext {
  /** Which of the lease's subnets and addresses: IPv4 (`PublicIP`) or IPv6 (`PublicIPv6`). */
  readonly family?: 4 | 6;
  /** Index of the external interface. */
  readonly extIndex: number;
  /** Name of the external interface (for warnings). */
  readonly extName: string;
  /** Our own PublicIP (PublicIPv6): a lease carrying it is a stale one of ours, not a peer. */
  readonly ownIP: IP;
  /** True when `ip` is reachable without a gateway through the external interface. */
  readonly isDirect: (ip: IP) => boolean;
}

/** Creates the host-gw backend for `ctx`. */
export function create(ctx: BackendContext): Backend {
  backendConfig(ctx, "host-gw");
  return {
    async init(signal) {
      const { ext, config } = ctx;
      const families: [4 | 6, IP][] = [];
      for (
        const [family, pub, addr, flag] of [
          [4, ext.publicIP, ext.ifaceAddr, "public IP"],
          [6, ext.publicIPv6, ext.ifaceV6Addr, "public IPv6"],
        ] as const
      ) {
        if ((family === 4 ? config.ipv4 : config.ipv6) === null) continue;
        if (!pub || !addr) throw new Error(`The external interface has no IPv${family} address`);
        if (!pub.equals(addr)) {
          throw new Error(
            `Cannot use host-gw with ${flag} ${pub}: it differs from ` +
              `the address ${addr} of ${ext.name} (NAT is not supported)`,
          );
        }
        families.push([family, pub]);
      }
      const { lease, peers } = await ctx.subnets.acquireLease(
        {
          publicIP: config.ipv4 ? ext.publicIP : null,
          publicIPv6: config.ipv6 ? ext.publicIPv6 : null,
          backendType: "host-gw",
          backendData: null,
          backendV6Data: null,
        },
        signal,
      );
      const nl = ctx.netlink();
      const planes: FamilyPlane[] = families.map(([family, ownIP]) => {
        const c: HostGwPeerContext = {
          family,
          extIndex: ext.index,
          extName: ext.name,
          ownIP,
          isDirect: (ip) => isDirect(nl, ip, ext.index),
        };
        return { family, peer: (l) => planHostGwPeer(l, c) };
      });
      return routeNetwork({ ctx, nl, lease, peers, mtu: ext.mtu, log, planes });
    },
  };
}

/**
 * The route for one peer lease, or why it is skipped: `<peer subnet> via <peer PublicIP> dev
 * <ext>` (IPv6: `<peer IPv6 subnet> via <peer PublicIPv6>`), only when the peer is on a directly
 * connected subnet of the external interface.
 */
export function planHostGwPeer(lease: Lease, c: HostGwPeerContext): PeerDecision {
  const v6 = c.family === 6;
  const subnet = v6 ? lease.ipv6Subnet : lease.subnet;
  const pub = v6 ? lease.attrs.publicIPv6 : lease.attrs.publicIP;
  const pubKey = v6 ? "PublicIPv6" : "PublicIP";
  const who = `peer ${subnet} (${pubKey} ${pub})`;
  if (subnet === null) return { ok: false, reason: `Skipping ${who}: no IPv${v6 ? 6 : 4} subnet` };
  if (pub === null) return { ok: false, reason: `Skipping ${who}: the lease has no ${pubKey}` };
  if (lease.attrs.backendType !== "host-gw") {
    const type = lease.attrs.backendType || "udp";
    return {
      ok: false,
      reason: `Skipping ${who}: backend type ${quote(type)} is not host-gw`,
    };
  }
  if (pub.equals(c.ownIP)) {
    return { ok: false, reason: `Skipping ${who}: that is our own ${pubKey}` };
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
