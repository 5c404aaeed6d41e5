/**
 * wireguard backend benchmark, both inner families: two dual-stack hosts (the harness's IPv6
 * underlay beside the IPv4 one, a real etcd) running flannel's wireguard backend in upstream's
 * separate mode (`flannel-wg` for IPv4, `flannel-wg-v6` for IPv6) and in Mode auto (one
 * `flannel-wg` for both). Per device and family: iperf3 TCP between the container addresses
 * (rounds × seconds, median, retransmits) and the daemons' CPU (% of one core, both hosts)
 * during the runs. The plain underlay over both families is the baseline of the same run: each
 * row's ratio is against the underlay of its inner family.
 *
 * Usage: deno run -A scripts/bench_wireguard6.ts [--rounds 3] [--seconds 5]
 */

import { parseArgs } from "node:util";
import { Cluster, type Host } from "../tests/harness/cluster.ts";
import { waitUntil } from "../tests/e2e/mesh_support.ts";
import { pingMatrix, startDualNode } from "../tests/e2e/wireguard_support.ts";
import { iperf } from "../tests/harness/iperf.ts";
import { cpuSeconds } from "./bench_support.ts";
import { median } from "./bench_stats.ts";

const args = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "5" },
  },
});
const ROUNDS = Number(args.values.rounds);
const SECONDS = Number(args.values.seconds);

interface Row {
  path: string;
  gbps: number;
  runs: number[];
  retransmits: number;
  cpuPct: number[];
}

async function measure(
  hosts: Host[],
  path: string,
  from: string,
  to: string,
  pids: number[],
): Promise<Row> {
  console.error(`-- ${path}`);
  const runs: number[] = [];
  let retransmits = 0;
  const cpu0 = pids.map(cpuSeconds);
  const t0 = performance.now();
  for (let i = 0; i < ROUNDS; i++) {
    const end = await iperf(hosts[0], hosts[1], from, to, SECONDS);
    runs.push(end.sum_received.bits_per_second / 1e9);
    retransmits += end.sum_sent.retransmits ?? 0;
  }
  const wall = (performance.now() - t0) / 1000;
  const cpuPct = pids.map((p, i) => (cpuSeconds(p) - cpu0[i]) / wall * 100);
  return { path, gbps: median(runs), runs, retransmits, cpuPct };
}

if (import.meta.main) {
  await using cluster = await Cluster.create({ hosts: 2, ipv6: true });
  const hosts = cluster.hosts;
  const rows: Row[] = [];
  rows.push(await measure(hosts, "underlay IPv4", hosts[0].ip, hosts[1].ip, []));
  rows.push(await measure(hosts, "underlay IPv6", hosts[0].ip6!, hosts[1].ip6!, []));
  for (
    const [mode, dev4, dev6] of [
      [undefined, "flannel-wg", "flannel-wg-v6"],
      ["auto", "flannel-wg", "flannel-wg"],
    ] as const
  ) {
    await cluster.putConfig({
      Network: "10.1.0.0/16",
      EnableIPv6: true,
      IPv6Network: "fc00::/48",
      Backend: mode === undefined ? { Type: "wireguard" } : { Type: "wireguard", Mode: mode },
    });
    const nodes = await Promise.all(hosts.map(startDualNode));
    try {
      await waitUntil("ping and ping6 matrix", async () => {
        return (await pingMatrix(nodes)).length === 0;
      }, 60_000);
      const pids = nodes.map((n) => n.daemon.denoPid()!);
      const label = mode === undefined ? "separate" : `Mode ${mode}`;
      rows.push(
        await measure(hosts, `${label}: IPv4 over ${dev4}`, nodes[0].c4, nodes[1].c4, pids),
      );
      rows.push(
        await measure(hosts, `${label}: IPv6 over ${dev6}`, nodes[0].c6, nodes[1].c6, pids),
      );
    } finally {
      for (const n of nodes) await n.daemon.stop();
      for (const n of nodes) {
        await n.host.exec(["ip", "addr", "del", `${n.c4}/32`, "dev", "lo"]);
        await n.host.exec(["ip", "addr", "del", `${n.c6}/128`, "dev", "lo"]);
      }
    }
  }
  console.log(
    `wireguard IPv4/IPv6 benchmark, ${new Date().toISOString()}, ${ROUNDS} × ${SECONDS} s TCP, ` +
      `${navigator.hardwareConcurrency} CPUs, load ${
        Deno.loadavg().map((x) => x.toFixed(1)).join(" ")
      }`,
  );
  // Each tunnel row against the underlay of its inner family, measured above in this run.
  const base = (path: string) => rows[path.includes("IPv6") ? 1 : 0].gbps;
  console.log("| path | TCP Gbit/s (runs) | × underlay | retrans | daemon CPU % (tx, rx) |");
  console.log("|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.path} | ${r.gbps.toFixed(2)} (${r.runs.map((x) => x.toFixed(2)).join(", ")}) | ${
        (r.gbps / base(r.path)).toFixed(3)
      } | ${r.retransmits} | ${
        r.cpuPct.length ? r.cpuPct.map((x) => x.toFixed(0)).join(", ") : "–"
      } |`,
    );
  }
}
