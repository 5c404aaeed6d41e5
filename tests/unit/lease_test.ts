import assert from "node:assert/strict";
import { IPNet } from "../../lib/ip.ts";
import { ip } from "../helpers.ts";
import {
  configKey,
  decodeLeaseValue,
  encodeLeaseValue,
  getFold,
  type LeaseAttrs,
  parseSubnetKey,
  subnetKey,
  subnetsPrefix,
} from "../../lib/lease.ts";

Deno.test("subnetKey(), configKey() and subnetsPrefix() build upstream's key layout", () => {
  const subnet = new IPNet(ip("10.1.15.0"), 24);
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
  const rows: [string, IPNet | string][] = [
    ["/coreos.com/network/subnets/10.1.15.0-24", new IPNet(ip("10.1.15.0"), 24)],
    ["/p/subnets/10.1.15.128-25", new IPNet(ip("10.1.15.128"), 25)],
    ["10.1.15.0-24", new IPNet(ip("10.1.15.0"), 24)],
    // Written by dual-stack upstream hosts: the IPv4 half counts.
    ["/coreos.com/network/subnets/10.5.52.0-24&fc00::-64", new IPNet(ip("10.5.52.0"), 24)],
    [
      "/p/subnets/10-1-15-0-24",
      'key "/p/subnets/10-1-15-0-24" does not end in <ipv4>-<prefixlen>',
    ],
    ["/p/subnets/10.1.15.0/24", 'key "/p/subnets/10.1.15.0/24" does not end in <ipv4>-<prefixlen>'],
    ["/p/subnets/", 'key "/p/subnets/" does not end in <ipv4>-<prefixlen>'],
    [
      "/p/subnets/10.1.15.0-24x",
      'key "/p/subnets/10.1.15.0-24x" does not end in <ipv4>-<prefixlen>',
    ],
    // The address starts the last path segment: extra leading digits are not dropped.
    [
      "/p/subnets/1110.1.15.0-24",
      'key "/p/subnets/1110.1.15.0-24" does not end in <ipv4>-<prefixlen>',
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
      {
        publicIP: ip("192.168.64.3"),
        backendType: "vxlan",
        backendData: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" },
      },
      '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan",' +
      '"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
    ],
    [
      "host-gw",
      { publicIP: ip("10.0.0.2"), backendType: "host-gw", backendData: null },
      '{"PublicIP":"10.0.0.2","PublicIPv6":null,"BackendType":"host-gw"}',
    ],
    [
      "udp / alloc / aws-vpc",
      { publicIP: ip("10.0.0.3"), backendType: "", backendData: null },
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
    ["v0.4 (v2 API) udp", '{"PublicIP":"10.0.0.4"}', {
      publicIP: ip("10.0.0.4"),
      backendType: "",
      backendData: null,
    }],
    [
      "v0.4 vxlan",
      '{"PublicIP":"10.0.0.5","BackendType":"vxlan","BackendData":{"VtepMAC":"aa:bb:cc:dd:ee:ff"}}',
      {
        publicIP: ip("10.0.0.5"),
        backendType: "vxlan",
        backendData: { VtepMAC: "aa:bb:cc:dd:ee:ff" },
      },
    ],
    [
      "lower-case names (Go decodes case-insensitively)",
      '{"publicip":"10.0.0.6","backendtype":"host-gw"}',
      { publicIP: ip("10.0.0.6"), backendType: "host-gw", backendData: null },
    ],
    [
      "dual-stack extras are ignored",
      '{"PublicIP":"10.0.0.7","PublicIPv6":"fc00::7","BackendType":"vxlan",' +
      '"BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"},"BackendV6Data":{"VNI":1}}',
      {
        publicIP: ip("10.0.0.7"),
        backendType: "vxlan",
        backendData: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:01" },
      },
    ],
    ["null BackendType", '{"PublicIP":"10.0.0.8","BackendType":null}', {
      publicIP: ip("10.0.0.8"),
      backendType: "",
      backendData: null,
    }],
  ];
  for (const [name, value, want] of rows) {
    await t.step(name, () => assert.deepEqual(decodeLeaseValue(value), want));
  }
});

Deno.test("decodeLeaseValue() names what is wrong with a malformed value", async (t) => {
  const rows: [string, string][] = [
    ["", 'value is not JSON: ""'],
    ["{", 'value is not JSON: "{"'],
    ["x".repeat(200), `value is not JSON: "${"x".repeat(80)}"`],
    ["[]", "value is not a JSON object"],
    ["null", "value is not a JSON object"],
    ['"10.0.0.1"', "value is not a JSON object"],
    ["{}", "PublicIP null is not an IPv4 address"],
    ['{"PublicIP":null}', "PublicIP null is not an IPv4 address"],
    ['{"PublicIP":"10.0.0"}', 'PublicIP "10.0.0" is not an IPv4 address'],
    ['{"PublicIP":167772161}', "PublicIP 167772161 is not an IPv4 address"],
    ['{"PublicIP":"10.0.0.1","BackendType":5}', "BackendType 5 is not a string"],
  ];
  for (const [value, want] of rows) {
    await t.step(JSON.stringify(value.slice(0, 40)), () => {
      assert.equal(decodeLeaseValue(value), want);
    });
  }
});

Deno.test("getFold() prefers the exact name, then any case", () => {
  assert.equal(getFold({ Network: 1, network: 2 }, "network"), 2);
  assert.equal(getFold({ NETWORK: 1 }, "Network"), 1);
  assert.equal(getFold({ Net: 1 }, "Network"), undefined);
  assert.equal(getFold(JSON.parse('{"__proto__":7}'), "__PROTO__"), 7);
  assert.equal(getFold({}, "toString"), undefined);
});
