/**
 * What lease events become on the WireGuard device: a lease added → the peer set (key, endpoint,
 * allowed IPs = its subnet); removed → the peer gone, unless another live subnet still names the
 * same key; a host that re-keyed → the old key removed. Pure, so it is unit-tested without a
 * device.
 */

import type { IP, IPNet } from "../../ip.ts";
import type { Lease, LeaseAttrs } from "../../lease.ts";
import type { LeaseEvent } from "../../subnet/mod.ts";
import type { PeerBatch, PeerSpec } from "./protocol.ts";
import { parseKey, toBase64 } from "./keys.ts";
import { type SingleMode, tunnelFamily, type Underlay } from "./modes.ts";

/** Our side of every peer: the port a lease without `Port` means, the PSK, the keepalive. */
export interface OwnSpec {
  /** Our ListenPort. */
  readonly port: number;
  /** The network's PSK, or null. */
  readonly psk: Uint8Array | null;
  /** PersistentKeepaliveInterval, seconds. */
  readonly keepalive: number;
}

/** An address family of the overlay: one WireGuard device each in upstream's `separate` mode. */
export type Family = 4 | 6;

/** What our lease advertises (wireguardLeaseAttrs). */
export interface OwnLeaseSpec {
  /** Our public key, base64 (one key for both devices: upstream reads the one key file). */
  readonly publicKey: string;
  /** The IPv4 PublicIP, or null when IPv4 is not enabled. */
  readonly publicIP: IP | null;
  /** The IPv6 PublicIPv6, or null when IPv6 is not enabled. */
  readonly publicIPv6: IP | null;
  /** ListenPort (the IPv4 device's). */
  readonly port: number;
  /**
   * The IPv6 side's port: ListenPortV6 (the IPv6 device's) in `separate` mode; in a
   * single-device mode ListenPort, where that device listens for both families (upstream
   * writes ListenPortV6 there too, a port nothing listens on).
   */
  readonly portV6: number;
}

/**
 * Our lease attributes as upstream's `newSubnetAttrs` writes them: `BackendData`
 * `{"PublicKey":…,"Port":ListenPort}` when IPv4 is enabled, `BackendV6Data`
 * `{"PublicKey":…,"Port":ListenPortV6}` when IPv6 is, the same key in both.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IP } from "../../ip.ts";
 * const a = ownLeaseAttrs({
 *   publicKey: "Oq2vD8xd+uBg3fJ0mZIH8wV0iXt7Pd3BWXlD4xKbPkk=",
 *   publicIP: IP.mustParse("192.168.100.11"),
 *   publicIPv6: null,
 *   port: 51820,
 *   portV6: 51821,
 * });
 * assert.equal(a.backendV6Data, null);
 * ```
 */
export function ownLeaseAttrs(own: OwnLeaseSpec): LeaseAttrs {
  const data = (port: number) => ({ PublicKey: own.publicKey, Port: port });
  return {
    publicIP: own.publicIP,
    publicIPv6: own.publicIPv6,
    backendType: "wireguard",
    backendData: own.publicIP === null ? null : data(own.port),
    backendV6Data: own.publicIPv6 === null ? null : data(own.portV6),
  };
}

/** One family's side of a peer lease: key, endpoint, allowed IPs (family-agnostic). */
export interface LeasePeerSide {
  /** The peer's public key, base64. */
  readonly publicKey: string;
  /** The endpoint address (PublicIP or PublicIPv6). */
  readonly endpoint: IP;
  /** The endpoint port. */
  readonly port: number;
  /** The peer's subnet of this family: its allowed IPs. */
  readonly subnet: IPNet;
}

/**
 * One family's side of a peer lease, as upstream reads it: IPv4 from `PublicIP`, `BackendData`
 * and the IPv4 subnet; IPv6 from `PublicIPv6`, `BackendV6Data` and the IPv6 subnet. A missing
 * or zero `Port` means `defaultPort` (our own ListenPort, resp. ListenPortV6). A one-line
 * reason when the lease has no usable side of that family.
 */
