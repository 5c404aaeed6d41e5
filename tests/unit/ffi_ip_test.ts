import assert from "node:assert/strict";
import { IP, IPNet } from "../../ffi/ip.ts";

Deno.test("IP.parse() reads IPv6 text and toString() writes RFC 5952 canonical form", async (t) => {
  // [input, canonical text or null when rejected]
  const rows: [string, string | null][] = [
    ["::", "::"],
    ["::1", "::1"],
    ["1::", "1::"],
    ["2001:db8::1", "2001:db8::1"],
    ["2001:DB8::1", "2001:db8::1"], // lower case (RFC 5952 4.3)
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"], // leading zeros dropped (4.1)
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first of two equal runs (4.2.3)
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // one zero group is not compressed (4.2.2)
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"], // the longest run is compressed (4.2.3)
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"], // "::" for one group, printed without it
    ["::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"],
    ["fe80::1:2", "fe80::1:2"],
    ["::ffff:10.1.2.3", "::ffff:10.1.2.3"], // IPv4-mapped keeps the dotted quad (5)
    ["::ffff:a01:203", "::ffff:10.1.2.3"],
    ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"], // an embedded quad elsewhere prints as hex
    ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"],
    ["fe80::1%eth0", null], // zone ids are refused
    ["fe80::1%1", null],
    [":::", null],
    ["1::2::3", null], // two "::"
    ["1:2:3:4:5:6:7:8:9", null], // nine groups
    ["1:2:3:4:5:6:7", null], // seven groups, no "::"
    ["1:2:3:4:5:6:7::8", null], // "::" standing for no group
    ["12345::", null], // five hex digits
    ["g::1", null],
    [":1::", null],
    ["1:", null],
    ["::1.2.3", null],
    ["::1.2.3.4:5", null], // a dotted quad only last
    ["::01.2.3.4", null],
    [" ::1", null],
    ["", null],
  ];
  for (const [text, want] of rows) {
    await t.step(JSON.stringify(text), () => {
      const ip = IP.parse(text);
      assert.equal(ip?.toString() ?? null, want);
      if (ip) {
        assert.equal(ip.family, 6);
        assert.equal(ip.bytes.length, 16);
        assert.ok(IP.parse(ip.toString())!.equals(ip), "canonical text reads back");
      }
    });
  }
});

Deno.test("IP.parse() reads dotted quads for IPv4", async (t) => {
  const rows: [string, string | null][] = [
    ["0.0.0.0", "0.0.0.0"],
    ["10.1.15.0", "10.1.15.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["256.0.0.1", null],
    ["1.2.3", null],
    ["1.2.3.4.5", null],
    ["01.2.3.4", null],
    ["1.2.3.-4", null],
    ["1.2.3.a", null],
    ["1.2.3.4/24", null],
    ["1..2.3", null],
    ["a.b.c.d", null],
    [" 1.2.3.4", null],
    ["", null],
  ];
  for (const [text, want] of rows) {
    await t.step(JSON.stringify(text), () => {
      const ip = IP.parse(text);
      assert.equal(ip?.toString() ?? null, want);
      if (ip) assert.equal(ip.family, 4);
    });
  }
});

Deno.test("IP converts to and from bytes, bigint and u32", () => {
  const a = IP.mustParse("10.1.2.3");
  assert.deepEqual(Array.from(a.bytes), [10, 1, 2, 3]);
  assert.equal(a.toU32(), 0x0a010203);
  assert.equal(a.toBigInt(), 0x0a010203n);
  assert.ok(IP.fromU32(0x0a010203).equals(a));
  assert.ok(IP.fromBigInt(0x0a010203n, 4).equals(a));
  assert.ok(IP.fromBytes(Uint8Array.from([10, 1, 2, 3])).equals(a));
  const b = IP.mustParse("2001:db8::1");
  assert.equal(b.toBigInt(), 0x20010db8000000000000000000000001n);
  assert.ok(IP.fromBigInt(b.toBigInt(), 6).equals(b));
  assert.equal(IP.fromBigInt(1n, 6).toString(), "::1");
  assert.throws(() => b.toU32(), /Not an IPv4 address: 2001:db8::1/);
  assert.throws(() => IP.fromBigInt(1n << 32n, 4), RangeError);
  assert.throws(() => IP.fromBigInt(-1n, 6), RangeError);
  assert.throws(() => IP.fromBytes(new Uint8Array(5)), /Invalid IP address: 5 bytes/);
  assert.throws(() => IP.mustParse("nope"), /^TypeError: Invalid IP address: nope$/);
  // ::ffff:10.1.2.3 is an IPv6 address: never equal to the IPv4 one.
  assert.equal(IP.mustParse("::ffff:10.1.2.3").equals(a), false);
  assert.ok(a.compare(b) < 0);
  assert.equal(JSON.stringify({ a, b }), '{"a":"10.1.2.3","b":"2001:db8::1"}');
});

Deno.test("IPNet parses both families strictly and does set tests", async (t) => {
  const rows: [string, string][] = [
    ["10.1.0.0/16", "10.1.0.0/16"],
    ["2001:db8::/32", "2001:db8::/32"],
    ["2001:DB8:0::/48", "2001:db8::/48"],
    ["::/0", "::/0"],
    ["::1/128", "::1/128"],
    ["2001:db8::1/64", '"2001:db8::1/64" has host bits set (network address is 2001:db8::/64)'],
    ["2001:db8::/129", '"2001:db8::/129" is not a CIDR'],
    ["10.0.0.0/33", '"10.0.0.0/33" is not a CIDR'],
    ["fe80::%eth0/64", '"fe80::%eth0/64" is not a CIDR'],
    ["2001:db8::", '"2001:db8::" is not a CIDR (expected address/len)'],
  ];
  for (const [text, want] of rows) {
    await t.step(text, () => assert.equal(String(IPNet.parse(text)), want));
  }
  const n = IPNet.mustParse("fd00:1::/48");
  assert.ok(n.contains(IP.mustParse("fd00:1:0:ffff::1")));
  assert.ok(!n.contains(IP.mustParse("fd00:2::")));
  assert.ok(!n.contains(IP.mustParse("10.0.0.1"))); // other family
  assert.ok(n.containsNet(IPNet.mustParse("fd00:1:0:2::/64")));
  assert.ok(!n.containsNet(IPNet.mustParse("fd00::/16")));
  assert.ok(n.overlaps(IPNet.mustParse("fd00::/16")));
  assert.ok(!n.overlaps(IPNet.mustParse("0.0.0.0/0")));
  assert.ok(n.equals(IPNet.mustParse("fd00:1::/48")));
  assert.equal(n.size(), 1n << 80n);
  assert.equal(n.last().toString(), "fd00:1:0:ffff:ffff:ffff:ffff:ffff");
  assert.equal(IPNet.of(IP.mustParse("10.1.2.3"), 16).toString(), "10.1.0.0/16");
  assert.throws(() => new IPNet(IP.mustParse("10.1.2.3"), 16), /has host bits set/);
  assert.throws(() => new IPNet(IP.mustParse("::"), 129), RangeError);
  assert.equal(IPNet.parse("10.1.2.3/16", false)?.toString(), "10.1.0.0/16");
});
