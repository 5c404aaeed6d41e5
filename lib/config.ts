/**
 * The network config stored at `<prefix>/config`: parsing, defaults and validation.
 *
 * Key names match case-insensitively, as Go's encoding/json does upstream.
 */

import { addIP, IP, IPNet, isAligned, parseCIDR, prefixSize } from "./ip.ts";
import { getFold } from "./lease.ts";

export interface UdpBackendConfig {
  readonly type: "udp";
  /** UDP port, default 8285. */
  readonly port: number;
  /** TUN/UDP offloads (`"Offload": false` turns them off), default true. */
  readonly offload: boolean;
}

export interface VxlanBackendConfig {
  readonly type: "vxlan";
  /** VXLAN id, default 1. */
  readonly vni: number;
  /** Destination port, default 8472. */
  readonly port: number;
  /** Device MTU; null = external MTU − 50. */
  readonly mtu: number | null;
  readonly directRouting: boolean;
  readonly learning: boolean;
  readonly gbp: boolean;
}

export interface HostGwBackendConfig {
  readonly type: "host-gw";
}

export interface AllocBackendConfig {
  readonly type: "alloc";
}

export interface AwsVpcBackendConfig {
  readonly type: "aws-vpc";
  /** Route table to program; null = the subnet's, else the VPC's main table. */
  readonly routeTableID: string | null;
}

export interface WireguardBackendConfig {
  readonly type: "wireguard";
  /** UDP port of the IPv4 device, default 51820. */
  readonly listenPort: number;
  /** UDP port of the IPv6 device (with IPv6), default 51821. */
  readonly listenPortV6: number;
  /** The preshared key (32 bytes, `wg genpsk`'s base64), or null. */
  readonly psk: Uint8Array | null;
  /** Persistent keepalive in seconds; 0 = off. */
  readonly persistentKeepaliveInterval: number;
  /** Device MTU; null = external MTU − 80. */
  readonly mtu: number | null;
  /**
   * Device layout, upstream's `Mode`: `separate` (default) is one device per address family
   * (`flannel-wg` on ListenPort, `flannel-wg-v6` on ListenPortV6); `auto`, `ipv4` and `ipv6`
   * carry both families through the one device `flannel-wg` on ListenPort, its peers reached
   * at their IPv4 resp. IPv6 address (`auto`: chosen per peer, lib/backend/wireguard/modes.ts).
   */
  readonly mode: WireguardMode;
}

/** The wireguard backend's `Mode` values. */
export type WireguardMode = "separate" | "auto" | "ipv4" | "ipv6";

export type BackendConfig =
  | UdpBackendConfig
  | WireguardBackendConfig
  | VxlanBackendConfig
  | HostGwBackendConfig
  | AllocBackendConfig
  | AwsVpcBackendConfig;

/** One family's address range: the overlay network and how it is cut into host subnets. */
export interface SubnetRange {
  /** `Network` or `IPv6Network`. */
  readonly network: IPNet;
  /** `SubnetLen` or `IPv6SubnetLen`. */
  readonly subnetLen: number;
  /** First allocatable subnet base. */
  readonly subnetMin: IP;
  /** Last allocatable subnet base. */
  readonly subnetMax: IP;
}

/**
 * A validated network config with every default filled in. At least one family is enabled:
 * `ipv4` is null when `EnableIPv4` is false, `ipv6` is null unless `EnableIPv6` is true.
 */
export interface NetworkConfig {
  readonly ipv4: SubnetRange | null;
  readonly ipv6: SubnetRange | null;
  readonly backend: BackendConfig;
}

/** A network config that cannot be used; the message names the key and the value at fault. */
export class ConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/** The backend types this daemon knows, in the order error messages list them. */
export const BACKEND_TYPES = ["udp", "vxlan", "host-gw", "alloc", "aws-vpc", "wireguard"] as const;

/** The largest SubnetLen: a /30 still holds two usable host addresses. */
const MAX_SUBNET_LEN = 30;

