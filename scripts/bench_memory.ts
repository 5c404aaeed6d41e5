/**
 * Memory benchmark: where the daemon's RSS goes, and what V8 heap flags buy.
 *
 * Part 1, the breakdown: probe processes that stop at successive stages (Deno alone; + importing
 * etcd3, which pulls grpc-js and protobufjs; + one get and one watch against a real etcd; + our
 * daemon modules loaded but not run; Deno alone + the udp Worker's isolate), each measuring its
 * own VmRSS/RssAnon and V8 heap once it settles. Then the daemon itself at READY (alloc with 0
 * peers, vxlan with 0 and 1,000 peer leases), read from /proc like bench_startup, with Deno's V8
 * defaults and with the project's flags (deno.json's compile task, as the harness runs it).
 *
 * Part 2, the flags: the daemon at READY (vxlan, 1,000 peers) started with each `--v8-flags`
 * variant, RSS and READY time side by side.
 *
 * Usage: deno run -A scripts/bench_memory.ts [--runs=3] [--peers=1000] [--skip-flags]
 *          [--flags="<v8 flags>;<v8 flags>;…"]   (part 2's variants; "" is Deno's defaults)
 * Everything runs in one throwaway namespace cluster (hub with etcd, one host).
 */

import { parseArgs } from "node:util";
import {
  Cluster,
  Daemon,
  DAEMON_V8_FLAGS,
  ETCD_PREFIX,
  type Host,
  REPO_ROOT,
} from "../tests/harness/cluster.ts";
import { findDenoPid, readMemory, run } from "../tests/harness/netns.ts";
import { median } from "./bench_stats.ts";

/** The flag sets part 2 compares; the first is Deno's defaults. */
const FLAG_VARIANTS: string[] = [
  "",
  "--max-semi-space-size=1",
  "--max-semi-space-size=2",
  "--max-semi-space-size=4",
  "--optimize-for-size",
  "--lite-mode",
];

interface Mem {
  rss: number;
  anon: number;
  heapUsed?: number;
  heapTotal?: number;
  external?: number;
}

/** The probe: runs one stage, settles, prints its own memory as one JSON line. */
const PROBE = `
const stage = Deno.args[0];
const status = () => {
  const s = Deno.readTextFileSync("/proc/self/status");
  const kb = (k) => Number(new RegExp("^" + k + ":\\\\s+(\\\\d+)", "m").exec(s)[1]) * 1024;
  return { rss: kb("VmRSS"), anon: kb("RssAnon") };
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let keep = [];
if (stage !== "bare" && stage !== "worker") keep.push(await import("etcd3"));
if (stage === "etcd-ops" || stage === "daemon-modules") {
  const { Etcd3 } = keep[0];
  const client = new Etcd3({ hosts: Deno.env.get("EP") });
  await client.get("${ETCD_PREFIX}/config").string();
  const w = await client.watch().prefix("${ETCD_PREFIX}/subnets/").create();
  keep.push(client, w);
}
if (stage === "daemon-modules") {
  keep.push(await import("${REPO_ROOT}/lib/daemon.ts"));
  keep.push(await import("${REPO_ROOT}/lib/backend/vxlan/mod.ts"));
}
if (stage === "worker") {
  keep.push(new Worker("file://${REPO_ROOT}/lib/backend/udp/worker.ts", { type: "module" }));
}
await sleep(1500);
const m = Deno.memoryUsage();
console.log(JSON.stringify({ ...status(), heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external }));
Deno.exit(0);
`;

const STAGES: { stage: string; what: string }[] = [
  { stage: "bare", what: "Deno alone (empty script)" },
  { stage: "etcd3", what: "+ import etcd3 (grpc-js, protobufjs)" },
  { stage: "etcd-ops", what: "+ one get and one watch" },
  { stage: "daemon-modules", what: "+ lib/daemon.ts and vxlan modules loaded, not run" },
  { stage: "worker", what: "Deno alone + the udp Worker's isolate" },
];