export function leasePeerSide(
  lease: Lease,
  family: Family,
  defaultPort: number,
): LeasePeerSide | string {
  const subnet = family === 4 ? lease.subnet : lease.ipv6Subnet;
  const endpoint = family === 4 ? lease.attrs.publicIP : lease.attrs.publicIPv6;
  if (subnet === null || endpoint === null) {
    return family === 4
      ? "no IPv4 subnet and PublicIP (IPv6-only host)"
      : "no IPv6 subnet and PublicIPv6 (IPv4-only host)";
  }
  if (lease.attrs.backendType !== "wireguard") {
    return `backend type ${JSON.stringify(lease.attrs.backendType)} is not wireguard`;
  }
  const field = family === 4 ? "BackendData" : "BackendV6Data";
  const raw = family === 4 ? lease.attrs.backendData : lease.attrs.backendV6Data;
  const d = raw !== null && typeof raw === "object" ? raw as Record<string, unknown> : null;
  const key = d === null ? undefined : d["PublicKey"];
  if (typeof key !== "string") return `${field} has no PublicKey`;
  try {
    parseKey(key, "PublicKey");
  } catch (err) {
    return (err as Error).message;
  }
  const rawPort = d!["Port"];
  let port = defaultPort;
  if (rawPort !== undefined && rawPort !== null && rawPort !== 0) {
    if (
      typeof rawPort !== "number" || !Number.isInteger(rawPort) || rawPort < 1 || rawPort > 65535
    ) {
      return `${field} Port ${JSON.stringify(rawPort)} is not a port`;
    }
    port = rawPort;
  }
  return { publicKey: key, endpoint, port, subnet };
}

/**
 * The peer a lease stands for on the IPv4 device, or a one-line reason why it cannot be one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IP, IPNet } from "../../ip.ts";
 * const lease = {
 *   subnet: IPNet.mustParse("10.5.2.0/24"),
 *   ipv6Subnet: null,
 *   attrs: {
 *     publicIP: IP.mustParse("192.168.100.11"),
 *     publicIPv6: null,
 *     backendType: "wireguard",
 *     backendData: { PublicKey: "Oq2vD8xd+uBg3fJ0mZIH8wV0iXt7Pd3BWXlD4xKbPkk=" },
 *     backendV6Data: null,
 *   },
 *   expiration: null,
 *   modRevision: 1,
 *   etcdLeaseId: null,
 * };
 * const p = peerFromLease(lease, { port: 51820, psk: null, keepalive: 0 });
 * assert.ok(typeof p !== "string" && p.port === 51820);
 * ```
 */
export function peerFromLease(lease: Lease, own: OwnSpec, family: Family = 4): PeerSpec | string {
  const side = leasePeerSide(lease, family, own.port);
  if (typeof side === "string") return side;
  const v6 = family === 6;
  return {
    publicKey: side.publicKey,
    presharedKey: own.psk === null ? null : toBase64(own.psk),
    // The Worker keeps IPv4 as host-order u32, IPv6 as 16 bytes (see PeerSpec).
    ip: v6 ? 0 : side.endpoint.toU32(),
    ip6: v6 ? side.endpoint.bytes.slice() : null,
    port: side.port,
    allowedIPs: [
      v6
        ? { net: 0, prefix: side.subnet.prefix, net6: side.subnet.ip.bytes.slice() }
        : { net: side.subnet.ip.toU32(), prefix: side.subnet.prefix },
    ],
    persistentKeepalive: own.keepalive,
  };
}

/** The outcome of one lease batch: device changes and what to log. */
export interface LeaseBatchResult {
  /** Peer changes, in order. */
  readonly changes: PeerBatch["changes"][number][];
  /** Info lines (`Subnet added: …`, `Subnet removed: …`). */
  readonly lines: string[];
  /** Warnings (a lease that cannot be a peer). */
  readonly warnings: string[];
}

/** The one device of a single-device mode: how peers are reached, and from where. */
export interface SinglePlane {
  /** `auto`, `ipv4` or `ipv6`. */
  readonly mode: SingleMode;
  /** Our underlay addresses (the choice in `auto` depends on them). */
  readonly ours: Underlay;
}

/**
 * The peer a lease stands for on the one device of a single-device mode: allowed IPs = both of
 * its subnets, the endpoint at the address {@link tunnelFamily} picks, or a one-line reason.
 *
 * The port is the lease's `BackendData` `Port`, else our own ListenPort, for either family: a
 * single device listens on ListenPort for both (as the kernel's does). Upstream writes
 * ListenPortV6 into `BackendV6Data` even in these modes, where nothing listens on it, so that
 * `Port` is not read here (see {@link ownLeaseAttrs} for what we write).
 */
