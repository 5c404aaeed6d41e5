/**
 * The demo: several hosts in network namespaces on one bridge, one etcd, flannel on each host.
 * Prints the lease table from etcd, each host's subnet.env and — for backends that carry traffic —
 * a ping matrix between the hosts' "container" addresses. Everything is removed on exit or Ctrl-C.
 *
 * Usage: deno run -A scripts/demo.ts [--hosts=3] [--backend=vxlan] [--keep]
 */

import { parseArgs } from "node:util";
import { Cluster, type Host } from "../tests/harness/cluster.ts";
import { etcdLeases, leaseKey, ttlOf } from "../tests/harness/flannel.ts";

const TRAFFIC_BACKENDS = new Set(["vxlan", "host-gw", "udp"]);

function usage(): string {
  return "Usage: scripts/demo.sh [--hosts=N] [--backend=TYPE] [--keep]\n" +
    "  --hosts=N        hosts to start (1-50, default 3)\n" +
    "  --backend=TYPE   flannel backend type: vxlan (default), host-gw, udp, alloc\n" +
    "  --keep           keep the cluster up until Ctrl-C";
}

function parse(): { hosts: number; backend: string; keep: boolean } {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        hosts: { type: "string", default: "3" },
        backend: { type: "string", default: "vxlan" },
        keep: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`demo: ${(err as Error).message}`);
    console.error(usage());
    Deno.exit(2);
  }
  if (values.help) {
    console.log(usage());
    Deno.exit(0);
  }
  const hosts = Number(values.hosts);
  if (!Number.isInteger(hosts) || hosts < 1 || hosts > 50) {
    console.error(`demo: --hosts ${values.hosts} is not a whole number between 1 and 50`);
    Deno.exit(2);
  }
  return { hosts, backend: values.backend!, keep: values.keep! };
}

/** Left-aligned table with a header rule. */
function table(header: string[], rows: string[][]): string {
  const width = (s: string) => [...s].length;
  const w = header.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ""))));
  const line = (r: string[]) =>
    r.map((c, i) => c + " ".repeat(w[i] - width(c))).join("  ").trimEnd();
  return [line(header), line(w.map((n) => "-".repeat(n))), ...rows.map(line)].join("\n");
}

async function leaseTable(cluster: Cluster): Promise<string> {
  const leases = await etcdLeases(cluster);
  const rows: string[][] = [];
  for (const [subnet, raw] of Object.entries(leases)) {
    let v: Record<string, unknown> = {};
    try {
      v = JSON.parse(raw);
    } catch {
      // Shown as is below.
    }
    const data = (v.BackendData ?? {}) as Record<string, unknown>;
    const ttl = await ttlOf(cluster, leaseKey(subnet));
    rows.push([
      subnet,
      String(v.PublicIP ?? raw),
      String(v.BackendType ?? "(none)"),
      String(data.VtepMAC ?? "-"),
      ttl < 0 ? "reservation" : `${ttl} s`,
    ]);
  }
  const ipKey = (ip: string) => ip.split(".").reduce((a, o) => a * 256 + (Number(o) || 0), 0);
  rows.sort((a, b) => ipKey(a[1]) - ipKey(b[1]) || ipKey(a[0]) - ipKey(b[0]));
  return table(["SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC", "TTL"], rows);
}

async function pingMatrix(
  hosts: Host[],
  addrs: string[],
): Promise<{ text: string; failed: number }> {
  const rows: string[][] = [];
  let failed = 0;
  for (const [i, from] of hosts.entries()) {
    const row = [`${from.name} ${addrs[i]}`];
    for (const [j] of hosts.entries()) {
      if (i === j) {
        row.push("·");
        continue;
      }
      // The first packets may race route installation on the peer: a few tries.
      let res = await from.ping(addrs[j], { count: 1, timeoutS: 1, from: addrs[i] });
      for (let t = 0; t < 4 && !res.ok; t++) {
        res = await from.ping(addrs[j], { count: 1, timeoutS: 1, from: addrs[i] });
      }
      if (!res.ok) failed++;
      row.push(res.ok ? `✓ ${res.rttMs?.toFixed(3)} ms` : "✗");
    }
    rows.push(row);
  }
  const header = ["FROM \\ TO", ...hosts.map((h, j) => `${h.name} ${addrs[j]}`)];
  return { text: table(header, rows), failed };
}

async function main(): Promise<number> {
  const opts = parse();
  console.log(`Creating ${opts.hosts} hosts in network namespaces, etcd in the hub namespace…`);
  await using cluster = await Cluster.create({ hosts: opts.hosts, handleSigint: true });
  console.log(
    `  hub ${cluster.hub} (bridge br0 192.168.100.1/24, etcd ${cluster.etcd.endpoints}); ` +
      `hosts ${cluster.hosts.map((h) => `${h.ns}=${h.ip}`).join(", ")}`,
  );

  const config = { Network: "10.1.0.0/16", Backend: { Type: opts.backend } };
  await cluster.putConfig(config);
  console.log(`Network config /coreos.com/network/config: ${JSON.stringify(config)}`);

  console.log(`Starting flannel on each host (logs under ${cluster.dir})…`);
  const t0 = performance.now();
  const daemons = cluster.hosts.map((h) => h.startFlannel());
  const results = await Promise.allSettled(daemons.map((d) => d.waitReady(60_000)));
  let failed = 0;
  for (const [i, r] of results.entries()) {
    if (r.status === "rejected") {
      failed++;
      console.error(`  ${cluster.hosts[i].name}: not ready: ${(r.reason as Error).message}`);
    }
  }
  console.log(
    `  ${daemons.length - failed}/${daemons.length} ready in ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  console.log("\nLeases in etcd (/coreos.com/network/subnets/):");
  console.log(await leaseTable(cluster));

  for (const h of cluster.hosts) {
    console.log(`\n${h.name} (${h.ns}) ${h.subnetFile}:`);
    const text = await Deno.readTextFile(h.subnetFile).catch(() => "(not written)\n");
    console.log(text.trimEnd().split("\n").map((l) => "  " + l).join("\n"));
  }

  const ready = cluster.hosts.filter((_, i) => results[i].status === "fulfilled");
  if (TRAFFIC_BACKENDS.has(opts.backend.toLowerCase()) && ready.length > 1) {
    const addrs = await Promise.all(ready.map((h) => h.addContainerAddress()));
    console.log("\nContainer addresses (FLANNEL_SUBNET base+1, /32 on lo); ping matrix:");
    const matrix = await pingMatrix(ready, addrs);
    console.log(matrix.text);
    failed += matrix.failed;
  } else if (!TRAFFIC_BACKENDS.has(opts.backend.toLowerCase())) {
    console.log(`\nThe ${opts.backend} backend carries no traffic: ping matrix skipped.`);
  }

  if (opts.keep) {
    console.log("\nCluster kept up; Ctrl-C removes it. Try e.g.:");
    const h = cluster.hosts[0];
    console.log(`  ip netns exec ${h.ns} ip route`);
    console.log(`  ip netns exec ${h.ns} cat ${h.subnetFile}`);
    // Ctrl-C: the cluster's SIGINT handler tears down and exits; the timer keeps the loop alive.
    await new Promise(() => setInterval(() => {}, 60_000));
  }
  console.log("\nRemoving the cluster…");
  return failed === 0 ? 0 : 1; // a host not ready or a failed ping
}

Deno.exit(await main());
