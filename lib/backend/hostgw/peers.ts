/**
 * What one peer's host-gw lease puts in the kernel (pure; tested without root): the route
 * `<peer subnet> via <peer PublicIP> dev <ext>`, only when the peer is on a directly connected
 * subnet of the external interface.
 */

import type { IP } from "../../ip.ts";
import type { Lease } from "../../lease.ts";
import type { PeerDecision } from "../peersync.ts";

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

/** The route for one peer lease, or why it is skipped. */
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
