/**
 * The backend interface: a backend acquires the lease, programs the host, and follows the other
 * hosts' leases until cancelled. It gets every dependency as a parameter.
 */

import type { IP } from "../ip.ts";
import type { NetworkConfig } from "../config.ts";
import type { Lease } from "../lease.ts";
import type { SubnetManager } from "../subnet/mod.ts";

/** The interface that carries overlay traffic between hosts. */
export interface ExternalInterface {
  /** Interface name, e.g. `eth0`. */
  readonly name: string;
  /** Interface index. */
  readonly index: number;
  /** The IPv4 address on the interface. */
  readonly ifaceAddr: IP;
  /** The address advertised to peers (`--public-ip`, else `ifaceAddr`). */
  readonly publicIP: IP;
  /** The interface MTU as the kernel reports it. */
  readonly mtu: number;
}

export interface BackendContext {
  readonly config: NetworkConfig;
  readonly ext: ExternalInterface;
  readonly subnets: SubnetManager;
}

/** What `init` settled: our lease and the MTU to put in subnet.env. */
export interface BackendReady {
  readonly lease: Lease;
  readonly mtu: number;
}

export interface Backend {
  /** Acquires the lease and sets up devices. Rejects on a fatal error; aborts with `signal`. */
  init(signal: AbortSignal): Promise<BackendReady>;
  /**
   * Follows lease events until `signal` aborts, then releases what does not outlive the process
   * (e.g. the udp data-path Worker). Must return within 1 s of the abort.
   */
  run(signal: AbortSignal): Promise<void>;
}

export type BackendFactory = (ctx: BackendContext) => Backend;
