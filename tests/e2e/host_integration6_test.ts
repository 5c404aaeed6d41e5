/**
 * Host integration for IPv6 end to end (vxlan, two hosts, a real etcd, real iptables and ip6tables
 * in each host namespace): on a dual-stack and on an IPv6-only network, `--ip-masq` and the forward
 * rules are read back with ip6tables-save (and iptables-save for the IPv4 half) next to someone
 * else's rules that stay; the masquerade is seen on the wire (overlay IPv6 traffic keeps its
 * source, traffic from a container address to the hub's IPv6 address is rewritten to the host's);
 * a flush of the IPv6 chains is repaired within the resync period; the IPv6 blackhole route is
 * there, restored when deleted, and, like the rules and the IPv4 route, stays when the daemon exits.
 */

import assert from "node:assert/strict";
import { Cluster, type Daemon, type Host, HUB_IP, HUB_IP6 } from "../harness/cluster.ts";
import { captureEchoRequests } from "../harness/capture.ts";
import { leaseOf } from "../harness/flannel.ts";
import { IP } from "../../ffi/ip.ts";
import { waitUntil } from "./mesh_support.ts";

const PORT = 8472;
const NET6 = "fc00::/48";
const DUAL_VXLAN = {
  Network: "10.1.0.0/16",
  EnableIPv6: true,
  IPv6Network: NET6,
  Backend: { Type: "vxlan" },
};
const V6ONLY_VXLAN = {
  EnableIPv4: false,
  EnableIPv6: true,
  IPv6Network: NET6,
  Backend: { Type: "vxlan" },
};

async function sh(h: Host, cmd: string[]): Promise<string> {
  const r = await h.exec(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} on ${h.name}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** A table's rules per chain, from `iptables-save` (`tool` ip6tables: `ip6tables-save`). */
async function chains(
  h: Host,
  tool: "iptables" | "ip6tables",
  table: string,
): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const line of (await sh(h, [`${tool}-save`, "-t", table])).split("\n")) {
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (m) out.set(m[1], [...(out.get(m[1]) ?? []), m[2]]);
  }
  return out;
}

const MASQ = '-m comment --comment "flanneld masq"';
const FWD = '-m comment --comment "flanneld forward"';

function wantMasq(network: string, lease: string, multicast: string): string[] {
  return [
    `-m mark --mark 0x4000/0x4000 ${MASQ} -j RETURN`,
    `-s ${lease} -d ${network} ${MASQ} -j RETURN`,
    `-s ${network} -d ${lease} ${MASQ} -j RETURN`,
    `! -s ${network} -d ${lease} ${MASQ} -j RETURN`,
    `-s ${network} ! -d ${multicast} ${MASQ} -j MASQUERADE --random-fully`,
    `! -s ${network} -d ${network} ${MASQ} -j MASQUERADE --random-fully`,
  ];
}
const wantFwd = (network: string) => [
  `-s ${network} ${FWD} -j ACCEPT`,
  `-d ${network} ${FWD} -j ACCEPT`,
];

/** The IPv6 lease of a host: FLANNEL_IPV6_SUBNET's base (`fc00:0:0:22::1/64` → `…::/64`). */
async function lease6Of(h: Host): Promise<string> {
  const v = (await h.readSubnetEnv())?.FLANNEL_IPV6_SUBNET;
  assert.ok(v, `no FLANNEL_IPV6_SUBNET in ${h.subnetFile}`);
  const [ip, len] = v.split("/");
  return `${IP.fromBigInt(IP.mustParse(ip).toBigInt() - 1n, 6)}/${len}`;
}

/** `ip -N route show type blackhole` as [dst, metric] pairs. */
async function blackholes(h: Host, family: 4 | 6): Promise<[string, number | undefined][]> {
  const r = await h.ipJson<{ dst: string; metric?: number }[]>([
    `-${family}`,
    "route",
    "show",
    "type",
    "blackhole",
  ]);
  return r.map((x) => [x.dst, x.metric]);
}

/** `/readyz` inside the host: status and body. */
async function readyz(h: Host): Promise<{ status: number; body: string }> {
  const r = await h.exec([
    "curl",
    "-s",
    "-m",
    "5",
    "-w",
    "\n%{http_code}",
    `http://127.0.0.1:${PORT}/readyz`,
  ]);
  const i = r.stdout.lastIndexOf("\n");
  return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
}