/**
 * Parses and validates the JSON stored at `<prefix>/config`, filling in every default.
 *
 * Key names match case-insensitively (Go encoding/json), unknown keys are ignored and a JSON
 * `null` counts as absent, as upstream. `EnableIPv4` (default true) and `EnableIPv6` (default
 * false) choose the families; the keys of a disabled family are ignored, as upstream. Throws
 * {@link ConfigError} naming the key and value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const c = parseNetworkConfig('{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan"}}');
 * assert.equal(c.ipv4?.subnetLen, 24);
 * assert.equal(c.ipv4?.subnetMin.toString(), "10.1.1.0"); // the first subnet is skipped
 * assert.equal(c.ipv4?.subnetMax.toString(), "10.1.255.0");
 * assert.equal(c.ipv6, null);
 * assert.equal(c.backend.type === "vxlan" && c.backend.vni, 1);
 * assert.throws(() => parseNetworkConfig('{"Network":"10.1.0.0/16","SubnetLen":33}'), {
 *   name: "ConfigError",
 *   message: "SubnetLen 33 is not between 17 and 30",
 * });
 * const d = parseNetworkConfig(
 *   '{"Network":"10.1.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}',
 * );
 * assert.equal(d.ipv6?.subnetLen, 64);
 * assert.equal(d.ipv6?.subnetMin.toString(), "fc00:0:0:1::");
 * ```
 */
