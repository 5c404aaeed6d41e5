/**
 * Convergence benchmark: from a peer lease PUT in etcd to its entries in the kernel.
 *
 * One host runs flannel (vxlan by default). A putter inside the hub namespace writes N peer
 * leases one at a time through the registry (scripts/bench_converge_putter.ts), stamping the
 * wall clock just before each put; `ip -tshort monitor route` in the host namespace stamps each
 * route event. The route is the last of FDB, ARP, route that the backend sets for a peer, so its event marks
 * the peer converged; afterwards the run checks that all N routes, ARP and FDB entries exist.
 * Then the leases are deleted the same way and the route deletions timed.
 *
 * Usage: deno run -A scripts/bench_converge.ts [--backend vxlan|host-gw] [--leases 200]
 *        [--gap-ms 25]
 * Target: p99 ≤ 50 ms.
 */

import { parseArgs } from "node:util";
import { Cluster, ETCD_PREFIX, HUB_IP } from "../tests/harness/cluster.ts";
import { leaseOf } from "../tests/harness/flannel.ts";
import { readRssBytes } from "../tests/harness/netns.ts";
import { percentile } from "./bench_stats.ts";

const args = parseArgs({
  options: {
    backend: { type: "string", default: "vxlan" },
    leases: { type: "string", default: "200" },
    "gap-ms": { type: "string", default: "25" },
  },
});
const BACKEND = args.values.backend!;
const N = Number(args.values.leases);
const GAP = Number(args.values["gap-ms"]);
if (BACKEND === "host-gw" && N > 150) {
  throw new Error("Host-gw peers need eth0 addresses: at most 150 leases");
}

function summary(name: string, xs: number[]): string {
  return `${name}: n=${xs.length} p50 ${percentile(xs, 50).toFixed(1)} ms, p99 ${
    percentile(xs, 99).toFixed(1)
  } ms, max ${Math.max(...xs).toFixed(1)} ms`;
}

await using cluster = await Cluster.create({ hosts: 1 });
await cluster.putConfig({ Network: "10.0.0.0/8", SubnetLen: 24, Backend: { Type: BACKEND } });
const [h1] = cluster.hosts;
const daemon = h1.startFlannel();
await daemon.waitReady(30_000);
const own = await leaseOf(h1);
console.log(`${BACKEND}: flannel on ${h1.name} holds ${own}; ${N} peer leases, ${GAP} ms apart`);

// Peers: 10.200.<i>.0/24 … (skipping our own). vxlan peers anywhere; host-gw peers must be on
// eth0's /24, so host-gw uses PublicIPs 192.168.100.100+ (and at most 150 leases).
const items: [string, string, string][] = [];
for (let i = 0; items.length < N; i++) {
  const subnet = `10.${200 + (i >> 8)}.${i & 255}.0/24`;
  if (subnet === own) continue;
  const k = items.length;
  const pub = BACKEND === "host-gw"
    ? `192.168.100.${100 + k}`
    : `172.16.${k >> 8}.${(k & 255) + 1}`;
  const mac = `02:00:00:00:${(k >> 8).toString(16).padStart(2, "0")}:${
    (k & 255).toString(16).padStart(2, "0")
  }`;
  const value = BACKEND === "host-gw"
    ? `{"PublicIP":"${pub}","PublicIPv6":null,"BackendType":"host-gw"}`
    : `{"PublicIP":"${pub}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`;
  items.push([subnet, `${ETCD_PREFIX}/subnets/${subnet.replace("/", "-")}`, value]);
}

// Route events in the host namespace, stamped by ip (wall clock, UTC).
const monitor = new Deno.Command("ip", {
  args: ["-n", h1.ns, "-tshort", "monitor", "route"],
  env: { TZ: "UTC" },
  stdout: "piped",
  stderr: "null",
}).spawn();
const added = new Map<string, number>();
const deleted = new Map<string, number>();
const reading = (async () => {
  const lines = monitor.stdout.pipeThrough(new TextDecoderStream());
  let buf = "";
  for await (const chunk of lines) {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const m = /^\[(\S+)\] (Deleted )?(\d+\.\d+\.\d+\.\d+\/\d+) /.exec(line);
      if (!m) continue;
      const t = Date.parse(m[1].slice(0, 23) + "Z") + Number(`0.${m[1].slice(23, 26) || "0"}`);
      (m[2] ? deleted : added).set(m[3], t);
    }
  }
})();
await new Promise((r) => setTimeout(r, 300));

