/**
 * EtcdSubnetManager and waitForNetworkConfig against a recording in-memory Registry (revisions,
 * leases with TTL, guarded writes, watch with history and compaction, injected failures).
 */

import assert from "node:assert/strict";
import { showEvents, takeNext } from "../helpers.ts";
import { parseNetworkConfig } from "../../lib/config.ts";
import { type IPNet, parseCIDR, parseIPv4 } from "../../lib/ip.ts";
import { encodeLeaseValue, type LeaseAttrs } from "../../lib/lease.ts";
import { Logger, setSink } from "../../lib/log.ts";
import {
  type KeyValue,
  type ListedKeyValue,
  type Registry,
  RegistryUnavailableError,
  type WatchEvent,
  type WriteResult,
} from "../../lib/registry/mod.ts";
import { EtcdSubnetManager } from "../../lib/subnet/manager.ts";
import { LeaseLostError } from "../../lib/subnet/mod.ts";
import { waitForNetworkConfig } from "../../lib/subnet/config_wait.ts";
import { writeSubnetFile } from "../../lib/subnet/file.ts";

const P = "/coreos.com/network";

interface Stored {
  value: string;
  modRevision: number;
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
    this.kv.set(key, { value, modRevision: this.rev, leaseId });
    this.#record({ type: "put", key, value, modRevision: this.rev, leaseId });
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
    while (!signal.aborted) {
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
  return { publicIP: parseIPv4(ip)!, backendType: "", backendData: null, ...extra };
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
    return new EtcdSubnetManager({
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
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(lease.subnet.toString(), "10.1.7.0/24");
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
  const lease = await m.acquireLease(want, env.ac.signal);
  assert.equal(lease.subnet.toString(), "10.1.7.0/24");
  assert.ok(reg.calls.includes(`update ${key("10.1.7.0/24")}@${rev}`));
  assert.equal(reg.kv.get(key("10.1.7.0/24"))!.value, encodeLeaseValue(want));
  assert.equal(lease.modRevision, reg.kv.get(key("10.1.7.0/24"))!.modRevision);
});

Deno.test("acquireLease() deletes our lease that no longer fits and picks a new subnet", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.7.0/24"), value("192.168.0.2"));
  const m = env.manager(reg, '{"Network":"10.1.0.0/16","SubnetLen":25}');
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(reg.kv.has(key("10.1.7.0/24")), false);
  assert.equal(lease.subnet.prefix, 25);
  assert.equal(lease.subnet.toString(), "10.1.0.128/25"); // random() = 0: first candidate
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
  const a = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(a.subnet.toString(), "10.1.42.0/24");

  // Held by someone else now: a random pick among the first free ones instead.
  const reg2 = new FakeRegistry();
  reg2.put(key("10.1.42.0/24"), value("192.168.0.3"));
  reg2.put(key("10.1.1.0/24"), value("192.168.0.4"));
  const m2 = env.manager(reg2, NET16, { random: () => 0.999 });
  const b = await m2.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(b.subnet.toString(), "10.1.102.0/24"); // 100th free: 10.1.2..102 minus 42
});

Deno.test("acquireLease() uses our reservation as is and never allocates another's", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.1.0/24"), value("192.168.0.9"), null); // someone else's reservation
  reg.put(key("10.1.5.0/24"), value("192.168.0.2"), null); // ours
  const m = env.manager(reg, NET16);
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(lease.subnet.toString(), "10.1.5.0/24");
  assert.equal(lease.expiration, null);
  assert.equal(lease.etcdLeaseId, null);
  assert.deepEqual(reg.calls.filter((c) => /create|update|delete/.test(c)), []);

  const m2 = env.manager(reg, NET16);
  const other = await m2.acquireLease(attrs("192.168.0.3"), env.ac.signal);
  assert.equal(other.subnet.toString(), "10.1.2.0/24"); // 10.1.1.0 is reserved
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
  const lease = await m.acquireLease(want, env.ac.signal);
  assert.equal(lease.subnet.toString(), "10.1.5.0/24");
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
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(lease.subnet.toString(), "10.1.3.0/24");
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
  const lease = await p;
  assert.equal(lease.subnet.toString(), "10.1.2.0/24");
});

Deno.test("acquireLease() retries while the registry is unreachable", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.failNext = 3;
  const m = env.manager(reg, NET16);
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  assert.equal(lease.subnet.toString(), "10.1.1.0/24");
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
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const ac = new AbortController();
  const keeping = m.keepLease(lease, ac.signal);
  await new Promise((r) => setTimeout(r, 350));
  ac.abort();
  await keeping;
  const updates = reg.calls.filter((c) => c.startsWith("update"));
  assert.ok(updates.length >= 2, reg.calls.join("\n"));
  assert.equal(updates[0], `update ${key("10.1.1.0/24")}@${lease.modRevision}`);
  assert.ok(env.lines.some((l) => l.includes("Renewed lease 10.1.1.0/24")));
});

Deno.test("keepLease() never overwrites a lease another host took: LeaseLostError", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  const m = env.manager(reg, NET16, { ttlSeconds: 3, renewMarginMinutes: 2.9 / 60 });
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
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
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
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
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
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
});

Deno.test("watchLeases(): snapshot from the acquire listing, then added/removed; own and malformed skipped", async () => {
  await using env = await Env.create();
  const reg = new FakeRegistry();
  reg.put(key("10.1.8.0/24"), value("192.168.0.8"));
  reg.put(`${P}/subnets/garbage`, "x");
  const m = env.manager(reg, NET16);
  const own = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
  const it = m.watchLeases(own.subnet, env.ac.signal)[Symbol.asyncIterator]();
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
  const it = m.watchLeases(own.subnet, env.ac.signal)[Symbol.asyncIterator]();
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
  const it = m.watchLeases(own.subnet, env.ac.signal)[Symbol.asyncIterator]();
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
  assert.equal(cfg.network.toString(), "10.1.0.0/16");
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
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
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
    const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
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
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
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
  const lease = await m.acquireLease(attrs("192.168.0.2"), env.ac.signal);
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
