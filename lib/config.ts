/**
 * The network config stored at `<prefix>/config`: parsing, defaults and validation.
 *
 * Key names match case-insensitively, as Go's encoding/json does upstream.
 */

import type { IPNet } from "./ip.ts";

export interface UdpBackendConfig {
  readonly type: "udp";
  /** UDP port, default 8285. */
  readonly port: number;
  /** TUN/UDP offloads (`"Offload": false` turns them off), default true. */
  readonly offload: boolean;
}

export interface VxlanBackendConfig {
  readonly type: "vxlan";
  /** VXLAN id, default 1. */
  readonly vni: number;
  /** Destination port, default 8472. */
  readonly port: number;
  /** Device MTU; null = external MTU − 50. */
  readonly mtu: number | null;
  readonly directRouting: boolean;
  readonly learning: boolean;
  readonly gbp: boolean;
}

export interface HostGwBackendConfig {
  readonly type: "host-gw";
}

export interface AllocBackendConfig {
  readonly type: "alloc";
}

export interface AwsVpcBackendConfig {
  readonly type: "aws-vpc";
  /** Route table to program; null = the subnet's, else the VPC's main table. */
  readonly routeTableID: string | null;
}

export type BackendConfig =
  | UdpBackendConfig
  | VxlanBackendConfig
  | HostGwBackendConfig
  | AllocBackendConfig
  | AwsVpcBackendConfig;

/** A validated network config with every default filled in. */
export interface NetworkConfig {
  readonly network: IPNet;
  readonly subnetLen: number;
  /** First allocatable subnet base (host-order u32). */
  readonly subnetMin: number;
  /** Last allocatable subnet base (host-order u32). */
  readonly subnetMax: number;
  readonly backend: BackendConfig;
}
