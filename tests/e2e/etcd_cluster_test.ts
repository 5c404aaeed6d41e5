/**
 * Two flannel hosts against a real three-member etcd cluster in the hub namespace: the member a
 * daemon talks to is cut off from its peers, then the member it talks to is killed, then
 * (separately) the raft leader, while peer leases are added and removed. Each daemon moves to another member, misses no lease event, keeps renewing its lease,
 * and the two hosts' containers keep pinging each other without a loss.
 */

import assert from "node:assert/strict";
import { Cluster, ETCD_PREFIX, type Host, HUB_IP } from "../harness/cluster.ts";
import { EtcdCluster, type EtcdServer } from "../harness/etcd.ts";
import { leaseKey } from "../harness/flannel.ts";
import { type Node, startNode, waitUntil } from "./mesh_support.ts";

const CONFIG = { Network: "10.5.0.0/16", SubnetLen: 24, Backend: { Type: "vxlan" } };

/** A fake peer's lease value (vxlan). */
function peerValue(i: number): string {
  const mac = `02:00:00:00:00:${i.toString(16).padStart(2, "0")}`;
  return `{"PublicIP":"192.168.100.${200 + i}","PublicIPv6":null,"BackendType":"vxlan",` +
    `"BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`;
}

const peerSubnet = (i: number) => `10.5.${200 + i}.0/24`;

/** The subnets routed through flannel.1 on `host`. */
async function overlayRoutes(host: Host): Promise<Set<string>> {
  const rs = await host.ipJson<{ dst: string; dev?: string }[]>(["route", "show"]);
  return new Set(rs.filter((r) => r.dev === "flannel.1").map((r) => r.dst));
}

/** The etcd members `host`'s daemon has an established connection to. */
async function membersInUse(host: Host, etcd: EtcdCluster): Promise<EtcdServer[]> {
  const r = await host.exec(["ss", "-tnH", "state", "established"]);
  const peers = r.stdout.split("\n").map((l) => l.trim().split(/\s+/)[3]);
  return etcd.members.filter((m) => peers.includes(`${HUB_IP}:${new URL(m.endpoint).port}`));
}

/** The mod revision of `key` (0 when absent). */
async function modRevision(etcd: EtcdCluster, key: string): Promise<number> {
  const r = await etcd.etcdctl(["get", "-w", "json", "--", key]);
  return Number(JSON.parse(r.stdout).kvs?.[0]?.mod_revision ?? 0);
}

/** `ping -i 0.2` from one container to another until stopped; resolves to [sent, received]. */
function pingUntilStopped(from: Node, to: Node): { stop(): Promise<[number, number, string]> } {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", from.host.ns, "ping", "-n", "-q", "-i", "0.2", "-W", "1", "-I"]
      .concat([from.container, to.container]),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = child.output();
  return {
    async stop() {
      child.kill("SIGINT");
      const o = await out;
      const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
      const m = /(\d+) packets transmitted, (\d+) received/.exec(text);
      if (!m) throw new Error(`Unexpected ping output: ${text}`);
      return [Number(m[1]), Number(m[2]), text];
    },
  };
}

