/**
 * RegistrySubnetManager against a real etcd on 127.0.0.1 (random free ports, temp data dir).
 */

import assert from "node:assert/strict";
import { showEvents, takeNext } from "../helpers.ts";
import { parseNetworkConfig } from "../../lib/config.ts";
import { parseIPv4 } from "../../lib/ip.ts";
import { encodeLeaseValue, type LeaseAttrs } from "../../lib/lease.ts";
import { Logger, setSink } from "../../lib/log.ts";
import { connectEtcd } from "../../lib/registry/etcd/mod.ts";
import type { Registry } from "../../lib/registry/mod.ts";
import { RegistrySubnetManager } from "../../lib/subnet/manager.ts";
import { waitForNetworkConfig } from "../../lib/subnet/config_wait.ts";
import { LeaseLostError } from "../../lib/subnet/mod.ts";
import { EtcdServer } from "../harness/etcd.ts";

const P = "/coreos.com/network";
const NET16 = parseNetworkConfig('{"Network":"10.1.0.0/16"}');

function attrs(ip: string): LeaseAttrs {
  return {
    publicIP: parseIPv4(ip)!,
    publicIPv6: null,
    backendType: "",
    backendData: null,
    backendV6Data: null,
  };
}

function key(cidr: string): string {
  return `${P}/subnets/${cidr.replace("/", "-")}`;
}

class Ctx implements AsyncDisposable {
  lines: string[] = [];
  regs: Registry[] = [];
  ac = new AbortController();
  #prev = setSink((l) => this.lines.push(l));
  private constructor(readonly etcd: EtcdServer, readonly dir: string) {}
  static async start(): Promise<Ctx> {
    return new Ctx(await EtcdServer.start(), await Deno.makeTempDir({ prefix: "fl-mgr-" }));
  }
  manager(
    extra: Partial<ConstructorParameters<typeof RegistrySubnetManager>[0]> = {},
    subnetFile = `${this.dir}/subnet.env`,
  ): RegistrySubnetManager {
    const registry = connectEtcd({ endpoints: [this.etcd.endpoint] });
    this.regs.push(registry);
    return new RegistrySubnetManager({
      registry,
      config: NET16,
      prefix: P,
      subnetFile,
      renewMarginMinutes: 60,
      log: new Logger("subnet"),
      ...extra,
    });
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.ac.abort();
    for (const r of this.regs) r.close();
    setSink(this.#prev);
    await this.etcd[Symbol.asyncDispose]();
    await Deno.remove(this.dir, { recursive: true });
  }
}

Deno.test(
  "manager+etcd: ten hosts at once get ten distinct subnets; a restart reuses by PublicIP",
  async () => {
    await using ctx = await Ctx.start();
    const acquired = await Promise.all(
      Array.from(
        { length: 10 },
        (_, i) =>
          ctx.manager({}, `${ctx.dir}/h${i}.env`).acquireLease(
            attrs(`192.168.0.${i + 10}`),
            ctx.ac.signal,
          ),
      ),
    );
    const leases = acquired.map((a) => a.lease);
    const subnets = new Set(leases.map((l) => l.subnet!.toString()));
    assert.equal(subnets.size, 10);
    const stored = await ctx.etcd.list(`${P}/subnets/`);
    assert.equal(Object.keys(stored).length, 10);
    for (const l of leases) {
      assert.equal(stored[key(l.subnet!.toString())], encodeLeaseValue(l.attrs));
    }
    const { lease: again } = await ctx.manager({}, `${ctx.dir}/h3.env`).acquireLease(
      attrs("192.168.0.13"),
      ctx.ac.signal,
    );
    assert.equal(again.subnet!.toString(), leases[3].subnet!.toString());
  },
);

Deno.test(
  "manager+etcd: reservation honoured; keepLease renews by revision and loses a taken key",
  async () => {
    await using ctx = await Ctx.start();
    await ctx.etcd.put(key("10.1.1.0/24"), encodeLeaseValue(attrs("192.168.0.50")));
    const m = ctx.manager({ ttlSeconds: 4, renewMarginMinutes: 3 / 60, random: () => 0 });
    const { lease } = await m.acquireLease(attrs("192.168.0.2"), ctx.ac.signal);
    assert.equal(lease.subnet!.toString(), "10.1.2.0/24");
    const ac = new AbortController();
    // Settles as soon as the lease is lost; caught now so that it is never unhandled.
    const keeping = m.keepLease(lease, ac.signal).then(() => null, (err) => err);
    // Renewed every ~1 s with a 4 s TTL: still there after 6 s.
    await new Promise((r) => setTimeout(r, 6000));
    assert.equal(await ctx.etcd.get(key("10.1.2.0/24")), encodeLeaseValue(attrs("192.168.0.2")));
    assert.ok(ctx.lines.filter((l) => l.includes("Renewed lease 10.1.2.0/24")).length >= 3);
    // Another host overwrites the key: we must not write it back.
    await ctx.etcd.put(key("10.1.2.0/24"), encodeLeaseValue(attrs("192.168.0.66")), {
      ttlSeconds: 60,
    });
    const err = await keeping;
    assert.ok(err instanceof LeaseLostError, String(err));
    assert.match(err.message, /^Lease 10\.1\.2\.0\/24 is now held by 192\.168\.0\.66/);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await ctx.etcd.get(key("10.1.2.0/24")), encodeLeaseValue(attrs("192.168.0.66")));
    ac.abort();
  },
);

