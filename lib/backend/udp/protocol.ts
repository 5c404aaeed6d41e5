/**
 * Messages between the udp backend (main thread) and its data-path Worker, and the layout of
 * the shared control words.
 */

/** Int32 slots of the control SharedArrayBuffer. */
/** Control word set to 1 by the main thread: the Worker stops within one poll. */
export const CTL_STOP = 0;
/** Control word counting messages posted but not yet applied: the Worker yields to its event loop. */
export const CTL_PENDING = 1;
/** The number of Int32 control words. */
export const CTL_WORDS = 2;

/** The first message: everything the data path needs, fds opened by the main thread. */
export interface WorkerInit {
  /** The message kind. */
  readonly op: "init";
  /** The TUN queue's fd (non-blocking). */
  readonly tunFd: number;
  /** The bound UDP socket's fd (non-blocking). */
  readonly udpFd: number;
  /** An eventfd the main thread signals after posting messages, so that `poll` returns. */
  readonly wakeFd: number;
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
  /** The control words ({@link CTL_STOP}, {@link CTL_PENDING}). */
  readonly ctl: SharedArrayBuffer;
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
export type WorkerReport =
  | { readonly type: "ready" }
  | { readonly type: "stopped" }
  | { readonly type: "warn"; readonly message: string }
  | { readonly type: "error"; readonly message: string };
