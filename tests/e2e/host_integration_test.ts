/**
 * Host integration end to end (vxlan, two hosts, a real etcd): `--ip-masq` and forward rules read
 * back with iptables-save, restored after a flush, next to someone else's rules that stay; the
 * masquerade seen on the wire (overlay traffic keeps its source, traffic leaving the Network is
 * rewritten); the blackhole route; /healthz, /readyz and /metrics scraped with curl as leases come
 * and go; and the refusal of `--ip-masq` on a host without iptables.
 */

import assert from "node:assert/strict";
import { Cluster, Daemon, type Host, HUB_IP, REPO_ROOT } from "../harness/cluster.ts";
import { runOk } from "../harness/netns.ts";
import { captureEchoRequests } from "../harness/capture.ts";
import { ALLOC_CONFIG, leaseKey, leaseOf } from "../harness/flannel.ts";
import { VXLAN_CONFIG, waitUntil } from "./mesh_support.ts";

const PORT = 8471;

async function sh(h: Host, cmd: string[]): Promise<string> {
  const r = await h.exec(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} on ${h.name}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** `curl` inside the host: status code and body. */
async function curl(h: Host, path: string): Promise<{ status: number; body: string }> {
  const r = await h.exec([
    "curl",
    "-s",
    "-m",
    "5",
    "-w",
    "\n%{http_code}",
    `http://127.0.0.1:${PORT}${path}`,
  ]);
  const i = r.stdout.lastIndexOf("\n");
  return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
}

/** One sample of `/metrics`, e.g. `metric(text, 'flannel_peers')`; NaN when absent. */
function metric(text: string, series: string): number {
  for (const line of text.split("\n")) {
    if (line.startsWith(series + " ")) return Number(line.slice(series.length + 1));
  }
  return NaN;
}

/** A table's rules per chain, from iptables-save. */
async function chains(h: Host, table: string): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const line of (await sh(h, ["iptables-save", "-t", table])).split("\n")) {
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (m) out.set(m[1], [...(out.get(m[1]) ?? []), m[2]]);
  }
  return out;
}

const MASQ = '-m comment --comment "flanneld masq"';
const FWD = '-m comment --comment "flanneld forward"';

function wantMasq(lease: string): string[] {
  return [
    `-m mark --mark 0x4000/0x4000 ${MASQ} -j RETURN`,
    `-s ${lease} -d 10.1.0.0/16 ${MASQ} -j RETURN`,
    `-s 10.1.0.0/16 -d ${lease} ${MASQ} -j RETURN`,
    `! -s 10.1.0.0/16 -d ${lease} ${MASQ} -j RETURN`,
    `-s 10.1.0.0/16 ! -d 224.0.0.0/4 ${MASQ} -j MASQUERADE --random-fully`,
    `! -s 10.1.0.0/16 -d 10.1.0.0/16 ${MASQ} -j MASQUERADE --random-fully`,
  ];
}
const WANT_FWD = [`-s 10.1.0.0/16 ${FWD} -j ACCEPT`, `-d 10.1.0.0/16 ${FWD} -j ACCEPT`];

