import assert from "node:assert/strict";
import { ConfigError, parseNetworkConfig } from "../../lib/config.ts";

const V4 = '"Network":"10.1.0.0/16"';
const VX = '"Backend":{"Type":"vxlan"}';

interface Good6 {
  name: string;
  json: string;
  v4: boolean;
  network: string;
  subnetLen: number;
  min: string;
  max: string;
}

const GOOD: Good6[] = [
  {
    name: "a /48 gets /64 subnets, the first skipped",
    json: `{${V4},"EnableIPv6":true,"IPv6Network":"fc00::/48",${VX}}`,
    v4: true,
    network: "fc00::/48",
    subnetLen: 64,
    min: "fc00:0:0:1::",
    max: "fc00:0:0:ffff::",
  },
  {
    name: "a /62 still gets /64 subnets",
    json: `{${V4},"EnableIPv6":true,"IPv6Network":"fc00:0:0:4::/62",${VX}}`,
    v4: true,
    network: "fc00:0:0:4::/62",
    subnetLen: 64,
    min: "fc00:0:0:5::",
    max: "fc00:0:0:7::",
  },
  {
    name: "a /63 is cut in four (/65)",
    json: `{${V4},"EnableIPv6":true,"IPv6Network":"fc00::/63",${VX}}`,
    v4: true,
    network: "fc00::/63",
    subnetLen: 65,
    min: "fc00::8000:0:0:0",
    max: "fc00:0:0:1:8000::",
  },
  {
    name: "a /124, the smallest, gets /126 subnets",
    json: `{${V4},"EnableIPv6":true,"IPv6Network":"fc00::10/124",${VX}}`,
    v4: true,
    network: "fc00::10/124",
    subnetLen: 126,
    min: "fc00::14",
    max: "fc00::1c",
  },
  {
    name: "an explicit IPv6SubnetLen, and 0 means the default",
    json: `{${V4},"EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":80,${VX}}`,
    v4: true,
    network: "fc00::/48",
    subnetLen: 80,
    min: "fc00::1:0:0:0",
    max: "fc00:0:0:ffff:ffff::",
  },
  {
    name: "IPv6SubnetLen 0 is Go's zero value: the default",
    json: `{${V4},"EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":0,${VX}}`,
    v4: true,
    network: "fc00::/48",
    subnetLen: 64,
    min: "fc00:0:0:1::",
    max: "fc00:0:0:ffff::",
  },
  {
    name: "IPv6SubnetMin and IPv6SubnetMax narrow the range (any text form)",
    json:
      `{${V4},"EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetMin":"FC00:0:0:0010::","IPv6SubnetMax":"fc00:0000:0000:0020:0:0:0:0",${VX}}`,
    v4: true,
    network: "fc00::/48",
    subnetLen: 64,
    min: "fc00:0:0:10::",
    max: "fc00:0:0:20::",
  },
  {
    name: "IPv6-only: EnableIPv4 false needs no Network",
    json: `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48",${VX}}`,
    v4: false,
    network: "fc00::/48",
    subnetLen: 64,
    min: "fc00:0:0:1::",
    max: "fc00:0:0:ffff::",
  },
  {
    name: "keys match case-insensitively, as Go's encoding/json",
    json: `{${V4},"enableipv6":true,"ipv6network":"fc00::/48","IPV6SUBNETLEN":72,${VX}}`,
    v4: true,
    network: "fc00::/48",
    subnetLen: 72,
    min: "fc00::100:0:0:0",
    max: "fc00:0:0:ffff:ff00::",
  },
  {
    name: "host-gw and alloc take IPv6 too",
    json: `{${V4},"EnableIPv6":true,"IPv6Network":"fd00:1::/64","Backend":{"Type":"host-gw"}}`,
    v4: true,
    network: "fd00:1::/64",
    subnetLen: 66,
    min: "fd00:1:0:0:4000::",
    max: "fd00:1:0:0:c000::",
  },
];

Deno.test("IPv6 config: defaults and valid configs", async (t) => {
  for (const g of GOOD) {
    await t.step(g.name, () => {
      const c = parseNetworkConfig(g.json);
      assert.ok(c.ipv6, "ipv6 range");
      assert.equal(c.ipv6.network.toString(), g.network);
      assert.equal(c.ipv6.subnetLen, g.subnetLen);
      assert.equal(c.ipv6.subnetMin.toString(), g.min);
      assert.equal(c.ipv6.subnetMax.toString(), g.max);
      assert.equal(c.ipv6.network.family, 6);
      assert.equal(c.ipv4 !== null, g.v4);
    });
  }
});

Deno.test("IPv6 config: EnableIPv6 defaults to false and then the IPv6 keys are ignored", () => {
  const c = parseNetworkConfig(`{${V4},"IPv6Network":"not a network","IPv6SubnetLen":300}`);
  assert.equal(c.ipv6, null);
  assert.equal(c.ipv4?.network.toString(), "10.1.0.0/16");
  const d = parseNetworkConfig(`{${V4},"EnableIPv6":false,"IPv6Network":"fc00::/48"}`);
  assert.equal(d.ipv6, null);
});

Deno.test("IPv6 config: alloc leases both families", () => {
  const c = parseNetworkConfig(
    `{${V4},"EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"alloc"}}`,
  );
  assert.equal(c.backend.type, "alloc");
  assert.ok(c.ipv4 && c.ipv6);
});

interface Bad6 {
  json: string;
  /** The exact message. */
  message: string;
}

