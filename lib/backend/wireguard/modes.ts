/**
 * Upstream's single-device modes (`Mode` `auto`, `ipv4`, `ipv6`): both families' subnets go
 * through the one device `flannel-wg`, and each peer is reached at one of its addresses. Which
 * one is decided here, purely.
 *
 * - `ipv4`: the peer's PublicIP; `ipv6`: its PublicIPv6.
 * - `auto` follows upstream's `selectMode`: a peer without PublicIPv6 is reached over IPv4; a
 *   public (not RFC 1918) peer IPv4 address wins when we have an IPv4 address; else IPv6 when
 *   the peer's and our IPv6 addresses are both public (not fc00::/7); else IPv4.
 * - Not copied from upstream: where that choice names a family one side lacks (an IPv6-only
 *   network has PublicIP 0.0.0.0; a host without an IPv6 address), the other family is used,
 *   and a peer reachable by neither gets no endpoint but a reason.
 */

import type { IP } from "../../ip.ts";

/** A single-device mode. */
export type SingleMode = "auto" | "ipv4" | "ipv6";

/** The underlay addresses of one side: null where it has none of that family. */
export interface Underlay {
  /** The IPv4 PublicIP (null, or 0.0.0.0 in an IPv6-only network's lease, when none). */
  readonly publicIP: IP | null;
  /** The PublicIPv6, or null. */
  readonly publicIPv6: IP | null;
}

/** RFC 1918 (upstream's `IP4.IsPrivate`). */
function private4(ip: IP): boolean {
  const [a, b] = ip.bytes;
  return a === 10 || (a === 172 && (b & 0xf0) === 16) || (a === 192 && b === 168);
}

/** fc00::/7 (upstream's `IP6.IsPrivate`). */
function private6(ip: IP): boolean {
  return (ip.bytes[0] & 0xfe) === 0xfc;
}

function has4(u: Underlay): boolean {
  return u.publicIP !== null && u.publicIP.toU32() !== 0;
}

/**
 * The family that carries the tunnel to `peer`, or a one-line reason when none can.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IP } from "../../ip.ts";
 * const ip = IP.mustParse;
 * const us = { publicIP: ip("10.0.0.1"), publicIPv6: ip("2001:db8::1") };
 * const peer = { publicIP: ip("10.0.0.2"), publicIPv6: ip("2001:db8::2") };
 * assert.equal(tunnelFamily("auto", peer, us), 6); // private IPv4, public IPv6 on both sides
 * assert.equal(tunnelFamily("ipv4", peer, us), 4);
 * ```
 */
export function tunnelFamily(mode: SingleMode, peer: Underlay, ours: Underlay): 4 | 6 | string {
  const v4 = has4(peer) && has4(ours);
  const v6 = peer.publicIPv6 !== null && ours.publicIPv6 !== null;
  if (mode === "ipv4") return v4 ? 4 : "no IPv4 address to reach it at (Mode ipv4)";
  if (mode === "ipv6") return v6 ? 6 : "no IPv6 address to reach it at (Mode ipv6)";
  if (!v4 && !v6) return "no address of a family both hosts have";
  if (!v6) return 4;
  if (!v4) return 6;
  if (!private4(peer.publicIP!)) return 4;
  if (!private6(peer.publicIPv6!) && !private6(ours.publicIPv6!)) return 6;
  return 4;
}