// Someone else's IPv6 rules (what Docker with ip6tables leaves), which flannel must keep.
const FOREIGN_NAT6 = "-s fd17::/64 ! -o docker0 -j MASQUERADE";
const FOREIGN_FWD6 = "-i docker0 -j ACCEPT";

async function addForeignRules6(h: Host): Promise<void> {
  await sh(h, ["ip6tables", "-P", "FORWARD", "DROP"]);
  await sh(h, ["ip6tables", "-A", "FORWARD", ...FOREIGN_FWD6.split(" ")]);
  await sh(h, ["ip6tables", "-t", "nat", "-A", "POSTROUTING", ...FOREIGN_NAT6.split(" ")]);
}

/** The IPv6 rules read back exactly, with the foreign ones after flannel's jumps. */
async function assertRules6(h: Host, lease6: string): Promise<void> {
  const nat = await chains(h, "ip6tables", "nat");
  assert.deepEqual(nat.get("FLANNEL-POSTRTG"), wantMasq(NET6, lease6, "ff00::/8"));
  assert.deepEqual(nat.get("POSTROUTING"), [`${MASQ} -j FLANNEL-POSTRTG`, FOREIGN_NAT6]);
  const filter = await chains(h, "ip6tables", "filter");
  assert.deepEqual(filter.get("FLANNEL-FWD"), wantFwd(NET6));
  assert.deepEqual(filter.get("FORWARD"), [`${FWD} -j FLANNEL-FWD`, FOREIGN_FWD6]);
  assert.match(await sh(h, ["ip6tables-save", "-t", "filter"]), /^:FORWARD DROP /m);
}

/**
 * What both tests check after the rules are in: overlay IPv6 keeps its source, traffic to the
 * hub is masqueraded; a flush of the IPv6 chain and a deleted jump are repaired; a deleted IPv6
 * blackhole route comes back.
 */
async function exerciseIPv6(
  cluster: Cluster,
  h1: Host,
  h2: Host,
  d1: Daemon,
  lease6: string,
): Promise<void> {
  const c1 = await h1.addContainerAddress6();
  const c2 = await h2.addContainerAddress6();
  await waitUntil("IPv6 overlay ping", async () => (await h1.ping(c2, { from: c1 })).ok, 20_000);
  // Overlay traffic keeps its source address…
  const inOverlay = await captureEchoRequests(h2.ns, "flannel-v6.1", async () => {
    const p = await h1.ping(c2, { from: c1, timeoutS: 3 });
    assert.ok(p.ok, `overlay ping: ${p.output}`);
  }, { family: 6 });
  assert.deepEqual(inOverlay, [{ src: c1, dst: c2 }]);
  // …and traffic leaving the IPv6Network is masqueraded to the host's address (else the hub,
  // with no route to fc00::/48, could not answer).
  const outside = await captureEchoRequests(cluster.hub, "br0", async () => {
    const p = await h1.ping(HUB_IP6, { from: c1, timeoutS: 3 });
    assert.ok(p.ok, `ping to the hub: ${p.output}`);
  }, { family: 6 });
  assert.deepEqual(outside, [{ src: h1.ip6, dst: HUB_IP6 }]);
  // Someone flushes flannel's IPv6 chain and deletes its IPv6 FORWARD jump: restored.
  await sh(h1, ["ip6tables", "-t", "nat", "-F", "FLANNEL-POSTRTG"]);
  await sh(h1, [
    "ip6tables",
    "-D",
    "FORWARD",
    "-m",
    "comment",
    "--comment",
    "flanneld forward",
    "-j",
    "FLANNEL-FWD",
  ]);
  await waitUntil("IPv6 rules restored", async () => {
    const n = await chains(h1, "ip6tables", "nat");
    const f = await chains(h1, "ip6tables", "filter");
    return JSON.stringify(n.get("FLANNEL-POSTRTG")) ===
        JSON.stringify(wantMasq(NET6, lease6, "ff00::/8")) &&
      JSON.stringify(f.get("FORWARD")) === JSON.stringify([`${FWD} -j FLANNEL-FWD`, FOREIGN_FWD6]);
  }, 15_000);
  await assertRules6(h1, lease6);
  assert.match(
    d1.logs(),
    /Firewall rules changed by someone else, restored: ip6tables: chain FLANNEL-POSTRTG holds 0 rules/,
  );
  assert.match(d1.logs(), /ip6tables: FORWARD does not jump to FLANNEL-FWD/);
  const again = await captureEchoRequests(cluster.hub, "br0", async () => {
    const p = await h1.ping(HUB_IP6, { from: c1, timeoutS: 3 });
    assert.ok(p.ok, `ping to the hub after the repair: ${p.output}`);
  }, { family: 6 });
  assert.deepEqual(again, [{ src: h1.ip6, dst: HUB_IP6 }]);

  // The IPv6 blackhole route, behind any bridge route of the subnet; deleted: back.
  assert.deepEqual(await blackholes(h1, 6), [[lease6, 1024]]);
  const unused = lease6.replace(/::\/64$/, "::77");
  const get = await h1.exec(["ip", "-6", "route", "get", unused]);
  assert.notEqual(get.code, 0, `an unused address of ${lease6} must not be routed: ${get.stdout}`);
  await sh(h1, ["ip", "-6", "route", "del", "blackhole", lease6, "metric", "1024"]);
  assert.deepEqual(await blackholes(h1, 6), []);
  await waitUntil("IPv6 blackhole route restored", async () => {
    return (await blackholes(h1, 6)).length === 1;
  }, 15_000);
  assert.deepEqual(await blackholes(h1, 6), [[lease6, 1024]]);
  assert.match(
    d1.logs(),
    new RegExp(`The blackhole route for ${lease6.replaceAll("/", "\\/")} was removed by someone`),
  );
  assert.deepEqual(await readyz(h1), { status: 200, body: "ok\n" });
}