Deno.test("etcd cluster: cutting off or killing the daemon's member, or killing the leader, loses no lease event, no renewal, no ping", async () => {
  await using cluster = await Cluster.create({ hosts: 2, startEtcd: false });
  await using etcd = await EtcdCluster.start({ netns: cluster.hub, host: HUB_IP });
  await etcd.put(`${ETCD_PREFIX}/config`, JSON.stringify(CONFIG));
  const args = [
    `--etcd-endpoints=${etcd.endpoints}`,
    // Renew 60 s after acquiring (24 h TTL, 23 h 59 min margin): renewals happen in the test.
    "--subnet-lease-renew-margin=1439",
  ];
  const nodes = await Promise.all(cluster.hosts.map((h) => startNode(h, args)));
  const [n1, n2] = nodes;
  const startedAt = Date.now();
  const ownKeys = nodes.map((n) => leaseKey(n.lease));
  const firstRevs = await Promise.all(ownKeys.map((k) => modRevision(etcd, k)));
  await waitUntil("overlay up", async () => {
    const r = await n1.host.ping(n2.container, { from: n1.container, timeoutS: 1 });
    return r.ok;
  }, 10_000);
  const pings = [pingUntilStopped(n1, n2), pingUntilStopped(n2, n1)];

  const expected = new Set<string>();
  const check = async (what: string) => {
    for (const n of nodes) {
      const want = new Set([...expected, ...nodes.filter((o) => o !== n).map((o) => o.lease)]);
      await waitUntil(`${what}: routes on ${n.host.name}`, async () => {
        const got = await overlayRoutes(n.host);
        return [...want].every((s) => got.has(s)) && [...got].every((s) => want.has(s));
      }, 30_000).catch(async (err) => {
        throw new Error(
          `${err.message}: want ${[...want].sort()}, have ${
            [...await overlayRoutes(n.host)]
              .sort()
          }\n${n.daemon.tail(30)}`,
        );
      });
    }
  };
  /** etcdctl, retried while the cluster elects a new leader. */
  const retried = async (args: string[]) => {
    const t0 = Date.now();
    while (true) {
      const r = await etcd.etcdctl(args, true);
      if (r.code === 0) return;
      if (Date.now() - t0 > 30_000) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
    }
  };
  let peer = 0;
  /** Adds three peer leases and removes the oldest one, through the members still up. */
  const churn = async () => {
    for (let i = 0; i < 3; i++, peer++) {
      await retried(["put", "--", leaseKey(peerSubnet(peer)), peerValue(peer)]);
      expected.add(peerSubnet(peer));
      await new Promise((r) => setTimeout(r, 200));
    }
    const oldest = [...expected][0];
    await retried(["del", "--", leaseKey(oldest)]);
    expected.delete(oldest);
  };

  await churn();
  await check("before any kill");

  // 1. The member host 1's daemon talks to, cut off from the other two: alive and answering,
  // but without a leader (require-leader makes it refuse calls and end watches).
  const used = await membersInUse(n1.host, etcd);
  assert.equal(used.length, 1, `host 1 talks to ${used.map((m) => m.endpoint)}`);
  const cutOff = used[0];
  await etcd.isolate(cutOff);
  try {
    await churn();
    await check(`${cutOff.endpoint} cut off from its peers`);
    await n1.daemon.waitForLog(new RegExp(`Failed to reach etcd at ${cutOff.endpoint}`), 15_000);
  } finally {
    await etcd.heal(cutOff);
  }
  await churn();
  await check(`${cutOff.endpoint} back in the cluster`);

  // 2. The member host 1's daemon talks to now, killed.
  const usedNow = await membersInUse(n1.host, etcd);
  const victim = usedNow.find((m) => m !== cutOff) ?? usedNow[0];
  await victim.kill();
  await churn();
  await check(`${victim.endpoint} killed`);
  await n1.daemon.waitForLog(new RegExp(`Failed to reach etcd at ${victim.endpoint}`), 15_000);
  const now = await membersInUse(n1.host, etcd);
  assert.ok(now.length >= 1 && !now.includes(victim), "host 1 moved to another member");
  await victim.start();
  await churn();
  await check(`${victim.endpoint} back`);

  // 3. The leader.
  const leader = await etcd.leader();
  await leader.kill();
  await churn();
  await check(`leader ${leader.endpoint} killed`);
  await leader.start();
  await churn();
  await check(`leader ${leader.endpoint} back`);

  // Renewals: both leases renewed (after the kills), through the cluster.
  for (const [i, n] of nodes.entries()) {
    await n.daemon.waitForLog(/Renewed lease/, Math.max(5_000, startedAt + 100_000 - Date.now()));
    const rev = await modRevision(etcd, ownKeys[i]);
    assert.ok(rev > firstRevs[i], `${n.host.name}'s lease was not rewritten: ${rev}`);
  }

  const results = await Promise.all(pings.map((p) => p.stop()));
  for (const [sent, received, text] of results) {
    assert.ok(sent >= 50, text);
    assert.equal(received, sent, `pings lost: ${text}`);
  }
  for (const n of nodes) {
    assert.equal(n.daemon.exitCode, null, n.daemon.tail(20));
    // Failing over to a member that lags behind is no lost memory.
    assert.doesNotMatch(n.daemon.logs(), /lost its memory/, n.daemon.tail(20));
  }
});