export function parseNetworkConfig(text: string): NetworkConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`Network config is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) {
    throw new ConfigError(`Network config is not a JSON object: ${show(doc)}`);
  }

  const enable4 = topBool(doc, "EnableIPv4") ?? true;
  const enable6 = topBool(doc, "EnableIPv6") ?? false;
  if (!enable4 && !enable6) {
    throw new ConfigError("EnableIPv4 and EnableIPv6 are both false: no family to run");
  }
  const ipv4 = enable4 ? parseRange(doc, V4_KEYS) : null;
  const ipv6 = enable6 ? parseRange(doc, V6_KEYS) : null;
  const backend = parseBackend(getFold(doc, "Backend"));
  if (ipv6 && (backend.type === "udp" || backend.type === "aws-vpc")) {
    throw new ConfigError(
      `Backend.Type ${JSON.stringify(backend.type)} does not support EnableIPv6 true ` +
        `(IPv4 only, as upstream): use vxlan, host-gw or alloc`,
    );
  }
  if (backend.type === "wireguard") {
    // The peers' addresses of that family carry the tunnel: upstream would dial 0.0.0.0 resp.
    // an empty endpoint and never say why.
    if (backend.mode === "ipv4" && !ipv4) {
      throw new ConfigError(
        'Backend.Mode "ipv4" needs EnableIPv4: the tunnel runs between the hosts\' IPv4 addresses',
      );
    }
    if (backend.mode === "ipv6" && !ipv6) {
      throw new ConfigError(
        'Backend.Mode "ipv6" needs EnableIPv6: the tunnel runs between the hosts\' IPv6 addresses',
      );
    }
  }
  return { ipv4, ipv6, backend };
}

/** The key names and limits of one family. */
interface RangeKeys {
  readonly family: 4 | 6;
  readonly network: string;
  readonly subnetLen: string;
  readonly subnetMin: string;
  readonly subnetMax: string;
  /** The largest subnet length: still two usable host addresses. */
  readonly maxLen: number;
  /** The longest Network prefix. */
  readonly maxNetPrefix: number;
  /** The shortest subnet length below the Network prefix (`SubnetLen` ≥ prefix + minGap). */
  readonly minGap: number;
  /** The default subnet length and the prefix + 2 used for small networks. */
  readonly defaultLen: (prefix: number) => number;
}

const V4_KEYS: RangeKeys = {
  family: 4,
  network: "Network",
  subnetLen: "SubnetLen",
  subnetMin: "SubnetMin",
  subnetMax: "SubnetMax",
  maxLen: MAX_SUBNET_LEN,
  maxNetPrefix: MAX_SUBNET_LEN - 1,
  minGap: 1,
  defaultLen: (p) => p < 24 ? 24 : p + 1,
};

/** Upstream's IPv6 rules: /64 per host, or a quarter of a network smaller than /62; ≤ /126. */
const V6_KEYS: RangeKeys = {
  family: 6,
  network: "IPv6Network",
  subnetLen: "IPv6SubnetLen",
  subnetMin: "IPv6SubnetMin",
  subnetMax: "IPv6SubnetMax",
  maxLen: 126,
  maxNetPrefix: 124,
  minGap: 2,
  defaultLen: (p) => p <= 62 ? 64 : p + 2,
};

function parseRange(doc: Record<string, unknown>, k: RangeKeys): SubnetRange {
  const network = parseNetwork(getFold(doc, k.network), k);
  const subnetLen = parseSubnetLen(getFold(doc, k.subnetLen), network, k);
  const size = prefixSize(subnetLen, k.family);
  const first = network.ip;
  const last = addIP(network.ip, network.size() - size);
  const subnetMin = parseBound(k.subnetMin, getFold(doc, k.subnetMin), network, subnetLen) ??
    addIP(first, size);
  const subnetMax = parseBound(k.subnetMax, getFold(doc, k.subnetMax), network, subnetLen) ??
    last;
  if (subnetMin.compare(subnetMax) > 0) {
    throw new ConfigError(
      `${k.subnetMin} ${subnetMin} is greater than ${k.subnetMax} ${subnetMax}`,
    );
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

function parseNetwork(v: unknown, k: RangeKeys): IPNet {
  const name = k.network;
  if (v === undefined || v === null) {
    throw new ConfigError(
      k.family === 4
        ? `${name} is missing: it is required (or set EnableIPv4 false)`
        : `${name} is missing: it is required when EnableIPv6 is true`,
    );
  }
  if (typeof v !== "string") throw new ConfigError(`${name} ${show(v)} is not a string`);
  const net = k.family === 4 ? parseCIDR(v, true) : IPNet.parse(v, true);
  // The parsers quote the whole text; keep the message one short line.
  if (typeof net === "string") {
    throw new ConfigError(`${name} ${net.replace(JSON.stringify(v), show(v))}`);
  }
  if (net.family !== k.family) {
    throw new ConfigError(`${name} ${show(v)} is not an IPv${k.family} CIDR`);
  }
  if (net.prefix > k.maxNetPrefix) {
    throw new ConfigError(
      `${name} ${show(v)} is too small: the prefix must be /${k.maxNetPrefix} or shorter`,
    );
  }
  const reserved = (k.family === 4 ? RESERVED_V4 : RESERVED_V6).find((r) => r.net.overlaps(net));
  if (reserved) {
    throw new ConfigError(
      `${name} ${show(v)} overlaps ${reserved.net} (${reserved.what}): ` +
        `choose a unicast range such as ${k.family === 4 ? "10.0.0.0/8" : "fc00::/7"}`,
    );
  }
  return net;
}

/** Ranges no host can route to a peer: a Network overlapping one would break the host. */
const RESERVED_V4: readonly { net: IPNet; what: string }[] = [
  { net: IPNet.mustParse("0.0.0.0/8"), what: "this network" },
  { net: IPNet.mustParse("127.0.0.0/8"), what: "loopback" },
  { net: IPNet.mustParse("224.0.0.0/4"), what: "multicast" },
  { net: IPNet.mustParse("240.0.0.0/4"), what: "reserved, broadcast" },
];

const RESERVED_V6: readonly { net: IPNet; what: string }[] = [
  { net: IPNet.mustParse("::/128"), what: "unspecified" },
  { net: IPNet.mustParse("::1/128"), what: "loopback" },
  { net: IPNet.mustParse("::ffff:0:0/96"), what: "IPv4-mapped" },
  { net: IPNet.mustParse("fe80::/10"), what: "link-local" },
  { net: IPNet.mustParse("ff00::/8"), what: "multicast" },
];

function parseSubnetLen(v: unknown, network: IPNet, k: RangeKeys): number {
  // Upstream treats 0 (Go's zero value) like an absent key.
  if (v === undefined || v === null || v === 0) return k.defaultLen(network.prefix);
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new ConfigError(`${k.subnetLen} ${show(v)} is not an integer`);
  }
  const lo = network.prefix + k.minGap;
  if (v < lo || v > k.maxLen) {
    throw new ConfigError(`${k.subnetLen} ${v} is not between ${lo} and ${k.maxLen}`);
  }
  return v;
}

function parseBound(key: string, v: unknown, network: IPNet, subnetLen: number): IP | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "string") throw new ConfigError(`${key} ${show(v)} is not a string`);
  const ip = IP.parse(v.trim());
  if (ip === null || ip.family !== network.family) {
    throw new ConfigError(`${key} ${show(v)} is not an IPv${network.family} address`);
  }
  if (!network.contains(ip)) {
    throw new ConfigError(`${key} ${ip} is not inside ${keyOfNetwork(network)} ${network}`);
  }
  if (!isAligned(ip, subnetLen)) {
    const lenKey = network.family === 4 ? "SubnetLen" : "IPv6SubnetLen";
    throw new ConfigError(`${key} ${ip} is not aligned to ${lenKey} ${subnetLen}`);
  }
  return ip;
}

function keyOfNetwork(n: IPNet): string {
  return n.family === 4 ? "Network" : "IPv6Network";
}

function topBool(obj: Record<string, unknown>, key: string): boolean | null {
  const v = getFold(obj, key);
  if (v === undefined || v === null) return null;
  if (typeof v !== "boolean") throw new ConfigError(`${key} ${show(v)} is not a boolean`);
  return v;
}

function parseBackend(v: unknown): BackendConfig {
  if (v === undefined || v === null) return { type: "udp", port: 8285, offload: true };
  if (!isObject(v)) throw new ConfigError(`Backend ${show(v)} is not an object`);
  const rawType = getFold(v, "Type");
  const known = BACKEND_TYPES.join(", ");
  if (rawType === undefined || rawType === null) {
    throw new ConfigError(`Backend.Type is missing: must be one of ${known}`);
  }
  if (typeof rawType !== "string") {
    throw new ConfigError(`Backend.Type ${show(rawType)} is not a string`);
  }
  const type = rawType.toLowerCase();
  switch (type) {
    case "udp":
      return {
        type,
        port: intKey(v, "Port", 1, 65535) ?? 8285,
        offload: boolKey(v, "Offload") ?? true,
      };
    case "vxlan":
      return {
        type,
        vni: intKey(v, "VNI", 1, 16777215) ?? 1,
        port: intKey(v, "Port", 1, 65535) ?? 8472,
        mtu: intKey(v, "MTU", 68, 65535),
        directRouting: boolKey(v, "DirectRouting") ?? false,
        learning: boolKey(v, "Learning") ?? false,
        gbp: boolKey(v, "GBP") ?? false,
      };
    case "host-gw":
    case "alloc":
      return { type };
    case "aws-vpc":
      return { type, routeTableID: routeTableKey(v) };
    case "wireguard":
      return {
        type,
        listenPort: intKey(v, "ListenPort", 1, 65535) ?? 51820,
        listenPortV6: intKey(v, "ListenPortV6", 1, 65535) ?? 51821,
        psk: pskKey(v),
        // Upstream reads a time.Duration from a JSON number and multiplies it by a second:
        // the number is seconds.
        persistentKeepaliveInterval: intKey(v, "PersistentKeepaliveInterval", 0, 65535) ?? 0,
        mtu: intKey(v, "MTU", 576, 65535),
        mode: modeKey(v),
      };
    default:
      throw new ConfigError(`Backend.Type ${show(rawType)} is not one of ${known}`);
  }
}

function intKey(obj: Record<string, unknown>, key: string, lo: number, hi: number): number | null {
  const v = getFold(obj, key);
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new ConfigError(`Backend.${key} ${show(v)} is not an integer`);
  }
  if (v < lo || v > hi) throw new ConfigError(`Backend.${key} ${v} is not between ${lo} and ${hi}`);
  return v;
}

function boolKey(obj: Record<string, unknown>, key: string): boolean | null {
  const v = getFold(obj, key);
  if (v === undefined || v === null) return null;
  if (typeof v !== "boolean") throw new ConfigError(`Backend.${key} ${show(v)} is not a boolean`);
  return v;
}

function pskKey(obj: Record<string, unknown>): Uint8Array | null {
  const v = getFold(obj, "PSK");
  if (v === undefined || v === null || v === "") return null;
  const bad = () =>
    new ConfigError(`Backend.PSK ${show(v)} is not a key: 32 bytes of base64 (wg genpsk)`);
  if (typeof v !== "string" || !/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(v)) throw bad();
  const raw = atob(v);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function modeKey(obj: Record<string, unknown>): WireguardMode {
  const v = getFold(obj, "Mode");
  if (v === undefined || v === null || v === "") return "separate";
  if (v === "separate" || v === "auto" || v === "ipv4" || v === "ipv6") return v;
  throw new ConfigError(`Backend.Mode ${show(v)} is not one of separate, auto, ipv4, ipv6`);
}

function routeTableKey(obj: Record<string, unknown>): string | null {
  const v = getFold(obj, "RouteTableID");
  // "" is Go's zero value: upstream then detects the table itself.
  if (v === undefined || v === null || v === "") return null;
  if (typeof v !== "string" || !/^rtb-[0-9a-f]+$/.test(v)) {
    throw new ConfigError(
      `Backend.RouteTableID ${show(v)} is not a route table id (rtb- and hex digits)`,
    );
  }
  return v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A value as it appeared in the JSON, shortened so one bad key cannot flood the log. */
function show(v: unknown): string {
  // JSON.parse turns 1e400 into Infinity, which JSON.stringify would print as null.
  const s = typeof v === "number" && !Number.isFinite(v)
    ? String(v)
    : JSON.stringify(v) ?? String(v);
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}