Deno.test(
  "manager+etcd: watchLeases resumes after an etcd restart and re-lists after compaction",
  async () => {
    await using ctx = await Ctx.start();
    await ctx.etcd.put(key("10.1.8.0/24"), encodeLeaseValue(attrs("192.168.0.8")), {
      ttlSeconds: 600,
    });
    const m = ctx.manager({ random: () => 0 });
    const own = await m.acquireLease(attrs("192.168.0.2"), ctx.ac.signal);
    const it = m.watchLeases(own.lease, own.peers, ctx.ac.signal)[Symbol.asyncIterator]();
    assert.deepEqual(showEvents(await takeNext(it, 15_000)), ["added 10.1.8.0/24"]);

    await ctx.etcd.stop();
    await new Promise((r) => setTimeout(r, 300));
    await ctx.etcd.start();
    await ctx.etcd.put(key("10.1.9.0/24"), encodeLeaseValue(attrs("192.168.0.9")));
    assert.deepEqual(showEvents(await takeNext(it, 30_000)), ["added 10.1.9.0/24"]);
    await ctx.etcd.del(key("10.1.8.0/24"));
    assert.deepEqual(showEvents(await takeNext(it, 15_000)), ["removed 10.1.8.0/24"]);

    // A second manager whose acquire listing is older than the compacted revision.
    const m2 = ctx.manager({ random: () => 0 });
    const own2 = await m2.acquireLease(attrs("192.168.0.3"), ctx.ac.signal);
    await ctx.etcd.del(key("10.1.9.0/24"));
    await ctx.etcd.put(key("10.1.20.0/24"), encodeLeaseValue(attrs("192.168.0.20")));
    await ctx.etcd.compact(await ctx.etcd.revision());
    const it2 = m2.watchLeases(own2.lease, own2.peers, ctx.ac.signal)
      [Symbol.asyncIterator]();
    const snap = showEvents(await takeNext(it2, 15_000));
    assert.ok(snap.includes("added 10.1.9.0/24"), snap.join());
    assert.deepEqual(showEvents(await takeNext(it2, 15_000)), [
      "added 10.1.20.0/24",
      "removed 10.1.9.0/24",
    ]);
  },
);

Deno.test(
  "manager+etcd: 5,000 peer leases: acquire + first watch batch well under 5 s",
  async () => {
    await using ctx = await Ctx.start();
    const seed = connectEtcd({ endpoints: [ctx.etcd.endpoint] });
    ctx.regs.push(seed);
    const cfg = parseNetworkConfig('{"Network":"10.0.0.0/8"}');
    // 5,000 leases, each with its own etcd lease (as 5,000 hosts would have).
    const all = Array.from({ length: 5000 }, (_, i) => i);
    for (let i = 0; i < all.length; i += 500) {
      await Promise.all(
        all.slice(i, i + 500).map((n) => {
          const subnet = `10.${1 + (n >> 8)}.${n & 255}.0/24`;
          return seed.create(
            key(subnet),
            encodeLeaseValue(attrs(`172.16.${n >> 8}.${n & 255}`)),
            3600,
          );
        }),
      );
    }
    const t0 = performance.now();
    const m = ctx.manager({ config: cfg });
    const own = await m.acquireLease(attrs("192.168.0.2"), ctx.ac.signal);
    const first = await takeNext(
      m.watchLeases(own.lease, own.peers, ctx.ac.signal)[Symbol.asyncIterator](),
      15_000,
    );
    const ms = performance.now() - t0;
    assert.equal(first.length, 5000);
    assert.ok(first.every((e) => e.lease.expiration !== null));
    console.log(`acquire + first batch with 5,000 peer leases: ${ms.toFixed(0)} ms`);
    assert.ok(ms < 5000, `${ms} ms`);
  },
);

Deno.test(
  "config wait+etcd: etcd down at start is retried with one line per attempt, then the config is found",
  async () => {
    await using ctx = await Ctx.start();
    await ctx.etcd.put(`${P}/config`, '{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}');
    await ctx.etcd.stop();
    const reg = connectEtcd({ endpoints: [ctx.etcd.endpoint] });
    ctx.regs.push(reg);
    const p = waitForNetworkConfig(reg, P, ctx.ac.signal, new Logger("config"));
    await new Promise((r) => setTimeout(r, 2000));
    const fails = ctx.lines.filter((l) =>
      l.includes(`Failed to reach etcd at ${ctx.etcd.endpoint}`)
    );
    // Backoff 100, 200, 400, 800 ms…: a handful of attempts in 2 s, not a tight loop.
    assert.ok(fails.length >= 3 && fails.length <= 8, `${fails.length} attempts`);
    await ctx.etcd.start();
    const cfg = await p;
    assert.equal(cfg.ipv4?.network.toString(), "10.5.0.0/16");
    assert.equal(cfg.backend.type, "alloc");
  },
);
