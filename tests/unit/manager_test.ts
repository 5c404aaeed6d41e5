/**
 * RegistrySubnetManager and waitForNetworkConfig against a recording in-memory Registry (revisions,
 * leases with TTL, guarded writes, watch with history and compaction, injected failures).
 */

import assert from "node:assert/strict";
import { showEvents, takeNext } from "../helpers.ts";
import { parseNetworkConfig } from "../../lib/config.ts";
import { IPNet, parseCIDR, parseIPv4 } from "../../lib/ip.ts";
import { encodeLeaseValue, type LeaseAttrs } from "../../lib/lease.ts";
import { leaseExpiry, leaseRenewalFailures, leaseRenewals } from "../../lib/health/catalog.ts";
import { Logger, setSink } from "../../lib/log.ts";
import {
  type KeyValue,
  type ListedKeyValue,
  type Registry,
  RegistryUnavailableError,
  type WatchEvent,
  type WriteResult,
} from "../../lib/registry/mod.ts";
import { RegistrySubnetManager } from "../../lib/subnet/manager.ts";
import { LeaseLostError } from "../../lib/subnet/mod.ts";
import { waitForNetworkConfig } from "../../lib/subnet/config_wait.ts";
import { watchNetworkConfig } from "../../lib/subnet/config_watch.ts";
import { writeSubnetFile } from "../../lib/subnet/subnet_env.ts";

const P = "/coreos.com/network";

interface Stored {
  value: string;
  modRevision: number;
  createRevision: number;
  leaseId: string | null;
}

type Change = { rev: number; ev: Extract<WatchEvent, { type: "put" | "delete" }> };

/** An in-memory etcd: one revision counter, guarded txns, history for watches. */
class FakeRegistry implements Registry {
  rev = 1;
  kv = new Map<string, Stored>();
  leases = new Map<string, number>(); // id -> ttl seconds
  history: Change[] = [];
  compactedTo = 0;
  calls: string[] = [];
  /** Throw RegistryUnavailableError on the next N calls. */
  failNext = 0;
  /** Runs inside create() before the compare (to lose a race). */
  beforeCreate: ((key: string) => void) | null = null;
  #nextLease = 100;
  #subs = new Set<() => void>();

