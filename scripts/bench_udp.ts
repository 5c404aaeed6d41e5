/**
 * udp backend benchmark: the same two hosts (namespaces on the test harness's hub, a real etcd)
 * measured over four paths in one run — the plain underlay (veth → bridge → veth), kernel VXLAN
 * built by hand with static FDB/ARP entries, and flannel's udp backend with offloads off and on.
 *
 * Per path: iperf3 TCP (rounds × seconds, median), UDP receive rate at 1400 and 64 bytes with an
 * unlimited sender, loss at 18k pps of 1400-byte datagrams, ping RTT (avg/max), and for the udp
 * backend the daemons' CPU (% of one core during the TCP runs) and RSS. Ratios are against
 * kernel VXLAN (throughput) and the underlay (RTT overhead) of the same run.
 *
 * With `--scrape MS`, the udp backend (offloads on) is measured three more times, alternating:
 * with the health server on and `/metrics` fetched from each daemon every MS milliseconds during
 * the whole measurement, without, and with again — to show that metrics cost the data path
 * nothing (the counters are read from shared memory per scrape, nothing is done per packet).
 *
 * Usage: deno run -A scripts/bench_udp.ts [--rounds 3] [--seconds 10] [--udp-seconds 5]
 *        [--pings 200] [--scrape 100]
 */

import { parseArgs } from "node:util";
import { Cluster, type Daemon, type Host } from "../tests/harness/cluster.ts";
import { leaseOf } from "../tests/harness/flannel.ts";
import { readRssBytes } from "../tests/harness/netns.ts";
import { median } from "./bench_stats.ts";
import { cpuSeconds, pingStats, sh } from "./bench_support.ts";
import { iperf } from "../tests/harness/iperf.ts";

const args = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "10" },
    "udp-seconds": { type: "string", default: "5" },
    pings: { type: "string", default: "200" },
    scrape: { type: "string" },
  },
});
const SCRAPE_MS = args.values.scrape === undefined ? null : Number(args.values.scrape);
const HEALTHZ_PORT = 8471;
const ROUNDS = Number(args.values.rounds);
const SECONDS = Number(args.values.seconds);
const UDP_SECONDS = Number(args.values["udp-seconds"]);
const PINGS = Number(args.values.pings);

interface Path {
  name: string;
  src: string; // on hosts[0]
  dst: string; // on hosts[1]
  daemons?: Daemon[];
  /** `/metrics` scrapers running in the hosts during the measurement. */
  scrapers?: Deno.ChildProcess[];
}

interface Result {
  path: string;
  tcpGbps: number;
  tcpRuns: number[];
  retransmits: number;
  pps1400: number;
  pps64: number;
  loss18k: number;
  rttAvgMs: number;
  rttMaxMs: number;
  cpuPct: number[] | null; // per daemon: sender, receiver
  rssMiB: number[] | null;
}

async function measure(hosts: Host[], path: Path): Promise<Result> {
  console.error(`-- ${path.name}`);
  const pids = path.daemons?.map((d) => d.denoPid()!) ?? null;
  const runs: number[] = [];
  let retransmits = 0;
  const cpu0 = pids?.map(cpuSeconds);
  const t0 = performance.now();
  for (let i = 0; i < ROUNDS; i++) {
    const end = await iperf(hosts[0], hosts[1], path.src, path.dst, SECONDS);
    runs.push(end.sum_received.bits_per_second / 1e9);
    retransmits += end.sum_sent.retransmits ?? 0;
  }
  const wall = (performance.now() - t0) / 1000;
  const cpuPct = pids ? pids.map((p, i) => (cpuSeconds(p) - cpu0![i]) / wall * 100) : null;
  const rssMiB = pids ? pids.map((p) => (readRssBytes(p) ?? 0) / 2 ** 20) : null;
  const udpRate = async (len: number) => {
    const end = await iperf(hosts[0], hosts[1], path.src, path.dst, UDP_SECONDS, [
      "-u",
      "-b",
      "0",
      "-l",
      String(len),
    ]);
    const s = end.sum;
    return (s.packets - s.lost_packets) / s.seconds;
  };
  const pps1400 = await udpRate(1400);
  const pps64 = await udpRate(64);
  const at18k = await iperf(hosts[0], hosts[1], path.src, path.dst, UDP_SECONDS, [
    "-u",
    "-b",
    String(18000 * 1400 * 8),
    "-l",
    "1400",
  ]);
  const loss18k = at18k.sum.lost_percent;
  const ping = await pingStats(hosts[0], path.src, path.dst, PINGS);
  return {
    path: path.name,
    tcpGbps: median(runs),
    tcpRuns: runs,
    retransmits,
    pps1400,
    pps64,
    loss18k,
    rttAvgMs: ping.avgMs,
    rttMaxMs: ping.maxMs,
    cpuPct,
    rssMiB,
  };
}

async function kernelVxlan(hosts: Host[]): Promise<Path> {
  const macs = ["02:78:00:00:00:01", "02:78:00:00:00:02"];
  for (const [i, h] of hosts.entries()) {
    const j = 1 - i;
    for (
      const cmd of [
        `link add vxb type vxlan id 78 local ${h.ip} dev eth0 dstport 4791 nolearning`,
        `link set vxb address ${macs[i]} mtu 1450 up`,
        `addr add 10.78.0.${i + 1}/24 dev vxb`,
        `neigh add 10.78.0.${j + 1} lladdr ${macs[j]} dev vxb nud permanent`,
      ]
    ) await sh(h, ["ip", ...cmd.split(" ")]);
    await sh(h, [
      "bridge",
      "fdb",
      "add",
      macs[j],
      "dev",
      "vxb",
      "dst",
      hosts[j].ip,
      "self",
      "permanent",
    ]);
  }
  return { name: "kernel VXLAN", src: "10.78.0.1", dst: "10.78.0.2" };
}