export function singlePeerFromLease(
  lease: Lease,
  own: OwnSpec,
  plane: SinglePlane,
): PeerSpec | string {
  const sides: LeasePeerSide[] = [];
  for (const family of [4, 6] as const) {
    if ((family === 4 ? lease.subnet : lease.ipv6Subnet) === null) continue;
    const side = leasePeerSide(lease, family, own.port);
    if (typeof side === "string") return side;
    sides.push(side);
  }
  if (sides.length === 0) return "no subnet";
  const keys = new Set(sides.map((x) => x.publicKey));
  if (keys.size > 1) return "BackendData and BackendV6Data name different PublicKeys";
  const family = tunnelFamily(plane.mode, lease.attrs, plane.ours);
  if (typeof family === "string") return family;
  const v4 = sides.find((x) => x.subnet.family === 4);
  const endpoint = family === 4 ? lease.attrs.publicIP! : lease.attrs.publicIPv6!;
  return {
    publicKey: sides[0].publicKey,
    presharedKey: own.psk === null ? null : toBase64(own.psk),
    ip: family === 4 ? endpoint.toU32() : 0,
    ip6: family === 6 ? endpoint.bytes.slice() : null,
    port: v4?.port ?? own.port,
    allowedIPs: sides.map(({ subnet }) =>
      subnet.family === 6
        ? { net: 0, prefix: subnet.prefix, net6: subnet.ip.bytes.slice() }
        : { net: subnet.ip.toU32(), prefix: subnet.prefix }
    ),
    persistentKeepalive: own.keepalive,
  };
}

/**
 * Follows lease batches for one device, remembering which key each subnet named: one family's
 * device in `separate` mode (`spec.port`: its ListenPort resp. ListenPortV6), or the one device
 * of a single-device mode (a {@link SinglePlane}; a lease is then named by its IPv4 subnet, or
 * its IPv6 one on an IPv6-only network).
 */
export class LeasePeers {
  readonly #keys = new Map<string, string>(); // subnet → public key
  /** 4 or 6 for a family's device; null for the single device. */
  readonly family: Family | null;
  readonly #single: SinglePlane | null;

  constructor(readonly own: IPNet, readonly spec: OwnSpec, plane: Family | SinglePlane = 4) {
    this.family = typeof plane === "number" ? plane : null;
    this.#single = typeof plane === "number" ? null : plane;
  }

  /** The number of peer subnets followed. */
  get size(): number {
    return this.#keys.size;
  }

  #keyInUse(key: string, except: string): boolean {
    for (const [n, k] of this.#keys) if (n !== except && k === key) return true;
    return false;
  }

  /** Translates one batch. */
  apply(batch: readonly LeaseEvent[]): LeaseBatchResult {
    const changes: PeerBatch["changes"][number][] = [];
    const lines: string[] = [];
    const warnings: string[] = [];
    for (const ev of batch) {
      const l = ev.lease;
      const subnet = this.family === 4
        ? l.subnet
        : this.family === 6
        ? l.ipv6Subnet
        : l.subnet ?? l.ipv6Subnet;
      if (subnet === null) continue; // a lease without this family: nothing for this device
      if (subnet.equals(this.own)) continue;
      const name = String(subnet);
      if (ev.type === "removed") {
        const k = this.#keys.get(name);
        if (k === undefined) continue;
        this.#keys.delete(name);
        if (!this.#keyInUse(k, name)) changes.push({ op: "del", publicKey: k });
        lines.push(`Subnet removed: ${name}`);
        continue;
      }
      const peer = this.#single !== null
        ? singlePeerFromLease(l, this.spec, this.#single)
        : peerFromLease(l, this.spec, this.family!);
      if (typeof peer === "string") {
        warnings.push(`Ignoring the lease of ${name}: ${peer}`);
        continue;
      }
      const old = this.#keys.get(name);
      if (old !== undefined && old !== peer.publicKey && !this.#keyInUse(old, name)) {
        changes.push({ op: "del", publicKey: old }); // the host re-keyed
      }
      this.#keys.set(name, peer.publicKey);
      changes.push({ op: "set", peer });
      const via = peer.ip6 === null ? `${l.attrs.publicIP}` : `[${l.attrs.publicIPv6}]`;
      const also = this.#single !== null && l.subnet !== null && l.ipv6Subnet !== null
        ? ` and ${l.ipv6Subnet}`
        : "";
      lines.push(`Subnet added: ${name}${also} via ${via}:${peer.port}`);
    }
    return { changes, lines, warnings };
  }
}
