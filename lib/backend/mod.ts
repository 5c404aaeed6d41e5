/**
 * The backend contract, in upstream flannel's shape (`RegisterNetwork → Network`):
 *
 * - a backend module exports `create: BackendFactory`; `create(ctx)` checks the config and
 *   returns a {@link Backend} without touching the host;
 * - `backend.init(signal)` acquires the lease and sets the host up, and resolves to a
 *   {@link Network}: a value that exists only once init has succeeded, so nothing in it is
 *   "not yet initialised";
 * - `network.run(signal)` follows the other hosts' leases until `signal` aborts.
 *
 * Everything a backend needs from outside comes in the {@link BackendContext} — also the kernel
 * handles, so that tests hand a backend a recording fake instead of each backend opening its own.
 */

import type { NetworkConfig, SubnetRange } from "../config.ts";
import type { IP, IPNet } from "../ip.ts";
import type { ExternalInterface } from "../extiface.ts";
import type { Lease, LeaseAttrs } from "../lease.ts";
import type { SubnetManager } from "../subnet/mod.ts";
import type { Netlink, NetlinkEvent } from "../../ffi/netlink/mod.ts";
import type { Metrics } from "../health/metrics.ts";

/** The rtnetlink verbs backends use (a subset of `Netlink`, so tests can fake it). */
export type NetlinkHandle = Pick<
  Netlink,
  | "close"
  | "linkGet"
  | "linkAddVxlan"
  | "linkDelete"
  | "linkSetUp"
  | "linkSetMtu"
  | "addrList"
  | "addrAdd"
  | "addrDel"
  | "routeList"
  | "routeGet"
  | "routeReplace"
  | "routeDel"
  | "neighList"
  | "neighSet"
  | "neighDel"
  | "fdbList"
  | "fdbSet"
  | "fdbDel"
>;

/** The kernel notification groups a backend can follow. */
export type EventKind = "link" | "route" | "neigh";

/** What every backend gets from the daemon. */
export interface BackendContext {
  readonly config: NetworkConfig;
  readonly ext: ExternalInterface;
  readonly subnets: SubnetManager;
  /** Opens an rtnetlink handle in the daemon's namespace; the caller closes it. */
  readonly netlink: () => NetlinkHandle;
  /** Kernel notifications of `kinds` until `signal` aborts (`resync` when some were lost). */
  readonly events: (kinds: EventKind[], signal: AbortSignal) => AsyncIterable<NetlinkEvent>;
  /** The process environment (aws-vpc reads its region, credentials and endpoints there). */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** A backend's network once init has succeeded: our lease, the MTU for subnet.env, and `run`. */
export interface Network {
  readonly lease: Lease;
  readonly mtu: number;
  /**
   * Follows lease events until `signal` aborts, then releases what does not outlive the process
   * (e.g. the udp data-path Worker). Must return within 1 s of the abort. Rejects when following
   * becomes impossible (the daemon then exits 1).
   */
  run(signal: AbortSignal): Promise<void>;
  /** Registers the backend's own `/metrics` families (a data path's counters), if it has any. */
  registerMetrics?(m: Metrics): void;
}

export interface Backend {
  /** Acquires the lease and sets up the host. Rejects on a fatal error; aborts with `signal`. */
  init(signal: AbortSignal): Promise<Network>;
}

/** The one export of every backend module: checks `ctx.config.backend`, touches nothing. */
export type BackendFactory = (ctx: BackendContext) => Backend;

/** The backend config of `ctx` when it is of `type`; throws otherwise (a wiring error). */
export function backendConfig<T extends NetworkConfig["backend"]["type"]>(
  ctx: BackendContext,
  type: T,
): Extract<NetworkConfig["backend"], { type: T }> {
  const b = ctx.config.backend;
  if (b.type !== type) throw new Error(`Backend type ${b.type} given to the ${type} backend`);
  return b as Extract<NetworkConfig["backend"], { type: T }>;
}

/** What an IPv4-only backend (udp, aws-vpc, as upstream) needs of the config and interface. */
export interface Ipv4Side {
  readonly range: SubnetRange;
  readonly publicIP: IP;
  readonly ifaceAddr: IP;
}

/**
 * The IPv4 side of the config and interface for a backend that knows no IPv6; throws a clear
 * error when the config enables IPv6 or disables IPv4 (parseNetworkConfig refuses that already,
 * so this is a wiring error).
 */
export function ipv4Only(ctx: BackendContext, type: string): Ipv4Side {
  const range = ctx.config.ipv4;
  if (!range || ctx.config.ipv6) {
    throw new Error(`The ${type} backend supports IPv4 only (EnableIPv6 must be false)`);
  }
  const { publicIP, ifaceAddr } = ctx.ext;
  if (!publicIP || !ifaceAddr) throw new Error("The external interface has no IPv4 address");
  return { range, publicIP, ifaceAddr };
}

/** Lease attributes of an IPv4-only host. */
export function ipv4Attrs(publicIP: IP, backendType = "", backendData: unknown = null): LeaseAttrs {
  return { publicIP, publicIPv6: null, backendType, backendData, backendV6Data: null };
}

/** The IPv4 subnet of our own lease (IPv4-only backends). */
export function ownIPv4(lease: Lease): IPNet {
  if (!lease.subnet) throw new Error("The lease has no IPv4 subnet");
  return lease.subnet;
}
