/**
 * A userspace WireGuard device without I/O: peers, the index table, the three keypairs per
 * peer (previous/current/next), handshakes with cookies under load, transport seal/open over
 * {@link PacketAead} buffers, staged packets, and the timers (whitepaper §6) driven by
 * {@link Device.tick} and an injected {@link Clock}.
 *
 * The data-path Worker owns one Device and calls {@link Device.sealTransport} /
 * {@link Device.openTransport} per packet (no allocation, no Promise), {@link
 * Device.handshakeMessage} for types 1–3 and {@link Device.tick} once per loop. Everything it
 * must send by itself (handshakes, cookie replies, keepalives, staged packets) goes to
 * `env.send`. Unit tests wire two Devices together through that callback.
 *
 * Addresses of both families: an IPv4 endpoint or source is a host-order u32 (`ip`, with `ip6`
 * null), an IPv6 one 16 network-order bytes (`ip6`, with `ip` 0); IPv4 allowed IPs are `net`,
 * IPv6 ones `net6`. An inner packet is checked by its version against the allowed IPs of its
 * family, so the one class serves upstream's `separate` mode (a device per family, whose peers
 * have allowed IPs of that family only) and the single-device modes (`auto`, `ipv4`, `ipv6`:
 * both families through one device). {@link Device.sealTransport} routes an IPv4 packet by its
 * destination, {@link Device.sealTransport6} an IPv6 one.
 */

import type { PacketAead } from "../../../ffi/crypto.ts";
import { CookieChecker } from "./cookie.ts";
import {
  checkMac1,
  compareTai64n,
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  type HandshakeState,
  type Identity,
  identity,
  MSG_COOKIE,
  MSG_INITIATION,
  MSG_RESPONSE,
  MSG_TRANSPORT,
  peerKeys,
  readIndex,
  responseIndices,
  type SessionKeys,
  TRANSPORT_HEADER,
  TRANSPORT_MIN,
  writeMacs,
} from "./noise.ts";
import { REJECT_AFTER_MESSAGES } from "./replay.ts";
import {
  type AllowedIP,
  type Endpoint,
  endpointOf,
  Keypair,
  Peer,
  type PeerConfig,
} from "./peer.ts";
import {
  type Clock,
  INITIATIONS_PER_SECOND,
  KEEPALIVE_TIMEOUT,
  MAX_STAGED_PACKETS,
  MAX_TIMER_HANDSHAKES,
  RATELIMIT_BURST,
  RATELIMIT_PER_SECOND,
  REJECT_AFTER_TIME,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER,
  UNDER_LOAD_HOLD,
  UNDER_LOAD_PER_SECOND,
} from "./timers.ts";
import { toHex } from "./keys.ts";

/** Results of {@link Device.openTransport} and {@link Device.handshakeMessage} below 0: drops. */
export const DROP_UNKNOWN_INDEX = -1;
/** The tag did not verify (wrong key, forged or corrupted). */
export const DROP_BAD_MAC = -2;
/** A counter seen before, or too old for the window. */
export const DROP_REPLAY = -3;
/** The inner packet's source is not among the authenticated peer's allowed IPs. */
export const DROP_NOT_ALLOWED = -4;
/** The keypair is past REJECT_AFTER_TIME / REJECT_AFTER_MESSAGES. */
export const DROP_EXPIRED = -5;
/** Not a well-formed message or inner packet. */
export const DROP_MALFORMED = -6;
/** A handshake from a static key we have no peer for. */
export const DROP_UNKNOWN_PEER = -7;
/** A handshake message with a wrong MAC1 (or, under load, an answered missing MAC2). */
export const DROP_BAD_HANDSHAKE_MAC = -8;
/** A handshake refused: replayed timestamp, flood, rate limit or failed decryption. */
export const DROP_HANDSHAKE = -9;
/** Under load: a cookie reply was sent instead of processing the message. */
export const COOKIE_SENT = -10;
/** No peer's allowed IPs contain the destination (send side). */
export const DROP_NO_ROUTE = -11;
/** No usable keypair yet: the packet was staged and a handshake started (send side). */
export const STAGED = -12;

