import assert from "node:assert/strict";
import {
  addIP,
  formatMAC,
  IP,
  IPNet,
  isAligned,
  nextSubnet,
  parseCIDR,
  parseIPv4,
  parseMAC,
  prefixSize,
  subnetAt,
} from "../../lib/ip.ts";

function net(s: string): IPNet {
  const n = parseCIDR(s);
  if (typeof n === "string") throw new Error(n);
  return n;
}

Deno.test("parseIPv4() reads dotted quads (as host-order u32 via toU32)", async (t) => {
  const rows: [string, number | null][] = [
    ["0.0.0.0", 0],
    ["10.1.15.0", 0x0a010f00],
    ["255.255.255.255", 0xffffffff],
    ["192.168.1.10", 0xc0a8010a],
    ["256.0.0.1", null],
    ["1.2.3", null],
    ["1.2.3.4.5", null],
    ["01.2.3.4", null], // octal-looking parts are refused, as Go's net.ParseIP does
    ["1.2.3.-4", null],
    ["1.2.3.a", null],
    ["", null],
    ["::1", null],
    ["1.2.3.4/24", null],
  ];
  for (const [text, want] of rows) {
    await t.step(JSON.stringify(text), () => assert.equal(parseIPv4(text)?.toU32() ?? null, want));
  }
});

Deno.test("IP.toString() writes dotted quads, also for values past 2^31", () => {
  assert.equal(IP.fromU32(0).toString(), "0.0.0.0");
  assert.equal(IP.fromU32(0x0a010f00).toString(), "10.1.15.0");
  assert.equal(IP.fromU32(0xffffffff).toString(), "255.255.255.255");
  assert.equal(IP.fromU32(0xc0a8010a | 0).toString(), "192.168.1.10"); // a negative int32 still prints
  for (const s of ["1.2.3.4", "172.31.255.254", "128.0.0.1"]) {
    assert.equal(parseIPv4(s)!.toString(), s);
  }
});

Deno.test("IPNet.mask() and prefixSize() cover /0 to /32", () => {
  const mask = (p: number) => IPNet.of(IP.fromU32(0), p).mask();
  assert.equal(mask(0), 0n);
  assert.equal(mask(1), 0x80000000n);
  assert.equal(mask(8), 0xff000000n);
  assert.equal(mask(24), 0xffffff00n);
  assert.equal(mask(31), 0xfffffffen);
  assert.equal(mask(32), 0xffffffffn);
  assert.equal(prefixSize(0), 2n ** 32n);
  assert.equal(prefixSize(16), 65536n);
  assert.equal(prefixSize(24), 256n);
  assert.equal(prefixSize(32), 1n);
  assert.equal(prefixSize(64, 6), 2n ** 64n);
});

Deno.test("parseCIDR() reads networks and explains what is wrong", async (t) => {
  const v4 = (ip: number, prefix: number) => new IPNet(IP.fromU32(ip), prefix);
  const rows: [string, boolean, IPNet | string][] = [
    ["10.1.0.0/16", true, v4(0x0a010000, 16)],
    ["0.0.0.0/0", true, v4(0, 0)],
    ["10.1.2.3/32", true, v4(0x0a010203, 32)],
    ["10.1.2.3/16", false, v4(0x0a010000, 16)],
    ["10.1.2.3/16", true, '"10.1.2.3/16" has host bits set (network address is 10.1.0.0/16)'],
    ["10.1.0.0", true, '"10.1.0.0" is not a CIDR (expected a.b.c.d/len)'],
    ["10.1.0.0/33", true, '"10.1.0.0/33" is not an IPv4 CIDR'],
    ["10.1.0.0/", true, '"10.1.0.0/" is not an IPv4 CIDR'],
    ["10.1.0.0/-1", true, '"10.1.0.0/-1" is not an IPv4 CIDR'],
    ["10.1.0.0/16/8", true, '"10.1.0.0/16/8" is not an IPv4 CIDR'],
    ["10.1.0/16", true, '"10.1.0/16" is not an IPv4 CIDR'],
    ["fc00::/64", true, '"fc00::/64" is not an IPv4 CIDR'],
  ];
  for (const [text, strict, want] of rows) {
    await t.step(`${text} strict=${strict}`, () => assert.deepEqual(parseCIDR(text, strict), want));
  }
});