async function udpBackend(
  cluster: Cluster,
  offload: boolean,
  scrapeMs: number | null = null,
): Promise<Path> {
  await cluster.putConfig({
    Network: "10.1.0.0/16",
    Backend: { Type: "udp", Offload: offload },
  });
  const extra = scrapeMs === null ? [] : [`--healthz-port=${HEALTHZ_PORT}`];
  const daemons = cluster.hosts.map((h) => h.startFlannel(extra));
  await Promise.all(daemons.map((d) => d.waitReady(30_000)));
  const addrs: string[] = [];
  for (const h of cluster.hosts) {
    await h.addContainerAddress();
    const lease = await leaseOf(h);
    addrs.push(lease!.split("/")[0].replace(/\.0$/, ".1"));
  }
  // Wait until each sees the other.
  for (let i = 0; i < 100; i++) {
    const r = await cluster.hosts[0].exec([
      "ping",
      "-c",
      "1",
      "-W",
      "1",
      "-I",
      addrs[0],
      addrs[1],
    ]);
    if (r.code === 0) break;
  }
  const scrapers = scrapeMs === null ? [] : cluster.hosts.map((h) => scraper(h, scrapeMs));
  return {
    name: `flannel udp, offloads ${offload ? "on" : "off"}${
      scrapeMs === null ? "" : `, /metrics every ${scrapeMs} ms`
    }`,
    src: addrs[0],
    dst: addrs[1],
    daemons,
    scrapers,
  };
}

/** Fetches the host's `/metrics` every `ms` until killed. */
function scraper(h: Host, ms: number): Deno.ChildProcess {
  const url = `http://127.0.0.1:${HEALTHZ_PORT}/metrics`;
  return new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      h.ns,
      "sh",
      "-c",
      `while :; do curl -s -o /dev/null ${url}; sleep ${ms / 1000}; done`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** The udp packet counters of the host's `/metrics` (proof that the scrapes saw traffic). */
async function scrapedPackets(h: Host): Promise<string> {
  const out = await sh(h, ["curl", "-s", `http://127.0.0.1:${HEALTHZ_PORT}/metrics`]);
  return out.split("\n").filter((l) => l.startsWith("flannel_udp_packets_total")).join(", ");
}

async function stopDaemons(cluster: Cluster, path: Path): Promise<void> {
  for (const p of path.scrapers ?? []) {
    p.kill("SIGKILL");
    await p.status;
  }
  for (const d of path.daemons ?? []) d.kill("SIGTERM");
  for (const d of path.daemons ?? []) await d.exited();
  for (const h of cluster.hosts) {
    const env = await h.readSubnetEnv();
    const ip = env?.FLANNEL_SUBNET?.split("/")[0];
    if (ip) await h.exec(["ip", "addr", "del", `${ip}/32`, "dev", "lo"]);
  }
}

function fmt(n: number, d = 2): string {
  return n.toFixed(d);
}

function report(results: Result[]): string {
  const vx = results.find((r) => r.path === "kernel VXLAN")!;
  const veth = results.find((r) => r.path === "underlay (veth + bridge)")!;
  const lines = [
    "| path | TCP Gbit/s (runs) | × VXLAN | retrans | UDP 1400 B rx kpps | UDP 64 B rx kpps | loss at 18k pps | ping avg / max ms | RTT over underlay ms | daemon CPU % (tx, rx) | RSS MiB (tx, rx) |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    lines.push(
      `| ${r.path} | ${fmt(r.tcpGbps)} (${r.tcpRuns.map((x) => fmt(x)).join(", ")}) | ${
        fmt(r.tcpGbps / vx.tcpGbps, 3)
      } | ${r.retransmits} | ${fmt(r.pps1400 / 1000, 1)} | ${fmt(r.pps64 / 1000, 1)} | ${
        fmt(r.loss18k, 2)
      } % | ${fmt(r.rttAvgMs, 3)} / ${fmt(r.rttMaxMs, 3)} | ${
        fmt(r.rttAvgMs - veth.rttAvgMs, 3)
      } | ${r.cpuPct ? r.cpuPct.map((x) => fmt(x, 0)).join(", ") : "–"} | ${
        r.rssMiB ? r.rssMiB.map((x) => fmt(x, 0)).join(", ") : "–"
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
    await measure(hosts, { name: "underlay (veth + bridge)", src: hosts[0].ip, dst: hosts[1].ip }),
  );
  results.push(await measure(hosts, await kernelVxlan(hosts)));
  const runs: [boolean, number | null][] = [[false, null], [true, null]];
  // Alternated (scraped, plain, scraped) so that a load change on the machine during the run
  // does not read as the cost of scraping.
  if (SCRAPE_MS !== null) runs.push([true, SCRAPE_MS], [true, null], [true, SCRAPE_MS]);
  for (const [offload, scrapeMs] of runs) {
    const path = await udpBackend(cluster, offload, scrapeMs);
    try {
      results.push(await measure(hosts, path));
      if (scrapeMs !== null) {
        for (const h of hosts) console.error(`   ${h.name} /metrics: ${await scrapedPackets(h)}`);
      }
    } finally {
      await stopDaemons(cluster, path);
    }
  }
  console.log(
    `udp backend benchmark, ${new Date().toISOString()}, ${ROUNDS} × ${SECONDS} s TCP, ` +
      `${UDP_SECONDS} s UDP, ${PINGS} pings, ${navigator.hardwareConcurrency} CPUs`,
  );
  console.log(report(results));
}
