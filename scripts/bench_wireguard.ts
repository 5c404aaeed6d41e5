/**
 * wireguard backend benchmark: the same two hosts (namespaces on the test harness's hub, a real
 * etcd) over four paths in one run — the plain underlay, Debian's `wireguard-go` on both hosts
 * (configured by hand with `wg`, as an upstream flannel host would be), flannel's wireguard
 * backend, and flannel's udp backend (offloads off: the wireguard data path has none yet, so
 * this is the like-for-like unencrypted baseline; and on).
 *
 * Per path: iperf3 TCP (rounds × seconds, median), ping RTT (avg/max), and the CPU of the
 * tunnel processes on both hosts (% of one core during the TCP runs: wireguard-go or our
 * daemons). Ratios are against wireguard-go's throughput and the underlay's RTT of the same run.
 *
 * Usage: deno run -A scripts/bench_wireguard.ts [--rounds 3] [--seconds 10] [--pings 200]
 */

import { parseArgs } from "node:util";
import { Cluster, type Host } from "../tests/harness/cluster.ts";
import { leaseOf } from "../tests/harness/flannel.ts";
import { genkey, WgGoHost } from "../tests/harness/wireguard_go.ts";
import { median } from "./bench_stats.ts";
import { cpuSeconds, pingStats } from "./bench_support.ts";
import { iperf } from "../tests/harness/iperf.ts";

const args = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "10" },
    pings: { type: "string", default: "200" },
  },
});
const ROUNDS = Number(args.values.rounds);
const SECONDS = Number(args.values.seconds);
const PINGS = Number(args.values.pings);

interface Path {
  name: string;
  src: string; // on hosts[0]
  dst: string; // on hosts[1]
  pids: number[]; // tunnel processes whose CPU counts
}

interface Result {
  path: string;
  tcpGbps: number;
  tcpRuns: number[];
  retransmits: number;
  rttAvgMs: number;
  rttMaxMs: number;
  cpuPct: number[];
}

async function measure(hosts: Host[], path: Path): Promise<Result> {
  console.error(`-- ${path.name}`);
  const runs: number[] = [];
  let retransmits = 0;
  const cpu0 = path.pids.map(cpuSeconds);
  const t0 = performance.now();
  for (let i = 0; i < ROUNDS; i++) {
    const end = await iperf(hosts[0], hosts[1], path.src, path.dst, SECONDS);
    runs.push(end.sum_received.bits_per_second / 1e9);
    retransmits += end.sum_sent.retransmits ?? 0;
  }
  const wall = (performance.now() - t0) / 1000;
  const cpuPct = path.pids.map((p, i) => (cpuSeconds(p) - cpu0[i]) / wall * 100);
  const ping = await pingStats(hosts[0], path.src, path.dst, PINGS);
  return {
    path: path.name,
    tcpGbps: median(runs),
    tcpRuns: runs,
    retransmits,
    rttAvgMs: ping.avgMs,
    rttMaxMs: ping.maxMs,
    cpuPct,
  };
}

async function waitPing(host: Host, from: string, to: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await host.exec(["ping", "-c", "1", "-W", "1", "-I", from, to]);
    if (r.code === 0) return;
  }
  throw new Error(`No ping from ${from} to ${to}`);
}

async function flannel(cluster: Cluster, backend: Record<string, unknown>, name: string) {
  await cluster.putConfig({ Network: "10.1.0.0/16", Backend: backend });
  const daemons = cluster.hosts.map((h) =>
    h.startFlannel([], {
      WIREGUARD_KEY_FILE: `${h.dir}/wgkey`,
      FLANNEL_WG_SOCKET_DIR: `${h.dir}/wg`,
    })
  );
  await Promise.all(daemons.map((d) => d.waitReady(30_000)));
  const addrs: string[] = [];
  for (const h of cluster.hosts) {
    await h.addContainerAddress();
    addrs.push((await leaseOf(h))!.split("/")[0].replace(/\.0$/, ".1"));
  }
  await waitPing(cluster.hosts[0], addrs[0], addrs[1]);
  const path: Path = { name, src: addrs[0], dst: addrs[1], pids: daemons.map((d) => d.denoPid()!) };
  return {
    path,
    async stop() {
      for (const d of daemons) d.kill("SIGTERM");
      for (const d of daemons) await d.exited();
      for (const [i, h] of cluster.hosts.entries()) {
        await h.exec(["ip", "addr", "del", `${addrs[i]}/32`, "dev", "lo"]);
      }
    },
  };
}