Deno.test("--ip-masq, forward rules, blackhole route and health endpoints on real hosts", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  const [h1, h2] = cluster.hosts;

  // Someone else's rules (what Docker leaves), which flannel must keep as they are.
  const FOREIGN_NAT = "-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE";
  const FOREIGN_FWD = "-i docker0 -j ACCEPT";
  await sh(h1, ["iptables", "-P", "FORWARD", "DROP"]);
  await sh(h1, ["iptables", "-A", "FORWARD", ...FOREIGN_FWD.split(" ")]);
  await sh(h1, ["iptables", "-t", "nat", "-A", "POSTROUTING", ...FOREIGN_NAT.split(" ")]);

  // Before the config exists: alive, not ready.
  const d1 = h1.startFlannel([
    "--ip-masq",
    "--iptables-resync=1",
    "--ip-blackhole-route",
    `--healthz-port=${PORT}`,
  ]);
  await waitUntil(
    "h1 /healthz answers",
    async () => (await curl(h1, "/healthz")).status === 200,
    20_000,
  );
  assert.deepEqual(await curl(h1, "/healthz"), { status: 200, body: "flanneld is running" });
  const early = await curl(h1, "/readyz");
  assert.equal(early.status, 503);
  assert.match(early.body, /^not ready: lease: no subnet lease held$/m);
  assert.match(early.body, /^not ready: backend: backend not set up yet$/m);

  await cluster.putConfig(VXLAN_CONFIG);
  await d1.waitReady(30_000);
  const lease1 = (await leaseOf(h1))!;
  const env = await h1.readSubnetEnv();
  assert.equal(env?.FLANNEL_IPMASQ, "true");

  // The rules, read back exactly, with the foreign ones untouched.
  const nat = await chains(h1, "nat");
  assert.deepEqual(nat.get("FLANNEL-POSTRTG"), wantMasq(lease1));
  assert.deepEqual(nat.get("POSTROUTING"), [`${MASQ} -j FLANNEL-POSTRTG`, FOREIGN_NAT]);
  const filter = await chains(h1, "filter");
  assert.deepEqual(filter.get("FLANNEL-FWD"), WANT_FWD);
  assert.deepEqual(filter.get("FORWARD"), [`${FWD} -j FLANNEL-FWD`, FOREIGN_FWD]);
  assert.match(await sh(h1, ["iptables-save", "-t", "filter"]), /^:FORWARD DROP /m);

  // The blackhole route for the own subnet, behind any bridge route of the subnet.
  const bh = await h1.ipJson<{ type: string; dst: string; metric?: number }[]>([
    "route",
    "show",
    "type",
    "blackhole",
  ]);
  assert.deepEqual(bh.map((r) => [r.type, r.dst, r.metric]), [["blackhole", lease1, 1024]]);
  const unused = lease1.replace(/0\/24$/, "77");
  const get = await h1.exec(["ip", "route", "get", unused]);
  assert.notEqual(get.code, 0, `an unused address of ${lease1} must not be routed: ${get.stdout}`);
  // Deleted by someone: back within the resync period.
  await sh(h1, ["ip", "route", "del", "blackhole", lease1, "metric", "1024"]);
  await waitUntil("blackhole route restored", async () => {
    const r = await h1.ipJson<unknown[]>(["route", "show", "type", "blackhole"]);
    return r.length === 1;
  }, 15_000);
  assert.match(d1.logs(), /The blackhole route for [\d./]+ was removed by someone else: restored/);

  const d2 = h2.startFlannel(["--ip-masq"]);
  await d2.waitReady(30_000);
  const lease2 = (await leaseOf(h2))!;
  const c1 = await h1.addContainerAddress();
  const c2 = await h2.addContainerAddress();

  // Overlay traffic keeps its source address…
  const inOverlay = await captureEchoRequests(h2.ns, "flannel.1", async () => {
    const p = await h1.ping(c2, { from: c1, timeoutS: 3 });
    assert.ok(p.ok, `overlay ping: ${p.output}`);
  });
  assert.deepEqual(inOverlay, [{ src: c1, dst: c2 }]);
  // …and traffic leaving the Network is masqueraded to the host's address (else the hub, with no
  // route to 10.1.0.0/16, could not answer).
  const outside = await captureEchoRequests(cluster.hub, "br0", async () => {
    const p = await h1.ping(HUB_IP, { from: c1, timeoutS: 3 });
    assert.ok(p.ok, `ping to the hub: ${p.output}`);
  });
  assert.deepEqual(outside, [{ src: h1.ip, dst: HUB_IP }]);

  // After two resyncs (every 1 s), none saw a difference: what iptables-save prints back is
  // exactly what was installed.
  await waitUntil("two firewall resyncs", async () => {
    const m = (await curl(h1, "/metrics")).body;
    return metric(m, 'flannel_resyncs_total{what="firewall"}') >= 2;
  }, 15_000);
  assert.doesNotMatch(d1.logs(), /changed by someone else/);
  assert.equal(
    metric((await curl(h1, "/metrics")).body, 'flannel_config_drift_total{what="firewall"}'),
    NaN,
    "no drift counted before the flush",
  );

  // Someone flushes flannel's chain and deletes its jump: restored within the resync period.
  await sh(h1, ["iptables", "-t", "nat", "-F", "FLANNEL-POSTRTG"]);
  await sh(h1, [
    "iptables",
    "-D",
    "FORWARD",
    "-m",
    "comment",
    "--comment",
    "flanneld forward",
    "-j",
    "FLANNEL-FWD",
  ]);
  await waitUntil("rules restored", async () => {
    const n = await chains(h1, "nat");
    const f = await chains(h1, "filter");
    return JSON.stringify(n.get("FLANNEL-POSTRTG")) === JSON.stringify(wantMasq(lease1)) &&
      JSON.stringify(f.get("FORWARD")) === JSON.stringify([`${FWD} -j FLANNEL-FWD`, FOREIGN_FWD]);
  }, 15_000);
  assert.deepEqual((await chains(h1, "nat")).get("POSTROUTING"), [
    `${MASQ} -j FLANNEL-POSTRTG`,
    FOREIGN_NAT,
  ]);
  assert.match(d1.logs(), /Firewall rules changed by someone else, restored: /);

  // Ready now; the metrics tell the story so far.
  await waitUntil("h1 sees h2", async () => {
    return metric((await curl(h1, "/metrics")).body, "flannel_peers") === 1;
  }, 15_000);
  assert.deepEqual(await curl(h1, "/readyz"), { status: 200, body: "ok\n" });
  const m1 = (await curl(h1, "/metrics")).body;
  assert.equal(metric(m1, "flannel_lease_held"), 1);
  assert.equal(metric(m1, "flannel_backend_ready"), 1);
  const expiry = metric(m1, "flannel_lease_expiry_timestamp_seconds");
  assert.ok(Math.abs(expiry - (Date.now() / 1000 + 86400)) < 120, `lease expiry ${expiry}`);
  assert.match(
    m1,
    /^flannel_build_info\{deno="[\d.]+",typescript="[\d.]+",v8="[^"]+",version="0\.1\.0"\} 1$/m,
  );
  assert.ok(metric(m1, 'flannel_config_drift_total{what="firewall"}') >= 1, "drift counted");
  assert.ok(metric(m1, 'flannel_resyncs_total{what="firewall"}') >= 1, "resyncs counted");
  assert.ok(metric(m1, 'flannel_kernel_changes_total{kind="firewall",op="set"}') >= 2);
  assert.equal(metric(m1, 'flannel_kernel_changes_total{kind="blackhole_route",op="set"}'), 2);
  assert.equal(metric(m1, 'flannel_config_drift_total{what="blackhole_route"}'), 1);
  assert.ok(metric(m1, 'flannel_kernel_changes_total{kind="route",op="set"}') >= 1);
  assert.ok(metric(m1, 'flannel_watch_events_total{type="put"}') >= 1);
  assert.ok(metric(m1, "flannel_etcd_last_success_timestamp_seconds") > Date.now() / 1000 - 60);
  assert.match(m1, /^# TYPE flannel_lease_renewals_total counter$/m);
  const deletes0 = metric(m1, 'flannel_watch_events_total{type="delete"}') || 0;

  // h2 goes away and its lease is deleted: h1's peer count and watch counters move.
  await d2.stop();
  await cluster.etcd.del(leaseKey(lease2));
  await waitUntil("h1 drops h2", async () => {
    return metric((await curl(h1, "/metrics")).body, "flannel_peers") === 0;
  }, 15_000);
  const m2 = (await curl(h1, "/metrics")).body;
  assert.ok(metric(m2, 'flannel_watch_events_total{type="delete"}') >= deletes0 + 1);
  assert.ok(metric(m2, 'flannel_kernel_changes_total{kind="route",op="delete"}') >= 1);
});

