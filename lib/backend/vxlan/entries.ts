/**
 * What one peer's vxlan lease puts in the kernel (pure; tested without root).
 *
 * Tunnel peer: FDB `VtepMAC → dst PublicIP`, ARP `<subnet base> → VtepMAC`, and the route
 * `<subnet> via <subnet base> dev flannel.<VNI> onlink`. With DirectRouting, a peer whose PublicIP
 * is on a directly connected subnet gets `<subnet> via <PublicIP> dev <ext>` and nothing else.
 */

import { formatMAC, type IP, parseMAC } from "../../ip.ts";
import { getFold, type Lease } from "../../lease.ts";
import type { PeerDecision } from "../kernel_plan.ts";

/** The lease `BackendData` of a vxlan host: `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`. */
export interface VxlanLeaseData {
  readonly VNI: number;
  readonly VtepMAC: string;
}

/** What the planner needs to know about this host. */
export interface VxlanPeerContext {
  readonly vni: number;
  /** Index of `flannel.<VNI>`. */
  readonly devIndex: number;
  /** Index of the external interface. */
  readonly extIndex: number;
  readonly directRouting: boolean;
  /** Our own PublicIP: a lease carrying it is a stale one of ours, not a peer. */
  readonly ownIP: IP;
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
  if (mac === null) return `VtepMAC ${JSON.stringify(rawMac ?? null)} is not a MAC address`;
  const rawVni = getFold(rec, "VNI");
  if (rawVni !== undefined && rawVni !== null && !Number.isInteger(rawVni)) {
    return `VNI ${JSON.stringify(rawVni)} is not an integer`;
  }
  return { vni: (rawVni as number | null | undefined) ?? null, mac: formatMAC(mac) };
}

/** The kernel entries for one peer lease, or why it is skipped. */
export function planVxlanPeer(lease: Lease, c: VxlanPeerContext): PeerDecision {
  const subnet = lease.subnet;
  const pub = lease.attrs.publicIP;
  const who = `peer ${subnet} (PublicIP ${pub})`;
  if (lease.attrs.backendType !== "vxlan") {
    const type = lease.attrs.backendType || "udp";
    return {
      ok: false,
      reason: `Skipping ${who}: backend type ${JSON.stringify(type)} is not vxlan`,
    };
  }
  if (pub.equals(c.ownIP)) {
    return { ok: false, reason: `Skipping ${who}: that is our own PublicIP` };
  }
  const data = decodeVxlanData(lease.attrs.backendData);
  if (typeof data === "string") return { ok: false, reason: `Skipping ${who}: ${data}` };
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
  const base = lease.subnet.ip;
  return {
    ok: true,
    entries: {
      route: { dst: subnet, gateway: base, oif: c.devIndex, onlink: true },
      neigh: { index: c.devIndex, ip: base, mac: data.mac },
      fdb: { index: c.devIndex, mac: data.mac, dst: pub },
    },
  };
}
