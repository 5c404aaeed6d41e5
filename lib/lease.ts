/**
 * Leases: the subnet a host holds and the attributes it advertises, and their etcd codecs.
 *
 * Key: `<prefix>/subnets/10.1.15.0-24`. Value, as upstream flannel's v3 code writes it:
 * `{"PublicIP":"192.168.1.10","PublicIPv6":null,"BackendType":"vxlan","BackendData":{...}}`,
 * `BackendType` and `BackendData` omitted when empty (Go `omitempty`).
 */

import { type IP, IPNet, isAligned, parseIPv4 } from "./ip.ts";

/** What a host advertises with its lease. */
export interface LeaseAttrs {
  /** The address peers send to. */
  readonly publicIP: IP;
  /** `""` for udp, alloc and aws-vpc (omitted on the wire), `"vxlan"`, `"host-gw"`. */
  readonly backendType: string;
  /** Backend-specific JSON, e.g. `{"VNI":1,"VtepMAC":"…"}`; null when absent. */
  readonly backendData: unknown;
}

/** A subnet lease as read from etcd. */
export interface Lease {
  readonly subnet: IPNet;
  readonly attrs: LeaseAttrs;
  /** When the etcd lease runs out; null for a reservation (a key with no etcd lease). */
  readonly expiration: Date | null;
  /** The key's etcd mod revision (guards renewals). */
  readonly modRevision: number;
  /** The etcd lease id attached to the key, as a decimal string; null for a reservation. */
  readonly etcdLeaseId: string | null;
}

/** The etcd key of a subnet. */
export function subnetKey(prefix: string, subnet: IPNet): string {
  return `${trimSlash(prefix)}/subnets/${subnet.ip}-${subnet.prefix}`;
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

// Dual-stack hosts (upstream v0.15+) write `10.5.52.0-24&fc00::-64`; their IPv4 half is still
// taken, so the IPv6 suffix is accepted and ignored rather than the key skipped.
const KEY_RE = /(?:^|\/)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d{1,2})(?:&[0-9a-fA-F:]+-\d{1,3})?$/;

/** Parses the subnet from a key such as `/coreos.com/network/subnets/10.1.15.0-24`. */
export function parseSubnetKey(key: string): IPNet | string {
  const m = KEY_RE.exec(key);
  if (!m) return `key ${JSON.stringify(key)} does not end in <ipv4>-<prefixlen>`;
  const ip = parseIPv4(m[1]);
  const prefix = Number(m[2]);
  if (ip === null || prefix > 32) return `key ${JSON.stringify(key)} holds no valid IPv4 subnet`;
  if (!isAligned(ip, prefix)) {
    return `key ${JSON.stringify(key)} has host bits set in its subnet`;
  }
  return new IPNet(ip, prefix);
}

/** Encodes lease attrs as upstream's JSON (field order matters to byte-compare with upstream). */
export function encodeLeaseValue(attrs: LeaseAttrs): string {
  const obj: Record<string, unknown> = { PublicIP: attrs.publicIP.toString(), PublicIPv6: null };
  if (attrs.backendType) obj.BackendType = attrs.backendType;
  if (attrs.backendData !== null && attrs.backendData !== undefined) {
    obj.BackendData = attrs.backendData;
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
    return `value is not JSON: ${JSON.stringify(value.slice(0, 80))}`;
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    return "value is not a JSON object";
  }
  const rec = obj as Record<string, unknown>;
  const pub = getFold(rec, "PublicIP");
  const ip = typeof pub === "string" ? parseIPv4(pub) : null;
  if (ip === null) return `PublicIP ${JSON.stringify(pub ?? null)} is not an IPv4 address`;
  const bt = getFold(rec, "BackendType");
  if (bt !== undefined && bt !== null && typeof bt !== "string") {
    return `BackendType ${JSON.stringify(bt)} is not a string`;
  }
  const bd = getFold(rec, "BackendData");
  return { publicIP: ip, backendType: (bt as string | undefined) ?? "", backendData: bd ?? null };
}
