/**
 * Startup benchmark: time from spawning the daemon to READY (subnet.env written) and its RSS at
 * READY, with 0, 1,000 and 5,000 existing peer leases, in a fresh namespace cluster each time.
 *
 * Peers are bulk-loaded through `etcdctl txn` (100 puts per transaction, all attached to one etcd
 * lease of 24 h, as live leases are). Their PublicIPs are in 172.16.0.0/16, which the measured
 * host also holds on eth0 so host-gw's routes via them are valid. For vxlan and host-gw the table
 * also shows when all peer routes were in the kernel ("programmed").
 *
 * Usage: deno run -A scripts/bench_startup.ts [--backend=alloc|vxlan|host-gw[,…]]
 *          [--peers=0,1000,5000] [--runs=1] [--strict]
 * Exit 1 when a measurement failed, or with --strict when a target was missed.
 * Targets: READY ≤ 1 s (0 peers), ≤ 2 s (1,000), ≤ 5 s (5,000); RSS ≤ 64 MB.
 */

import { parseArgs } from "node:util";
import { Cluster, ETCD_PREFIX, type Host } from "../tests/harness/cluster.ts";
import { findDenoPid, readMemory, run, runOk } from "../tests/harness/netns.ts";
import { median } from "./bench_stats.ts";

const TARGET_MS: Record<number, number> = { 0: 1_000, 1000: 2_000, 5000: 5_000 };
const TARGET_RSS = 64 * 1024 * 1024;

interface Sample {
  readyMs: number;
  rssBytes: number | null;
  anonBytes: number | null;
  programmedMs: number | null;
}

function peerValue(backend: string, i: number): string {
  const ip = `172.16.${1 + (i >> 8)}.${i & 0xff}`;
  const base: Record<string, unknown> = { PublicIP: ip, PublicIPv6: null };
  if (backend === "host-gw") base.BackendType = "host-gw";
  if (backend === "vxlan") {
    const mac = ["0e", "00", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff, "01"]
      .map((b) => typeof b === "string" ? b : b.toString(16).padStart(2, "0")).join(":");
    base.BackendType = "vxlan";
    base.BackendData = { VNI: 1, VtepMAC: mac };
  }
  return JSON.stringify(base);
}

/** Peer i's subnet: 10.0.1.0/24 upward (the low range, which the daemon's search walks first). */
function peerSubnet(i: number): string {
  const n = i + 1; // 10.0.0.0/24 is never leased
  return `10.${n >> 8}.${n & 0xff}.0/24`;
}

async function loadPeers(cluster: Cluster, backend: string, count: number): Promise<void> {
  if (count === 0) return;
  const ctl = [
    "ip",
    "netns",
    "exec",
    cluster.hub,
    "etcdctl",
    `--endpoints=${cluster.etcd.endpoints}`,
  ];
  const env = { ETCDCTL_API: "3" };
  const grant = await runCtl([...ctl, "lease", "grant", "86400"], env);
  const m = /lease ([0-9a-f]+) granted/.exec(grant);
  if (!m) throw new Error(`Unexpected etcdctl lease grant output: ${grant.trim()}`);
  const batches: string[] = [];
  for (let start = 0; start < count; start += 100) {
    const ops: string[] = [];
    for (let i = start; i < Math.min(count, start + 100); i++) {
      const key = `${ETCD_PREFIX}/subnets/${peerSubnet(i).replace("/", "-")}`;
      // etcdctl's txn reader unquotes Go-style "…" strings: JSON.stringify produces them.
      ops.push(`put --lease=${m[1]} ${key} ${JSON.stringify(peerValue(backend, i))}`);
    }
    batches.push(`\n${ops.join("\n")}\n\n\n`); // no compares, puts, no else-ops
  }
  // A few transactions in flight at once.
  for (let i = 0; i < batches.length; i += 4) {
    await Promise.all(
      batches.slice(i, i + 4).map(async (b) => {
        const out = await runCtl([...ctl, "txn"], env, b);
        if (!out.startsWith("SUCCESS")) throw new Error(`etcdctl txn failed: ${out.trim()}`);
      }),
    );
  }
  const countOut = await runCtl(
    [...ctl, "get", "--prefix", "--limit=1", "-w", "json", `${ETCD_PREFIX}/subnets/`],
    env,
  );
  const n = Number(JSON.parse(countOut).count); // the total, not the limited kvs
  if (n !== count) throw new Error(`Loaded ${n} peer leases, wanted ${count}`);
}