Deno.test("--ip-masq without iptables is a clear error; the default forward rules only warn", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  await cluster.putConfig(VXLAN_CONFIG);
  const [h1, h2] = cluster.hosts;
  // A PATH with only `ip` (the harness runs `ip netns exec`), so no iptables-restore.
  const bin = `${cluster.dir}/bin`;
  await Deno.mkdir(bin);
  const ip = (await new Deno.Command("sh", { args: ["-c", "command -v ip"], stdout: "piped" })
    .output()).stdout;
  await Deno.symlink(new TextDecoder().decode(ip).trim(), `${bin}/ip`);
  const noTools = { PATH: bin };
  const masq = h1.startFlannel(["--ip-masq"], noTools);
  assert.equal(await masq.exitedWithin(30_000), 1);
  assert.match(
    masq.logs(),
    /^E\d{4} [\d:.]+ +\d+ main\] --ip-masq needs iptables-restore, which is not installed: apt-get install iptables$/m,
  );
  assert.doesNotMatch(masq.logs(), /^\s+at /m, "no stack trace");

  const plain = h2.startFlannel([], noTools);
  await plain.waitReady(30_000);
  assert.match(
    plain.logs(),
    /--iptables-forward-rules needs iptables-restore, which is not installed: apt-get install iptables; no FORWARD rules \(or pass --iptables-forward-rules=false\)/,
  );
  const off = h1.startFlannel(["--iptables-forward-rules=false"], noTools);
  await off.waitReady(30_000);
  assert.doesNotMatch(off.logs(), /iptables/);
});