/** What the device needs from its host. */
export interface DeviceEnv {
  /** The clock. */
  readonly clock: Clock;
  /** `n` random bytes (indices, ephemeral keys via generatePrivateKey, cookie secrets, jitter). */
  readonly random: (n: number) => Uint8Array;
  /** Sends a datagram the device made by itself (`ip6`: the IPv6 destination, else null). */
  readonly send: (datagram: Uint8Array, ip: number, port: number, ip6: Uint8Array | null) => void;
  /**
   * The TUN MTU: padding stops there, as the kernel's WireGuard and wireguard-go do, so that a
   * full-size packet's datagram fits the underlay (MTU = underlay − 80: over IPv6, padding
   * 1420 to 1424 would make a 1504-byte datagram to fragment). Absent: pad to 16 always.
   */
  readonly mtu?: number;
}

type IndexEntry =
  | { readonly peer: Peer; readonly keypair: Keypair; readonly handshake?: undefined }
  | { readonly peer: Peer; readonly handshake: HandshakeState; readonly keypair?: undefined };

/** Per-source token bucket for handshakes under load. */
interface Bucket {
  tokens: number;
  at: number;
}

export { type AllowedIP, type Endpoint, Keypair, Peer, type PeerConfig };

/**
 * IPv6 allowed IPs of one prefix length: nested maps keyed by the masked 32-bit words of the
 * prefix (as many words as the prefix covers), the last level holding the peer. Lookups read
 * the address bytes in place: no key string or bigint per packet.
 */
type Trie6 = Map<number, Trie6 | Peer>;

/** Word `w` (0..3) of the 16 bytes at `b[off..]`, masked to `prefix` bits, as an unsigned u32. */
function word6(b: Uint8Array, off: number, w: number, prefix: number): number {
  const o = off + 4 * w;
  const v = ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
  const bits = prefix - 32 * w; // bits of this word inside the prefix
  if (bits >= 32) return v;
  return bits <= 0 ? 0 : (v & ((0xffffffff << (32 - bits)) >>> 0)) >>> 0;
}