  #enter(what: string): void {
    this.calls.push(what);
    if (this.failNext > 0) {
      this.failNext--;
      throw new RegistryUnavailableError("Cannot reach etcd at fake: UNAVAILABLE");
    }
  }

  /** A write from "someone else" (admin, another host). */
  put(key: string, value: string, leaseTTL: number | null = 86400): number {
    let leaseId: string | null = null;
    if (leaseTTL !== null) {
      leaseId = String(this.#nextLease++);
      this.leases.set(leaseId, leaseTTL);
    }
    this.rev++;
    const createRevision = this.kv.get(key)?.createRevision ?? this.rev;
    this.kv.set(key, { value, modRevision: this.rev, createRevision, leaseId });
    this.#record({ type: "put", key, value, modRevision: this.rev, createRevision, leaseId });
    return this.rev;
  }

  del(key: string): void {
    if (!this.kv.has(key)) return;
    this.rev++;
    this.kv.delete(key);
    this.#record({ type: "delete", key, modRevision: this.rev });
  }

  compact(): void {
    this.compactedTo = this.rev;
    this.history = [];
  }

  /** etcd lost its memory: `keep` survives (a restored snapshot), revisions restart low. */
  wipe(reason: string, keep: string[] = []): void {
    const kept = keep.map((k) => [k, this.kv.get(k)!] as const);
    this.kv.clear();
    this.history = [];
    this.compactedTo = 0;
    this.rev = 1;
    this.generation++;
    this.resetReason = reason;
    for (const [k, v] of kept) {
      this.rev++;
      this.kv.set(k, { ...v, modRevision: this.rev, createRevision: this.rev });
    }
    for (const s of this.#subs) s();
  }
  generation = 0;
  resetReason = "";

  #record(ev: Change["ev"]): void {
    this.history.push({ rev: this.rev, ev });
    for (const s of this.#subs) s();
  }

  get(key: string): Promise<{ kv: KeyValue | null; revision: number }> {
    this.#enter(`get ${key}`);
    const s = this.kv.get(key);
    return Promise.resolve({ kv: s ? { key, ...s } : null, revision: this.rev });
  }

  list(prefix: string): Promise<{ entries: ListedKeyValue[]; revision: number }> {
    this.#enter(`list ${prefix}`);
    const entries = [...this.kv].filter(([k]) => k.startsWith(prefix)).map(([key, s]) => ({
      key,
      ...s,
      ttlSeconds: s.leaseId ? this.leases.get(s.leaseId) ?? null : null,
    }));
    return Promise.resolve({ entries, revision: this.rev });
  }

  create(key: string, value: string, ttlSeconds: number): Promise<WriteResult | null> {
    this.#enter(`create ${key}`);
    this.beforeCreate?.(key);
    if (this.kv.has(key)) return Promise.resolve(null);
    const modRevision = this.put(key, value, ttlSeconds);
    return Promise.resolve({ modRevision, leaseId: this.kv.get(key)!.leaseId, ttlSeconds });
  }

  update(
    key: string,
    value: string,
    ttlSeconds: number | null,
    modRevision: number,
  ): Promise<WriteResult | null> {
    this.#enter(`update ${key}@${modRevision}`);
    if (this.kv.get(key)?.modRevision !== modRevision) return Promise.resolve(null);
    const rev = this.put(key, value, ttlSeconds);
    return Promise.resolve({ modRevision: rev, leaseId: this.kv.get(key)!.leaseId, ttlSeconds });
  }

  delete(key: string, modRevision?: number): Promise<boolean> {
    this.#enter(`delete ${key}`);
    const s = this.kv.get(key);
    if (!s || (modRevision !== undefined && s.modRevision !== modRevision)) {
      return Promise.resolve(false);
    }
    this.del(key);
    return Promise.resolve(true);
  }

  leaseTTL(leaseId: string): Promise<number | null> {
    this.#enter(`ttl ${leaseId}`);
    return Promise.resolve(this.leases.get(leaseId) ?? null);
  }

  async *watch(
    key: string,
    opts: { prefix: boolean; fromRevision: number },
    signal: AbortSignal,
  ): AsyncIterable<WatchEvent> {
    this.calls.push(`watch ${key}@${opts.fromRevision}`);
    let next = opts.fromRevision;
    const match = (k: string) => opts.prefix ? k.startsWith(key) : k === key;
    const generation = this.generation;
    if (opts.fromRevision > this.rev + 1) {
      // A watch from a revision this store never reached: it lost its memory before.
      yield { type: "reset", reason: this.resetReason || "revision went backwards" };
      return;
    }
    while (!signal.aborted) {
      if (this.generation !== generation) {
        yield { type: "reset", reason: this.resetReason };
        return;
      }
      if (next <= this.compactedTo) {
        yield { type: "compacted" };
        return;
      }
      const due = this.history.filter((c) => c.rev >= next && match(c.ev.key));
      for (const c of due) {
        next = c.rev + 1;
        yield c.ev;
      }
      // One etcd response per wake-up: everything due so far, then a progress mark.
      if (due.length > 0) yield { type: "progress", revision: next - 1 };
      if (due.length === 0) {
        next = Math.max(next, this.rev + 1);
        await new Promise<void>((resolve) => {
          const wake = () => {
            this.#subs.delete(wake);
            signal.removeEventListener("abort", wake);
            resolve();
          };
          this.#subs.add(wake);
          signal.addEventListener("abort", wake, { once: true });
        });
      }
    }
  }

  close(): void {}
}

function net(s: string): IPNet {
  const n = parseCIDR(s);
  if (typeof n === "string") throw new Error(n);
  return n;
}

function attrs(ip: string, extra: Partial<LeaseAttrs> = {}): LeaseAttrs {
  return {
    publicIP: parseIPv4(ip)!,
    publicIPv6: null,
    backendType: "",
    backendData: null,
    backendV6Data: null,
    ...extra,
  };
}

function key(cidr: string): string {
  return `${P}/subnets/${cidr.replace("/", "-")}`;
}

const value = (ip: string, extra: Partial<LeaseAttrs> = {}) => encodeLeaseValue(attrs(ip, extra));

class Env implements AsyncDisposable {
  lines: string[] = [];
  log = new Logger("subnet");
  #prev: (l: string) => void;
  ac = new AbortController();
  constructor(readonly dir: string) {
    this.#prev = setSink((l) => this.lines.push(l));
  }
  static async create(): Promise<Env> {
    return new Env(await Deno.makeTempDir({ prefix: "fl-mgr-" }));
  }
  manager(reg: FakeRegistry, configJson: string, extra: Record<string, unknown> = {}) {
    return new RegistrySubnetManager({
      registry: reg,
      config: parseNetworkConfig(configJson),
      prefix: P,
      subnetFile: `${this.dir}/subnet.env`,
      renewMarginMinutes: 60,
      log: this.log,
      random: () => 0,
      ...extra,
    });
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.ac.abort();
    setSink(this.#prev);
    await Deno.remove(this.dir, { recursive: true });
  }
}

const NET16 = '{"Network":"10.1.0.0/16"}';

Deno.test("acquireLease() reuses our lease by PublicIP (no write when attrs are equal)", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.7.0/24"), value("192.168.0.2"), 5000);
  reg.put(key("10.1.9.0/24"), value("192.168.0.9"));
  const m = env.manager(reg, NET16);
  const { lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(lease.subnet!.toString(), "10.1.7.0/24");
  assert.ok(lease.expiration && Math.abs(lease.expiration.getTime() - Date.now() - 5e6) < 5000);
  assert.deepEqual(reg.calls.filter((c) => /create|update|delete/.test(c)), []);
});

Deno.test("acquireLease() rewrites our lease's attrs guarded by its revision (new VtepMAC)", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const rev = reg.put(
    key("10.1.7.0/24"),
    value("192.168.0.2", { backendType: "vxlan", backendData: { VtepMAC: "aa:aa:aa:aa:aa:aa" } }),
  );
  const m = env.manager(reg, NET16);
  const want = attrs("192.168.0.2", {
    backendType: "vxlan",
    backendData: { VtepMAC: "bb:bb:bb:bb:bb:bb" },
  });
  const { lease } = await m.acquireLease(want, env.ac.signal);
  assert.equal(lease.subnet!.toString(), "10.1.7.0/24");
  assert.ok(reg.calls.includes(`update ${key("10.1.7.0/24")}@${rev}`));
  assert.equal(reg.kv.get(key("10.1.7.0/24"))!.value, encodeLeaseValue(want));
  assert.equal(lease.modRevision, reg.kv.get(key("10.1.7.0/24"))!.modRevision);
});

Deno.test("acquireLease() deletes our lease that no longer fits and picks a new subnet", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.7.0/24"), value("192.168.0.2"));
  const m = env.manager(reg, '{"Network":"10.1.0.0/16","SubnetLen":25}');
  const { lease: lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(reg.kv.has(key("10.1.7.0/24")), false);
  assert.equal(lease.subnet!.prefix, 25);
  assert.equal(lease.subnet!.toString(), "10.1.0.128/25"); // random() = 0: first candidate
  assert.ok(env.lines.some((l) => l.includes("Deleting lease 10.1.7.0/24")));
});

Deno.test("acquireLease() takes the subnet.env subnet when free and fitting, else a random pick", async () => {
  await using env = await Env.create();
  await writeSubnetFile(`${env.dir}/subnet.env`, {
    network: net("10.1.0.0/16"),
    subnet: net("10.1.42.0/24"),
    mtu: 1450,
    ipMasq: false,
  });
  const reg = new FakeRegistry();
  const m = env.manager(reg, NET16);
  const { lease: a } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(a.subnet!.toString(), "10.1.42.0/24");

  // Held by someone else now: a random pick among the first free ones instead.
  const reg2 = new FakeRegistry();
  reg2.put(key("10.1.42.0/24"), value("192.168.0.3"));
  reg2.put(key("10.1.1.0/24"), value("192.168.0.4"));
  const m2 = env.manager(reg2, NET16, { random: () => 0.999 });
  const { lease: b } = await m2.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(b.subnet!.toString(), "10.1.102.0/24"); // 100th free: 10.1.2..102 minus 42
});

Deno.test("acquireLease() never picks a subnet overlapping the external interface's networks", async () => {
  // A Network holding the hosts' /24: the host must not get 192.168.100.0/24 (Docker would
  // get --bip=192.168.100.1/24, the hub's address).
  await using env = await Env.create();
  await writeSubnetFile(`${env.dir}/subnet.env`, {
    network: net("192.168.0.0/16"),
    subnet: net("192.168.100.0/24"),
    mtu: 1450,
    ipMasq: false,
  });
  const cfg = '{"Network":"192.168.0.0/16","SubnetMin":"192.168.99.0","SubnetMax":"192.168.101.0"}';
  const underlay = [net("192.168.100.0/24"), IPNet.mustParse("fd00::/64")];
  const reg = new FakeRegistry();
  reg.put(key("192.168.99.0/24"), value("192.168.100.3"));
  const m = env.manager(reg, cfg, { underlay, random: () => 0 });
  const { lease } = await m.acquireLease(attrs("192.168.100.2"), env.ac.signal);
  assert.equal(lease.subnet!.toString(), "192.168.101.0/24");

  // Our own lease on the underlay (taken before this check): deleted, a new subnet picked.
  const reg2 = new FakeRegistry();
  reg2.put(key("192.168.100.0/24"), value("192.168.100.2"));
  const m2 = env.manager(reg2, cfg, { underlay, random: () => 0 });
  const { lease: b } = await m2.acquireLease(attrs("192.168.100.2"), env.ac.signal);
  assert.equal(reg2.kv.has(key("192.168.100.0/24")), false);
  assert.equal(b.subnet!.toString(), "192.168.99.0/24");
  assert.ok(
    env.lines.some((l) =>
      /^W.*Deleting lease 192\.168\.100\.0\/24: it overlaps 192\.168\.100\.0\/24, a network of the external interface/
        .test(l)
    ),
    env.lines.join("\n"),
  );

  // An underlay wider than the whole range: nothing free, the usual retry.
  const reg3 = new FakeRegistry();
  const m3 = env.manager(reg3, cfg, {
    underlay: [net("192.168.0.0/16")],
    noFreeSubnetRetryMs: 10,
  });
  const ac = new AbortController();
  const p = m3.acquireLease(attrs("192.168.100.2"), ac.signal);
  await new Promise((r) => setTimeout(r, 50));
  ac.abort();
  await assert.rejects(p);
  assert.deepEqual(reg3.calls.filter((c) => /create/.test(c)), []);
});

Deno.test("acquireLease() uses our reservation as is and never allocates another's", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.1.0/24"), value("192.168.0.9"), null); // someone else's reservation
  reg.put(key("10.1.5.0/24"), value("192.168.0.2"), null); // ours
  const m = env.manager(reg, NET16);
  const { lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(lease.subnet!.toString(), "10.1.5.0/24");
  assert.equal(lease.expiration, null);
  assert.equal(lease.etcdLeaseId, null);
  assert.deepEqual(reg.calls.filter((c) => /create|update|delete/.test(c)), []);

  const m2 = env.manager(reg, NET16);
  const { lease: other } = await m2.acquireLease(attrs("192.168.0.3"), env.ac.signal);
  assert.equal(other.subnet!.toString(), "10.1.2.0/24"); // 10.1.1.0 is reserved
  // keepLease on a reservation never renews it.
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal);
  await new Promise((r) => setTimeout(r, 20));
  ac.abort();
  await keeping;
  assert.ok(!reg.calls.some((c) => c.startsWith(`update ${key("10.1.5.0/24")}`)));
  assert.equal(reg.kv.get(key("10.1.5.0/24"))!.leaseId, null);
});

