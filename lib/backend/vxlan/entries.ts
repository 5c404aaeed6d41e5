/**
 * What one peer's vxlan lease puts in the kernel (pure; tested without root).
 *
 * Tunnel peer: FDB `VtepMAC → dst PublicIP`, ARP `<subnet base> → VtepMAC`, and the route
 * `<subnet> via <subnet base> dev flannel.<VNI> onlink`. With DirectRouting, a peer whose PublicIP
 * is on a directly connected subnet gets `<subnet> via <PublicIP> dev <ext>` and nothing else.
 */

import { formatMAC, type IP, parseMAC } from "../../ip.ts";
import { getFold, type Lease } from "../../lease.ts";
import { quote } from "../../log.ts";
import type { PeerDecision } from "../kernel_plan.ts";

/** The lease `BackendData` of a vxlan host: `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`. */
export interface VxlanLeaseData {
  readonly VNI: number;
  readonly VtepMAC: string;
}

/** What the planner needs to know about this host, for one address family. */
export interface VxlanPeerContext {
  /** 4 (default): `flannel.<VNI>` over the IPv4 underlay; 6: `flannel-v6.<VNI>` over IPv6. */
  readonly family?: 4 | 6;
  readonly vni: number;
  /** Index of `flannel.<VNI>` (or `flannel-v6.<VNI>`). */
  readonly devIndex: number;
  /** Index of the external interface. */
  readonly extIndex: number;
  readonly directRouting: boolean;
  /** Our own PublicIP (PublicIPv6): a lease carrying it is a stale one of ours, not a peer. */
  readonly ownIP: IP;
  /** Our device's MAC (lower case): a peer claiming it would take our own traffic. */
  readonly ownMAC?: string;
  /** True when `ip` is reachable without a gateway through the external interface. */
  readonly isDirect: (ip: IP) => boolean;
}

/** Our lease's BackendData, field order VNI then VtepMAC (as upstream writes it). */
export function vxlanLeaseData(vni: number, mac: string): VxlanLeaseData {
  return { VNI: vni, VtepMAC: mac };
}

/**
 * Decodes a peer's VNI and VtepMAC. A missing VNI is taken as compatible (leases written by
 * flannel before VNI was advertised carry only VtepMAC). Returns the reason when unusable.
 */
export function decodeVxlanData(data: unknown): { vni: number | null; mac: string } | string {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return "BackendData is not a JSON object";
  }
  const rec = data as Record<string, unknown>;
  const rawMac = getFold(rec, "VtepMAC");
  const mac = typeof rawMac === "string" ? parseMAC(rawMac) : null;
  if (mac === null) return `VtepMAC ${quote(rawMac ?? null)} is not a MAC address`;
  // The kernel refuses such an FDB entry (EOPNOTSUPP) but takes the ARP entry: refuse it here.
  if (mac.every((x) => x === 0)) return `VtepMAC ${formatMAC(mac)} is the zero MAC`;
  if (mac[0] & 1) return `VtepMAC ${formatMAC(mac)} is a multicast or broadcast MAC`;
  const rawVni = getFold(rec, "VNI");
  if (rawVni !== undefined && rawVni !== null && !Number.isInteger(rawVni)) {
    return `VNI ${quote(rawVni)} is not an integer`;
  }
  return { vni: (rawVni as number | null | undefined) ?? null, mac: formatMAC(mac) };
}

/**
 * The kernel entries for one peer lease in one family, or why it is skipped. For IPv6 the
 * subnet, address and data are the lease's IPv6 ones (`PublicIPv6`, `BackendV6Data`), the
 * entries NDP neighbours and FDB entries with IPv6 destinations on `flannel-v6.<VNI>`.
 */
export function planVxlanPeer(lease: Lease, c: VxlanPeerContext): PeerDecision {
  const v6 = c.family === 6;
  const subnet = v6 ? lease.ipv6Subnet : lease.subnet;
  const pub = v6 ? lease.attrs.publicIPv6 : lease.attrs.publicIP;
  const pubKey = v6 ? "PublicIPv6" : "PublicIP";
  const who = `peer ${subnet} (${pubKey} ${pub})`;
  if (subnet === null) return { ok: false, reason: `Skipping ${who}: no IPv${c.family} subnet` };
  if (pub === null) {
    return { ok: false, reason: `Skipping ${who}: the lease has no ${pubKey}` };
  }
  if (lease.attrs.backendType !== "vxlan") {
    const type = lease.attrs.backendType || "udp";
    return {
      ok: false,
      reason: `Skipping ${who}: backend type ${quote(type)} is not vxlan`,
    };
  }
  if (pub.equals(c.ownIP)) {
    return { ok: false, reason: `Skipping ${who}: that is our own ${pubKey}` };
  }
  const data = decodeVxlanData(v6 ? lease.attrs.backendV6Data : lease.attrs.backendData);
  if (typeof data === "string") {
    return {
      ok: false,
      reason: `Skipping ${who}: ${v6 ? data.replace("BackendData", "BackendV6Data") : data}`,
    };
  }
  if (c.ownMAC !== undefined && data.mac === c.ownMAC.toLowerCase()) {
    return { ok: false, reason: `Skipping ${who}: VtepMAC ${data.mac} is our own device's MAC` };
  }
  if (data.vni !== null && data.vni !== c.vni) {
    return { ok: false, reason: `Skipping ${who}: VNI ${data.vni} differs from ours (${c.vni})` };
  }
  if (c.directRouting && c.isDirect(pub)) {
    return {
      ok: true,
      entries: {
        route: { dst: subnet, gateway: pub, oif: c.extIndex, onlink: false },
        neigh: null,
        fdb: null,
      },
    };
  }
  const base = subnet.ip;
  return {
    ok: true,
    entries: {
      route: { dst: subnet, gateway: base, oif: c.devIndex, onlink: true },
      neigh: { index: c.devIndex, ip: base, mac: data.mac },
      fdb: { index: c.devIndex, mac: data.mac, dst: pub },
    },
  };
}
