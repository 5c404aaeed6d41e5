/**
 * Messages between the wireguard backend (main thread) and its data-path Worker. The control
 * words are the udp backend's (stop flag, pending-message count).
 */

export { CTL_PENDING, CTL_STOP, CTL_WORDS } from "../udp/protocol.ts";

/** The first message: everything the data path needs, fds opened by the main thread. */
export interface WorkerInit {
  /** The message kind. */
  readonly op: "init";
  /** The TUN's fd (non-blocking). */
  readonly tunFd: number;
  /** The bound UDP socket's fd (non-blocking). */
  readonly udpFd: number;
  /** An eventfd the main thread signals after posting messages. */
  readonly wakeFd: number;
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
  /** The control words. */
  readonly ctl: SharedArrayBuffer;
  /** The counters (counters.ts), written by the Worker. */
  readonly counters: SharedArrayBuffer;
}

/** A peer as the backend configures it (base64 keys; addresses host-order u32). */
export interface PeerSpec {
  /** The peer's public key, base64. */
  readonly publicKey: string;
  /** The preshared key, base64, or null. */
  readonly presharedKey: string | null;
  /** The endpoint address. */
  readonly ip: number;
  /** The endpoint port. */
  readonly port: number;
  /** Allowed IPs. */
  readonly allowedIPs: readonly { readonly net: number; readonly prefix: number }[];
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
  | { readonly type: "ready" }
  | { readonly type: "stopped" }
  | { readonly type: "dump"; readonly id: number; readonly text: string }
  | { readonly type: "warn"; readonly message: string }
  | { readonly type: "error"; readonly message: string };