function fmt(n: number, d = 2): string {
  return n.toFixed(d);
}

function report(results: Result[]): string {
  const wg = results.find((r) => r.path === "wireguard-go")!;
  const veth = results.find((r) => r.path === "underlay (veth + bridge)")!;
  const lines = [
    "| path | TCP Gbit/s (runs) | × wireguard-go | retrans | ping avg / max ms | RTT over underlay ms | tunnel CPU % (tx, rx) | Gbit/s per tunnel core |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const cores = r.cpuPct.reduce((a, b) => a + b, 0) / 100;
    lines.push(
      `| ${r.path} | ${fmt(r.tcpGbps)} (${r.tcpRuns.map((x) => fmt(x)).join(", ")}) | ${
        fmt(r.tcpGbps / wg.tcpGbps, 3)
      } | ${r.retransmits} | ${fmt(r.rttAvgMs, 3)} / ${fmt(r.rttMaxMs, 3)} | ${
        fmt(r.rttAvgMs - veth.rttAvgMs, 3)
      } | ${r.cpuPct.length ? r.cpuPct.map((x) => fmt(x, 0)).join(", ") : "–"} | ${
        cores > 0 ? fmt(r.tcpGbps / cores) : "–"
      } |`,
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  await using cluster = await Cluster.create({ hosts: 2 });
  const hosts = cluster.hosts;
  const results: Result[] = [];
  results.push(
    await measure(hosts, {
      name: "underlay (veth + bridge)",
      src: hosts[0].ip,
      dst: hosts[1].ip,
      pids: [],
    }),
  );

  // wireguard-go on both hosts, addresses 10.77.0.1 and .2 on lo, one peer each.
  {
    const keys = [await genkey(), await genkey()];
    const wg = [await WgGoHost.start(hosts[0]), await WgGoHost.start(hosts[1])];
    try {
      for (const i of [0, 1]) {
        const j = 1 - i;
        await wg[i].up({
          priv: keys[i].priv,
          peers: [{ pub: keys[j].pub, ip: hosts[j].ip, allowed: `10.77.${j + 1}.0/24` }],
          address: `10.77.${i + 1}.0`,
          route: "10.77.0.0/16",
          container: `10.77.${i + 1}.1`,
        });
      }
      await waitPing(hosts[0], "10.77.1.1", "10.77.2.1");
      const pids = [(await wg[0].pid())!, (await wg[1].pid())!];
      results.push(
        await measure(hosts, { name: "wireguard-go", src: "10.77.1.1", dst: "10.77.2.1", pids }),
      );
    } finally {
      for (const w of wg) await w[Symbol.asyncDispose]();
      for (const [i, h] of hosts.entries()) {
        await h.exec(["ip", "addr", "del", `10.77.${i + 1}.1/32`, "dev", "lo"]);
      }
    }
  }

  for (
    const [backend, name] of [
      [{ Type: "wireguard" }, "flannel wireguard"],
      [{ Type: "udp", Offload: false }, "flannel udp, offloads off (no encryption)"],
      [{ Type: "udp", Offload: true }, "flannel udp, offloads on (no encryption)"],
    ] as const
  ) {
    const f = await flannel(cluster, backend, name);
    try {
      results.push(await measure(hosts, f.path));
    } finally {
      await f.stop();
    }
  }
  console.log(
    `wireguard benchmark, ${new Date().toISOString()}, ${ROUNDS} × ${SECONDS} s TCP, ` +
      `${PINGS} pings, ${navigator.hardwareConcurrency} CPUs, load ${
        Deno.loadavg().map((x) => x.toFixed(1)).join(" ")
      }`,
  );
  console.log(report(results));
}