Deno.test("acquireLease() rewrites a reservation's stale attrs, keeping it without TTL", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.5.0/24"), value("192.168.0.2"), null);
  const m = env.manager(reg, NET16);
  const want = attrs("192.168.0.2", { backendType: "host-gw" });
  const { lease } = await m.acquireLease(want, env.ac.signal);
  assert.equal(lease.subnet!.toString(), "10.1.5.0/24");
  const s = reg.kv.get(key("10.1.5.0/24"))!;
  assert.equal(s.value, encodeLeaseValue(want));
  assert.equal(s.leaseId, null);
  assert.equal(lease.expiration, null);
});

Deno.test("acquireLease() retries a lost create race with a fresh listing", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  let raced = 0;
  reg.beforeCreate = (k) => {
    if (raced++ < 2) reg.put(k, value(`192.168.1.${raced}`)); // another host wins
  };
  const m = env.manager(reg, NET16);
  const { lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(lease.subnet!.toString(), "10.1.3.0/24");
  assert.equal(reg.calls.filter((c) => c.startsWith("list")).length, 3);
  assert.equal(env.lines.filter((l) => l.includes("was taken meanwhile")).length, 2);
});

Deno.test("acquireLease() on a full network logs a clear error, retries, succeeds when a lease is freed", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const cfg = '{"Network":"10.1.0.0/16","SubnetMin":"10.1.1.0","SubnetMax":"10.1.3.0"}';
  for (const n of [1, 2, 3]) reg.put(key(`10.1.${n}.0/24`), value(`192.168.0.${10 + n}`));
  const m = env.manager(reg, cfg, { noFreeSubnetRetryMs: 30 });
  const p = m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  await new Promise((r) => setTimeout(r, 100));
  const errs = env.lines.filter((l) => l.includes("No free subnet"));
  assert.ok(errs.length >= 2, env.lines.join(""));
  assert.match(
    errs[0],
    /^E.* subnet\] No free subnet in 10\.1\.0\.0\/16 between 10\.1\.1\.0 and 10\.1\.3\.0 \(SubnetLen 24\): all 3 are leased or reserved/,
  );
  reg.del(key("10.1.2.0/24"));
  const { lease } = await p;
  assert.equal(lease.subnet!.toString(), "10.1.2.0/24");
});

Deno.test("acquireLease() retries while the registry is unreachable", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.failNext = 3;
  const m = env.manager(reg, NET16);
  const { lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(lease.subnet!.toString(), "10.1.1.0/24");
  assert.equal(reg.calls.filter((c) => c.startsWith("list")).length, 4);
});

Deno.test("acquireLease() rejects with the abort reason when aborted", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.failNext = 1e9;
  const m = env.manager(reg, NET16);
  const ac = new AbortController();
  const p = m.acquireLease(attrs("192.168.0.2"), ac.signal);
  setTimeout(() => ac.abort(new Error("stop")), 50);
  await assert.rejects(p, /stop/);
});

Deno.test("keepLease() renews before expiry with a revision-guarded write", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  // TTL 3 s, margin 2.9 s: the first renewal is due 100 ms after acquisition.
  const m = env.manager(reg, NET16, { ttlSeconds: 3, renewMarginMinutes: 2.9 / 60 });
  const { lease: lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const renewals0 = leaseRenewals.get();
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal);
  await new Promise((r) => setTimeout(r, 350));
  ac.abort();
  await keeping;
  const updates = reg.calls.filter((c) => c.startsWith("update"));
  assert.ok(updates.length >= 2, reg.calls.join("\n"));
  assert.equal(updates[0], `update ${key("10.1.1.0/24")}@${lease.modRevision}`);
  assert.ok(env.lines.some((l) => l.includes("Renewed lease 10.1.1.0/24")));
  // flannel_lease_renewals_total and the expiry gauge follow each renewal.
  assert.equal(leaseRenewals.get() - renewals0, updates.length);
  assert.ok(Math.abs(leaseExpiry.get() - (Date.now() / 1000 + 3)) < 1, `${leaseExpiry.get()}`);
});

Deno.test("keepLease() never overwrites a lease another host took: LeaseLostError", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const m = env.manager(reg, NET16, { ttlSeconds: 3, renewMarginMinutes: 2.9 / 60 });
  const { lease: lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  // Our lease expired and another host created the key again.
  reg.del(key("10.1.1.0/24"));
  reg.put(key("10.1.1.0/24"), value("192.168.0.77"));
  const before = reg.kv.get(key("10.1.1.0/24"))!.value;
  await assert.rejects(m.keepLease(lease, env.ac.signal), (err) => {
    assert.ok(err instanceof LeaseLostError);
    assert.match(err.message, /^Lease 10\.1\.1\.0\/24 was deleted from etcd/);
    return true;
  });
  assert.equal(reg.kv.get(key("10.1.1.0/24"))!.value, before);
});

Deno.test("keepLease() renew finding the key taken (no delete seen) rejects without writing", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const m = env.manager(reg, NET16, { ttlSeconds: 3, renewMarginMinutes: 2.9 / 60 });
  const { lease: lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  // Overwritten in place (history compacted away, so the watch cannot tell first).
  const k = key("10.1.1.0/24");
  reg.put(k, value("192.168.0.77"));
  reg.compact();
  await assert.rejects(m.keepLease(lease, env.ac.signal), (err) => {
    assert.ok(err instanceof LeaseLostError);
    assert.match(err.message, /^Lease 10\.1\.1\.0\/24 is now held by 192\.168\.0\.77/);
    return true;
  });
  assert.equal(reg.kv.get(k)!.value, value("192.168.0.77"));
});

Deno.test("keepLease() retries a failed renewal after the retry delay with a log line", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const m = env.manager(reg, NET16, {
    ttlSeconds: 3,
    renewMarginMinutes: 2.95 / 60,
    renewRetryMs: 100,
  });
  const { lease: lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const failures0 = leaseRenewalFailures.get();
  reg.failNext = 2;
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal);
  await new Promise((r) => setTimeout(r, 400));
  ac.abort();
  await keeping;
  const errs = env.lines.filter((l) => l.includes("Error renewing lease 10.1.1.0/24"));
  assert.equal(errs.length, 2, env.lines.join(""));
  assert.match(errs[0], /trying again in 0\.1 s/);
  assert.ok(env.lines.some((l) => l.includes("Renewed lease")));
  assert.equal(leaseRenewalFailures.get() - failures0, 2, "flannel_lease_renewal_failures_total");
});

