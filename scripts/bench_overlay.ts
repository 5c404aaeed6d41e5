/**
 * Overlay data-path benchmark: iperf3 TCP throughput and ping RTT between two hosts' containers,
 * through flannel's vxlan and host-gw backends and, in the same run and the same namespaces, the
 * same path built by hand with `ip`/`bridge` (kernel VXLAN with static FDB/ARP/route entries;
 * plain routes). Runs alternate between the two paths so machine noise hits both alike.
 *
 * Usage: deno run -A scripts/bench_overlay.ts [--backend vxlan|host-gw|all] [--family 4|6|all]
 *        [--rounds 3] [--seconds 10] [--pings 100]
 *
 * `--family 6`: a dual-stack network over an IPv6 underlay, measured between the containers'
 * IPv6 addresses (flannel-v6.1 for vxlan, IPv6 routes via PublicIPv6 for host-gw), against the
 * same IPv6 path built by hand (vxlan with `local <IPv6>`, NDP and FDB entries; plain routes).
 *
 * Ratios: throughput flannel / hand (target ≥ 0.95); RTT hand / flannel (≥ 0.95 = flannel no
 * slower). Everything lives in namespaces made (and removed) by the test harness.
 */

import { pingStats, sh } from "./bench_support.ts";
import { parseArgs } from "node:util";
import { Cluster, type Host } from "../tests/harness/cluster.ts";
import { leaseOf } from "../tests/harness/flannel.ts";
import { median } from "./bench_stats.ts";

const args = parseArgs({
  options: {
    backend: { type: "string", default: "all" },
    family: { type: "string", default: "all" },
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "10" },
    pings: { type: "string", default: "100" },
  },
});
const ROUNDS = Number(args.values.rounds);
const SECONDS = Number(args.values.seconds);
const PINGS = Number(args.values.pings);
const backends = args.values.backend === "all" ? ["vxlan", "host-gw"] : [args.values.backend!];
const families: (4 | 6)[] = args.values.family === "all"
  ? [4, 6]
  : [Number(args.values.family) === 6 ? 6 : 4];

interface Path {
  /** Source container address on host 2, destination container on host 1. */
  src: string;
  dst: string;
}

async function ipBatch(host: Host, lines: string[]): Promise<void> {
  const child = new Deno.Command("ip", {
    args: ["-n", host.ns, "-batch", "-"],
    stdin: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(lines.join("\n") + "\n"));
  await w.close();
  const o = await child.output();
  if (!o.success) throw new Error(`${host.name}: ip -batch: ${new TextDecoder().decode(o.stderr)}`);
}

/** Builds the hand-made IPv6 path on fd77:<i>::/64 over the IPv6 underlay; returns it. */
async function buildByHand6(backend: string, hosts: Host[]): Promise<Path> {
  const macs = hosts.map((_, i) => `02:77:00:00:06:0${i + 1}`);
  for (const [i, h] of hosts.entries()) {
    const own = `fd77:${i + 1}::`;
    const lines = [`addr add ${own}1/128 dev lo nodad`];
    if (backend === "vxlan") {
      lines.push(
        `link add vxh6 type vxlan id 78 local ${h.ip6} dev eth0 dstport 4791 nolearning`,
        `link set vxh6 address ${macs[i]} mtu 1430 up`,
        `addr add ${own}/128 dev vxh6 nodad`,
      );
    }
    for (const [j, p] of hosts.entries()) {
      if (j === i) continue;
      const peer = `fd77:${j + 1}::`;
      if (backend === "vxlan") {
        lines.push(
          `neigh add ${peer} lladdr ${macs[j]} dev vxh6 nud permanent`,
          `route add ${peer}/64 via ${peer} dev vxh6 onlink`,
        );
      } else {
        lines.push(`route add ${peer}/64 via ${p.ip6} dev eth0`);
      }
    }
    await ipBatch(h, lines);
    if (backend === "vxlan") {
      for (const [j, p] of hosts.entries()) {
        if (j === i) continue;
        await sh(h, [
          "bridge",
          "fdb",
          "add",
          macs[j],
          "dev",
          "vxh6",
          "dst",
          p.ip6!,
          "self",
          "permanent",
        ]);
      }
    }
  }
  return { src: "fd77:2::1", dst: "fd77:1::1" };
}

/** Builds the hand-made path between the hosts on 10.77.<i>.0/24; returns it. */
async function buildByHand(backend: string, hosts: Host[]): Promise<Path> {
  const macs = hosts.map((_, i) => `02:77:00:00:00:0${i + 1}`);
  for (const [i, h] of hosts.entries()) {
    const own = `10.77.${i + 1}`;
    const lines = [`addr add ${own}.1/32 dev lo`];
    if (backend === "vxlan") {
      lines.push(
        `link add vxh type vxlan id 77 local ${h.ip} dev eth0 dstport 4790 nolearning`,
        `link set vxh address ${macs[i]} mtu 1450 up`,
        `addr add ${own}.0/32 dev vxh`,
      );
    }
    for (const [j, p] of hosts.entries()) {
      if (j === i) continue;
      const peer = `10.77.${j + 1}`;
      if (backend === "vxlan") {
        lines.push(
          `neigh add ${peer}.0 lladdr ${macs[j]} dev vxh nud permanent`,
          `route add ${peer}.0/24 via ${peer}.0 dev vxh onlink`,
        );
      } else {
        lines.push(`route add ${peer}.0/24 via ${p.ip} dev eth0`);
      }
    }
    await ipBatch(h, lines);
    if (backend === "vxlan") {
      for (const [j, p] of hosts.entries()) {
        if (j !== i) {
          await sh(h, [
            "bridge",
            "fdb",
            "add",
            macs[j],
            "dev",
            "vxh",
            "dst",
            p.ip,
            "self",
            "permanent",
          ]);
        }
      }
    }
  }
  return { src: "10.77.2.1", dst: "10.77.1.1" };
}

async function iperf(client: Host, path: Path): Promise<number> {
  const out = await sh(client, [
    "iperf3",
    "-c",
    path.dst,
    "-B",
    path.src,
    "-t",
    String(SECONDS),
    "-J",
  ]);
  return JSON.parse(out).end.sum_received.bits_per_second / 1e9;
}

/** The average ping RTT from `path.src` on `client` to `path.dst`, in µs. */
async function pingRtt(client: Host, path: Path): Promise<number> {
  return (await pingStats(client, path.src, path.dst, PINGS)).avgMs * 1000;
}

async function waitPing(host: Host, path: Path): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await host.ping(path.dst, { from: path.src, timeoutS: 1 })).ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`No ping from ${path.src} to ${path.dst}`);
}

