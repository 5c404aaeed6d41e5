/**
 * A WireGuard peer's state and its keypairs: what {@link Device} keeps per peer (keys,
 * endpoint, allowed IPs, the previous/current/next keypairs, timer deadlines, counters).
 */

import { CookieJar } from "./cookie.ts";
import {
  type HandshakeState,
  type Identity,
  type PeerKeys,
  peerKeys,
  type SessionKeys,
} from "./noise.ts";
import { ReplayWindow } from "./replay.ts";
import { toHex } from "./keys.ts";

/** A peer as configured (from a lease, or through the UAPI). */
export interface PeerConfig {
  /** The peer's public key. */
  readonly publicKey: Uint8Array;
  /** The preshared key; absent means none (all zeros). */
  readonly presharedKey?: Uint8Array;
  /**
   * Where to send: host-order IPv4 and port, or on an IPv6 device `ip6` (16 network-order
   * bytes; `ip` is then 0); null until known.
   */
  readonly endpoint:
    | { readonly ip: number; readonly port: number; readonly ip6?: Uint8Array | null }
    | null;
  /** Allowed IPs: inner sources accepted from this peer, destinations routed to it. */
  readonly allowedIPs: readonly AllowedIP[];
  /** Persistent keepalive interval in seconds; 0 = off. */
  readonly persistentKeepalive: number;
}

/**
 * One allowed-IP prefix: IPv4 as a host-order u32 `net`, or IPv6 as 16 network-order bytes in
 * `net6` (`net` is then ignored). A Device takes only its own family's entries.
 */
export interface AllowedIP {
  readonly net: number;
  readonly prefix: number;
  readonly net6?: Uint8Array;
}

/** A peer's endpoint: IPv4 `ip` (host order), or IPv6 `ip6` (16 bytes, `ip` = 0). */
export interface Endpoint {
  ip: number;
  port: number;
  ip6: Uint8Array | null;
}

/** A copy of a configured endpoint (its IPv6 bytes copied too). */
export function endpointOf(
  e: { readonly ip: number; readonly port: number; readonly ip6?: Uint8Array | null },
): Endpoint {
  return { ip: e.ip, port: e.port, ip6: e.ip6 ? e.ip6.slice(0, 16) : null };
}

/** A keypair from one handshake. */
export class Keypair {
  /** Next send counter. */
  sendCounter = 0;
  /** The receive replay window. */
  readonly replay = new ReplayWindow();
  constructor(
    readonly peer: Peer,
    readonly keys: SessionKeys,
    readonly sendSlot: number,
    readonly recvSlot: number,
    readonly created: number,
  ) {}
}

/** A peer's state. */
export class Peer {
  /** Precomputed keys. */
  keys: PeerKeys;
  /** The endpoint: from config, then roaming to the last authenticated source. */
  endpoint: Endpoint | null;
  /** Allowed IPs. */
  allowedIPs: readonly AllowedIP[];
  /** Persistent keepalive, seconds. */
  persistentKeepalive: number;
  /** Cookie state for our initiations to this peer. */
  cookies: CookieJar;
  /** Our handshake in flight (initiator) or none. */
  handshake: HandshakeState | null = null;
  /** The newest initiation timestamp consumed from this peer (replay protection). */
  latestTimestamp: Uint8Array = new Uint8Array(12);
  /** When we last consumed an initiation from this peer (flood protection). */
  lastInitiationConsumed = -Infinity;
  /** When we last sent an initiation. */
  lastInitiationSent = -Infinity;
  /** Keypairs. */
  previous: Keypair | null = null;
  /** The keypair we send with. */
  current: Keypair | null = null;
  /** Responder side: derived, not yet confirmed by the initiator's first data. */
  next: Keypair | null = null;
  /** Packets waiting for a keypair. */
  staged: Uint8Array[] = [];
  /** Timer deadlines (monotonic ms), 0 = not armed. */
  retransmitAt = 0;
  /** Send a keepalive (we received data and sent nothing back). */
  keepaliveAt = 0;
  /** Start a new handshake (we sent data and heard nothing back). */
  newHandshakeAt = 0;
  /** Erase all key material. */
  zeroKeysAt = 0;
  /** The persistent keepalive. */
  persistentAt = 0;
  /** Initiations sent in the current attempt. */
  handshakeAttempts = 0;
  /** Another keepalive is due when the pending one fires. */
  needAnotherKeepalive = false;
  /** The "last minute" rekey before REJECT_AFTER_TIME was sent. */
  sentLastMinuteHandshake = false;
  /** Counters for `wg show`. */
  rxBytes = 0;
  /** Bytes sent (datagram payloads). */
  txBytes = 0;
  /** Wall-clock ms of the last completed handshake; 0 = never. */
  lastHandshakeWallMs = 0;

  constructor(id: Identity, cfg: PeerConfig) {
    this.keys = peerKeys(id, cfg.publicKey, cfg.presharedKey);
    this.endpoint = cfg.endpoint === null ? null : endpointOf(cfg.endpoint);
    this.allowedIPs = cfg.allowedIPs;
    this.persistentKeepalive = cfg.persistentKeepalive;
    this.cookies = new CookieJar(this.keys.cookieKey);
  }

  /** The peer's public key, hex (the peer table's key). */
  get id(): string {
    return toHex(this.keys.pub);
  }
}