Deno.test("dual-stack: --ip-masq, forward rules and blackhole routes in iptables and ip6tables", async () => {
  await using cluster = await Cluster.create({ hosts: 2, ipv6: true });
  const [h1, h2] = cluster.hosts;
  await addForeignRules6(h1);
  await cluster.putConfig(DUAL_VXLAN);
  const d1 = h1.startFlannel([
    "--ip-masq",
    "--iptables-resync=1",
    "--ip-blackhole-route",
    `--healthz-port=${PORT}`,
  ]);
  const d2 = h2.startFlannel(["--ip-masq"]);
  await Promise.all([d1.waitReady(30_000), d2.waitReady(30_000)]);
  const lease4 = (await leaseOf(h1))!;
  const lease6 = await lease6Of(h1);
  assert.doesNotMatch(d1.logs(), /cover IPv4 only/);

  // Both tables, each with its own family's addresses only.
  await assertRules6(h1, lease6);
  const nat4 = await chains(h1, "iptables", "nat");
  assert.deepEqual(nat4.get("FLANNEL-POSTRTG"), wantMasq("10.1.0.0/16", lease4, "224.0.0.0/4"));
  assert.deepEqual(nat4.get("POSTROUTING"), [`${MASQ} -j FLANNEL-POSTRTG`]);
  assert.deepEqual(
    (await chains(h1, "iptables", "filter")).get("FLANNEL-FWD"),
    wantFwd("10.1.0.0/16"),
  );
  assert.match(d1.logs(), /Installed firewall rules with iptables-restore v/);
  assert.match(d1.logs(), /Installed firewall rules with ip6tables-restore v/);
  assert.deepEqual(await blackholes(h1, 4), [[lease4, 1024]]);

  await exerciseIPv6(cluster, h1, h2, d1, lease6);
  // The IPv4 half was not touched by the IPv6 repair and still masquerades.
  assert.deepEqual(
    (await chains(h1, "iptables", "nat")).get("FLANNEL-POSTRTG"),
    wantMasq("10.1.0.0/16", lease4, "224.0.0.0/4"),
  );
  assert.doesNotMatch(d1.logs(), /restored: iptables:/);
  const c4 = await h1.addContainerAddress();
  const out4 = await captureEchoRequests(cluster.hub, "br0", async () => {
    const p = await h1.ping(HUB_IP, { from: c4, timeoutS: 3 });
    assert.ok(p.ok, `IPv4 ping to the hub: ${p.output}`);
  });
  assert.deepEqual(out4, [{ src: h1.ip, dst: HUB_IP }]);

  // At exit everything stays, both families alike (like the lease): a restart keeps traffic.
  await d1.stop();
  assert.deepEqual(await blackholes(h1, 4), [[lease4, 1024]]);
  assert.deepEqual(await blackholes(h1, 6), [[lease6, 1024]]);
  await assertRules6(h1, lease6);
  assert.deepEqual(
    (await chains(h1, "iptables", "nat")).get("FLANNEL-POSTRTG"),
    wantMasq("10.1.0.0/16", lease4, "224.0.0.0/4"),
  );
});