function bytesEqual16(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The WireGuard device. */
export class Device {
  readonly id: Identity;
  readonly #env: DeviceEnv;
  readonly #aead: PacketAead;
  readonly #peers = new Map<string, Peer>();
  readonly #indices = new Map<number, IndexEntry>();
  /** Allowed IPs: prefix length → (masked network → peer), longest prefix first. */
  readonly #routes = new Map<number, Map<number, Peer>>();
  #prefixes: number[] = [];
  /** IPv6 allowed IPs (an IPv6 device): prefix length → {@link Trie6}, longest first. */
  readonly #routes6 = new Map<number, Trie6>();
  #prefixes6: number[] = [];
  readonly #freeSlots: number[] = [];
  readonly #cookieChecker: CookieChecker;
  #loadStart = 0;
  #loadCount = 0;
  #underLoadUntil = -Infinity;
  readonly #buckets = new Map<string, Bucket>();
  // Scratch buffers for what the device seals by itself (keepalives, staged packets).
  readonly #scratchIn = new Uint8Array(65536);
  readonly #scratchOut = new Uint8Array(65536 + 2 * TRANSPORT_HEADER);
  readonly #scratchInId: number;
  readonly #scratchOutId: number;
  readonly #scratchOutPayload: number;

  /**
   * `aead` must have an even number of key slots; two per keypair, three keypairs per peer.
   */
  constructor(privateKey: Uint8Array, env: DeviceEnv, aead: PacketAead) {
    this.id = identity(privateKey);
    this.#env = env;
    this.#aead = aead;
    for (let i = aead.keySlots - 2; i >= 0; i -= 2) this.#freeSlots.push(i);
    this.#cookieChecker = new CookieChecker(this.id.cookieKey, env.random, env.clock.now());
    this.#scratchInId = aead.bind(this.#scratchIn);
    this.#scratchOutId = aead.bind(this.#scratchOut);
    this.#scratchOutPayload = aead.bind(this.#scratchOut.subarray(TRANSPORT_HEADER));
  }

  // ---- configuration ----

  /** Adds or updates a peer (keys kept when the public key is unchanged). */
  setPeer(cfg: PeerConfig): Peer {
    const key = toHex(cfg.publicKey);
    let peer = this.#peers.get(key);
    if (peer === undefined) {
      peer = new Peer(this.id, cfg);
      this.#peers.set(key, peer);
    } else {
      const psk = cfg.presharedKey ?? new Uint8Array(32);
      if (toHex(psk) !== toHex(peer.keys.psk)) {
        peer.keys = peerKeys(this.id, cfg.publicKey, cfg.presharedKey);
        this.#zeroKeys(peer); // sessions from the old PSK must not outlive it
      }
      if (cfg.endpoint !== null) peer.endpoint = endpointOf(cfg.endpoint);
      peer.allowedIPs = cfg.allowedIPs;
      peer.persistentKeepalive = cfg.persistentKeepalive;
      if (cfg.persistentKeepalive === 0) peer.persistentAt = 0;
    }
    this.#rebuildRoutes();
    if (peer.persistentKeepalive > 0 && peer.endpoint !== null && peer.persistentAt === 0) {
      // wireguard-go sends a keepalive at once when one is configured on an up device.
      this.#sendKeepalive(peer);
    }
    return peer;
  }

  /** Removes a peer and erases its keys. */
  removePeer(publicKey: Uint8Array): boolean {
    const key = toHex(publicKey);
    const peer = this.#peers.get(key);
    if (peer === undefined) return false;
    this.#zeroKeys(peer);
    this.#peers.delete(key);
    this.#rebuildRoutes();
    return true;
  }

  /** The peers, in insertion order. */
  peers(): Peer[] {
    return [...this.#peers.values()];
  }

  /** The peer whose allowed IPs contain `ip` (longest prefix), if any. */
  route(ip: number): Peer | undefined {
    for (const p of this.#prefixes) {
      const mask = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
      const peer = this.#routes.get(p)!.get((ip & mask) >>> 0);
      if (peer !== undefined) return peer;
    }
    return undefined;
  }

  /**
   * The peer whose IPv6 allowed IPs contain the 16-byte address at `b[off..]` (longest
   * prefix), if any.
   */
  route6(b: Uint8Array, off: number): Peer | undefined {
    for (const p of this.#prefixes6) {
      let node: Trie6 | Peer | undefined = this.#routes6.get(p)!;
      const words = p === 0 ? 1 : (p + 31) >>> 5;
      for (let w = 0; w < words && node !== undefined; w++) {
        node = (node as Trie6).get(word6(b, off, w, p));
      }
      if (node !== undefined) return node as Peer;
    }
    return undefined;
  }

  #rebuildRoutes(): void {
    this.#routes.clear();
    this.#routes6.clear();
    for (const peer of this.#peers.values()) {
      for (const a of peer.allowedIPs) {
        if (a.net6 !== undefined) {
          this.#addRoute6(a.net6, a.prefix, peer);
          continue;
        }
        const mask = a.prefix === 0 ? 0 : (0xffffffff << (32 - a.prefix)) >>> 0;
        let m = this.#routes.get(a.prefix);
        if (m === undefined) this.#routes.set(a.prefix, m = new Map());
        m.set((a.net & mask) >>> 0, peer);
      }
    }
    this.#prefixes = [...this.#routes.keys()].sort((a, b) => b - a);
    this.#prefixes6 = [...this.#routes6.keys()].sort((a, b) => b - a);
  }

  #addRoute6(net: Uint8Array, prefix: number, peer: Peer): void {
    let node = this.#routes6.get(prefix);
    if (node === undefined) this.#routes6.set(prefix, node = new Map());
    const words = prefix === 0 ? 1 : (prefix + 31) >>> 5;
    for (let w = 0; w < words - 1; w++) {
      const k = word6(net, 0, w, prefix);
      let next = node.get(k) as Trie6 | undefined;
      if (next === undefined) node.set(k, next = new Map());
      node = next;
    }
    node.set(word6(net, 0, words - 1, prefix), peer);
  }

  // ---- transport data ----

  /**
   * Seals the `len`-byte IPv4 packet in buffer `src` (an {@link PacketAead} id whose view is
   * `srcView`; room for padding after it) for the peer that routes `dst`, into the datagram view
   * `out` (header at `outOff`) whose payload (at 16) is buffer `outPayload` (ciphertext at
   * `outOff` of it). Returns the datagram length
   * and sets {@link Device.lastPeer}, or a negative result: {@link DROP_NO_ROUTE}, {@link STAGED}.
   */
  sealTransport(
    dst: number,
    src: number,
    srcView: Uint8Array,
    len: number,
    out: Uint8Array,
    outPayload: number,
    outOff = 0,
  ): number {
    return this.#sealFor(this.route(dst), src, srcView, len, out, outPayload, outOff);
  }

  /**
   * {@link Device.sealTransport} for an IPv6 device: the `len`-byte IPv6 packet in `srcView`
   * goes to the peer whose allowed IPs contain its destination (bytes 24..40).
   */
  sealTransport6(
    src: number,
    srcView: Uint8Array,
    len: number,
    out: Uint8Array,
    outPayload: number,
    outOff = 0,
  ): number {
    if (len < 40) return DROP_MALFORMED;
    return this.#sealFor(this.route6(srcView, 24), src, srcView, len, out, outPayload, outOff);
  }

  #sealFor(
    peer: Peer | undefined,
    src: number,
    srcView: Uint8Array,
    len: number,
    out: Uint8Array,
    outPayload: number,
    outOff: number,
  ): number {
    if (peer === undefined) return DROP_NO_ROUTE;
    const kp = this.#sendable(peer);
    if (kp === null || peer.endpoint === null) {
      if (peer.staged.length >= MAX_STAGED_PACKETS) peer.staged.shift();
      peer.staged.push(srcView.slice(0, len));
      this.#initiate(peer, false);
      return STAGED;
    }
    this.lastPeer = peer;
    return this.#seal(peer, kp, src, srcView, len, out, outPayload, outOff);
  }

  /** The peer of the last successful {@link Device.sealTransport} or {@link Device.openTransport}. */
  lastPeer: Peer | null = null;

  #sendable(peer: Peer): Keypair | null {
    const kp = peer.current;
    if (kp === null) return null;
    const now = this.#env.clock.now();
    if (now - kp.created >= REJECT_AFTER_TIME || kp.sendCounter >= REJECT_AFTER_MESSAGES) {
      return null;
    }
    return kp;
  }

  #seal(
    peer: Peer,
    kp: Keypair,
    src: number,
    srcView: Uint8Array,
    len: number,
    out: Uint8Array,
    outPayload: number,
    o = 0,
  ): number {
    // Pad to a multiple of 16 (whitepaper §5.4.6), but not past the MTU (the TUN enforces it
    // on the packets themselves).
    let padded = (len + 15) & ~15;
    const mtu = this.#env.mtu ?? 0;
    if (mtu > 0 && padded > mtu && len <= mtu) padded = mtu;
    srcView.fill(0, len, padded);
    const counter = kp.sendCounter++;
    out[o + 0] = MSG_TRANSPORT;
    out[o + 1] = 0;
    out[o + 2] = 0;
    out[o + 3] = 0;
    const r = kp.keys.remoteIndex;
    out[o + 4] = r & 255;
    out[o + 5] = (r >>> 8) & 255;
    out[o + 6] = (r >>> 16) & 255;
    out[o + 7] = (r >>> 24) & 255;
    const lo = counter >>> 0, hi = Math.floor(counter / 0x1_0000_0000);
    out[o + 8] = lo & 255;
    out[o + 9] = (lo >>> 8) & 255;
    out[o + 10] = (lo >>> 16) & 255;
    out[o + 11] = lo >>> 24;
    out[o + 12] = hi & 255;
    out[o + 13] = (hi >>> 8) & 255;
    out[o + 14] = (hi >>> 16) & 255;
    out[o + 15] = hi >>> 24;
    this.#aead.seal(kp.sendSlot, counter, src, padded, outPayload, o);
    const total = TRANSPORT_HEADER + padded + 16;
    peer.txBytes += total;
    this.#sentData(peer, kp, len);
    return total;
  }

  /**
   * Opens the transport datagram at byte `off` of view `dgram` (`len` bytes; its ciphertext,
   * 16 bytes further, is at `off` of buffer `cipher`) from `ip:port` (on an IPv6 device from
   * `[ip6]:port`; `ip6` is only read, not kept) into buffer `plain` (view `plainView`). Returns
   * the inner packet's length (0 for a keepalive) and sets {@link Device.lastPeer}, or a
   * negative drop reason.
   */
  openTransport(
    dgram: Uint8Array,
    len: number,
    ip: number,
    port: number,
    cipher: number,
    plain: number,
    plainView: Uint8Array,
    off = 0,
    ip6: Uint8Array | null = null,
  ): number {
    if (len < TRANSPORT_MIN) return DROP_MALFORMED;
    const entry = this.#indices.get(readIndex(dgram, off + 4));
    const kp = entry?.keypair;
    if (kp === undefined) return DROP_UNKNOWN_INDEX;
    const hi = readIndex(dgram, off + 12);
    if (hi >= 0x200000) return DROP_REPLAY; // ≥ 2^53: never sent by a peer that rekeys
    const counter = hi * 0x1_0000_0000 + readIndex(dgram, off + 8);
    const now = this.#env.clock.now();
    if (now - kp.created >= REJECT_AFTER_TIME) return DROP_EXPIRED;
    if (!this.#aead.open(kp.recvSlot, counter, cipher, len - TRANSPORT_HEADER, plain, off)) {
      return DROP_BAD_MAC;
    }
    if (!kp.replay.validate(counter)) return DROP_REPLAY;
    const peer = kp.peer;
    this.lastPeer = peer;
    const n = len - TRANSPORT_MIN;
    this.#receivedData(kp, ip, port, ip6, len, n);
    if (n === 0) return 0;
    const version = plainView[0] >> 4;
    if (version === 6) {
      // An IPv6 packet whose source (bytes 8..24) the authenticated peer may use.
      if (n < 40) return DROP_MALFORMED;
      const total6 = 40 + ((plainView[4] << 8) | plainView[5]);
      if (total6 > n) return DROP_MALFORMED;
      if (this.route6(plainView, 8) !== peer) return DROP_NOT_ALLOWED;
      return total6;
    }
    // An IPv4 packet whose source the authenticated peer may use.
    if (n < 20 || version !== 4) return DROP_MALFORMED;
    const total = (plainView[2] << 8) | plainView[3];
    if (total < 20 || total > n) return DROP_MALFORMED;
    const srcIp =
      ((plainView[12] << 24) | (plainView[13] << 16) | (plainView[14] << 8) | plainView[15]) >>> 0;
    if (this.route(srcIp) !== peer) return DROP_NOT_ALLOWED;
    return total;
  }

  // ---- handshake messages ----

  /**
   * Handles a handshake message (types 1–3; the bytes are not kept). Returns 0 when it was
   * accepted, or a negative drop reason ({@link COOKIE_SENT} under load). On an IPv6 device
   * the source is `[ip6]:port` (read, and copied where kept).
   */
  handshakeMessage(
    msg: Uint8Array,
    ip: number,
    port: number,
    ip6: Uint8Array | null = null,
  ): number {
    const type = msg[0];
    if (msg[1] !== 0 || msg[2] !== 0 || msg[3] !== 0) return DROP_MALFORMED;
    const now = this.#env.clock.now();
    if (type === MSG_COOKIE) return this.#cookieReply(msg, now);
    if (type !== MSG_INITIATION && type !== MSG_RESPONSE) return DROP_MALFORMED;
    if (!checkMac1(msg, this.id.mac1Key)) return DROP_BAD_HANDSHAKE_MAC;
    if (this.#underLoad(now)) {
      if (!this.#cookieChecker.checkMac2(msg, ip, port, now, ip6)) {
        this.#env.send(this.#cookieChecker.reply(msg, ip, port, now, ip6), ip, port, ip6);
        return COOKIE_SENT;
      }
      if (!this.#allow(ip, ip6, now)) return DROP_HANDSHAKE;
    }
    const from: Endpoint = { ip, port, ip6: ip6 === null ? null : ip6.slice(0, 16) };
    return type === MSG_INITIATION
      ? this.#initiation(msg, from, now)
      : this.#response(msg, from, now);
  }

  /** True when handshakes arrive faster than {@link UNDER_LOAD_PER_SECOND} (held 1 s). */
  #underLoad(now: number): boolean {
    if (now - this.#loadStart >= 1000) {
      this.#loadStart = now;
      this.#loadCount = 0;
    }
    if (++this.#loadCount > UNDER_LOAD_PER_SECOND) this.#underLoadUntil = now + UNDER_LOAD_HOLD;
    return now < this.#underLoadUntil;
  }

  /** True when the device is under load now (for tests and `wg show`-like status). */
  get underLoad(): boolean {
    return this.#env.clock.now() < this.#underLoadUntil;
  }

  /** The handshake rate limit per source: an IPv4 address, or an IPv6 /64 (as wireguard-go). */
  #allow(ip: number, ip6: Uint8Array | null, now: number): boolean {
    const key = ip6 === null ? String(ip) : toHex(ip6.subarray(0, 8));
    let b = this.#buckets.get(key);
    if (b === undefined) {
      if (this.#buckets.size > 4096) this.#buckets.clear();
      this.#buckets.set(key, b = { tokens: RATELIMIT_BURST, at: now });
    }
    b.tokens = Math.min(RATELIMIT_BURST, b.tokens + (now - b.at) * RATELIMIT_PER_SECOND / 1000);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  #initiation(msg: Uint8Array, from: Endpoint, now: number): number {
    const r = consumeInitiation(this.id, msg, (pub) => this.#peers.get(toHex(pub))?.keys);
    if (r === "unknown-peer") return DROP_UNKNOWN_PEER;
    if (r === null) return DROP_HANDSHAKE;
    const peer = this.#peers.get(toHex(r.peer.pub))!;
    if (compareTai64n(r.init.timestamp, peer.latestTimestamp) <= 0) return DROP_HANDSHAKE;
    if (now - peer.lastInitiationConsumed < 1000 / INITIATIONS_PER_SECOND) return DROP_HANDSHAKE;
    peer.latestTimestamp = r.init.timestamp;
    peer.lastInitiationConsumed = now;
    peer.endpoint = from;
    const index = this.#newIndex();
    const resp = createResponse(peer.keys, r.init, index, this.#ephemeral());
    if (resp === null) return DROP_HANDSHAKE;
    const kp = this.#newKeypair(peer, resp.keys, now);
    if (kp === null) return DROP_HANDSHAKE;
    // Responder: the keypair waits as `next` until the initiator's first data confirms it.
    if (peer.next !== null) this.#freeKeypair(peer.next);
    peer.next = kp;
    if (peer.previous !== null) this.#freeKeypair(peer.previous);
    peer.previous = null;
    const mac1 = writeMacs(resp.msg, peer.keys.mac1Key, peer.cookies.current(now));
    peer.cookies.sent(mac1);
    this.#env.send(resp.msg, from.ip, from.port, from.ip6);
    peer.txBytes += resp.msg.length;
    peer.zeroKeysAt = now + 3 * REJECT_AFTER_TIME; // session derived
    this.#sentAuthenticated(peer, now);
    return 0;
  }

  #response(msg: Uint8Array, from: Endpoint, now: number): number {
    const { receiver } = responseIndices(msg);
    const entry = this.#indices.get(receiver);
    if (entry?.handshake === undefined) return DROP_UNKNOWN_INDEX;
    const peer = entry.peer;
    const keys = consumeResponse(this.id, peer.keys, entry.handshake, msg);
    if (keys === null) return DROP_HANDSHAKE;
    this.#indices.delete(receiver);
    peer.handshake = null;
    const kp = this.#newKeypair(peer, keys, now);
    if (kp === null) return DROP_HANDSHAKE;
    // Initiator: the new keypair is usable at once.
    if (peer.next !== null) {
      if (peer.previous !== null) this.#freeKeypair(peer.previous);
      peer.previous = peer.next;
      peer.next = null;
      if (peer.current !== null) this.#freeKeypair(peer.current);
    } else {
      if (peer.previous !== null) this.#freeKeypair(peer.previous);
      peer.previous = peer.current;
    }
    peer.current = kp;
    peer.endpoint = from;
    peer.rxBytes += msg.length;
    peer.zeroKeysAt = now + 3 * REJECT_AFTER_TIME;
    this.#handshakeComplete(peer, now);
    this.#receivedAuthenticated(peer, now);
    // Confirm the keypair to the responder: staged packets, or a keepalive.
    if (peer.staged.length > 0) this.#flushStaged(peer);
    else this.#sendKeepalive(peer);
    return 0;
  }

  #cookieReply(msg: Uint8Array, now: number): number {
    const entry = this.#indices.get(readIndex(msg, 4));
    if (entry === undefined) return DROP_UNKNOWN_INDEX;
    return entry.peer.cookies.consume(msg, now) ? 0 : DROP_BAD_HANDSHAKE_MAC;
  }

  // ---- sending handshakes and keepalives ----

  /** Starts a handshake with `peer` now (rate-limited to one per REKEY_TIMEOUT). */
  initiate(peer: Peer): void {
    this.#initiate(peer, false);
  }

  #initiate(peer: Peer, retry: boolean): void {
    const now = this.#env.clock.now();
    if (!retry) peer.handshakeAttempts = 0;
    if (now - peer.lastInitiationSent < REKEY_TIMEOUT) return;
    if (peer.endpoint === null) return;
    if (peer.handshake !== null) this.#indices.delete(peer.handshake.localIndex);
    const index = this.#newIndex();
    const init = createInitiation(
      this.id,
      peer.keys,
      index,
      this.#env.clock.wallMs(),
      this.#ephemeral(),
    );
    if (init === null) return;
    peer.handshake = init.state;
    this.#indices.set(index, { peer, handshake: init.state });
    peer.lastInitiationSent = now;
    const mac1 = writeMacs(init.msg, peer.keys.mac1Key, peer.cookies.current(now));
    peer.cookies.sent(mac1);
    this.#env.send(init.msg, peer.endpoint.ip, peer.endpoint.port, peer.endpoint.ip6);
    peer.txBytes += init.msg.length;
    this.#sentAuthenticated(peer, now);
    peer.retransmitAt = now + REKEY_TIMEOUT + this.#jitter();
  }

  #sendKeepalive(peer: Peer): void {
    const kp = this.#sendable(peer);
    if (kp === null || peer.endpoint === null) {
      this.#initiate(peer, false);
      return;
    }
    const n = this.#seal(
      peer,
      kp,
      this.#scratchInId,
      this.#scratchIn,
      0,
      this.#scratchOut,
      this.#scratchOutPayload,
    );
    const ep = peer.endpoint;
    this.#env.send(this.#scratchOut.slice(0, n), ep.ip, ep.port, ep.ip6);
  }

  #flushStaged(peer: Peer): void {
    const kp = this.#sendable(peer);
    if (kp === null || peer.endpoint === null) return;
    const staged = peer.staged;
    peer.staged = [];
    for (const p of staged) {
      this.#scratchIn.set(p);
      const n = this.#seal(
        peer,
        kp,
        this.#scratchInId,
        this.#scratchIn,
        p.length,
        this.#scratchOut,
        this.#scratchOutPayload,
      );
      const ep = peer.endpoint;
      this.#env.send(this.#scratchOut.slice(0, n), ep.ip, ep.port, ep.ip6);
    }
  }

  // ---- timers ----

  /** Runs every timer that is due. Call it often (the data path: every poll wake-up). */
  tick(): void {
    const now = this.#env.clock.now();
    for (const peer of this.#peers.values()) {
      if (peer.retransmitAt !== 0 && now >= peer.retransmitAt) {
        peer.retransmitAt = 0;
        if (peer.handshakeAttempts >= MAX_TIMER_HANDSHAKES) {
          // Give up; erase everything in 3 × REJECT_AFTER_TIME unless a handshake succeeds.
          peer.staged = [];
          if (peer.handshake !== null) this.#indices.delete(peer.handshake.localIndex);
          peer.handshake = null;
          if (peer.zeroKeysAt === 0) peer.zeroKeysAt = now + 3 * REJECT_AFTER_TIME;
        } else {
          peer.handshakeAttempts++;
          peer.lastInitiationSent = -Infinity; // a retry is never rate-limited
          this.#initiate(peer, true);
        }
      }
      if (peer.keepaliveAt !== 0 && now >= peer.keepaliveAt) {
        peer.keepaliveAt = 0;
        this.#sendKeepalive(peer);
        if (peer.needAnotherKeepalive) {
          peer.needAnotherKeepalive = false;
          peer.keepaliveAt = now + KEEPALIVE_TIMEOUT;
        }
      }
      if (peer.newHandshakeAt !== 0 && now >= peer.newHandshakeAt) {
        // We sent data and heard nothing for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT.
        peer.newHandshakeAt = 0;
        this.#initiate(peer, false);
      }
      if (peer.zeroKeysAt !== 0 && now >= peer.zeroKeysAt) {
        this.#zeroKeys(peer);
      }
      if (peer.persistentAt !== 0 && now >= peer.persistentAt) {
        peer.persistentAt = 0;
        this.#sendKeepalive(peer);
      }
    }
  }

  #handshakeComplete(peer: Peer, _now: number): void {
    peer.retransmitAt = 0;
    peer.handshakeAttempts = 0;
    peer.sentLastMinuteHandshake = false;
    peer.lastHandshakeWallMs = this.#env.clock.wallMs();
  }

  #sentAuthenticated(peer: Peer, now: number): void {
    peer.keepaliveAt = 0; // anything we send carries the "I am alive"
    this.#traversal(peer, now);
  }

  #receivedAuthenticated(peer: Peer, now: number): void {
    peer.newHandshakeAt = 0; // the peer answers
    this.#traversal(peer, now);
  }

  #traversal(peer: Peer, now: number): void {
    if (peer.persistentKeepalive > 0) peer.persistentAt = now + peer.persistentKeepalive * 1000;
  }

  #sentData(peer: Peer, kp: Keypair, len: number): void {
    const now = this.#env.clock.now();
    this.#sentAuthenticated(peer, now);
    if (len > 0 && peer.newHandshakeAt === 0) {
      peer.newHandshakeAt = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + this.#jitter();
    }
    // Keep the key fresh (sending side).
    if (
      kp.sendCounter >= REKEY_AFTER_MESSAGES || // ≥: a double cannot count past 2^53
      (kp.keys.isInitiator && now - kp.created > REKEY_AFTER_TIME)
    ) {
      this.#initiate(peer, false);
    }
  }

  #receivedData(
    kp: Keypair,
    ip: number,
    port: number,
    ip6: Uint8Array | null,
    wireLen: number,
    len: number,
  ): void {
    const peer = kp.peer;
    const now = this.#env.clock.now();
    peer.rxBytes += wireLen;
    if (kp === peer.next) {
      // The initiator used the new keypair: it is confirmed.
      if (peer.previous !== null) this.#freeKeypair(peer.previous);
      peer.previous = peer.current;
      peer.current = kp;
      peer.next = null;
      this.#handshakeComplete(peer, now);
      if (peer.staged.length > 0) this.#flushStaged(peer);
    }
    const ep = peer.endpoint;
    if (
      ep === null || ep.ip !== ip || ep.port !== port ||
      (ip6 !== null && (ep.ip6 === null || !bytesEqual16(ep.ip6, ip6)))
    ) {
      // Roaming: answer where the authenticated packet came from.
      peer.endpoint = { ip, port, ip6: ip6 === null ? null : ip6.slice(0, 16) };
    }
    // Keep the key fresh (receiving side): rekey before the current keypair is rejected.
    const cur = peer.current;
    if (
      cur !== null && cur.keys.isInitiator && !peer.sentLastMinuteHandshake &&
      now - cur.created > REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    ) {
      peer.sentLastMinuteHandshake = true;
      this.#initiate(peer, false);
    }
    this.#receivedAuthenticated(peer, now);
    if (len > 0) {
      if (peer.keepaliveAt === 0) peer.keepaliveAt = now + KEEPALIVE_TIMEOUT;
      else peer.needAnotherKeepalive = true;
    }
  }

  // ---- keypairs and indices ----

  #newKeypair(peer: Peer, keys: SessionKeys, now: number): Keypair | null {
    const slot = this.#freeSlots.pop();
    if (slot === undefined) return null;
    this.#aead.setKey(slot, keys.send);
    this.#aead.setKey(slot + 1, keys.recv);
    const kp = new Keypair(peer, keys, slot, slot + 1, now);
    this.#indices.set(keys.localIndex, { peer, keypair: kp });
    return kp;
  }

  #freeKeypair(kp: Keypair): void {
    const e = this.#indices.get(kp.keys.localIndex);
    if (e?.keypair !== kp) return; // already freed
    this.#indices.delete(kp.keys.localIndex);
    this.#aead.clearKey(kp.sendSlot);
    this.#aead.clearKey(kp.recvSlot);
    this.#freeSlots.push(kp.sendSlot);
  }

  #zeroKeys(peer: Peer): void {
    for (const kp of [peer.previous, peer.current, peer.next]) {
      if (kp !== null) this.#freeKeypair(kp);
    }
    peer.previous = peer.current = peer.next = null;
    if (peer.handshake !== null) this.#indices.delete(peer.handshake.localIndex);
    peer.handshake = null;
    peer.zeroKeysAt = 0;
    peer.retransmitAt = 0;
    peer.keepaliveAt = 0;
    peer.newHandshakeAt = 0;
    peer.persistentAt = 0;
    peer.staged = [];
  }

  #newIndex(): number {
    for (;;) {
      const b = this.#env.random(4);
      const i = (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
      if (!this.#indices.has(i)) return i;
    }
  }

  #ephemeral(): Uint8Array {
    const k = this.#env.random(32);
    k[0] &= 248;
    k[31] = (k[31] & 127) | 64;
    return k;
  }

  #jitter(): number {
    const b = this.#env.random(2);
    return ((b[0] | (b[1] << 8)) % REKEY_TIMEOUT_JITTER);
  }

  /** The keypair state of a peer, for tests and `wg show`. */
  keypairs(
    peer: Peer,
  ): { previous: Keypair | null; current: Keypair | null; next: Keypair | null } {
    return { previous: peer.previous, current: peer.current, next: peer.next };
  }

  /** Erases all keys (shutdown). */
  close(): void {
    for (const peer of this.#peers.values()) this.#zeroKeys(peer);
  }
}
