import assert from "node:assert/strict";
import { ip, net } from "../helpers.ts";
import {
  configKey,
  decodeLeaseValue,
  encodeLeaseValue,
  getFold,
  type LeaseAttrs,
  type LeaseSubnets,
  parseSubnetKey,
  subnetKey,
  subnetKeyName,
  subnetsPrefix,
} from "../../lib/lease.ts";

/** IPv4-only attributes (the IPv6 fields null). */
function a4(publicIP: string, backendType: string, backendData: unknown): LeaseAttrs {
  return {
    publicIP: ip(publicIP),
    publicIPv6: null,
    backendType,
    backendData,
    backendV6Data: null,
  };
}

/** Subnets of a key (either may be null). */
function sn(v4: string | null, v6: string | null = null): LeaseSubnets {
  return { subnet: v4 === null ? null : net(v4), ipv6Subnet: v6 === null ? null : net(v6) };
}

Deno.test("subnetKey(), configKey() and subnetsPrefix() build upstream's key layout", () => {
  const subnet = sn("10.1.15.0/24");
  // Upstream's MakeSubnetKey: `&` and the IPv6 subnet as Go prints it (RFC 5952).
  assert.equal(
    subnetKey("/coreos.com/network", sn("10.5.34.0/24", "fc00:0:0:22::/64")),
    "/coreos.com/network/subnets/10.5.34.0-24&fc00:0:0:22::-64",
  );
  // IPv6-only: upstream's empty IPv4 subnet stays in the key.
  assert.equal(
    subnetKey("/p", sn(null, "fc00:0:0:22::/64")),
    "/p/subnets/0.0.0.0-0&fc00:0:0:22::-64",
  );
  assert.equal(subnetKeyName(sn(null, "2001:db8:1:2::/80")), "0.0.0.0-0&2001:db8:1:2::-80");
  assert.equal(
    subnetKey("/coreos.com/network", subnet),
    "/coreos.com/network/subnets/10.1.15.0-24",
  );
  assert.equal(
    subnetKey("/coreos.com/network/", subnet),
    "/coreos.com/network/subnets/10.1.15.0-24",
  );
  assert.equal(configKey("/coreos.com/network"), "/coreos.com/network/config");
  assert.equal(configKey("/x/"), "/x/config");
  assert.equal(subnetsPrefix("/coreos.com/network"), "/coreos.com/network/subnets/");
});