Deno.test("watchLeases(): snapshot from the acquire listing, then added/removed; own and malformed skipped", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.8.0/24"), value("192.168.0.8"));
  reg.put(`${P}/subnets/garbage`, "x");
  const m = env.manager(reg, NET16);
  const own = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const it = m.watchLeases(own.lease, own.peers, env.ac.signal)[Symbol.asyncIterator]();
  assert.deepEqual(showEvents(await takeNext(it)), ["added 10.1.8.0/24"]);
  assert.equal(reg.calls.filter((c) => c.startsWith("list")).length, 1, "listed once");
  reg.put(key("10.1.9.0/24"), value("192.168.0.9"));
  assert.deepEqual(showEvents(await takeNext(it)), ["added 10.1.9.0/24"]);
  reg.put(key("10.1.10.0/24"), "{not json");
  reg.put(key("10.1.10.0/24"), "{not json either");
  reg.put(key("10.1.1.0/24"), value("192.168.0.2")); // own
  reg.del(key("10.1.8.0/24"));
  const rem = await takeNext(it);
  assert.deepEqual(showEvents(rem), ["removed 10.1.8.0/24"]);
  assert.deepEqual(rem[0].lease.attrs.publicIP, parseIPv4("192.168.0.8"));
  const warns = env.lines.filter((l) => l.startsWith("W") && l.includes("malformed"));
  assert.equal(warns.length, 3, warns.join("")); // garbage key + two revisions of 10.1.10.0
  assert.ok(warns.some((w) => w.includes(`${P}/subnets/garbage`)));
});

Deno.test("watchLeases(): the changes of one etcd response arrive as one batch", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.8.0/24"), value("192.168.0.8"));
  const m = env.manager(reg, NET16);
  const own = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const it = m.watchLeases(own.lease, own.peers, env.ac.signal)[Symbol.asyncIterator]();
  assert.deepEqual(showEvents(await takeNext(it)), ["added 10.1.8.0/24"]);
  // Written together (as one txn would be): delivered in one response.
  reg.put(key("10.1.9.0/24"), value("192.168.0.9"));
  reg.del(key("10.1.8.0/24"));
  reg.put(key("10.1.10.0/24"), value("192.168.0.10"));
  assert.deepEqual(showEvents(await takeNext(it)), [
    "added 10.1.10.0/24",
    "added 10.1.9.0/24",
    "removed 10.1.8.0/24",
  ]);
});

Deno.test("watchLeases(): a watch starting before the compacted revision re-lists and diffs", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.8.0/24"), value("192.168.0.8"));
  reg.put(key("10.1.9.0/24"), value("192.168.0.9"));
  reg.put(key("10.1.10.0/24"), value("192.168.0.10"));
  const m = env.manager(reg, NET16);
  const own = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  // Changes after the acquire listing, then compaction, before watchLeases starts watching.
  reg.del(key("10.1.8.0/24"));
  reg.put(key("10.1.9.0/24"), value("192.168.0.99"));
  reg.put(key("10.1.11.0/24"), value("192.168.0.11"));
  reg.put(key("10.1.10.0/24"), value("192.168.0.10")); // renewal: same attrs, not reported
  reg.compact();
  const it = m.watchLeases(own.lease, own.peers, env.ac.signal)[Symbol.asyncIterator]();
  assert.deepEqual(showEvents(await takeNext(it)), [
    "added 10.1.10.0/24",
    "added 10.1.8.0/24",
    "added 10.1.9.0/24",
  ]);
  assert.deepEqual(showEvents(await takeNext(it)), [
    "added 10.1.11.0/24",
    "added 10.1.9.0/24",
    "removed 10.1.8.0/24",
  ]);
  assert.ok(env.lines.some((l) => l.includes("compacted")));
});

Deno.test("waitForNetworkConfig(): missing → one warning and a watch; invalid → error once per revision; then valid", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const log = new Logger("config");
  const p = waitForNetworkConfig(reg, P, env.ac.signal, log);
  await new Promise((r) => setTimeout(r, 20));
  reg.put(`${P}/other`, "x"); // unrelated key: no re-read
  await new Promise((r) => setTimeout(r, 20));
  reg.put(`${P}/config`, '{"Network":"10.1.0.0/16","SubnetLen":33}', null);
  await new Promise((r) => setTimeout(r, 20));
  reg.put(`${P}/config`, '{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan"}}', null);
  const cfg = await p;
  assert.equal(cfg.backend.type, "vxlan");
  const waits = env.lines.filter((l) =>
    l.includes(`Waiting for the network config at ${P}/config`)
  );
  assert.equal(waits.length, 1);
  const bad = env.lines.filter((l) => l.includes("Invalid network config"));
  assert.equal(bad.length, 1);
  assert.match(
    bad[0],
    /^E.*config\] Invalid network config at .*: SubnetLen 33 is not between 17 and 30/,
  );
  assert.equal(reg.calls.filter((c) => c.startsWith("get")).length, 3, reg.calls.join("\n"));
  assert.ok(reg.calls.some((c) => c.startsWith(`watch ${P}/config@`)));
});

Deno.test("waitForNetworkConfig(): retries while unreachable, rejects on abort", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.failNext = 2;
  reg.put(`${P}/config`, NET16, null);
  const cfg = await waitForNetworkConfig(reg, P, env.ac.signal, new Logger("config"));
  assert.equal(cfg.ipv4?.network.toString(), "10.1.0.0/16");
  const reg2 = new FakeRegistry();
  const ac = new AbortController();
  const p = waitForNetworkConfig(reg2, P, ac.signal, new Logger("config"));
  setTimeout(() => ac.abort(new Error("bye")), 30);
  await assert.rejects(p, /bye/);
});

Deno.test("keepLease() with a renew margin not shorter than the TTL renews at half the TTL, not in a loop", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const m = env.manager(reg, NET16, { ttlSeconds: 1, renewMarginMinutes: 60 });
  assert.ok(env.lines.some((l) => l.includes("renewing at half the TTL")));
  const { lease: lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal);
  await new Promise((r) => setTimeout(r, 1200));
  ac.abort();
  await keeping;
  const n = reg.calls.filter((c) => c.startsWith("update")).length;
  assert.ok(n >= 2 && n <= 3, `${n} renewals in 1.2 s`);
});

/** A registry whose calls never answer while `hang` is set (etcd up but silent: 5 s deadlines). */
class SilentRegistry extends FakeRegistry {
  hang = false;
  #never<T>(what: string): Promise<T> {
    this.calls.push(`hang ${what}`);
    return new Promise<T>(() => {});
  }
  override get(key: string) {
    return this.hang
      ? this.#never<{ kv: KeyValue | null; revision: number }>("get")
      : super.get(key);
  }
  override list(prefix: string) {
    return this.hang
      ? this.#never<{ entries: ListedKeyValue[]; revision: number }>("list")
      : super.list(prefix);
  }
  override update(key: string, value: string, ttl: number | null, modRevision: number) {
    return this.hang
      ? this.#never<WriteResult | null>("update")
      : super.update(key, value, ttl, modRevision);
  }
}

/** Settles `p` within `ms`, or fails the test. */
async function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, rej) =>
        t = setTimeout(() => rej(new Error(`still waiting after ${ms} ms`)), ms)
      ),
    ]);
  } finally {
    clearTimeout(t);
  }
}

