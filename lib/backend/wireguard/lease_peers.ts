/**
 * What lease events become on the WireGuard device: a lease added → the peer set (key, endpoint,
 * allowed IPs = its subnet); removed → the peer gone, unless another live subnet still names the
 * same key; a host that re-keyed → the old key removed. Pure, so it is unit-tested without a
 * device.
 */

import type { IPNet } from "../../ip.ts";
import type { Lease } from "../../lease.ts";
import type { LeaseEvent } from "../../subnet/mod.ts";
import type { PeerBatch, PeerSpec } from "./protocol.ts";
import { parseKey, toBase64 } from "./keys.ts";

/** Our side of every peer: the port a lease without `Port` means, the PSK, the keepalive. */
export interface OwnSpec {
  /** Our ListenPort. */
  readonly port: number;
  /** The network's PSK, or null. */
  readonly psk: Uint8Array | null;
  /** PersistentKeepaliveInterval, seconds. */
  readonly keepalive: number;
}

/**
 * The peer a lease stands for, or a one-line reason why it cannot be one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IP, IPNet } from "../../ip.ts";
 * const lease = {
 *   subnet: IPNet.mustParse("10.5.2.0/24"),
 *   attrs: {
 *     publicIP: IP.mustParse("192.168.100.11"),
 *     backendType: "wireguard",
 *     backendData: { PublicKey: "Oq2vD8xd+uBg3fJ0mZIH8wV0iXt7Pd3BWXlD4xKbPkk=" },
 *   },
 *   expiration: null,
 *   modRevision: 1,
 *   etcdLeaseId: null,
 * };
 * const p = peerFromLease(lease, { port: 51820, psk: null, keepalive: 0 });
 * assert.ok(typeof p !== "string" && p.port === 51820);
 * ```
 */
export function peerFromLease(lease: Lease, own: OwnSpec): PeerSpec | string {
  const subnet = lease.subnet, publicIP = lease.attrs.publicIP;
  if (subnet === null || publicIP === null) return "no IPv4 subnet and PublicIP (IPv6-only host)";
  if (lease.attrs.backendType !== "wireguard") {
    return `backend type ${JSON.stringify(lease.attrs.backendType)} is not wireguard`;
  }
  const d = lease.attrs.backendData as Record<string, unknown> | null;
  const key = d !== null && typeof d === "object" ? d["PublicKey"] : undefined;
  if (typeof key !== "string") return "BackendData has no PublicKey";
  try {
    parseKey(key, "PublicKey");
  } catch (err) {
    return (err as Error).message;
  }
  const rawPort = d!["Port"];
  let port = own.port;
  if (rawPort !== undefined && rawPort !== null && rawPort !== 0) {
    if (
      typeof rawPort !== "number" || !Number.isInteger(rawPort) || rawPort < 1 || rawPort > 65535
    ) {
      return `BackendData Port ${JSON.stringify(rawPort)} is not a port`;
    }
    port = rawPort;
  }
  return {
    publicKey: key,
    presharedKey: own.psk === null ? null : toBase64(own.psk),
    // The Worker keeps IPv4 as host-order u32 (see PeerSpec).
    ip: publicIP.toU32(),
    port,
    allowedIPs: [{ net: subnet.ip.toU32(), prefix: subnet.prefix }],
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

/** Follows lease batches, remembering which key each subnet named. */
export class LeasePeers {
  readonly #keys = new Map<string, string>(); // subnet → public key

  constructor(readonly own: IPNet, readonly spec: OwnSpec) {}

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
      if (l.subnet === null) continue; // an IPv6-only lease: nothing for an IPv4 device
      if (l.subnet.equals(this.own)) continue;
      const name = String(l.subnet);
      if (ev.type === "removed") {
        const k = this.#keys.get(name);
        if (k === undefined) continue;
        this.#keys.delete(name);
        if (!this.#keyInUse(k, name)) changes.push({ op: "del", publicKey: k });
        lines.push(`Subnet removed: ${name}`);
        continue;
      }
      const peer = peerFromLease(l, this.spec);
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
      lines.push(`Subnet added: ${name} via ${l.attrs.publicIP}:${peer.port}`);
    }
    return { changes, lines, warnings };
  }
}
