/**
 * Cookie replies (whitepaper §5.4.7): under load, a responder answers a handshake message
 * whose MAC2 is missing or wrong with a cookie instead of doing the Diffie-Hellman work; the
 * initiator puts MAC2 = MAC(cookie, message) on its next messages, proving it owns its source
 * address. Pure: the caller passes the time (ms, monotonic) and the random source.
 */

import { xaeadOpen, xaeadSeal } from "../../../ffi/crypto.ts";
import { mac16 } from "./blake2s.ts";
import { COOKIE_SIZE, mac1Offset, MSG_COOKIE, readIndex, writeIndex } from "./noise.ts";

/** The responder's secret changes, and an initiator's cookie expires, after 120 s. */
export const COOKIE_REFRESH_MS = 120_000;

/**
 * The source address bytes a cookie is bound to, network order, as wireguard-go forms them:
 * the IPv4 address (or with `ip6` the 16 IPv6 address bytes) then the port.
 */
export function addressBytes(
  ip: number,
  port: number,
  ip6: Uint8Array | null = null,
): Uint8Array<ArrayBuffer> {
  if (ip6 !== null) {
    const b = new Uint8Array(18);
    b.set(ip6.subarray(0, 16));
    b[16] = port >>> 8;
    b[17] = port & 255;
    return b;
  }
  const b = new Uint8Array(6);
  const v = new DataView(b.buffer);
  v.setUint32(0, ip >>> 0, false);
  v.setUint16(4, port, false);
  return b;
}

/** The responder's side: the rotating secret, cookie replies, MAC2 checks. */
export class CookieChecker {
  #secret: Uint8Array;
  #secretAt: number;

  /** `cookieKey` is our {@link Identity.cookieKey}. */
  constructor(
    readonly cookieKey: Uint8Array,
    readonly random: (n: number) => Uint8Array,
    now: number,
  ) {
    this.#secret = random(32);
    this.#secretAt = now;
  }

  /** The cookie of a source address now: MAC(secret, address); `ip6` for an IPv6 source. */
  cookie(
    ip: number,
    port: number,
    now: number,
    ip6: Uint8Array | null = null,
  ): Uint8Array<ArrayBuffer> {
    if (now - this.#secretAt >= COOKIE_REFRESH_MS) {
      this.#secret = this.random(32);
      this.#secretAt = now;
    }
    return mac16(this.#secret, addressBytes(ip, port, ip6));
  }

  /** True when the handshake message's MAC2 is the cookie of its source address. */
  checkMac2(
    msg: Uint8Array,
    ip: number,
    port: number,
    now: number,
    ip6: Uint8Array | null = null,
  ): boolean {
    const off = mac1Offset(msg);
    if (off < 0) return false;
    const want = mac16(this.cookie(ip, port, now, ip6), msg.subarray(0, off + 16));
    let d = 0;
    for (let i = 0; i < 16; i++) d |= want[i] ^ msg[off + 16 + i];
    return d === 0;
  }

  /** The cookie reply (type 3) to handshake message `msg` from `ip:port`. */
  reply(
    msg: Uint8Array,
    ip: number,
    port: number,
    now: number,
    ip6: Uint8Array | null = null,
  ): Uint8Array<ArrayBuffer> {
    const off = mac1Offset(msg);
    const out = new Uint8Array(COOKIE_SIZE);
    out[0] = MSG_COOKIE;
    writeIndex(out, 4, readIndex(msg, 4)); // the sender index of the message we answer
    const nonce = this.random(24);
    out.set(nonce, 8);
    const mac1 = msg.subarray(off, off + 16);
    out.set(xaeadSeal(this.cookieKey, nonce, this.cookie(ip, port, now, ip6), mac1), 32);
    return out;
  }
}

/** The initiator's side, one per peer: the last cookie received and the MAC1 it answers. */
export class CookieJar {
  #cookie: Uint8Array | null = null;
  #cookieAt = 0;
  #lastMac1: Uint8Array | null = null;

  /** `peerCookieKey` is the peer's {@link PeerKeys.cookieKey}. */
  constructor(readonly peerCookieKey: Uint8Array) {}

  /** Remember the MAC1 of a message we sent: a cookie reply must be bound to it. */
  sent(mac1: Uint8Array): void {
    this.#lastMac1 = mac1;
  }

  /** Takes a cookie reply; false when it does not decrypt against our last MAC1. */
  consume(reply: Uint8Array, now: number): boolean {
    if (reply.length !== COOKIE_SIZE || reply[0] !== MSG_COOKIE || this.#lastMac1 === null) {
      return false;
    }
    const cookie = xaeadOpen(
      this.peerCookieKey,
      reply.subarray(8, 32),
      reply.subarray(32, 64),
      this.#lastMac1,
    );
    if (cookie === null) return false;
    this.#cookie = cookie;
    this.#cookieAt = now;
    this.#lastMac1 = null; // one cookie per message
    return true;
  }

  /** The cookie for MAC2, or null when none or expired. */
  current(now: number): Uint8Array | null {
    if (this.#cookie === null || now - this.#cookieAt >= COOKIE_REFRESH_MS) return null;
    return this.#cookie;
  }
}