Deno.test("abort stops acquireLease(), keepLease() and waitForNetworkConfig() during an unanswered etcd call", async (t) => {
  await using env = await Env.create();
  await t.step("acquireLease() rejects with the abort reason, logging no failure", async () => {
    const reg = new SilentRegistry();
    reg.hang = true;
    const m = env.manager(reg, NET16);
    const ac = new AbortController();
    const p = m.acquireLease(attrs("192.168.0.2"), ac.signal);
    await new Promise((r) => setTimeout(r, 20));
    ac.abort(new Error("SIGTERM"));
    await assert.rejects(within(p, 500), /SIGTERM/);
    assert.deepEqual(reg.calls, ["hang list"]);
    assert.ok(!env.lines.some((l) => l.includes("Failed to acquire")), env.lines.join(""));
  });
  await t.step("keepLease() resolves while a renewal is unanswered", async () => {
    const reg = new SilentRegistry();
    const m = env.manager(reg, NET16, { ttlSeconds: 3, renewMarginMinutes: 2.95 / 60 });
    const { lease: lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
    reg.hang = true;
    const ac = new AbortController();
    const keeping = m.keepLease(lease, ac.signal);
    await new Promise((r) => setTimeout(r, 150));
    assert.ok(reg.calls.includes("hang update"), reg.calls.join("\n"));
    ac.abort();
    await within(keeping, 500);
  });
  await t.step("waitForNetworkConfig() rejects with the abort reason", async () => {
    const reg = new SilentRegistry();
    reg.hang = true;
    const ac = new AbortController();
    const p = waitForNetworkConfig(reg, P, ac.signal, new Logger("config"));
    await new Promise((r) => setTimeout(r, 20));
    ac.abort(new Error("SIGINT"));
    await assert.rejects(within(p, 500), /SIGINT/);
    assert.ok(!env.lines.some((l) => l.includes("Cannot read")), env.lines.join(""));
  });
});

/** A registry whose watches deliver nothing (a broken watch stream, or events still in flight). */
class DeafWatchRegistry extends FakeRegistry {
  override async *watch(
    _key: string,
    _opts: { prefix: boolean; fromRevision: number },
    signal: AbortSignal,
  ): AsyncIterable<WatchEvent> {
    await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
    yield* [];
  }
}

Deno.test("keepLease() renewal that finds our key made a reservation (watch not yet told) leaves it without TTL", async () => {
  await using env = await Env.create();
  const reg = new DeafWatchRegistry();
  const m = env.manager(reg, NET16, { ttlSeconds: 3, renewMarginMinutes: 2.95 / 60 });
  const { lease: lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const k = key("10.1.1.0/24");
  reg.put(k, value("192.168.0.2"), null); // an admin turns our lease into a reservation
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal);
  await new Promise((r) => setTimeout(r, 300));
  ac.abort();
  await keeping;
  assert.equal(reg.kv.get(k)!.leaseId, null, reg.calls.join("\n"));
  assert.equal(reg.calls.filter((c) => c.startsWith("update")).length, 1, reg.calls.join("\n"));
});

Deno.test("keepLease() on a reservation that an admin gives an etcd lease renews it before it expires", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const k = key("10.1.5.0/24");
  reg.put(k, value("192.168.0.2"), null); // our reservation
  const m = env.manager(reg, NET16, { ttlSeconds: 3, renewMarginMinutes: 2.95 / 60 });
  const { lease: lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(lease.etcdLeaseId, null);
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal);
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(!reg.calls.some((c) => c.startsWith("update")), "a reservation is not renewed");
  const rev = reg.put(k, value("192.168.0.2"), 3); // now a lease with a 3 s TTL
  await new Promise((r) => setTimeout(r, 300));
  ac.abort();
  await keeping;
  assert.ok(reg.calls.includes(`update ${k}@${rev}`), reg.calls.join("\n"));
  assert.notEqual(reg.kv.get(k)!.leaseId, null);
});

Deno.test("watchLeases(): peer leases outside the config are never handed on, removals included; one warning per change", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(`${P}/subnets/0.0.0.0-0`, value("192.168.0.8"));
  reg.put(key("10.1.8.0/24"), value("192.168.0.8"));
  const m = env.manager(reg, NET16);
  const own = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const it = m.watchLeases(own.lease, own.peers, env.ac.signal)[Symbol.asyncIterator]();
  assert.deepEqual(showEvents(await takeNext(it)), ["added 10.1.8.0/24"]);
  reg.put(`${P}/subnets/8.8.0.0-16`, value("192.168.0.9"));
  reg.put(`${P}/subnets/10.1.0.0-16`, value("192.168.0.9"));
  reg.put(`${P}/subnets/10.1.9.0-25`, value("192.168.0.9"));
  reg.del(`${P}/subnets/0.0.0.0-0`);
  reg.put(key("10.1.10.0/24"), value("192.168.0.10")); // a valid one: the batch is not empty
  assert.deepEqual(showEvents(await takeNext(it)), ["added 10.1.10.0/24"]);
  const warns = env.lines.filter((l) => l.startsWith("W") && l.includes("Ignoring lease"));
  assert.deepEqual(warns.map((w) => w.replace(/^.*\] /, "").trim()), [
    `Ignoring lease ${P}/subnets/0.0.0.0-0 (revision 2, PublicIP 192.168.0.8): 0.0.0.0/0 is not inside Network 10.1.0.0/16`,
    `Ignoring lease ${P}/subnets/8.8.0.0-16 (revision 5, PublicIP 192.168.0.9): 8.8.0.0/16 is not inside Network 10.1.0.0/16`,
    `Ignoring lease ${P}/subnets/10.1.0.0-16 (revision 6, PublicIP 192.168.0.9): 10.1.0.0/16 is the whole Network`,
    `Ignoring lease ${P}/subnets/10.1.9.0-25 (revision 7, PublicIP 192.168.0.9): 10.1.9.0/25 is not of SubnetLen 24`,
  ]);
  // A compaction re-lists the same keys: no new warning; a changed key is warned again.
  reg.compact();
  reg.put(`${P}/subnets/8.8.0.0-16`, value("192.168.0.19"));
  reg.put(key("10.1.11.0/24"), value("192.168.0.11"));
  assert.deepEqual(showEvents(await takeNext(it)), ["added 10.1.11.0/24"]);
  const again = env.lines.filter((l) => l.includes("Ignoring lease")).map((l) => l.trim());
  assert.equal(again.length, 5, again.join("\n"));
  assert.match(again[4], /8\.8\.0\.0-16 \(revision 10, PublicIP 192\.168\.0\.19\)/);
});

Deno.test("watchLeases(): of two keys for one subnet the first created wins; the other is handed on when it goes", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const dual = `${P}/subnets/10.1.8.0-24&fc00::-64`;
  reg.put(key("10.1.8.0/24"), value("192.168.0.8"));
  reg.put(dual, value("192.168.0.88"));
  const m = env.manager(reg, NET16);
  const own = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(own.lease.subnet!.toString(), "10.1.1.0/24");
  const it = m.watchLeases(own.lease, own.peers, env.ac.signal)[Symbol.asyncIterator]();
  const first = await takeNext(it);
  assert.deepEqual(showEvents(first), ["added 10.1.8.0/24"]);
  assert.equal(first[0].lease.attrs.publicIP?.toString(), "192.168.0.8");
  assert.ok(env.lines.some((l) =>
    l.includes(
      `Ignoring lease ${dual} (revision 3, PublicIP 192.168.0.88): 10.1.8.0/24 is ` +
        `already held by ${key("10.1.8.0/24")} (created first, at revision 2)`,
    )
  ));
  reg.put(`${P}/subnets/10.1.1.0-24&fc00::-64`, value("192.168.0.77")); // our subnet
  // The first holder goes: the other is handed on, in the same batch as the removal.
  reg.del(key("10.1.8.0/24"));
  const b = await takeNext(it);
  assert.deepEqual(b.map((e) => `${e.type} ${e.lease.subnet!.toString()}`), [
    "removed 10.1.8.0/24",
    "added 10.1.8.0/24",
  ]);
  assert.equal(b[1].lease.attrs.publicIP?.toString(), "192.168.0.88");
  assert.ok(env.lines.some((l) => l.includes("10.1.1.0/24 is our own lease")), env.lines.join(""));
  // A rejected key's removal never reaches the backend.
  reg.del(`${P}/subnets/10.1.1.0-24&fc00::-64`);
  reg.put(key("10.1.9.0/24"), value("192.168.0.9"));
  assert.deepEqual(showEvents(await takeNext(it)), ["added 10.1.9.0/24"]);
});