Deno.test("parseSubnetKey() reads <ipv4>-<len> and explains malformed keys", async (t) => {
  const E = "does not end in <ipv4>-<prefixlen>[&<ipv6>-<prefixlen>]";
  const rows: [string, LeaseSubnets | string][] = [
    ["/coreos.com/network/subnets/10.1.15.0-24", sn("10.1.15.0/24")],
    ["/p/subnets/10.1.15.128-25", sn("10.1.15.128/25")],
    ["10.1.15.0-24", sn("10.1.15.0/24")],
    // Written by dual-stack upstream hosts.
    ["/coreos.com/network/subnets/10.5.52.0-24&fc00::-64", sn("10.5.52.0/24", "fc00::/64")],
    [
      "/coreos.com/network/subnets/10.5.34.0-24&fc00:0:0:22::-64",
      sn("10.5.34.0/24", "fc00:0:0:22::/64"),
    ],
    ["/p/subnets/0.0.0.0-0&fc00:0:0:22::-64", sn(null, "fc00:0:0:22::/64")],
    // Alone, 0.0.0.0-0 is the IPv4 network 0.0.0.0/0 (for the peer checks to refuse).
    ["/p/subnets/0.0.0.0-0", sn("0.0.0.0/0")],
    [
      "/p/subnets/10.1.1.0-24&fc00::1-64",
      'key "/p/subnets/10.1.1.0-24&fc00::1-64" has host bits set in its IPv6 subnet',
    ],
    [
      "/p/subnets/10.1.1.0-24&fc00::-129",
      'key "/p/subnets/10.1.1.0-24&fc00::-129" holds no valid IPv6 subnet',
    ],
    [
      "/p/subnets/10.1.1.0-24&fc00:::1-64",
      'key "/p/subnets/10.1.1.0-24&fc00:::1-64" holds no valid IPv6 subnet',
    ],
    // Go's net.IP prints lower case; upstream's pattern takes nothing else.
    ["/p/subnets/10.1.1.0-24&FC00::-64", `key "/p/subnets/10.1.1.0-24&FC00::-64" ${E}`],
    [
      "/p/subnets/10-1-15-0-24",
      'key "/p/subnets/10-1-15-0-24" does not end in <ipv4>-<prefixlen>[&<ipv6>-<prefixlen>]',
    ],
    [
      "/p/subnets/10.1.15.0/24",
      'key "/p/subnets/10.1.15.0/24" does not end in <ipv4>-<prefixlen>[&<ipv6>-<prefixlen>]',
    ],
    ["/p/subnets/", 'key "/p/subnets/" does not end in <ipv4>-<prefixlen>[&<ipv6>-<prefixlen>]'],
    [
      "/p/subnets/10.1.15.0-24x",
      'key "/p/subnets/10.1.15.0-24x" does not end in <ipv4>-<prefixlen>[&<ipv6>-<prefixlen>]',
    ],
    // The address starts the last path segment: extra leading digits are not dropped.
    [
      "/p/subnets/1110.1.15.0-24",
      'key "/p/subnets/1110.1.15.0-24" does not end in <ipv4>-<prefixlen>[&<ipv6>-<prefixlen>]',
    ],
    ["/p/subnets/10.1.300.0-24", 'key "/p/subnets/10.1.300.0-24" holds no valid IPv4 subnet'],
    ["/p/subnets/10.1.15.0-33", 'key "/p/subnets/10.1.15.0-33" holds no valid IPv4 subnet'],
    ["/p/subnets/10.1.15.7-24", 'key "/p/subnets/10.1.15.7-24" has host bits set in its subnet'],
  ];
  for (const [key, want] of rows) {
    await t.step(key, () => assert.deepEqual(parseSubnetKey(key), want));
  }
});