const putter = new Deno.Command("ip", {
  args: [
    "netns",
    "exec",
    cluster.hub,
    Deno.execPath(),
    "run",
    "-A",
    "scripts/bench_converge_putter.ts",
  ],
  env: {
    EP: `http://${HUB_IP}:2379`,
    ITEMS: JSON.stringify(items.map(([, k, v]) => [k, v])),
    GAP: String(GAP),
    DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
  },
  cwd: new URL("..", import.meta.url).pathname,
  stdout: "piped",
  stderr: "piped",
}).spawn();
const stderrText = new Response(putter.stderr).text();
// deno-lint-ignore no-explicit-any
const ops: any[] = [];
let buf = "";
for await (const chunk of putter.stdout.pipeThrough(new TextDecoderStream())) {
  buf += chunk;
  let nl;
  while ((nl = buf.indexOf("\n")) >= 0) {
    const op = JSON.parse(buf.slice(0, nl));
    buf = buf.slice(nl + 1);
    ops.push(op);
    if (op.op === "wait") await checkKernel();
  }
}
if (!(await putter.status).success) throw new Error(`Putter failed: ${await stderrText}`);
await stderrText;
await new Promise((r) => setTimeout(r, 300));
monitor.kill("SIGTERM");
await reading.catch(() => {});
await monitor.status;

/** With every lease put: all N routes (and for vxlan ARP and FDB entries) are in the kernel. */
async function checkKernel(): Promise<void> {
  await new Promise((r) => setTimeout(r, 200));
  const routes = (await h1.ipJson<{ dst: string }[]>(["route", "show", "table", "main"]))
    .filter((r) => items.some(([s]) => s === r.dst)).length;
  let line = `kernel after the puts: ${routes}/${N} routes`;
  if (BACKEND === "vxlan") {
    const arp = (await h1.ipJson<unknown[]>(["neigh", "show", "dev", "flannel.1"])).length;
    const r = await h1.exec(["bridge", "-j", "fdb", "show", "dev", "flannel.1"]);
    const fdb = (JSON.parse(r.stdout || "[]") as { dst?: string }[]).filter((f) => f.dst).length;
    line += `, ${arp}/${N} ARP, ${fdb}/${N} FDB entries`;
  }
  const pid = daemon.denoPid();
  const rss = pid ? readRssBytes(pid) : null;
  if (rss) line += `; daemon RSS ${(rss / 2 ** 20).toFixed(1)} MiB`;
  console.log(line);
}

const subnetOf = new Map(items.map(([s, k]) => [k, s]));
const addFromPut: number[] = [], addFromAck: number[] = [];
const delFromPut: number[] = [];
const putRtt: number[] = [];
const missing: string[] = [];
for (const op of ops) {
  if (op.op === "wait") continue;
  const s = subnetOf.get(op.key)!;
  const t = (op.op === "put" ? added : deleted).get(s);
  if (t === undefined) {
    missing.push(`${op.op} ${s}`);
    continue;
  }
  if (op.op === "put") putRtt.push(op.t1 - op.t0);
  if (op.op === "put") {
    addFromPut.push(t - op.t0);
    addFromAck.push(t - op.t1);
  } else {
    delFromPut.push(t - op.t0);
  }
}
console.log(summary("lease PUT → route present", addFromPut));
console.log(summary("PUT acknowledged → route present", addFromAck));
console.log(summary("etcd PUT round trip (client → commit → ack)", putRtt));
console.log(summary("lease DELETE → route gone", delFromPut));
if (missing.length) console.log(`no route event for: ${missing.slice(0, 10).join(", ")} …`);
