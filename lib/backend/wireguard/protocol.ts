/**
 * Messages between the wireguard backend (main thread) and its data-path Worker. The control
 * words are the udp backend's (stop flag, pending-message count).
 */

import type { BaseInit, BaseReport } from "../datapath/protocol.ts";

export { CTL_PENDING, CTL_STOP, CTL_WORDS } from "../datapath/protocol.ts";
import type { AllowedIP } from "./peer.ts";

/** What a device carries: one family (`separate` mode), or both through one device. */
export type DeviceFamily = 4 | 6 | "dual";

/** The first message: everything the data path needs, fds opened by the main thread. */
export interface WorkerInit extends BaseInit {
  /** The TUN's fd (non-blocking). */
  readonly tunFd: number;
  /** The bound UDP socket's fd (non-blocking). */
  readonly udpFd: number;
  /** The TUN was opened with `IFF_VNET_HDR` and TSO/checksum offloads are on. */
  readonly vnetHdr: boolean;
  /** UDP GSO (`UDP_SEGMENT`) may be used to send. */
  readonly udpGso: boolean;
  /** `UDP_GRO` is on for the socket. */
  readonly udpGro: boolean;
  /** The TUN MTU (the largest segment cut from a super-packet). */
  readonly mtu: number;
  /** Our private key. */
  readonly privateKey: Uint8Array;
  /** The UDP port we listen on (for the UAPI's `listen_port`). */
  readonly listenPort: number;
  /**
   * 4; or 6 for the IPv6 device: then `udpFd` is an `AF_INET6` socket, the TUN carries IPv6
   * (with `vnetHdr`, TCP/IPv6 super-packets), peers have `ip6` endpoints and `net6` allowed IPs;
   * or `"dual"` for the one device of a single-device mode: a dual-stack `AF_INET6` socket
   * (IPv4 peers v4-mapped), inner packets and peers of both families.
   */
  readonly family: DeviceFamily;
  /** The counters (counters.ts), written by the Worker. */
  readonly counters: SharedArrayBuffer;
}

/**
 * A peer as the backend configures it (base64 keys; IPv4 addresses host-order u32, IPv6 as 16
 * network-order bytes in `ip6`/`net6`).
 */
export interface PeerSpec {
  /** The peer's public key, base64. */
  readonly publicKey: string;
  /** The preshared key, base64, or null. */
  readonly presharedKey: string | null;
  /** The endpoint address (IPv4; 0 for an IPv6 peer). */
  readonly ip: number;
  /** The IPv6 endpoint address (the IPv6 device), else null. */
  readonly ip6: Uint8Array | null;
  /** The endpoint port. */
  readonly port: number;
  /** Allowed IPs. */
  readonly allowedIPs: readonly AllowedIP[];
  /** Persistent keepalive, seconds (0 = off). */
  readonly persistentKeepalive: number;
}

/** Peer changes, applied in order. */
export interface PeerBatch {
  /** The message kind. */
  readonly op: "peers";
  /** Set (add or update) or remove, by public key. */
  readonly changes: readonly (
    | { readonly op: "set"; readonly peer: PeerSpec }
    | { readonly op: "del"; readonly publicKey: string }
  )[];
}

/** A request for the UAPI `get` text. */
export interface DumpRequest {
  /** The message kind. */
  readonly op: "dump";
  /** Echoed in the answer. */
  readonly id: number;
}

/** What the Worker posts back. */
export type WorkerReport =
  | BaseReport
  | { readonly type: "dump"; readonly id: number; readonly text: string };