Deno.test("IPv6-only: the rules and the blackhole route from ip6tables, nothing in iptables", async () => {
  await using cluster = await Cluster.create({ hosts: 2, ipv6Only: true });
  const [h1, h2] = cluster.hosts;
  await addForeignRules6(h1);
  await cluster.putConfig(V6ONLY_VXLAN);
  const d1 = h1.startFlannel([
    "--ip-masq",
    "--iptables-resync=1",
    "--ip-blackhole-route",
    `--healthz-port=${PORT}`,
  ]);
  const d2 = h2.startFlannel(["--ip-masq"]);
  await Promise.all([d1.waitReady(30_000), d2.waitReady(30_000)]);
  const lease6 = await lease6Of(h1);
  assert.equal((await h1.readSubnetEnv())?.FLANNEL_IPMASQ, "true");
  assert.doesNotMatch(d1.logs(), /cover IPv4 only/);
  assert.doesNotMatch(d1.logs(), /iptables-restore v/, "no IPv4 tool used");

  await assertRules6(h1, lease6);
  for (const table of ["nat", "filter"]) {
    const v4 = await sh(h1, ["iptables-save", "-t", table]);
    assert.doesNotMatch(v4, /FLANNEL/, `no IPv4 ${table} rules on an IPv6-only network`);
  }
  assert.deepEqual(await blackholes(h1, 4), []);

  await exerciseIPv6(cluster, h1, h2, d1, lease6);

  await d1.stop();
  assert.deepEqual(await blackholes(h1, 6), [[lease6, 1024]]);
  await assertRules6(h1, lease6);
});

Deno.test("--ip-masq on an IPv6 network without ip6tables is a clear error; forward rules warn", async () => {
  await using cluster = await Cluster.create({ hosts: 2, ipv6: true });
  await cluster.putConfig(DUAL_VXLAN);
  const [h1, h2] = cluster.hosts;
  // A PATH with `ip` and the IPv4 tools but no ip6tables.
  const bin = `${cluster.dir}/bin`;
  await Deno.mkdir(bin);
  for (const tool of ["ip", "iptables-save", "iptables-restore"]) {
    const out = await new Deno.Command("sh", {
      args: ["-c", `command -v ${tool}`],
      stdout: "piped",
    }).output();
    const path = new TextDecoder().decode(out.stdout).trim();
    assert.ok(path, `${tool} not found`);
    await Deno.symlink(path, `${bin}/${tool}`);
  }
  const no6 = { PATH: bin };
  const masq = h1.startFlannel(["--ip-masq"], no6);
  assert.equal(await masq.exitedWithin(30_000), 1);
  assert.match(
    masq.logs(),
    /^E\d{4} [\d:.]+ +\d+ main\] --ip-masq needs ip6tables-restore, which is not installed: apt-get install iptables$/m,
  );
  assert.doesNotMatch(masq.logs(), /^\s+at /m, "no stack trace");

  const plain = h2.startFlannel([], no6);
  await plain.waitReady(30_000);
  assert.match(
    plain.logs(),
    /--iptables-forward-rules needs ip6tables-restore, which is not installed: apt-get install iptables; no FORWARD rules/,
  );
  // The IPv4 forward rules are in all the same.
  assert.deepEqual(
    (await chains(h2, "iptables", "filter")).get("FLANNEL-FWD"),
    wantFwd("10.1.0.0/16"),
  );
});