const E6 = '"EnableIPv6":true';
const BAD: Bad6[] = [
  {
    json: `{${V4},${E6},"IPv6Network":"::/64",${VX}}`,
    message:
      'IPv6Network "::/64" overlaps ::/128 (unspecified): choose a unicast range such as fc00::/7',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"::/0",${VX}}`,
    message:
      'IPv6Network "::/0" overlaps ::/128 (unspecified): choose a unicast range such as fc00::/7',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"::/120",${VX}}`,
    message:
      'IPv6Network "::/120" overlaps ::/128 (unspecified): choose a unicast range such as fc00::/7',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fe80::/64",${VX}}`,
    message:
      'IPv6Network "fe80::/64" overlaps fe80::/10 (link-local): choose a unicast range such as fc00::/7',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"ff02::/16",${VX}}`,
    message:
      'IPv6Network "ff02::/16" overlaps ff00::/8 (multicast): choose a unicast range such as fc00::/7',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"::ffff:0:0/104",${VX}}`,
    message:
      'IPv6Network "::ffff:0:0/104" overlaps ::ffff:0.0.0.0/96 (IPv4-mapped): choose a unicast range such as fc00::/7',
  },
  {
    json: `{${V4},${E6},${VX}}`,
    message: "IPv6Network is missing: it is required when EnableIPv6 is true",
  },
  {
    json: `{${V4},${E6},"IPv6Network":null,${VX}}`,
    message: "IPv6Network is missing: it is required when EnableIPv6 is true",
  },
  {
    json: `{${V4},${E6},"IPv6Network":48,${VX}}`,
    message: "IPv6Network 48 is not a string",
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::",${VX}}`,
    message: 'IPv6Network "fc00::" is not a CIDR (expected address/len)',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/129",${VX}}`,
    message: 'IPv6Network "fc00::/129" is not a CIDR',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00:::1/64",${VX}}`,
    message: 'IPv6Network "fc00:::1/64" is not a CIDR',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::1/48",${VX}}`,
    message: 'IPv6Network "fc00::1/48" has host bits set (network address is fc00::/48)',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"10.2.0.0/16",${VX}}`,
    message: 'IPv6Network "10.2.0.0/16" is not an IPv6 CIDR',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/125",${VX}}`,
    message: 'IPv6Network "fc00::/125" is too small: the prefix must be /124 or shorter',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/48","IPv6SubnetLen":127,${VX}}`,
    message: "IPv6SubnetLen 127 is not between 50 and 126",
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/48","IPv6SubnetLen":49,${VX}}`,
    message: "IPv6SubnetLen 49 is not between 50 and 126",
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/48","IPv6SubnetLen":64.5,${VX}}`,
    message: "IPv6SubnetLen 64.5 is not an integer",
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/48","IPv6SubnetLen":"64",${VX}}`,
    message: 'IPv6SubnetLen "64" is not an integer',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/48","IPv6SubnetMin":"fc01::",${VX}}`,
    message: "IPv6SubnetMin fc01:: is not inside IPv6Network fc00::/48",
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/48","IPv6SubnetMax":"fc00:0:0:5::1",${VX}}`,
    message: "IPv6SubnetMax fc00:0:0:5::1 is not aligned to IPv6SubnetLen 64",
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/48","IPv6SubnetMin":"10.1.0.0",${VX}}`,
    message: 'IPv6SubnetMin "10.1.0.0" is not an IPv6 address',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/48","IPv6SubnetMax":7,${VX}}`,
    message: "IPv6SubnetMax 7 is not a string",
  },
  {
    json:
      `{${V4},${E6},"IPv6Network":"fc00::/48","IPv6SubnetMin":"fc00:0:0:9::","IPv6SubnetMax":"fc00:0:0:8::",${VX}}`,
    message: "IPv6SubnetMin fc00:0:0:9:: is greater than IPv6SubnetMax fc00:0:0:8::",
  },
  {
    json: `{${V4},"EnableIPv6":"yes","IPv6Network":"fc00::/48",${VX}}`,
    message: 'EnableIPv6 "yes" is not a boolean',
  },
  {
    json: `{${V4},"EnableIPv4":1,${VX}}`,
    message: "EnableIPv4 1 is not a boolean",
  },
  {
    json: `{${V4},"EnableIPv4":false,${VX}}`,
    message: "EnableIPv4 and EnableIPv6 are both false: no family to run",
  },
  {
    json: `{"EnableIPv4":true,${E6},"IPv6Network":"fc00::/48",${VX}}`,
    message: "Network is missing: it is required (or set EnableIPv4 false)",
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/48"}`,
    message:
      'Backend.Type "udp" does not support EnableIPv6 true (IPv4 only, as upstream): use vxlan, host-gw or alloc',
  },
  {
    json: `{${V4},${E6},"IPv6Network":"fc00::/48","Backend":{"Type":"aws-vpc"}}`,
    message:
      'Backend.Type "aws-vpc" does not support EnableIPv6 true (IPv4 only, as upstream): use vxlan, host-gw or alloc',
  },
  {
    json: `{"EnableIPv4":false,${E6},"IPv6Network":"fc00::/48","Backend":{"Type":"udp"}}`,
    message:
      'Backend.Type "udp" does not support EnableIPv6 true (IPv4 only, as upstream): use vxlan, host-gw or alloc',
  },
];

Deno.test("IPv6 config: bad configs are refused naming the key and the value", async (t) => {
  for (const b of BAD) {
    await t.step(b.json, () => {
      assert.throws(() => parseNetworkConfig(b.json), (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.equal(e.message, b.message);
        return true;
      });
    });
  }
  assert.ok(BAD.length + GOOD.length >= 20);
});
