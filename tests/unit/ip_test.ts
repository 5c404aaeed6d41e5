import assert from "node:assert/strict";
import {
  contains,
  containsNet,
  formatCIDR,
  formatIPv4,
  formatMAC,
  type IPNet,
  netmask,
  overlaps,
  parseCIDR,
  parseIPv4,
  parseMAC,
  prefixSize,
  sameNet,
} from "../../lib/ip.ts";

function net(s: string): IPNet {
  const n = parseCIDR(s);
  if (typeof n === "string") throw new Error(n);
  return n;
}

Deno.test("parseIPv4() reads dotted quads as host-order u32", async (t) => {
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
    await t.step(JSON.stringify(text), () => assert.equal(parseIPv4(text), want));
  }
});

Deno.test("formatIPv4() writes dotted quads, also for values past 2^31", () => {
  assert.equal(formatIPv4(0), "0.0.0.0");
  assert.equal(formatIPv4(0x0a010f00), "10.1.15.0");
  assert.equal(formatIPv4(0xffffffff), "255.255.255.255");
  assert.equal(formatIPv4(0xc0a8010a | 0), "192.168.1.10"); // a negative int32 still prints
  for (const s of ["1.2.3.4", "172.31.255.254", "128.0.0.1"]) {
    assert.equal(formatIPv4(parseIPv4(s)!), s);
  }
});

Deno.test("netmask() and prefixSize() cover /0 to /32", () => {
  assert.equal(netmask(0), 0);
  assert.equal(netmask(1), 0x80000000);
  assert.equal(netmask(8), 0xff000000);
  assert.equal(netmask(24), 0xffffff00);
  assert.equal(netmask(31), 0xfffffffe);
  assert.equal(netmask(32), 0xffffffff);
  assert.equal(prefixSize(0), 2 ** 32);
  assert.equal(prefixSize(16), 65536);
  assert.equal(prefixSize(24), 256);
  assert.equal(prefixSize(32), 1);
});

Deno.test("parseCIDR() reads networks and explains what is wrong", async (t) => {
  const rows: [string, boolean, IPNet | string][] = [
    ["10.1.0.0/16", true, { ip: 0x0a010000, prefix: 16 }],
    ["0.0.0.0/0", true, { ip: 0, prefix: 0 }],
    ["10.1.2.3/32", true, { ip: 0x0a010203, prefix: 32 }],
    ["10.1.2.3/16", false, { ip: 0x0a010000, prefix: 16 }],
    ["10.1.2.3/16", true, '"10.1.2.3/16" has host bits set (network address is 10.1.0.0/16)'],
    ["10.1.0.0", true, '"10.1.0.0" is not a CIDR (expected a.b.c.d/len)'],
    ["10.1.0.0/33", true, '"10.1.0.0/33" is not an IPv4 CIDR'],
    ["10.1.0.0/", true, '"10.1.0.0/" is not an IPv4 CIDR'],
    ["10.1.0.0/-1", true, '"10.1.0.0/-1" is not an IPv4 CIDR'],
    ["10.1.0.0/16/8", true, '"10.1.0.0/16/8" is not an IPv4 CIDR'],
    ["10.1.0/16", true, '"10.1.0/16" is not an IPv4 CIDR'],
  ];
  for (const [text, strict, want] of rows) {
    await t.step(`${text} strict=${strict}`, () => assert.deepEqual(parseCIDR(text, strict), want));
  }
});

Deno.test("formatCIDR() round-trips parseCIDR()", () => {
  for (const s of ["10.1.0.0/16", "0.0.0.0/0", "255.255.255.255/32", "10.1.15.128/25"]) {
    assert.equal(formatCIDR(net(s)), s);
  }
});

Deno.test("contains() and containsNet() test membership", () => {
  const n = net("10.1.0.0/16");
  assert.equal(contains(n, parseIPv4("10.1.0.0")!), true);
  assert.equal(contains(n, parseIPv4("10.1.255.255")!), true);
  assert.equal(contains(n, parseIPv4("10.2.0.0")!), false);
  assert.equal(contains(n, parseIPv4("10.0.255.255")!), false);
  assert.equal(contains(net("0.0.0.0/0"), 0xffffffff), true);
  assert.equal(containsNet(n, net("10.1.15.0/24")), true);
  assert.equal(containsNet(n, n), true);
  assert.equal(containsNet(n, net("10.0.0.0/8")), false); // wider
  assert.equal(containsNet(n, net("10.2.15.0/24")), false);
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
    await t.step(`${a} ${b}`, () => assert.equal(overlaps(net(a), net(b)), want));
  }
});

Deno.test("sameNet() compares base and prefix", () => {
  assert.equal(sameNet(net("10.1.0.0/16"), net("10.1.0.0/16")), true);
  assert.equal(sameNet(net("10.1.0.0/16"), net("10.1.0.0/17")), false);
  assert.equal(sameNet(net("10.1.0.0/24"), net("10.1.1.0/24")), false);
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
