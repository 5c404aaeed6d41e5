/**
 * Helpers shared by the wireguard end-to-end tests (no tests here): the per-host key file and
 * UAPI directory, `wg show` through a private mount namespace, dual-stack nodes, the ping
 * matrix of both families and what to print when it does not converge.
 */

import assert from "node:assert/strict";
import type { Daemon, Host } from "../harness/cluster.ts";
import { leaseOf } from "../harness/flannel.ts";
import { IP } from "../../ffi/ip.ts";
import { waitUntil } from "./mesh_support.ts";
import { iperf } from "../harness/iperf.ts";

/** Every host gets its own key file and UAPI directory under its temp dir. */
export function wgEnv(host: Host): Record<string, string> {
  return { WIREGUARD_KEY_FILE: `${host.dir}/wgkey`, FLANNEL_WG_SOCKET_DIR: `${host.dir}/wg` };
}

/**
 * `wg show <dev> <what…>` with the host's UAPI directory mounted where `wg` looks (the socket
 * path is shared by every network namespace, so each host has its own directory).
 */
export async function wgShowText(host: Host, dev: string, what: string[]): Promise<string> {
  const r = await host.exec([
    "unshare",
    "-m",
    "sh",
    "-c",
    `mount -t tmpfs tmpfs /run && mkdir /run/wireguard && mount --bind "$0" /run/wireguard && exec wg show "$@"`,
    `${host.dir}/wg`,
    dev,
    ...what,
  ]);
  assert.equal(r.code, 0, `wg show ${dev}: ${r.stderr}`);
  return r.stdout;
}

/** `wg show <dev> dump`, split into lines of tab-separated fields (the first: the interface). */
export async function wgDump(host: Host, dev: string): Promise<string[][]> {
  const text = await wgShowText(host, dev, ["dump"]);
  return text.trim().split("\n").map((l) => l.split("\t"));
}

/** `fc00:0:0:22::1/64` (FLANNEL_IPV6_SUBNET) → `fc00:0:0:22::/64`. */
export function lease6Of(v: string): string {
  const [ip, len] = v.split("/");
  return `${IP.fromBigInt(IP.mustParse(ip).toBigInt() - 1n, 6)}/${len}`;
}

/** A dual-stack host running our wireguard backend, with a container address of each family. */
export interface WgNode {
  readonly host: Host;
  readonly daemon: Daemon;
  readonly lease4: string;
  readonly lease6: string;
  readonly c4: string;
  readonly c6: string;
}

/**
 * Starts the daemon on `host` with its own key file and UAPI directory (and `env`, `args`);
 * resolves at READY.
 */
export async function startWgDaemon(
  host: Host,
  env: Record<string, string> = {},
  args: string[] = [],
): Promise<Daemon> {
  const daemon = host.startFlannel(args, { ...wgEnv(host), ...env });
  try {
    await daemon.waitReady(30_000);
  } catch (err) {
    throw new Error(`Flannel on ${host.name} did not get ready: ${daemon.tail(30)}`, {
      cause: err,
    });
  }
  return daemon;
}

/** Starts the daemon on `host` (dual-stack network config already in etcd). */
export function startDualNode(host: Host): Promise<WgNode> {
  return startDualNodeWith({})(host);
}

/** {@link startDualNode} with `extra` in the daemon's environment. */
export const startDualNodeWith =
  (extra: Record<string, string>) => async (host: Host): Promise<WgNode> => {
    const daemon = await startWgDaemon(host, extra);
    const env = await host.readSubnetEnv();
    assert.ok(env?.FLANNEL_IPV6_SUBNET, `no FLANNEL_IPV6_SUBNET in ${host.subnetFile}`);
    const lease4 = await leaseOf(host);
    assert.ok(lease4);
    const c4 = await host.addContainerAddress();
    const c6 = await host.addContainerAddress6();
    return { host, daemon, lease4, lease6: lease6Of(env.FLANNEL_IPV6_SUBNET), c4, c6 };
  };

/** Every ordered pair pings over both families; the first packets may start handshakes. */
export async function pingMatrix(nodes: WgNode[]): Promise<string[]> {
  const failures: string[] = [];
  await Promise.all(
    nodes.flatMap((a) =>
      nodes.filter((b) => b !== a).flatMap((b) =>
        ([[a.c4, b.c4], [a.c6, b.c6]] as const).map(async ([from, to]) => {
          const r = await a.host.ping(to, { from, timeoutS: 2 });
          if (!r.ok) failures.push(`${a.host.name} ${from} → ${b.host.name} ${to}`);
        })
      )
    ),
  );
  return failures;
}

/**
 * Waits (60 s) until {@link pingMatrix} has no failure; else fails naming the pairs, with
 * {@link diagnose} of `devices`.
 */
export async function converge(nodes: WgNode[], devices: string[]): Promise<void> {
  let failures: string[] = [];
  await waitUntil("ping and ping6 matrix", async () => {
    failures = await pingMatrix(nodes);
    return failures.length === 0;
  }, 60_000).catch(async (err) => {
    throw new Error(
      `${(err as Error).message}: ${failures.join(", ")}\n${await diagnose(nodes, devices)}`,
    );
  });
}

/** What each host's devices and daemon say, for a failure message. */
export async function diagnose(nodes: WgNode[], devices: string[]): Promise<string> {
  const parts: string[] = [];
  for (const n of nodes) {
    for (const dev of devices) {
      const dump = await wgDump(n.host, dev).catch((e) => [[String(e)]]);
      parts.push(`${n.host.name} ${dev}:\n${dump.map((f) => f.join(" ")).join("\n")}`);
    }
    parts.push(`${n.host.name} log:\n${n.daemon.tail(25)}`);
  }
  return parts.join("\n");
}

/** iperf3 TCP (tests/harness/iperf.ts) for `seconds`: the received bit/s. */
export async function iperfTcp(
  client: Host,
  server: Host,
  from: string,
  to: string,
  seconds = 2,
): Promise<number> {
  return (await iperf(client, server, from, to, seconds)).sum_received.bits_per_second;
}