async function runCtl(cmd: string[], env: Record<string, string>, stdin?: string): Promise<string> {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  if (out.code !== 0) {
    throw new Error(
      `Command failed: ${cmd.slice(4, 6).join(" ")}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return text;
}

async function countPeerRoutes(host: Host): Promise<number> {
  const r = await run(["ip", "-n", host.ns, "route", "show", "root", "10.0.0.0/8"]);
  return r.stdout.split("\n").filter((l) => l.startsWith("10.")).length;
}

async function measure(backend: string, peers: number): Promise<Sample> {
  await using cluster = await Cluster.create({ hosts: 1, handleSigint: true });
  const [host] = cluster.hosts;
  await cluster.putConfig({ Network: "10.0.0.0/8", SubnetLen: 24, Backend: { Type: backend } });
  await runOk(["ip", "-n", host.ns, "addr", "add", "172.16.0.1/16", "dev", "eth0"]);
  const t0 = performance.now();
  await loadPeers(cluster, backend, peers);
  if (peers > 0) {
    console.log(
      `  loaded ${peers} peer leases in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  }

  const d = host.startFlannel();
  await d.waitReady(60_000);
  const pid = findDenoPid(d.pid);
  const mem = pid === null ? null : readMemory(pid);
  const st = await Deno.stat(host.subnetFile);
  const readyMs = st.mtime!.getTime() - d.startedAtWall;

  let programmedMs: number | null = null;
  if (backend !== "alloc" && peers > 0) {
    const deadline = performance.now() + 60_000;
    while (performance.now() < deadline) {
      // Peer routes plus none of our own (vxlan/host-gw add none for the own subnet).
      if (await countPeerRoutes(host) >= peers) {
        programmedMs = performance.now() - d.startedAt;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const code = await d.stop(2_000);
  if (code !== 0) console.error(`  (daemon exit code ${code} on SIGTERM)\n${d.tail(5)}`);
  return {
    readyMs,
    rssBytes: mem?.rssBytes ?? null,
    anonBytes: mem?.anonBytes ?? null,
    programmedMs,
  };
}

async function benchBackend(
  backend: string,
  peerCounts: number[],
  runs: number,
): Promise<{ rows: string[][]; failed: boolean; missed: boolean }> {
  console.log(
    `startup: backend ${backend}, peers ${peerCounts.join("/")}, ${runs} run(s) each (median); ` +
      `time from spawn to subnet.env, RSS of the deno process at that moment`,
  );
  const rows: string[][] = [];
  let failed = false;
  let missed = false;
  for (const peers of peerCounts) {
    const samples: Sample[] = [];
    try {
      for (let r = 0; r < runs; r++) samples.push(await measure(backend, peers));
    } catch (err) {
      console.error(`  ${peers} peers: failed: ${(err as Error).message}`);
      rows.push([backend, String(peers), "failed", "-", "-", "-", "-", "-", "FAILED"]);
      failed = true;
      continue;
    }
    const ready = median(samples.map((s) => s.readyMs));
    const rssList = samples.map((s) => s.rssBytes).filter((x): x is number => x !== null);
    const rss = rssList.length ? median(rssList) : null;
    const anonList = samples.map((s) => s.anonBytes).filter((x): x is number => x !== null);
    const anon = anonList.length ? median(anonList) : null;
    const prog = samples.map((s) => s.programmedMs).filter((x): x is number => x !== null);
    const target = TARGET_MS[peers] ?? null;
    const ok = (target === null || ready <= target) && rss !== null && rss <= TARGET_RSS;
    missed ||= !ok;
    rows.push([
      backend,
      String(peers),
      `${ready.toFixed(0)} ms`,
      target === null ? "-" : `${target} ms`,
      rss === null ? "?" : `${(rss / 1048576).toFixed(1)} MB`,
      "64 MB",
      anon === null ? "?" : `${(anon / 1048576).toFixed(1)} MB`,
      backend === "alloc" || peers === 0
        ? "-"
        : prog.length === samples.length
        ? `${median(prog).toFixed(0)} ms`
        : "not all",
      ok ? "ok" : "MISSED",
    ]);
    console.log(`  ${peers} peers: ${rows.at(-1)!.slice(2).join(", ")}`);
  }
  return { rows, failed, missed };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      backend: { type: "string", default: "alloc" },
      peers: { type: "string", default: "0,1000,5000" },
      runs: { type: "string", default: "1" },
      strict: { type: "boolean", default: false },
    },
    strict: true,
  });
  const backends = values.backend!.split(",");
  const peerCounts = values.peers!.split(",").map(Number);
  const runs = Math.max(1, Number(values.runs));
  if (peerCounts.some((n) => !Number.isInteger(n) || n < 0 || n > 60_000)) {
    console.error(`bench_startup: --peers ${values.peers} is not a list of counts 0-60000`);
    return 2;
  }
  const rows: string[][] = [];
  let failed = false;
  let missed = false;
  for (const b of backends) {
    const r = await benchBackend(b, peerCounts, runs);
    rows.push(...r.rows);
    failed ||= r.failed;
    missed ||= r.missed;
  }
  const header = [
    "BACKEND",
    "PEERS",
    "READY",
    "TARGET",
    "RSS",
    "TARGET",
    "OF IT ANON",
    "PROGRAMMED",
    "RESULT",
  ];
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd();
  console.log([line(header), ...rows.map(line)].join("\n"));
  // A missed target is a finding, not a crash: only --strict turns it into a failure.
  return failed || (missed && values.strict) ? 1 : 0;
}

Deno.exit(await main());
