import assert from "node:assert/strict";
import { parseNetworkConfig, type SubnetRange } from "../../lib/config.ts";
import { addIP, IP, IPNet, parseCIDR, prefixSize } from "../../lib/ip.ts";
import { candidateSubnets, fitsConfig } from "../../lib/subnet/candidates.ts";

/** The IPv4 range of a config. */
function cfg(json: unknown): SubnetRange {
  return parseNetworkConfig(JSON.stringify(json)).ipv4!;
}

/** The IPv6 range of a vxlan config with `IPv6Network` (and more IPv6 keys). */
function cfg6(json: Record<string, unknown>): SubnetRange {
  return parseNetworkConfig(JSON.stringify({
    Network: "10.1.0.0/16",
    EnableIPv6: true,
    Backend: { Type: "vxlan" },
    ...json,
  })).ipv6!;
}

function net(s: string): IPNet {
  const n = s.includes(":") ? IPNet.parse(s, false) : parseCIDR(s, false);
  if (typeof n === "string") throw new Error(n);
  return n;
}

const C16 = cfg({ Network: "10.1.0.0/16" });

/** The obvious O(range × taken) algorithm the fast one must agree with. */
function naive(config: SubnetRange, taken: IPNet[], limit: number): IPNet[] {
  const out: IPNet[] = [];
  const size = prefixSize(config.subnetLen, config.network.family);
  for (
    let s = config.subnetMin;
    s.compare(config.subnetMax) <= 0 && out.length < limit;
    s = addIP(s, size)
  ) {
    const c = new IPNet(s, config.subnetLen);
    if (!taken.some((t) => t.overlaps(c))) out.push(c);
  }
  return out;
}