Deno.test("watchLeases(): a valid lease whose value turns malformed is removed", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.8.0/24"), value("192.168.0.8"));
  const m = env.manager(reg, NET16);
  const own = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const it = m.watchLeases(own.lease, own.peers, env.ac.signal)[Symbol.asyncIterator]();
  assert.deepEqual(showEvents(await takeNext(it)), ["added 10.1.8.0/24"]);
  reg.put(key("10.1.8.0/24"), "{junk");
  assert.deepEqual(showEvents(await takeNext(it)), ["removed 10.1.8.0/24"]);
});

Deno.test("keepLease(): etcd lost its memory → our lease is re-created at once, same subnet, and renewed from there", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const m = env.manager(reg, NET16, { ttlSeconds: 60 });
  const { lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  for (let i = 0; i < 20; i++) reg.put(`${P}/other`, String(i)); // revisions well ahead
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal);
  await new Promise((r) => setTimeout(r, 20));
  reg.wipe("cluster id changed");
  const k = key("10.1.1.0/24");
  await within(
    (async () => {
      while (!reg.kv.has(k)) await new Promise((r) => setTimeout(r, 5));
    })(),
    1000,
  );
  assert.equal(reg.kv.get(k)!.value, value("192.168.0.2"));
  assert.notEqual(reg.kv.get(k)!.leaseId, null);
  assert.ok(
    env.lines.some((l) =>
      /W.*Etcd lost its memory \(cluster id changed\): re-creating lease 10\.1\.1\.0\/24/.test(l)
    ),
  );
  assert.ok(reg.calls.includes(`create ${k}`));
  // The own-key watch now follows the new etcd: another host taking the key is noticed.
  reg.put(k, value("192.168.0.66"));
  await assert.rejects(within(keeping, 1000), (err) => {
    assert.ok(err instanceof LeaseLostError, String(err));
    assert.match(err.message, /is now held by 192\.168\.0\.66/);
    return true;
  });
  ac.abort();
});

Deno.test("keepLease(): etcd lost its memory and another host holds our subnet now → lost, never overwritten", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const m = env.manager(reg, NET16);
  const { lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal);
  await new Promise((r) => setTimeout(r, 20));
  const k = key("10.1.1.0/24");
  reg.wipe("revision went backwards (40 < 57)");
  reg.put(k, value("192.168.0.4")); // a new host was quicker
  await assert.rejects(within(keeping, 1000), (err) => {
    assert.ok(err instanceof LeaseLostError, String(err));
    assert.match(
      err.message,
      /^Lease 10\.1\.1\.0\/24 is now held by 192\.168\.0\.4 \(etcd lost its memory: revision went backwards/,
    );
    return true;
  });
  assert.equal(reg.kv.get(k)!.value, value("192.168.0.4"));
  assert.ok(!reg.calls.some((c) => c.startsWith(`update ${k}`)), reg.calls.join("\n"));
  ac.abort();
});

Deno.test("keepLease(): etcd restored from a snapshot that still holds our lease → kept, stale attributes rewritten", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const k = key("10.1.1.0/24");
  const mac = (m: string) =>
    attrs("192.168.0.2", { backendType: "vxlan", backendData: { VtepMAC: m } });
  reg.put(k, encodeLeaseValue(mac("aa:aa:aa:aa:aa:aa")));
  const m = env.manager(reg, NET16);
  const { lease } = await m.acquireLease(mac("bb:bb:bb:bb:bb:bb"), env.ac.signal);
  assert.equal(reg.kv.get(k)!.value, encodeLeaseValue(mac("bb:bb:bb:bb:bb:bb")));
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal);
  await new Promise((r) => setTimeout(r, 20));
  // The snapshot is older than our last write: our key with the old VtepMAC.
  reg.kv.set(k, { ...reg.kv.get(k)!, value: encodeLeaseValue(mac("aa:aa:aa:aa:aa:aa")) });
  reg.wipe("revision went backwards", [k]);
  await within(
    (async () => {
      while (reg.kv.get(k)!.value !== encodeLeaseValue(mac("bb:bb:bb:bb:bb:bb"))) {
        await new Promise((r) => setTimeout(r, 5));
      }
    })(),
    1000,
  );
  assert.ok(
    env.lines.some((l) => l.includes("Rewrote lease 10.1.1.0/24 found in the restored etcd")),
  );
  ac.abort();
  await keeping;
});

Deno.test("watchLeases(): etcd lost its memory → listed again, the backend gets the difference", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.8.0/24"), value("192.168.0.8"));
  reg.put(key("10.1.9.0/24"), value("192.168.0.9"));
  const m = env.manager(reg, NET16, { resetSettleMs: 200 });
  const own = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const it = m.watchLeases(own.lease, own.peers, env.ac.signal)[Symbol.asyncIterator]();
  assert.deepEqual(showEvents(await takeNext(it)), ["added 10.1.8.0/24", "added 10.1.9.0/24"]);
  const lists = reg.calls.filter((c) => c.startsWith("list")).length;
  const next = takeNext(it); // watching now
  await new Promise((r) => setTimeout(r, 20));
  reg.wipe("cluster id changed");
  // Within the settle time: 10.1.9.0's host re-creates its lease (never removed), a new one.
  await new Promise((r) => setTimeout(r, 50));
  reg.put(key("10.1.9.0/24"), value("192.168.0.9"));
  reg.put(key("10.1.20.0/24"), value("192.168.0.20"));
  assert.deepEqual(showEvents(await next), ["added 10.1.20.0/24", "removed 10.1.8.0/24"]);
  assert.equal(reg.calls.filter((c) => c.startsWith("list")).length, lists + 1);
  assert.ok(
    env.lines.some((l) =>
      /Etcd lost its memory \(cluster id changed\): listing .* in 0\.2 s/.test(l)
    ),
  );
  // And it follows the new etcd's revisions from there.
  reg.del(key("10.1.9.0/24"));
  assert.deepEqual(showEvents(await takeNext(it)), ["removed 10.1.9.0/24"]);
});

Deno.test("watchNetworkConfig(): one line per change: invalid, different (key by key), deleted, back again", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const running = '{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan"}}';
  reg.put(`${P}/config`, running, null);
  const log = new Logger("config");
  const ac = new AbortController();
  const watching = watchNetworkConfig(reg, P, parseNetworkConfig(running), ac.signal, log);
  const said = () =>
    env.lines.filter((l) => l.includes("config]")).map((l) => l.replace(/^.*\] /, "").trim());
  const settle = () => new Promise((r) => setTimeout(r, 20));
  await settle();
  assert.deepEqual(said(), [], "the running config itself says nothing");
  reg.put(`${P}/config`, ' {"Network": "10.1.0.0/16", "Backend": {"Type": "VXLAN"}}', null);
  await settle();
  assert.deepEqual(said(), [], "the same config rewritten says nothing");
  reg.put(`${P}/config`, '{"Network":"10.1.0.0/16","SubnetLen":33}', null);
  await settle();
  reg.put(`${P}/config`, '{"Network":"10.2.0.0/16","Backend":{"Type":"vxlan","VNI":2}}', null);
  await settle();
  reg.del(`${P}/config`);
  await settle();
  reg.put(`${P}/config`, running, null);
  await settle();
  ac.abort();
  await within(watching, 500);
  const K = `${P}/config`;
  assert.deepEqual(said(), [
    `Network config at ${K} changed: keeping the running config, the new one is invalid: SubnetLen 33 is not between 17 and 30`,
    `Network config at ${K} changed (Network 10.1.0.0/16 → 10.2.0.0/16, SubnetMin 10.1.1.0 → 10.2.1.0, ` +
    `SubnetMax 10.1.255.0 → 10.2.255.0, Backend.VNI 1 → 2): it takes effect on restart, the running config stays in use until then`,
    `Network config at ${K} was deleted: the running config stays in use (a restart would wait for a new one)`,
    `Network config at ${K} matches the running config again`,
  ]);
  assert.match(env.lines.find((l) => l.includes("is invalid"))!, /^E/);
});

