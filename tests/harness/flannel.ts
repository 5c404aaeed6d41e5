/**
 * What the end-to-end tests expect of flannel: the alloc config, the exact subnet.env text, and
 * small readers of the lease keys in etcd.
 */

import type { Cluster, Host } from "./cluster.ts";
import { ETCD_PREFIX } from "./cluster.ts";

/** The alloc network used by most tests. */
export const ALLOC_CONFIG = { Network: "10.1.0.0/16", Backend: { Type: "alloc" } };

/** The exact subnet.env for a lease (`10.1.15.0/24`) under `network`. */
export function expectedSubnetEnv(lease: string, network = "10.1.0.0/16", mtu = 1500): string {
  const [base, len] = lease.split("/");
  const o = base.split(".").map(Number);
  return `FLANNEL_NETWORK=${network}\nFLANNEL_SUBNET=${o[0]}.${o[1]}.${o[2]}.${o[3] + 1}/${len}\n` +
    `FLANNEL_MTU=${mtu}\nFLANNEL_IPMASQ=false\n`;
}

/** The lease (`10.1.15.0/24`) named by a host's subnet.env, null when absent or empty. */
export async function leaseOf(host: Host): Promise<string | null> {
  const env = await host.readSubnetEnv();
  const s = env?.FLANNEL_SUBNET;
  if (!s) return null;
  const [ip, len] = s.split("/");
  const o = ip.split(".").map(Number);
  return `${o[0]}.${o[1]}.${o[2]}.${o[3] - 1}/${len}`;
}

/** The etcd key of a lease given as `10.1.15.0/24`. */
export function leaseKey(lease: string, prefix = ETCD_PREFIX): string {
  return `${prefix}/subnets/${lease.replace("/", "-")}`;
}

/** The subnet leases in etcd as `10.1.15.0/24` → raw value. */
export async function etcdLeases(
  cluster: Cluster,
  prefix = ETCD_PREFIX,
): Promise<Record<string, string>> {
  const raw = await cluster.etcd.list(`${prefix}/subnets/`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    out[k.slice(k.lastIndexOf("/") + 1).replace("-", "/")] = v;
  }
  return out;
}

/**
 * The etcd lease id attached to a key as a decimal string ("0" for a key without one, null when
 * the key is absent). Read with `-w fields`: ids are int64 and JSON numbers would lose digits.
 */
export async function etcdLeaseIdOf(cluster: Cluster, key: string): Promise<string | null> {
  const server = cluster.etcd.server;
  if (server === null) throw new Error("Etcd is not started");
  const r = await server.etcdctl(["get", "-w", "fields", "--", key]);
  const m = /^"Lease" : (\d+)$/m.exec(r.stdout);
  return m ? m[1] : null;
}

/** The remaining TTL in seconds of the etcd lease attached to a key (-1 for none or absent). */
export async function ttlOf(cluster: Cluster, key: string): Promise<number> {
  const id = await etcdLeaseIdOf(cluster, key);
  if (id === null || id === "0") return -1;
  const r = await cluster.etcd.server!.etcdctl([
    "lease",
    "timetolive",
    BigInt(id).toString(16),
  ]);
  const m = /remaining\((-?\d+)s\)/.exec(r.stdout);
  return m ? Number(m[1]) : -1;
}
