/**
 * Leases: the subnets a host holds and the attributes it advertises, and their etcd codecs.
 *
 * Key, as upstream flannel writes it: `<prefix>/subnets/10.1.15.0-24` (IPv4),
 * `<prefix>/subnets/10.1.15.0-24&fc00:0:0:22::-64` (dual-stack), `<prefix>/subnets/0.0.0.0-0&fc00:0:0:22::-64`
 * (IPv6-only: upstream's empty IPv4 subnet). Value, as upstream's v3 code writes it:
 * `{"PublicIP":"192.168.1.10","PublicIPv6":null,"BackendType":"vxlan","BackendData":{...}}`,
 * with `"PublicIPv6":"fd00::a"` and `"BackendV6Data":{...}` when IPv6 is leased; `BackendType`,
 * `BackendData` and `BackendV6Data` omitted when empty (Go `omitempty`); `"PublicIP":"0.0.0.0"`
 * on an IPv6-only host (upstream's zero IPv4 address).
 */

import { IP, IPNet, isAligned, parseIPv4 } from "./ip.ts";
import { quote } from "./log.ts";

/** What a host advertises with its lease. */
export interface LeaseAttrs {
  /** The IPv4 address peers send to; null on an IPv6-only host (written as `0.0.0.0`). */
  readonly publicIP: IP | null;
  /** The IPv6 address peers send to; null when the host leases no IPv6 subnet. */
  readonly publicIPv6: IP | null;
  /** `""` for udp, alloc and aws-vpc (omitted on the wire), `"vxlan"`, `"host-gw"`. */
  readonly backendType: string;
  /** Backend-specific JSON, e.g. `{"VNI":1,"VtepMAC":"…"}`; null when absent. */
  readonly backendData: unknown;
  /** The same for the IPv6 side (vxlan: the `flannel-v6.<VNI>` device's MAC); null when absent. */
  readonly backendV6Data: unknown;
}

/** The subnets one lease key names: at least one is set. */
export interface LeaseSubnets {
  /** The IPv4 subnet; null for an IPv6-only lease. */
  readonly subnet: IPNet | null;
  /** The IPv6 subnet; null for an IPv4-only lease. */
  readonly ipv6Subnet: IPNet | null;
}

/** A subnet lease as read from etcd. */
export interface Lease extends LeaseSubnets {
  readonly attrs: LeaseAttrs;
  /** When the etcd lease runs out; null for a reservation (a key with no etcd lease). */
  readonly expiration: Date | null;
  /** The key's etcd mod revision (guards renewals). */
  readonly modRevision: number;
  /** The etcd lease id attached to the key, as a decimal string; null for a reservation. */
  readonly etcdLeaseId: string | null;
}

/** The IPv4 subnet upstream writes into the key of an IPv6-only lease. */
const EMPTY_V4 = "0.0.0.0-0";

/** The last path segment of a lease key: `10.1.15.0-24`, `10.1.15.0-24&fc00::-64`, … */
export function subnetKeyName(s: LeaseSubnets): string {
  const v4 = s.subnet ? `${s.subnet.ip}-${s.subnet.prefix}` : EMPTY_V4;
  return s.ipv6Subnet ? `${v4}&${s.ipv6Subnet.ip}-${s.ipv6Subnet.prefix}` : v4;
}

/** The etcd key of a lease. */
export function subnetKey(prefix: string, s: LeaseSubnets): string {
  return `${trimSlash(prefix)}/subnets/${subnetKeyName(s)}`;
}

/** `10.1.15.0/24`, `10.1.15.0/24 + fc00:0:0:22::/64` or `fc00:0:0:22::/64`, for log lines. */
export function describeSubnets(s: LeaseSubnets): string {
  return [s.subnet, s.ipv6Subnet].filter((n) => n !== null).join(" + ");
}

/** Same subnets in both families. */
export function sameSubnets(a: LeaseSubnets, b: LeaseSubnets): boolean {
  const eq = (x: IPNet | null, y: IPNet | null) =>
    x === null ? y === null : y !== null && x.equals(y);
  return eq(a.subnet, b.subnet) && eq(a.ipv6Subnet, b.ipv6Subnet);
}

/** The etcd key of the network config. */
export function configKey(prefix: string): string {
  return `${trimSlash(prefix)}/config`;
}

/** The directory prefix of all subnet keys (with trailing slash). */
export function subnetsPrefix(prefix: string): string {
  return `${trimSlash(prefix)}/subnets/`;
}

function trimSlash(p: string): string {
  return p.endsWith("/") ? p.slice(0, -1) : p;
}

