/**
 * The network arithmetic the daemon needs, over the one address type of `ffi/ip.ts`, and MAC
 * helpers. Sizes and offsets are `bigint` so the same code serves IPv4 and IPv6.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IPNet, nextSubnet, subnetAt } from "./ip.ts";
 * const net = IPNet.mustParse("10.1.0.0/16");
 * assert.equal(subnetAt(net, 24, 7n).toString(), "10.1.7.0/24");
 * assert.equal(nextSubnet(IPNet.mustParse("10.1.7.0/24"))?.toString(), "10.1.8.0/24");
 * ```
 *
 * @module
 */

import { familyBits, IP, IPNet } from "../ffi/ip.ts";

export { type Family, familyBits, IP, IPNet } from "../ffi/ip.ts";

/** Parses a dotted quad (surrounding blanks allowed); null when `s` is not one. */
export function parseIPv4(s: string): IP | null {
  const ip = IP.parse(s.trim());
  return ip?.family === 4 ? ip : null;
}

/**
 * Parses `a.b.c.d/len`. With `strict`, host bits must be zero (error otherwise).
 * Returns an error string instead of throwing so callers can name the field at fault.
 */
export function parseCIDR(s: string, strict = true): IPNet | string {
  const slash = s.indexOf("/");
  if (slash < 0) return `${JSON.stringify(s)} is not a CIDR (expected a.b.c.d/len)`;
  const ip = parseIPv4(s.slice(0, slash));
  const lenText = s.slice(slash + 1);
  if (ip === null || !/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) {
    return `${JSON.stringify(s)} is not an IPv4 CIDR`;
  }
  const net = IPNet.of(ip, Number(lenText));
  if (strict && !net.ip.equals(ip)) {
    return `${JSON.stringify(s)} has host bits set (network address is ${net})`;
  }
  return net;
}

/** The number of addresses in a prefix of `family` (`/24` → 256n). */
export function prefixSize(prefix: number, family: 4 | 6 = 4): bigint {
  return 1n << BigInt(familyBits(family) - prefix);
}

/** `ip` + `delta`; throws RangeError when the result leaves the family's range. */
export function addIP(ip: IP, delta: bigint): IP {
  return IP.fromBigInt(ip.toBigInt() + delta, ip.family);
}

/** True when `ip` is the base address of a `/len` network (no host bits below `len`). */
export function isAligned(ip: IP, len: number): boolean {
  return (ip.toBigInt() & (prefixSize(len, ip.family) - 1n)) === 0n;
}

/** The `n`-th (from 0) subnet of length `len` inside `net`; RangeError when out of range. */
export function subnetAt(net: IPNet, len: number, n: bigint): IPNet {
  if (len < net.prefix || n < 0n || n >= 1n << BigInt(len - net.prefix)) {
    throw new RangeError(`${net} has no subnet /${len} number ${n}`);
  }
  return new IPNet(addIP(net.ip, n * prefixSize(len, net.family)), len);
}

/** The network of the same length that follows `n`, or null at the end of the address space. */
export function nextSubnet(n: IPNet): IPNet | null {
  const next = n.ip.toBigInt() + n.size();
  if (next >> BigInt(n.ip.bits) !== 0n) return null;
  return new IPNet(IP.fromBigInt(next, n.family), n.prefix);
}

/** Parses a MAC address `aa:bb:cc:dd:ee:ff` (any case) to 6 bytes; null when malformed. */
export function parseMAC(s: string): Uint8Array<ArrayBuffer> | null {
  const m =
    /^([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})$/
      .exec(s);
  if (!m) return null;
  return Uint8Array.from(m.slice(1, 7), (h) => parseInt(h, 16));
}

/** Formats 6 bytes as a lower-case MAC with colons. */
export function formatMAC(b: Uint8Array): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, "0")).join(":");
}