async function probe(host: Host, cluster: Cluster, file: string, stage: string): Promise<Mem> {
  const r = await run([
    "ip",
    "netns",
    "exec",
    host.ns,
    "env",
    `EP=${cluster.etcd.endpoints}`,
    Deno.execPath(),
    "run",
    "-A",
    `--config=${REPO_ROOT}/deno.json`,
    file,
    stage,
  ]);
  if (r.code !== 0) throw new Error(`Probe ${stage} failed: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

function peerValue(i: number): string {
  const mac = ["0e", "00", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff, "01"]
    .map((b) => typeof b === "string" ? b : b.toString(16).padStart(2, "0")).join(":");
  return JSON.stringify({
    PublicIP: `172.16.${1 + (i >> 8)}.${i & 0xff}`,
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: mac },
  });
}

/** Puts `count` vxlan peer leases (all on one 24 h etcd lease) through etcdctl txn batches. */
async function loadPeers(cluster: Cluster, count: number): Promise<void> {
  const ctl = ["ip", "netns", "exec", cluster.hub, "env", "ETCDCTL_API=3", "etcdctl"];
  ctl.push(`--endpoints=${cluster.etcd.endpoints}`);
  const grant = await run([...ctl, "lease", "grant", "86400"]);
  const id = /lease ([0-9a-f]+) granted/.exec(grant.stdout)?.[1];
  if (!id) throw new Error(`Unexpected etcdctl lease grant output: ${grant.stdout}`);
  for (let start = 0; start < count; start += 100) {
    const ops: string[] = [];
    for (let i = start; i < Math.min(count, start + 100); i++) {
      const n = i + 1;
      const key = `${ETCD_PREFIX}/subnets/10.${n >> 8}.${n & 0xff}.0-24`;
      ops.push(`put --lease=${id} ${key} ${JSON.stringify(peerValue(i))}`);
    }
    const child = new Deno.Command(ctl[0], {
      args: [...ctl.slice(1), "txn"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(`\n${ops.join("\n")}\n\n\n`));
    await w.close();
    const out = await child.output();
    if (!new TextDecoder().decode(out.stdout).startsWith("SUCCESS")) {
      throw new Error(`etcdctl txn failed: ${new TextDecoder().decode(out.stderr)}`);
    }
  }
}

async function clearLeases(cluster: Cluster): Promise<void> {
  await run([
    "ip",
    "netns",
    "exec",
    cluster.hub,
    "env",
    "ETCDCTL_API=3",
    "etcdctl",
    `--endpoints=${cluster.etcd.endpoints}`,
    "del",
    "--prefix",
    `${ETCD_PREFIX}/subnets/`,
  ]);
}

/** Starts the daemon with `v8Flags`, waits for READY, reads RSS, stops it. */
async function daemonAtReady(
  host: Host,
  cluster: Cluster,
  v8Flags: string,
): Promise<{ mem: Mem; readyMs: number }> {
  await Deno.remove(host.subnetFile).catch(() => {});
  const home = Deno.env.get("HOME") ?? "/root";
  const d = Daemon.spawn({
    ns: host.ns,
    cmd: [
      Deno.execPath(),
      "run",
      "-A",
      ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
      `${REPO_ROOT}/main.ts`,
      `--etcd-endpoints=${cluster.etcd.endpoints}`,
      "--iface=eth0",
      `--subnet-file=${host.subnetFile}`,
    ],
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin:/usr/sbin:/sbin",
      HOME: home,
      DENO_DIR: Deno.env.get("DENO_DIR") ?? `${home}/.cache/deno`,
      NO_COLOR: "1",
    },
    cwd: REPO_ROOT,
    logFile: `${host.dir}/bench_memory.log`,
    subnetFile: host.subnetFile,
  });
  try {
    await d.waitReady(60_000);
    const readyMs = (await Deno.stat(host.subnetFile)).mtime!.getTime() - d.startedAtWall;
    // Let the first watch and the peer programming settle, as a running daemon would.
    await new Promise((r) => setTimeout(r, 1500));
    const pid = findDenoPid(d.pid);
    const m = pid === null ? null : readMemory(pid);
    if (m === null) throw new Error("Cannot read the daemon's /proc status");
    return { mem: { rss: m.rssBytes, anon: m.anonBytes }, readyMs };
  } finally {
    await d.stop(2_000);
  }
}

const mb = (n: number | undefined) => n === undefined ? "-" : (n / 1048576).toFixed(1);

function medianMem(list: Mem[]): Mem {
  const pick = (k: keyof Mem) => {
    const v = list.map((m) => m[k]).filter((x): x is number => x !== undefined);
    return v.length ? median(v) : undefined;
  };
  return {
    rss: pick("rss")!,
    anon: pick("anon")!,
    heapUsed: pick("heapUsed"),
    heapTotal: pick("heapTotal"),
    external: pick("external"),
  };
}

function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "3" },
      peers: { type: "string", default: "1000" },
      "skip-flags": { type: "boolean", default: false },
      flags: { type: "string" },
    },
    strict: true,
  });
  const runs = Math.max(1, Number(values.runs));
  const peers = Number(values.peers);
  const variants = values.flags !== undefined ? values.flags.split(";") : FLAG_VARIANTS;
  await using cluster = await Cluster.create({ hosts: 1, handleSigint: true });
  const [host] = cluster.hosts;
  await run(["ip", "-n", host.ns, "addr", "add", "172.16.0.1/16", "dev", "eth0"]);
  const probeFile = `${cluster.dir}/probe.js`;
  await Deno.writeTextFile(probeFile, PROBE);

  console.log(`memory: ${runs} run(s) each, medians; MB = MiB`);
  const rows: string[][] = [];
  let base: number | null = null;
  let prev: number | null = null;
  for (const s of STAGES) {
    const m = medianMem(await sequential(runs, () => probe(host, cluster, probeFile, s.stage)));
    base ??= m.rss;
    const delta = s.stage === "worker" ? m.rss - base : m.rss - (prev ?? m.rss);
    if (s.stage !== "worker") prev = m.rss;
    rows.push([s.what, mb(m.rss), mb(delta), mb(m.anon), mb(m.heapUsed), mb(m.heapTotal)]);
    console.log(`  ${rows.at(-1)!.join(", ")}`);
  }

  const configs: { what: string; type: string; peers: number }[] = [
    { what: "daemon at READY, alloc, 0 peers", type: "alloc", peers: 0 },
    { what: "daemon at READY, vxlan, 0 peers", type: "vxlan", peers: 0 },
    { what: `daemon at READY, vxlan, ${peers} peers`, type: "vxlan", peers },
  ];
  const project = DAEMON_V8_FLAGS.map((f) => f.replace(/^--v8-flags=/, "")).join(",");
  for (const c of configs) {
    await clearLeases(cluster);
    await cluster.putConfig({ Network: "10.0.0.0/8", SubnetLen: 24, Backend: { Type: c.type } });
    await loadPeers(cluster, c.peers);
    for (const [v, got] of await roundRobin(runs, ["", project], host, cluster)) {
      const m = medianMem(got.map((g) => g.mem));
      const ready = median(got.map((g) => g.readyMs));
      const how = v === "" ? "Deno's V8 defaults" : v;
      rows.push([
        `${c.what}, ${how} (READY ${ready.toFixed(0)} ms)`,
        mb(m.rss),
        "-",
        mb(m.anon),
        "-",
        "-",
      ]);
      console.log(`  ${rows.at(-1)!.join(", ")}`);
    }
  }
  console.log(table(["STAGE", "RSS", "DELTA", "ANON", "HEAP USED", "HEAP TOTAL"], rows));

  if (values["skip-flags"]) return 0;
  console.log(`\nV8 flags: daemon at READY, vxlan, ${peers} peers, ${runs} run(s) each`);
  const byVariant = await roundRobin(runs, variants, host, cluster);
  const frows: string[][] = [];
  for (const v of variants) {
    const got = byVariant.get(v)!;
    const m = medianMem(got.map((g) => g.mem));
    const ready = median(got.map((g) => g.readyMs));
    frows.push([v === "" ? "(none)" : v, mb(m.rss), mb(m.anon), `${ready.toFixed(0)} ms`]);
    console.log(`  ${frows.at(-1)!.join(", ")}`);
  }
  console.log(table(["--v8-flags", "RSS", "ANON", "READY"], frows));
  return 0;
}

/** `runs` READY measurements per flag set, interleaved so that a load change hits all alike. */
async function roundRobin(
  runs: number,
  variants: string[],
  host: Host,
  cluster: Cluster,
): Promise<Map<string, { mem: Mem; readyMs: number }[]>> {
  const out = new Map<string, { mem: Mem; readyMs: number }[]>(variants.map((v) => [v, []]));
  for (let r = 0; r < runs; r++) {
    for (const v of variants) out.get(v)!.push(await daemonAtReady(host, cluster, v));
  }
  return out;
}

async function sequential<T>(n: number, fn: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(await fn());
  return out;
}

Deno.exit(await main());