/** A small deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

Deno.test("fitsConfig() accepts only aligned subnets of SubnetLen in SubnetMin..SubnetMax", async (t) => {
  const c = cfg({ Network: "10.1.0.0/16", SubnetMin: "10.1.4.0", SubnetMax: "10.1.9.0" });
  const rows: [string, IPNet, boolean][] = [
    ["SubnetMin itself", net("10.1.4.0/24"), true],
    ["SubnetMax itself", net("10.1.9.0/24"), true],
    ["one in the middle", net("10.1.6.0/24"), true],
    ["below SubnetMin", net("10.1.3.0/24"), false],
    ["above SubnetMax", net("10.1.10.0/24"), false],
    ["the skipped first subnet", net("10.1.0.0/24"), false],
    ["outside the Network", net("10.2.5.0/24"), false],
    ["a longer prefix", net("10.1.5.0/25"), false],
    ["a shorter prefix", net("10.1.4.0/23"), false],
    // The IPNet constructor refuses host bits; fitsConfig() still checks (values built elsewhere).
    [
      "host bits set",
      Object.assign(Object.create(IPNet.prototype), { ip: IP.mustParse("10.1.5.7"), prefix: 24 }),
      false,
    ],
  ];
  for (const [name, subnet, want] of rows) {
    await t.step(`${name}: ${subnet} → ${want}`, () => {
      assert.equal(fitsConfig(c, subnet), want);
    });
  }
});

Deno.test("candidateSubnets() lists the first free subnets from SubnetMin upward", () => {
  const got = candidateSubnets(C16, []).map(String);
  assert.equal(got.length, 100);
  assert.equal(got[0], "10.1.1.0/24");
  assert.equal(got[99], "10.1.100.0/24");
  assert.deepEqual(candidateSubnets(C16, [], 3).map(String), [
    "10.1.1.0/24",
    "10.1.2.0/24",
    "10.1.3.0/24",
  ]);
  assert.deepEqual(candidateSubnets(C16, [], 0), []);
});

Deno.test("candidateSubnets() skips taken subnets of any length", async (t) => {
  const rows: [string, string[], string[]][] = [
    ["same length", ["10.1.2.0/24"], ["10.1.1.0/24", "10.1.3.0/24", "10.1.4.0/24"]],
    ["a /30 inside blocks its /24", ["10.1.1.8/30"], ["10.1.2.0/24", "10.1.3.0/24", "10.1.4.0/24"]],
    ["a /32 on the last address", ["10.1.1.255/32"], [
      "10.1.2.0/24",
      "10.1.3.0/24",
      "10.1.4.0/24",
    ]],
    ["a /32 on the first address", ["10.1.2.0/32"], ["10.1.1.0/24", "10.1.3.0/24", "10.1.4.0/24"]],
    ["a /22 blocks four", ["10.1.0.0/22"], ["10.1.4.0/24", "10.1.5.0/24", "10.1.6.0/24"]],
    ["the whole /16 leaves nothing", ["10.1.0.0/16"], []],
    ["0.0.0.0/0 leaves nothing", ["0.0.0.0/0"], []],
    ["outside the Network is ignored", ["10.2.1.0/24", "10.0.255.0/24"], [
      "10.1.1.0/24",
      "10.1.2.0/24",
      "10.1.3.0/24",
    ]],
    ["unsorted, duplicated and adjacent", [
      "10.1.3.0/24",
      "10.1.1.0/24",
      "10.1.3.0/24",
      "10.1.2.0/24",
      "10.1.5.0/24",
    ], ["10.1.4.0/24", "10.1.6.0/24", "10.1.7.0/24"]],
    ["host bits in a taken entry are masked", ["10.1.1.77/24"], [
      "10.1.2.0/24",
      "10.1.3.0/24",
      "10.1.4.0/24",
    ]],
  ];
  for (const [name, taken, want] of rows) {
    await t.step(name, () => {
      assert.deepEqual(candidateSubnets(C16, taken.map(net), 3).map(String), want);
    });
  }
});

Deno.test("candidateSubnets() stops at SubnetMax", () => {
  const c = cfg({ Network: "10.1.0.0/16", SubnetMin: "10.1.250.0" });
  assert.deepEqual(candidateSubnets(c, [net("10.1.252.0/24")]).map(String), [
    "10.1.250.0/24",
    "10.1.251.0/24",
    "10.1.253.0/24",
    "10.1.254.0/24",
    "10.1.255.0/24",
  ]);
  // The config refuses 0.0.0.0/0 (reserved ranges); the arithmetic must still stop at the top.
  const top: SubnetRange = {
    network: IPNet.mustParse("0.0.0.0/0"),
    subnetLen: 24,
    subnetMin: IP.mustParse("255.255.254.0"),
    subnetMax: IP.mustParse("255.255.255.0"),
  };
  assert.deepEqual(candidateSubnets(top, []).map(String), [
    "255.255.254.0/24",
    "255.255.255.0/24",
  ]);
  const half = cfg({ Network: "192.168.7.0/24" });
  assert.deepEqual(candidateSubnets(half, []).map(String), ["192.168.7.128/25"]);
  assert.deepEqual(candidateSubnets(half, [net("192.168.7.128/25")]), []);
});

Deno.test("candidateSubnets() agrees with the naive algorithm on random inputs", () => {
  const rand = rng(42);
  const c = cfg({ Network: "10.0.0.0/20", SubnetLen: 26, SubnetMin: "10.0.1.64" });
  for (let round = 0; round < 300; round++) {
    const taken: IPNet[] = [];
    const n = Math.floor(rand() * 40);
    for (let i = 0; i < n; i++) {
      // /18../32, some wider than the Network; a third are /32s on a block's last address,
      // where an off-by-one in the overlap test would show.
      const edge = rand() < 1 / 3;
      const prefix = edge ? 32 : 18 + Math.floor(rand() * 15);
      const ip = edge
        ? 0x0a000000 + Math.floor(rand() * 0x80) * 64 + 63
        : 0x0a000000 + Math.floor(rand() * 0x2000);
      taken.push(
        net(`${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}/${prefix}`),
      );
    }
    const limit = 1 + Math.floor(rand() * 80);
    assert.deepEqual(
      candidateSubnets(c, taken, limit).map(String),
      naive(c, taken, limit).map(String),
      `round ${round}: taken ${taken.map(String).join(" ")}`,
    );
  }
});

// The time limits below are generous guards against a quadratic walk, not speed claims (the
// machine running the suite may be loaded); speed is measured by scripts/bench.
Deno.test("candidateSubnets() with 5,000 taken leases finishes (no quadratic walk)", () => {
  const c = cfg({ Network: "10.0.0.0/8" });
  // Leases 10.0.1.0/24 … in shuffled order: the free ones start after the last.
  const taken: IPNet[] = [];
  for (let i = 1; i <= 5000; i++) taken.push(new IPNet(IP.fromU32(0x0a000000 + i * 256), 24));
  const rand = rng(7);
  for (let i = taken.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [taken[i], taken[j]] = [taken[j], taken[i]];
  }
  candidateSubnets(c, taken); // warm up the JIT once
  const t0 = performance.now();
  const got = candidateSubnets(c, taken);
  const ms = performance.now() - t0;
  assert.equal(got.length, 100);
  assert.equal(got[0].toString(), "10.19.137.0/24"); // 10.0.0.0 + 5001 * 256
  assert.ok(ms < 1000, `took ${ms.toFixed(1)} ms`);
});

Deno.test("candidateSubnets() over a /8 of /30s (4M subnets) stops after the limit", () => {
  const c = cfg({ Network: "10.0.0.0/8", SubnetLen: 30 });
  const t0 = performance.now();
  const got = candidateSubnets(c, [net("10.0.0.0/9")]);
  const ms = performance.now() - t0;
  assert.equal(got.length, 100);
  assert.equal(got[0].toString(), "10.128.0.0/30");
  assert.equal(got[99].toString(), "10.128.1.140/30");
  assert.ok(ms < 1000, `took ${ms.toFixed(1)} ms`);
  // Everything taken but the last two /30s (10.0.0.0/9, 10.128.0.0/10, … 10.255.255.240/29):
  // the walk jumps over each busy range instead of stepping through 4M subnets.
  const chain: IPNet[] = [];
  for (let p = 9, ip = 0x0a000000; p <= 29; ip += Number(prefixSize(p)), p++) {
    chain.push(new IPNet(IP.fromU32(ip), p));
  }
  const last = candidateSubnets(c, chain);
  assert.deepEqual(last.map(String), ["10.255.255.248/30", "10.255.255.252/30"]);
});

Deno.test("IPv6: fitsConfig() and candidateSubnets() on 128-bit ranges", async (t) => {
  const c = cfg6({ IPv6Network: "fc00::/48" });
  await t.step("the first free /64s from SubnetMin (fc00:0:0:1::) upward", () => {
    assert.deepEqual(
      candidateSubnets(c, [net("fc00:0:0:2::/64"), net("fc00:0:0:4::/63")], 4).map(String),
      ["fc00:0:0:1::/64", "fc00:0:0:3::/64", "fc00:0:0:6::/64", "fc00:0:0:7::/64"],
    );
  });
  await t.step("IPv4 leases do not occupy IPv6 space", () => {
    assert.equal(
      candidateSubnets(c, [net("10.1.0.0/16"), net("0.0.0.0/0")], 1)[0].toString(),
      "fc00:0:0:1::/64",
    );
  });
  await t.step("fitsConfig()", () => {
    assert.equal(fitsConfig(c, net("fc00:0:0:ffff::/64")), true);
    assert.equal(fitsConfig(c, net("fc00::/64")), false); // the skipped first subnet
    assert.equal(fitsConfig(c, net("fc00:1::/64")), false); // outside
    assert.equal(fitsConfig(c, net("fc00:0:0:5::/65")), false);
    assert.equal(fitsConfig(c, net("10.1.5.0/24")), false); // another family
  });
  await t.step("a /16 of /126s (2^110 subnets): the walk stops after the limit", () => {
    const big = cfg6({ IPv6Network: "fd00::/16", IPv6SubnetLen: 126 });
    const t0 = performance.now();
    const got = candidateSubnets(big, [net("fd00::/17")]);
    assert.ok(performance.now() - t0 < 1000);
    assert.equal(got.length, 100);
    assert.equal(got[0].toString(), "fd00:8000::/126");
    assert.equal(got[99].toString(), "fd00:8000::18c/126");
  });
  await t.step("the top of the address space: no overflow past ffff:…", () => {
    // The config refuses ff00::/8 (multicast); the arithmetic must still stop at the top.
    const top: SubnetRange = {
      network: IPNet.mustParse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"),
      subnetLen: 126,
      subnetMin: IP.mustParse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff4"),
      subnetMax: IP.mustParse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc"),
    };
    assert.deepEqual(candidateSubnets(top, []).map(String), [
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff4/126",
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff8/126",
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126",
    ]);
  });
});

Deno.test("IPv6: candidateSubnets() agrees with the naive algorithm on random inputs", () => {
  const rand = rng(66);
  const c = cfg6({
    IPv6Network: "fd12:3456::/112",
    IPv6SubnetLen: 120,
    IPv6SubnetMin: "fd12:3456::300",
  });
  const base = IP.mustParse("fd12:3456::").toBigInt();
  for (let round = 0; round < 200; round++) {
    const taken: IPNet[] = [];
    const n = Math.floor(rand() * 30);
    for (let i = 0; i < n; i++) {
      const edge = rand() < 1 / 3;
      const prefix = edge ? 128 : 108 + Math.floor(rand() * 21);
      const off = edge
        ? BigInt(Math.floor(rand() * 256)) * 256n + 255n
        : BigInt(Math.floor(rand() * 0x10000));
      taken.push(IPNet.of(IP.fromBigInt(base + off, 6), prefix));
    }
    const limit = 1 + Math.floor(rand() * 60);
    assert.deepEqual(
      candidateSubnets(c, taken, limit).map(String),
      naive(c, taken, limit).map(String),
      `round ${round}: taken ${taken.map(String).join(" ")}`,
    );
  }
});