Deno.test("--iface-can-reach picks the interface and source address of the kernel's route", async () => {
  await using cluster = await Cluster.create({ hosts: 1 });
  await cluster.putConfig(ALLOC_CONFIG);
  const [h1] = cluster.hosts;
  // A second interface whose route to 10.98.0.0/16 prefers its second address as source.
  await runOk(["ip", "-n", h1.ns, "-batch", "-"], {
    stdin: [
      "link add eth1 type veth peer name eth1p",
      "link set eth1 up",
      "link set eth1p up",
      "addr add 10.99.0.1/24 dev eth1",
      "addr add 10.99.0.7/24 dev eth1",
      "route add 10.98.0.0/16 via 10.99.0.2 dev eth1 src 10.99.0.7",
      "route add unreachable 203.0.113.0/24",
      "",
    ].join("\n"),
  });
  // Without the harness's --iface=eth0 (which would win over --iface-can-reach, as upstream).
  const start = (reach: string) =>
    Daemon.spawn({
      ns: h1.ns,
      cmd: [
        Deno.execPath(),
        "run",
        "--cached-only",
        "-A",
        `${REPO_ROOT}/main.ts`,
        `--etcd-endpoints=${cluster.etcd.endpoints}`,
        `--subnet-file=${h1.subnetFile}`,
        `--iface-can-reach=${reach}`,
      ],
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: Deno.env.get("HOME") ?? "/root",
        DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache/deno`,
        NO_COLOR: "1",
      },
      cwd: REPO_ROOT,
      logFile: `${h1.dir}/can-reach.log`,
      subnetFile: h1.subnetFile,
    });
  const d = start("10.98.3.4");
  try {
    await d.waitReady(30_000);
    const eth1 = (await h1.ipJson<{ ifindex: number }[]>(["link", "show", "eth1"]))[0].ifindex;
    assert.match(
      d.logs(),
      new RegExp(`Using interface eth1 \\(index ${eth1}\\) with address 10\\.99\\.0\\.7, MTU 1500`),
    );
    const leases = await cluster.leases();
    assert.deepEqual(Object.values(leases).map((v) => (v as { PublicIP: string }).PublicIP), [
      "10.99.0.7",
    ]);
  } finally {
    await d.stop();
  }
  const bad = start("203.0.113.9");
  assert.equal(await bad.exitedWithin(30_000), 1);
  assert.match(bad.logs(), /main\] No route to --iface-can-reach 203\.0\.113\.9$/m);
});

Deno.test("/metrics shows the udp data path's counters per direction and drop reason", async () => {
  await using cluster = await Cluster.create({ hosts: 2 });
  await cluster.putConfig({ Network: "10.1.0.0/16", Backend: { Type: "udp" } });
  const [h1, h2] = cluster.hosts;
  const d1 = h1.startFlannel([`--healthz-port=${PORT}`]);
  const d2 = h2.startFlannel();
  await Promise.all([d1.waitReady(30_000), d2.waitReady(30_000)]);
  const c1 = await h1.addContainerAddress();
  const c2 = await h2.addContainerAddress();
  await waitUntil("udp overlay ping", async () => (await h1.ping(c2, { from: c1 })).ok, 20_000);
  const before = (await curl(h1, "/metrics")).body;
  const p = await h1.ping(c2, { from: c1, count: 5, timeoutS: 2 });
  assert.ok(p.ok, p.output);
  // No lease holds 10.1.250.0/24: the data path answers "net unreachable" and counts the drop.
  await h1.ping("10.1.250.9", { from: c1, timeoutS: 1 });
  const after = (await curl(h1, "/metrics")).body;
  const delta = (s: string) => metric(after, s) - metric(before, s);
  assert.ok(delta('flannel_udp_packets_total{direction="tx"}') >= 5, after);
  assert.ok(delta('flannel_udp_packets_total{direction="rx"}') >= 5, after);
  assert.ok(delta('flannel_udp_bytes_total{direction="tx"}') >= 5 * 84);
  assert.ok(delta('flannel_udp_dropped_total{direction="tx",reason="no_route"}') >= 1, after);
  assert.ok(delta('flannel_udp_icmp_total{direction="tx"}') >= 1, after);
  assert.equal(metric(after, 'flannel_udp_dropped_total{direction="rx",reason="not_peer"}'), 0);
  assert.equal(metric(after, "flannel_peers"), 1);
});