// Upstream's pattern: `<ipv4>-<len>`, optionally `&<ipv6>-<len>` (lower-case hex, as Go's
// net.IP prints it), at the end of the last path segment.
const KEY_RE =
  /(?:^|\/)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d{1,2})(?:&([0-9a-f:]+)-(\d{1,3}))?$/;

/**
 * Parses the subnets from a key such as `/coreos.com/network/subnets/10.1.15.0-24` or
 * `…/10.1.15.0-24&fc00:0:0:22::-64`; `0.0.0.0-0&…` is an IPv6-only lease (`subnet` null), while
 * `0.0.0.0-0` alone stays the IPv4 network 0.0.0.0/0 (for the peer checks to refuse).
 */
export function parseSubnetKey(key: string): LeaseSubnets | string {
  const m = KEY_RE.exec(key);
  const q = quote(key, 120);
  if (!m) return `key ${q} does not end in <ipv4>-<prefixlen>[&<ipv6>-<prefixlen>]`;
  const ip = parseIPv4(m[1]);
  const prefix = Number(m[2]);
  if (ip === null || prefix > 32) return `key ${q} holds no valid IPv4 subnet`;
  if (!isAligned(ip, prefix)) return `key ${q} has host bits set in its subnet`;
  const v4 = new IPNet(ip, prefix);
  if (m[3] === undefined) return { subnet: v4, ipv6Subnet: null };
  const ip6 = IP.parse(m[3]);
  const prefix6 = Number(m[4]);
  if (ip6?.family !== 6 || prefix6 > 128) return `key ${q} holds no valid IPv6 subnet`;
  if (!isAligned(ip6, prefix6)) return `key ${q} has host bits set in its IPv6 subnet`;
  const v6 = new IPNet(ip6, prefix6);
  const empty4 = prefix === 0 && ip.toU32() === 0;
  return { subnet: empty4 ? null : v4, ipv6Subnet: v6 };
}

/** Encodes lease attrs as upstream's JSON (field order matters to byte-compare with upstream). */
export function encodeLeaseValue(attrs: LeaseAttrs): string {
  const obj: Record<string, unknown> = {
    PublicIP: attrs.publicIP?.toString() ?? "0.0.0.0",
    PublicIPv6: attrs.publicIPv6?.toString() ?? null,
  };
  if (attrs.backendType) obj.BackendType = attrs.backendType;
  if (attrs.backendData !== null && attrs.backendData !== undefined) {
    obj.BackendData = attrs.backendData;
  }
  if (attrs.backendV6Data !== null && attrs.backendV6Data !== undefined) {
    obj.BackendV6Data = attrs.backendV6Data;
  }
  return JSON.stringify(obj);
}

/** Finds a key of `obj` case-insensitively, as Go's encoding/json does. */
export function getFold(obj: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(obj, name)) return obj[name];
  const lower = name.toLowerCase();
  for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) return obj[k];
  return undefined;
}

/** Decodes a lease value; returns an error string naming the problem when malformed. */
export function decodeLeaseValue(value: string): LeaseAttrs | string {
  let obj: unknown;
  try {
    obj = JSON.parse(value);
  } catch {
    return `value is not JSON: ${quote(value)}`;
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    return "value is not a JSON object";
  }
  const rec = obj as Record<string, unknown>;
  const pub = getFold(rec, "PublicIP");
  const ip = typeof pub === "string" ? parseIPv4(pub) : null;
  if (ip === null) return `PublicIP ${quote(pub ?? null)} is not an IPv4 address`;
  const pub6 = getFold(rec, "PublicIPv6");
  let ip6: IP | null = null;
  if (pub6 !== undefined && pub6 !== null) {
    ip6 = typeof pub6 === "string" ? IP.parse(pub6.trim()) : null;
    if (ip6?.family !== 6) return `PublicIPv6 ${quote(pub6)} is not an IPv6 address`;
  }
  const bt = getFold(rec, "BackendType");
  if (bt !== undefined && bt !== null && typeof bt !== "string") {
    return `BackendType ${quote(bt)} is not a string`;
  }
  const bd = getFold(rec, "BackendData");
  const bd6 = getFold(rec, "BackendV6Data");
  return {
    // Upstream's IPv6-only hosts write the zero address.
    publicIP: ip.toU32() === 0 ? null : ip,
    publicIPv6: ip6,
    backendType: (bt as string | undefined) ?? "",
    backendData: bd ?? null,
    backendV6Data: bd6 ?? null,
  };
}