Deno.test("watchNetworkConfig(): a config changed before the watch started, and a reset, are reported once", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(`${P}/config`, '{"Network":"10.1.0.0/16","Backend":{"Type":"host-gw"}}', null);
  const ac = new AbortController();
  const watching = watchNetworkConfig(
    reg,
    P,
    parseNetworkConfig(NET16),
    ac.signal,
    new Logger("config"),
  );
  await new Promise((r) => setTimeout(r, 20));
  for (let i = 0; i < 20; i++) reg.put(`${P}/other`, String(i));
  reg.wipe("cluster id changed");
  await new Promise((r) => setTimeout(r, 20));
  reg.put(`${P}/config`, NET16, null);
  await new Promise((r) => setTimeout(r, 20));
  ac.abort();
  await within(watching, 500);
  const lines = env.lines.filter((l) => l.includes("Network config at"));
  assert.equal(lines.length, 3, lines.join(""));
  assert.match(
    lines[0],
    /changed \(Backend\.Type udp → host-gw, Backend\.Port 8285 → \(none\), Backend\.Offload true → \(none\)\)/,
  );
  assert.match(lines[1], /was deleted/);
  assert.match(lines[2], /matches the running config again/);
});

Deno.test("keepLease(): a renewal that is etcd's first answer after a wipe waits for the watch to re-create the key", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  // TTL 3 s, margin 2.9 s: the first renewal is due 100 ms after acquisition.
  const m = env.manager(reg, NET16, { ttlSeconds: 3, renewMarginMinutes: 2.9 / 60 });
  const { lease } = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  for (let i = 0; i < 20; i++) reg.put(`${P}/other`, String(i));
  const k = key("10.1.1.0/24");
  // The wipe is seen by the renewal's update first; the watch hears of it 50 ms later.
  const origUpdate = reg.update.bind(reg);
  let wiped = false;
  reg.update = (key, value, ttl, rev) => {
    if (!wiped) {
      wiped = true;
      reg.rev = 1;
      reg.kv.clear();
      reg.history = [];
      setTimeout(() => reg.wipe("cluster id changed"), 50);
    }
    return origUpdate(key, value, ttl, rev);
  };
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal).then(() => null, (err) => err);
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(reg.kv.get(k)?.value, value("192.168.0.2"), env.lines.join(""));
  ac.abort();
  assert.equal(await keeping, null);
});

// --- IPv6: both families in one key, upstream's key forms, the peer checks for the IPv6 half

const DUAL =
  '{"Network":"10.1.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';
const V6ONLY =
  '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"host-gw"}}';

function attrs6(ip: string | null, ip6: string, extra: Partial<LeaseAttrs> = {}): LeaseAttrs {
  return {
    publicIP: ip === null ? null : parseIPv4(ip)!,
    publicIPv6: IPNet.mustParse(`${ip6}/128`).ip,
    backendType: "vxlan",
    backendData: ip === null ? null : { VNI: 1, VtepMAC: "0e:00:00:00:00:04" },
    backendV6Data: { VNI: 1, VtepMAC: "0e:00:00:00:00:06" },
    ...extra,
  };
}

const value6 = (ip: string | null, ip6: string, extra: Partial<LeaseAttrs> = {}) =>
  encodeLeaseValue(attrs6(ip, ip6, extra));

Deno.test("IPv6: acquireLease() leases both families in one upstream-style key", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(`${P}/subnets/10.1.1.0-24&fc00:0:0:1::-64`, value6("192.168.0.9", "fd00::9"));
  const m = env.manager(reg, DUAL);
  const { lease } = await m.acquireLease(attrs6("192.168.0.2", "fd00::2"), env.ac.signal);
  assert.equal(lease.subnet!.toString(), "10.1.2.0/24"); // random() = 0: the first free
  assert.equal(lease.ipv6Subnet!.toString(), "fc00:0:0:2::/64");
  const k = `${P}/subnets/10.1.2.0-24&fc00:0:0:2::-64`;
  assert.equal(
    reg.kv.get(k)?.value,
    '{"PublicIP":"192.168.0.2","PublicIPv6":"fd00::2","BackendType":"vxlan",' +
      '"BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:04"},' +
      '"BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:00:00:00:06"}}',
  );
  assert.ok(env.lines.some((l) => l.includes("Acquired lease 10.1.2.0/24 + fc00:0:0:2::/64")));

  // A restart finds it by PublicIP and writes nothing.
  const writes = reg.calls.length;
  const again = await env.manager(reg, DUAL).acquireLease(
    attrs6("192.168.0.2", "fd00::2"),
    env.ac.signal,
  );
  assert.equal(again.lease.ipv6Subnet!.toString(), "fc00:0:0:2::/64");
  assert.deepEqual(reg.calls.slice(writes).filter((c) => !c.startsWith("list")), []);
});

Deno.test("IPv6: an IPv4-only lease of ours is replaced when IPv6 gets enabled", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.7.0/24"), value("192.168.0.2"));
  await writeSubnetFile(`${env.dir}/subnet.env`, {
    network: net("10.1.0.0/16"),
    subnet: net("10.1.7.0/24"),
    mtu: 1450,
    ipMasq: false,
  });
  const m = env.manager(reg, DUAL);
  const { lease } = await m.acquireLease(attrs6("192.168.0.2", "fd00::2"), env.ac.signal);
  // The old key no longer fits (it names no IPv6 subnet): deleted; subnet.env keeps the IPv4
  // subnet, the IPv6 one is a random pick.
  assert.equal(reg.kv.has(key("10.1.7.0/24")), false);
  assert.equal(lease.subnet!.toString(), "10.1.7.0/24");
  assert.equal(lease.ipv6Subnet!.toString(), "fc00:0:0:1::/64");
  assert.ok(reg.kv.has(`${P}/subnets/10.1.7.0-24&fc00:0:0:1::-64`));
});

Deno.test("IPv6: acquireLease() prefers FLANNEL_SUBNET and FLANNEL_IPV6_SUBNET of subnet.env", async () => {
  await using env = await Env.create();
  await writeSubnetFile(`${env.dir}/subnet.env`, {
    network: net("10.1.0.0/16"),
    subnet: net("10.1.42.0/24"),
    ipv6Network: IPNet.mustParse("fc00::/48"),
    ipv6Subnet: IPNet.mustParse("fc00:0:0:2a::/64"),
    mtu: 1450,
    ipMasq: false,
  });
  assert.match(
    await Deno.readTextFile(`${env.dir}/subnet.env`),
    /FLANNEL_IPV6_SUBNET=fc00:0:0:2a::1\/64\n/,
  );
  const reg = new FakeRegistry();
  const m = env.manager(reg, DUAL);
  const { lease } = await m.acquireLease(attrs6("192.168.0.2", "fd00::2"), env.ac.signal);
  assert.equal(lease.subnet!.toString(), "10.1.42.0/24");
  assert.equal(lease.ipv6Subnet!.toString(), "fc00:0:0:2a::/64");
  assert.ok(env.lines.some((l) => l.includes("(the subnet of")), env.lines.join(""));

  // The IPv6 one held by another host (in a key with another IPv4 subnet): IPv4 from the file,
  // IPv6 a random pick among the free ones.
  const reg2 = new FakeRegistry();
  reg2.put(`${P}/subnets/10.1.9.0-24&fc00:0:0:2a::-64`, value6("192.168.0.9", "fd00::9"));
  const { lease: b } = await env.manager(reg2, DUAL).acquireLease(
    attrs6("192.168.0.2", "fd00::2"),
    env.ac.signal,
  );
  assert.equal(b.subnet!.toString(), "10.1.42.0/24");
  assert.equal(b.ipv6Subnet!.toString(), "fc00:0:0:1::/64");
});

