/**
 * Messages between the udp backend (main thread) and its data-path Worker, and the layout of
 * the shared control words.
 */

import type { BaseInit, BaseReport } from "../datapath/protocol.ts";

export { CTL_PENDING, CTL_STOP, CTL_WORDS } from "../datapath/protocol.ts";

/** The first message: everything the data path needs, fds opened by the main thread. */
export interface WorkerInit extends BaseInit {
  /** The TUN queue's fd (non-blocking). */
  readonly tunFd: number;
  /** The bound UDP socket's fd (non-blocking). */
  readonly udpFd: number;
  /** Our lease (host-order u32 base and prefix): datagrams must target it. */
  readonly ownNet: number;
  /** Our lease's prefix length. */
  readonly ownPrefix: number;
  /** The TUN's address, the source of our ICMP errors. */
  readonly tunAddr: number;
  /** The TUN MTU (for "fragmentation needed" and segment sizes). */
  readonly mtu: number;
  /** The TUN was opened with `IFF_VNET_HDR` and TSO/checksum offloads are on. */
  readonly vnetHdr: boolean;
  /** UDP GSO (`UDP_SEGMENT`) may be used to send. */
  readonly udpGso: boolean;
  /** `UDP_GRO` is on for the socket. */
  readonly udpGro: boolean;
  /** The counters (counters.ts), written by the Worker. */
  readonly counters: SharedArrayBuffer;
}

/** Peer-table changes, one message per lease batch. */
export interface PeerBatch {
  /** The message kind. */
  readonly op: "peers";
  /** Applied in order. */
  readonly changes: readonly PeerChange[];
}

/** A peer-table change. */
export interface PeerChange {
  /** Route (replace) or forget a subnet. */
  readonly op: "set" | "del";
  /** The subnet's base address (host-order u32). */
  readonly net: number;
  /** The subnet's prefix length. */
  readonly prefix: number;
  /** The peer's PublicIP (host-order u32). */
  readonly ip: number;
  /** The peer's UDP port. */
  readonly port: number;
}

/** What the Worker posts back. */
export type WorkerReport = BaseReport;