Deno.test("IPNet.toString() round-trips parseCIDR()", () => {
  for (const s of ["10.1.0.0/16", "0.0.0.0/0", "255.255.255.255/32", "10.1.15.128/25"]) {
    assert.equal(net(s).toString(), s);
  }
});

Deno.test("contains() and containsNet() test membership", () => {
  const n = net("10.1.0.0/16");
  assert.equal(n.contains(parseIPv4("10.1.0.0")!), true);
  assert.equal(n.contains(parseIPv4("10.1.255.255")!), true);
  assert.equal(n.contains(parseIPv4("10.2.0.0")!), false);
  assert.equal(n.contains(parseIPv4("10.0.255.255")!), false);
  assert.equal(net("0.0.0.0/0").contains(IP.fromU32(0xffffffff)), true);
  assert.equal(n.containsNet(net("10.1.15.0/24")), true);
  assert.equal(n.containsNet(n), true);
  assert.equal(n.containsNet(net("10.0.0.0/8")), false); // wider
  assert.equal(n.containsNet(net("10.2.15.0/24")), false);
});

Deno.test("overlaps() masks with the shorter prefix", async (t) => {
  const rows: [string, string, boolean][] = [
    ["10.1.15.0/24", "10.1.15.0/24", true],
    ["10.1.15.0/24", "10.1.16.0/24", false],
    ["10.1.0.0/16", "10.1.15.0/24", true],
    ["10.1.15.0/24", "10.1.0.0/16", true],
    ["10.1.15.4/30", "10.1.15.0/24", true],
    ["10.2.0.0/16", "10.1.15.0/24", false],
    ["0.0.0.0/0", "192.168.0.0/16", true],
    ["10.1.15.255/32", "10.1.16.0/24", false],
  ];
  for (const [a, b, want] of rows) {
    await t.step(`${a} ${b}`, () => assert.equal(net(a).overlaps(net(b)), want));
  }
});

Deno.test("IPNet.equals() compares base and prefix", () => {
  assert.equal(net("10.1.0.0/16").equals(net("10.1.0.0/16")), true);
  assert.equal(net("10.1.0.0/16").equals(net("10.1.0.0/17")), false);
  assert.equal(net("10.1.0.0/24").equals(net("10.1.1.0/24")), false);
});

Deno.test("subnetAt(), nextSubnet(), addIP() and isAligned() do subnet arithmetic", () => {
  const n = net("10.1.0.0/16");
  assert.equal(subnetAt(n, 24, 0n).toString(), "10.1.0.0/24");
  assert.equal(subnetAt(n, 24, 255n).toString(), "10.1.255.0/24");
  assert.throws(() => subnetAt(n, 24, 256n), RangeError);
  assert.throws(() => subnetAt(n, 8, 0n), RangeError);
  assert.equal(nextSubnet(net("10.1.255.0/24"))?.toString(), "10.2.0.0/24");
  assert.equal(nextSubnet(net("255.255.255.0/24")), null);
  assert.equal(addIP(parseIPv4("10.1.15.0")!, 1n).toString(), "10.1.15.1");
  assert.throws(() => addIP(parseIPv4("255.255.255.255")!, 1n), RangeError);
  assert.equal(isAligned(parseIPv4("10.1.15.0")!, 24), true);
  assert.equal(isAligned(parseIPv4("10.1.15.128")!, 24), false);
  const v6 = IPNet.mustParse("fd00:1::/48");
  assert.equal(subnetAt(v6, 64, 0xffffn).toString(), "fd00:1:0:ffff::/64");
  assert.equal(nextSubnet(IPNet.mustParse("fd00:1:0:ffff::/64"))?.toString(), "fd00:1:1::/64");
});

Deno.test("parseMAC() and formatMAC() round-trip in lower case", () => {
  const b = parseMAC("C6:d2:32:6F:8f:44");
  assert.deepEqual(b, Uint8Array.from([0xc6, 0xd2, 0x32, 0x6f, 0x8f, 0x44]));
  assert.equal(formatMAC(b!), "c6:d2:32:6f:8f:44");
  assert.equal(formatMAC(Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7])), "00:01:02:03:04:05");
  for (
    const bad of ["c6:d2:32:6f:8f", "c6-d2-32-6f-8f-44", "c6:d2:32:6f:8f:4g", "", "c6d2326f8f44"]
  ) {
    assert.equal(parseMAC(bad), null, bad);
  }
});