Deno.test("IPv6-only: key 0.0.0.0-0&…, PublicIP 0.0.0.0, reuse by PublicIPv6", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  // Another IPv6-only host (also PublicIP 0.0.0.0): not ours.
  reg.put(
    `${P}/subnets/0.0.0.0-0&fc00:0:0:1::-64`,
    value6(null, "fd00::9", { backendType: "host-gw", backendData: null, backendV6Data: null }),
  );
  const m = env.manager(reg, V6ONLY);
  const mine = attrs6(null, "fd00::2", {
    backendType: "host-gw",
    backendData: null,
    backendV6Data: null,
  });
  const { lease } = await m.acquireLease(mine, env.ac.signal);
  assert.equal(lease.subnet, null);
  assert.equal(lease.ipv6Subnet!.toString(), "fc00:0:0:2::/64");
  const k = `${P}/subnets/0.0.0.0-0&fc00:0:0:2::-64`;
  assert.equal(
    reg.kv.get(k)?.value,
    '{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::2","BackendType":"host-gw"}',
  );
  const again = await env.manager(reg, V6ONLY).acquireLease(mine, env.ac.signal);
  assert.equal(again.lease.ipv6Subnet!.toString(), "fc00:0:0:2::/64");
  assert.equal(reg.kv.size, 2);
});

Deno.test("IPv6: every IPv6 subnet is taken: no free subnet, named with IPv6SubnetLen", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const cfg =
    '{"Network":"10.1.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/124","Backend":{"Type":"vxlan"}}';
  for (const [i, v6] of ["fc00::4", "fc00::8", "fc00::c"].entries()) {
    reg.put(
      `${P}/subnets/10.1.${i + 1}.0-24&${v6}-126`,
      value6(`192.168.0.${10 + i}`, `fd00::${10 + i}`),
    );
  }
  const m = env.manager(reg, cfg, { noFreeSubnetRetryMs: 20 });
  const ac = new AbortController();
  const p = m.acquireLease(attrs6("192.168.0.2", "fd00::2"), ac.signal);
  await new Promise((r) => setTimeout(r, 100));
  ac.abort();
  await assert.rejects(p);
  assert.ok(
    env.lines.some((l) =>
      l.includes(
        "No free subnet in fc00::/124 between fc00::4 and fc00::c (IPv6SubnetLen 126): all 3 are leased",
      )
    ),
    env.lines.join(""),
  );
});

Deno.test("IPv6: peer leases are checked for the IPv6 half too (inside, IPv6SubnetLen, no overlap)", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const s = (name: string) => `${P}/subnets/${name}`;
  reg.put(s("10.1.3.0-24&fc00:0:0:3::-64"), value6("192.168.0.3", "fd00::3")); // good
  reg.put(s("10.1.4.0-24&fc01::-64"), value6("192.168.0.4", "fd00::4")); // outside IPv6Network
  reg.put(s("10.1.5.0-24&fc00:0:0:5::-80"), value6("192.168.0.5", "fd00::5")); // wrong length
  reg.put(s("10.1.6.0-24&fc00::-48"), value6("192.168.0.6", "fd00::6")); // the whole network
  reg.put(s("10.1.7.0-24&fc00:0:0:3::-64"), value6("192.168.0.7", "fd00::7")); // overlaps .3's
  reg.put(s("10.1.8.0-24"), value("192.168.0.8")); // IPv4-only peer: used for IPv4 alone
  reg.put(s("10.1.9.0-24&fc00:0:0:1::-64"), value6("192.168.0.9", "fd00::9")); // our IPv6 subnet
  const m = env.manager(reg, DUAL);
  await writeSubnetFile(`${env.dir}/subnet.env`, {
    network: net("10.1.0.0/16"),
    subnet: net("10.1.1.0/24"),
    ipv6Network: IPNet.mustParse("fc00::/48"),
    ipv6Subnet: IPNet.mustParse("fc00:0:0:1::/64"),
    mtu: 1450,
    ipMasq: false,
  });
  // fc00:0:0:1:: is taken by .9 in etcd: we get another one.
  const own = await m.acquireLease(attrs6("192.168.0.2", "fd00::2"), env.ac.signal);
  assert.equal(own.lease.subnet!.toString(), "10.1.1.0/24");
  assert.equal(own.lease.ipv6Subnet!.toString(), "fc00:0:0:2::/64");
  const it = m.watchLeases(own.lease, own.peers, env.ac.signal)[Symbol.asyncIterator]();
  assert.deepEqual(showEvents(await takeNext(it)), [
    "added 10.1.3.0/24 + fc00:0:0:3::/64",
    "added 10.1.8.0/24",
    "added 10.1.9.0/24 + fc00:0:0:1::/64",
  ]);
  const warns = env.lines.filter((l) => l.startsWith("W")).join("");
  assert.match(warns, /10\.1\.4\.0-24&fc01::-64 .*fc01::\/64 is not inside IPv6Network fc00::\/48/);
  assert.match(warns, /10\.1\.5\.0-24&fc00:0:0:5::-80 .*is not of IPv6SubnetLen 64/);
  assert.match(warns, /10\.1\.6\.0-24&fc00::-48 .*is the whole IPv6Network/);
  assert.match(warns, /10\.1\.7\.0-24&fc00:0:0:3::-64 .*fc00:0:0:3::\/64 is already held by/);

  // Our IPv6 subnet appearing in another key is refused; the first holder going lets the next in.
  reg.put(s("10.1.10.0-24&fc00:0:0:2::-64"), value6("192.168.0.10", "fd00::10"));
  reg.del(s("10.1.3.0-24&fc00:0:0:3::-64"));
  const b = await takeNext(it);
  assert.deepEqual(showEvents(b), [
    "added 10.1.7.0/24 + fc00:0:0:3::/64",
    "removed 10.1.3.0/24 + fc00:0:0:3::/64",
  ]);
  assert.ok(env.lines.some((l) => l.includes("fc00:0:0:2::/64 is our own lease")));
});

Deno.test("IPv6-only: a peer lease without an IPv6 subnet is refused", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.3.0/24"), value("192.168.0.3"));
  reg.put(`${P}/subnets/0.0.0.0-0&fc00:0:0:4::-64`, value6(null, "fd00::4"));
  const m = env.manager(reg, V6ONLY);
  const own = await m.acquireLease(attrs6(null, "fd00::2"), env.ac.signal);
  const it = m.watchLeases(own.lease, own.peers, env.ac.signal)[Symbol.asyncIterator]();
  assert.deepEqual(showEvents(await takeNext(it)), ["added fc00:0:0:4::/64"]);
  assert.ok(env.lines.some((l) => l.includes("it has no IPv6 subnet (IPv6-only network)")));
});
