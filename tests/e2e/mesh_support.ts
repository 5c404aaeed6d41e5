/**
 * Helpers shared by the vxlan and host-gw end-to-end tests (no tests here): start flannel on
 * hosts, ping between container addresses, read kernel state with iproute2's JSON output.
 */

import assert from "node:assert/strict";
import type { Cluster, Daemon, Host } from "../harness/cluster.ts";
import { leaseOf } from "../harness/flannel.ts";

/** A host with flannel running and its container address on lo. */
export interface Node {
  readonly host: Host;
  daemon: Daemon;
  /** The lease, `10.1.15.0/24`. */
  readonly lease: string;
  /** FLANNEL_SUBNET's address (base + 1) as a /32 on lo. */
  readonly container: string;
}

/** The vxlan config used by these tests. */
export const VXLAN_CONFIG = { Network: "10.1.0.0/16", Backend: { Type: "vxlan" } };
/** The host-gw config used by these tests. */
export const HOSTGW_CONFIG = { Network: "10.1.0.0/16", Backend: { Type: "host-gw" } };

/**
 * Starts flannel on `host` (or takes `started`, a daemon already spawned there), waits for READY
 * and puts the container address on lo.
 */
export async function startNode(
  host: Host,
  extraArgs: string[] = [],
  started?: Daemon,
): Promise<Node> {
  const daemon = started ?? host.startFlannel(extraArgs);
  try {
    await daemon.waitReady(30_000);
  } catch (err) {
    throw new Error(`Flannel on ${host.name} did not get ready: ${daemon.tail(30)}`, {
      cause: err,
    });
  }
  const lease = await leaseOf(host);
  assert.ok(lease, `no lease in ${host.subnetFile}`);
  const container = await host.addContainerAddress();
  return { host, daemon, lease, container };
}

/** Writes `config` and starts flannel on every host of the cluster. */
export async function startAll(cluster: Cluster, config: unknown): Promise<Node[]> {
  await cluster.putConfig(config);
  return await Promise.all(cluster.hosts.map((h) => startNode(h)));
}

/** Pings `to`'s container from `from`'s container; true when the reply came back. */
export async function pingOnce(from: Node, to: Node, timeoutS = 1): Promise<boolean> {
  const r = await from.host.ping(to.container, { from: from.container, timeoutS });
  return r.ok;
}

/** Asserts a ping gets through between every ordered pair of containers. */
export async function assertFullMesh(nodes: Node[]): Promise<void> {
  const failures: string[] = [];
  await Promise.all(nodes.flatMap((a) =>
    nodes.filter((b) => b !== a).map(async (b) => {
      if (!await pingOnce(a, b, 2)) {
        failures.push(`${a.host.name} → ${b.host.name} (${b.container})`);
      }
    })
  ));
  assert.deepEqual(failures, [], `pings lost: ${failures.join(", ")}`);
}

/** Polls `cond` every 20 ms until true; returns the elapsed ms, throws after `timeoutMs`. */
export async function waitUntil(
  what: string,
  cond: () => Promise<boolean>,
  timeoutMs: number,
): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await cond()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A route as `ip -j route` prints it. */
export interface IpRoute {
  dst: string;
  gateway?: string;
  dev: string;
  flags: string[];
  protocol?: string;
}

/** `ip -j route` of the main table. */
export async function routes(host: Host): Promise<IpRoute[]> {
  return await host.ipJson<IpRoute[]>(["route", "show", "table", "main"]);
}

/** `ip -j neigh show dev <dev>`. */
export async function neighs(
  host: Host,
  dev: string,
): Promise<{ dst: string; lladdr?: string; state: string[] }[]> {
  return await host.ipJson(["neigh", "show", "dev", dev]);
}

/** `bridge -j fdb show dev <dev>`, tunnel entries only (those with a dst). */
export async function fdbs(
  host: Host,
  dev: string,
): Promise<{ mac: string; dst: string; state: string }[]> {
  const r = await host.exec(["bridge", "-j", "fdb", "show", "dev", dev]);
  if (r.code !== 0) throw new Error(`bridge fdb on ${host.name}: ${r.stderr.trim()}`);
  const all = JSON.parse(r.stdout.trim() || "[]") as { mac: string; dst?: string; state: string }[];
  return all.filter((f) => f.dst !== undefined) as { mac: string; dst: string; state: string }[];
}

/** `ip -d -j link show <dev>`; null when absent. */
export async function linkDetails(host: Host, dev: string): Promise<
  {
    address: string;
    mtu: number;
    flags: string[];
    linkinfo: { info_kind: string; info_data: Record<string, unknown> };
  } | null
> {
  const r = await host.exec(["ip", "-d", "-j", "link", "show", dev]);
  if (r.code !== 0) return null;
  return JSON.parse(r.stdout)[0];
}

/** The first address of `subnet` (`10.1.15.0/24` → `10.1.15.0`). */
export function baseOf(subnet: string): string {
  return subnet.split("/")[0];
}