Deno.test("encodeLeaseValue() writes exactly upstream's v3 JSON", async (t) => {
  const rows: [string, LeaseAttrs, string][] = [
    [
      "vxlan",
      a4("192.168.64.3", "vxlan", { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" }),
      '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan",' +
      '"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
    ],
    [
      "host-gw",
      a4("10.0.0.2", "host-gw", null),
      '{"PublicIP":"10.0.0.2","PublicIPv6":null,"BackendType":"host-gw"}',
    ],
    [
      "dual-stack vxlan (upstream's BackendV6Data: the flannel-v6 device's VNI and MAC)",
      {
        publicIP: ip("192.168.64.3"),
        publicIPv6: ip("fd00::3"),
        backendType: "vxlan",
        backendData: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" },
        backendV6Data: { VNI: 1, VtepMAC: "5a:1e:9f:00:11:22" },
      },
      '{"PublicIP":"192.168.64.3","PublicIPv6":"fd00::3","BackendType":"vxlan",' +
      '"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},' +
      '"BackendV6Data":{"VNI":1,"VtepMAC":"5a:1e:9f:00:11:22"}}',
    ],
    [
      "IPv6-only host-gw: PublicIP is upstream's zero address",
      {
        publicIP: null,
        publicIPv6: ip("fd00::4"),
        backendType: "host-gw",
        backendData: null,
        backendV6Data: null,
      },
      '{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::4","BackendType":"host-gw"}',
    ],
    [
      "udp / alloc / aws-vpc",
      a4("10.0.0.3", "", null),
      '{"PublicIP":"10.0.0.3","PublicIPv6":null}',
    ],
  ];
  for (const [name, attrs, want] of rows) {
    await t.step(name, () => {
      assert.equal(encodeLeaseValue(attrs), want);
      assert.deepEqual(decodeLeaseValue(want), attrs);
    });
  }
});

Deno.test("decodeLeaseValue() reads upstream values of every version", async (t) => {
  const rows: [string, string, LeaseAttrs][] = [
    ["v0.4 (v2 API) udp", '{"PublicIP":"10.0.0.4"}', a4("10.0.0.4", "", null)],
    [
      "v0.4 vxlan",
      '{"PublicIP":"10.0.0.5","BackendType":"vxlan","BackendData":{"VtepMAC":"aa:bb:cc:dd:ee:ff"}}',
      a4("10.0.0.5", "vxlan", { VtepMAC: "aa:bb:cc:dd:ee:ff" }),
    ],
    [
      "lower-case names (Go decodes case-insensitively)",
      '{"publicip":"10.0.0.6","backendtype":"host-gw"}',
      a4("10.0.0.6", "host-gw", null),
    ],
    [
      "dual-stack: PublicIPv6 and BackendV6Data",
      '{"PublicIP":"10.0.0.7","PublicIPv6":"fc00::7","BackendType":"vxlan",' +
      '"BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"},"BackendV6Data":{"VNI":1}}',
      {
        publicIP: ip("10.0.0.7"),
        publicIPv6: ip("fc00::7"),
        backendType: "vxlan",
        backendData: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:01" },
        backendV6Data: { VNI: 1 },
      },
    ],
    ["null BackendType", '{"PublicIP":"10.0.0.8","BackendType":null}', a4("10.0.0.8", "", null)],
  ];
  for (const [name, value, want] of rows) {
    await t.step(name, () => assert.deepEqual(decodeLeaseValue(value), want));
  }
});

Deno.test("decodeLeaseValue() names what is wrong with a malformed value", async (t) => {
  const rows: [string, string][] = [
    ["", 'value is not JSON: ""'],
    ["{", 'value is not JSON: "{"'],
    ["x".repeat(200), `value is not JSON: "${"x".repeat(59)}…`],
    [
      JSON.stringify({ PublicIP: "1".repeat(100_000) }),
      `PublicIP "${"1".repeat(59)}… is not an IPv4 address`,
    ],
    [
      JSON.stringify({ PublicIP: "10.0.0.1", PublicIPv6: ":".repeat(100_000) }),
      `PublicIPv6 "${":".repeat(59)}… is not an IPv6 address`,
    ],
    [
      JSON.stringify({ PublicIP: "10.0.0.1", BackendType: ["x".repeat(100_000)] }),
      `BackendType ["${"x".repeat(58)}… is not a string`,
    ],
    ["[]", "value is not a JSON object"],
    ["null", "value is not a JSON object"],
    ['"10.0.0.1"', "value is not a JSON object"],
    ["{}", "PublicIP null is not an IPv4 address"],
    ['{"PublicIP":null}', "PublicIP null is not an IPv4 address"],
    ['{"PublicIP":"10.0.0"}', 'PublicIP "10.0.0" is not an IPv4 address'],
    ['{"PublicIP":167772161}', "PublicIP 167772161 is not an IPv4 address"],
    ['{"PublicIP":"10.0.0.1","BackendType":5}', "BackendType 5 is not a string"],
    [
      '{"PublicIP":"10.0.0.1","PublicIPv6":"10.0.0.2"}',
      'PublicIPv6 "10.0.0.2" is not an IPv6 address',
    ],
    ['{"PublicIP":"10.0.0.1","PublicIPv6":6}', "PublicIPv6 6 is not an IPv6 address"],
  ];
  for (const [value, want] of rows) {
    await t.step(JSON.stringify(value.slice(0, 40)), () => {
      assert.equal(decodeLeaseValue(value), want);
    });
  }
});

Deno.test("parseSubnetKey() quotes a huge key short", () => {
  const got = parseSubnetKey("/coreos.com/network/subnets/" + "9".repeat(100_000));
  assert.equal(typeof got, "string");
  assert.ok((got as string).length < 250, `${(got as string).length} characters`);
  assert.match(got as string, /^key "\/coreos\.com\/network\/subnets\/9+… does not end in/);
});

Deno.test("getFold() prefers the exact name, then any case", () => {
  assert.equal(getFold({ Network: 1, network: 2 }, "network"), 2);
  assert.equal(getFold({ NETWORK: 1 }, "Network"), 1);
  assert.equal(getFold({ Net: 1 }, "Network"), undefined);
  assert.equal(getFold(JSON.parse('{"__proto__":7}'), "__PROTO__"), 7);
  assert.equal(getFold({}, "toString"), undefined);
});