async function bench(backend: string, family: 4 | 6): Promise<string> {
  await using cluster = await Cluster.create({ hosts: 2, ipv6: family === 6 });
  const v6keys = family === 6 ? { EnableIPv6: true, IPv6Network: "fc00::/48" } : {};
  await cluster.putConfig({ Network: "10.1.0.0/16", ...v6keys, Backend: { Type: backend } });
  const [h1, h2] = cluster.hosts;
  const daemons = [h1, h2].map((h) => h.startFlannel());
  await Promise.all(daemons.map((d) => d.waitReady(30_000)));
  const containers = await Promise.all(
    [h1, h2].map((h) => family === 6 ? h.addContainerAddress6() : h.addContainerAddress()),
  );
  const flannel: Path = { src: containers[1], dst: containers[0] };
  const hand = family === 6
    ? await buildByHand6(backend, [h1, h2])
    : await buildByHand(backend, [h1, h2]);
  await waitPing(h2, flannel);
  await waitPing(h2, hand);
  const label = `${backend} IPv${family}`;
  console.log(
    `${label}: flannel ${flannel.src} → ${flannel.dst}, hand ${hand.src} → ${hand.dst}` +
      (family === 4 ? ` (leases ${await leaseOf(h2)} → ${await leaseOf(h1)})` : ""),
  );

  const server = new Deno.Command("ip", {
    args: ["netns", "exec", h1.ns, "iperf3", "-s"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await new Promise((r) => setTimeout(r, 300));
    const tput: Record<string, number[]> = { flannel: [], hand: [] };
    const rtt: Record<string, number[]> = { flannel: [], hand: [] };
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate which path goes first so a load change on the shared machine hits both alike.
      const order = [["flannel", flannel], ["hand", hand]] as const;
      for (const [name, path] of round % 2 ? order : [...order].reverse()) {
        const g = await iperf(h2, path);
        tput[name].push(g);
        const r = await pingRtt(h2, path);
        rtt[name].push(r);
        console.log(
          `  round ${round} ${name.padEnd(7)} ${g.toFixed(2)} Gbit/s, ping avg ${r.toFixed(0)} µs`,
        );
      }
    }
    // Adjacent runs share the machine's load of the moment: their ratio is the steadier figure.
    const paired = tput.flannel.map((f, i) => f / tput.hand[i]);
    console.log(
      `${label}: per-round throughput ratios ${paired.map((x) => x.toFixed(3)).join(" ")}`,
    );
    const tf = median(tput.flannel), th = median(tput.hand);
    const rf = median(rtt.flannel), rh = median(rtt.hand);
    const line = `| ${label} | ${tf.toFixed(2)} | ${th.toFixed(2)} | ${(tf / th).toFixed(3)} | ` +
      `${median(paired).toFixed(3)} | ` +
      `${rf.toFixed(0)} | ${rh.toFixed(0)} | ${(rh / rf).toFixed(3)} |`;
    console.log(
      `${label}: throughput median flannel ${tf.toFixed(2)} / hand ${th.toFixed(2)} Gbit/s = ` +
        `${(tf / th).toFixed(3)}; RTT median flannel ${rf.toFixed(0)} / hand ${
          rh.toFixed(0)
        } µs, ` +
        `ratio hand/flannel ${(rh / rf).toFixed(3)}`,
    );
    return line;
  } finally {
    server.kill("SIGTERM");
    await server.status;
  }
}

const rows: string[] = [];
for (const f of families) for (const b of backends) rows.push(await bench(b, f));
console.log(
  `\n${ROUNDS} × ${SECONDS} s iperf3 TCP, ${PINGS} pings at 10 ms per round; medians\n` +
    "| backend | flannel Gbit/s | hand Gbit/s | ratio of medians | median per-round ratio | " +
    "flannel RTT µs | hand RTT µs | RTT ratio hand/flannel |\n" +
    "|---|---|---|---|---|---|---|---|\n" + rows.join("\n"),
);
