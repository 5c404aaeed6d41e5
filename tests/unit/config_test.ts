import assert from "node:assert/strict";
import { type BackendConfig, ConfigError, parseNetworkConfig } from "../../lib/config.ts";

interface Good {
  name: string;
  json: unknown;
  network: string;
  subnetLen: number;
  min: string;
  max: string;
  backend: BackendConfig;
}

const UDP_DEFAULT: BackendConfig = { type: "udp", port: 8285, offload: true };
const VXLAN_DEFAULT: BackendConfig = {
  type: "vxlan",
  vni: 1,
  port: 8472,
  mtu: null,
  directRouting: false,
  learning: false,
  gbp: false,
};

const GOOD: Good[] = [
  {
    name: "a /16 alone gets /24 subnets, the first skipped, udp",
    json: { Network: "10.1.0.0/16" },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.1.0",
    max: "10.1.255.0",
    backend: UDP_DEFAULT,
  },
  {
    name: "a /24 network is halved: one usable /25",
    json: { Network: "192.168.7.0/24" },
    network: "192.168.7.0/24",
    subnetLen: 25,
    min: "192.168.7.128",
    max: "192.168.7.128",
    backend: UDP_DEFAULT,
  },
  {
    name: "a /26 network gets /27 subnets",
    json: { Network: "10.0.0.64/26" },
    network: "10.0.0.64/26",
    subnetLen: 27,
    min: "10.0.0.96",
    max: "10.0.0.96",
    backend: UDP_DEFAULT,
  },
  {
    name: "a /23 network still defaults to /24",
    json: { Network: "10.0.2.0/23" },
    network: "10.0.2.0/23",
    subnetLen: 24,
    min: "10.0.3.0",
    max: "10.0.3.0",
    backend: UDP_DEFAULT,
  },
  {
    name: "a /29 network gets /30 subnets",
    json: { Network: "10.9.9.8/29" },
    network: "10.9.9.8/29",
    subnetLen: 30,
    min: "10.9.9.12",
    max: "10.9.9.12",
    backend: UDP_DEFAULT,
  },
  {
    name: "the README example with udp Port",
    json: {
      Network: "10.0.0.0/8",
      SubnetLen: 20,
      SubnetMin: "10.10.0.0",
      SubnetMax: "10.99.0.0",
      Backend: { Type: "udp", Port: 7890 },
    },
    network: "10.0.0.0/8",
    subnetLen: 20,
    min: "10.10.0.0",
    max: "10.99.0.0",
    backend: { type: "udp", port: 7890, offload: true },
  },
  {
    name: "key names match case-insensitively and Type is lower-cased",
    json: { network: "10.5.0.0/16", SUBNETLEN: 26, backend: { TYPE: "VXLAN", vni: 42 } },
    network: "10.5.0.0/16",
    subnetLen: 26,
    min: "10.5.0.64",
    max: "10.5.255.192",
    backend: { ...VXLAN_DEFAULT, vni: 42 },
  },
  {
    name: "vxlan with every key set",
    json: {
      Network: "10.1.0.0/16",
      Backend: {
        Type: "vxlan",
        VNI: 16777215,
        Port: 4789,
        MTU: 1400,
        DirectRouting: true,
        Learning: true,
        GBP: true,
      },
    },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.1.0",
    max: "10.1.255.0",
    backend: {
      type: "vxlan",
      vni: 16777215,
      port: 4789,
      mtu: 1400,
      directRouting: true,
      learning: true,
      gbp: true,
    },
  },
  {
    name: "vxlan defaults",
    json: { Network: "10.1.0.0/16", Backend: { Type: "vxlan" } },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.1.0",
    max: "10.1.255.0",
    backend: VXLAN_DEFAULT,
  },
  {
    name: "host-gw",
    json: { Network: "10.1.0.0/16", Backend: { Type: "host-gw" } },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.1.0",
    max: "10.1.255.0",
    backend: { type: "host-gw" },
  },
  {
    name: "alloc ignores backend keys it does not know",
    json: { Network: "10.1.0.0/16", Backend: { Type: "alloc", Port: "whatever" } },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.1.0",
    max: "10.1.255.0",
    backend: { type: "alloc" },
  },
  {
    name: "aws-vpc with a route table",
    json: { Network: "10.1.0.0/16", Backend: { Type: "aws-vpc", RouteTableID: "rtb-0a1b2c" } },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.1.0",
    max: "10.1.255.0",
    backend: { type: "aws-vpc", routeTableID: "rtb-0a1b2c" },
  },
  {
    name: "aws-vpc without a route table",
    json: { Network: "10.1.0.0/16", Backend: { Type: "aws-vpc" } },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.1.0",
    max: "10.1.255.0",
    backend: { type: "aws-vpc", routeTableID: null },
  },
  {
    name: "udp with offloads off",
    json: { Network: "10.1.0.0/16", Backend: { Type: "udp", Offload: false } },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.1.0",
    max: "10.1.255.0",
    backend: { type: "udp", port: 8285, offload: false },
  },
  {
    name: "unknown keys are ignored, null and SubnetLen 0 mean absent",
    json: { Network: "10.1.0.0/16", SubnetLen: 0, SubnetMin: null, Backend: null, Foo: [1] },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.1.0",
    max: "10.1.255.0",
    backend: UDP_DEFAULT,
  },
  {
    name: "SubnetMin alone keeps the default SubnetMax, and may be the first subnet",
    json: { Network: "10.1.0.0/16", SubnetMin: "10.1.0.0" },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.0.0",
    max: "10.1.255.0",
    backend: UDP_DEFAULT,
  },
  {
    name: "SubnetMax alone keeps the default SubnetMin; Min == Max is allowed",
    json: { Network: "10.1.0.0/16", SubnetMax: "10.1.1.0" },
    network: "10.1.0.0/16",
    subnetLen: 24,
    min: "10.1.1.0",
    max: "10.1.1.0",
    backend: UDP_DEFAULT,
  },
  {
    name: "a /2 network (the whole space is refused: it holds 127.0.0.0/8)",
    json: { Network: "128.0.0.0/2" },
    network: "128.0.0.0/2",
    subnetLen: 24,
    min: "128.0.1.0",
    max: "191.255.255.0",
    backend: UDP_DEFAULT,
  },
  {
    name: "a /12 with /30 subnets",
    json: { Network: "172.16.0.0/12", SubnetLen: 30 },
    network: "172.16.0.0/12",
    subnetLen: 30,
    min: "172.16.0.4",
    max: "172.31.255.252",
    backend: UDP_DEFAULT,
  },
];

/** Bad configs: the exact message, plus the key and value it must name. */
const BAD: { json: string; key: string; value: string; message: string }[] = [
  {
    json: '{"Network":"127.0.0.0/8"}',
    key: "Network",
    value: '"127.0.0.0/8"',
    message:
      'Network "127.0.0.0/8" overlaps 127.0.0.0/8 (loopback): choose a unicast range such as 10.0.0.0/8',
  },
  {
    json: '{"Network":"127.0.92.0/24"}',
    key: "Network",
    value: '"127.0.92.0/24"',
    message:
      'Network "127.0.92.0/24" overlaps 127.0.0.0/8 (loopback): choose a unicast range such as 10.0.0.0/8',
  },
  {
    json: '{"Network":"224.0.0.0/4"}',
    key: "Network",
    value: '"224.0.0.0/4"',
    message:
      'Network "224.0.0.0/4" overlaps 224.0.0.0/4 (multicast): choose a unicast range such as 10.0.0.0/8',
  },
  {
    json: '{"Network":"239.1.0.0/16"}',
    key: "Network",
    value: '"239.1.0.0/16"',
    message:
      'Network "239.1.0.0/16" overlaps 224.0.0.0/4 (multicast): choose a unicast range such as 10.0.0.0/8',
  },
  {
    json: '{"Network":"0.0.0.0/8"}',
    key: "Network",
    value: '"0.0.0.0/8"',
    message:
      'Network "0.0.0.0/8" overlaps 0.0.0.0/8 (this network): choose a unicast range such as 10.0.0.0/8',
  },
  {
    json: '{"Network":"240.0.0.0/4"}',
    key: "Network",
    value: '"240.0.0.0/4"',
    message:
      'Network "240.0.0.0/4" overlaps 240.0.0.0/4 (reserved, broadcast): choose a unicast range such as 10.0.0.0/8',
  },
  {
    json: '{"Network":"0.0.0.0/0"}',
    key: "Network",
    value: '"0.0.0.0/0"',
    message:
      'Network "0.0.0.0/0" overlaps 0.0.0.0/8 (this network): choose a unicast range such as 10.0.0.0/8',
  },
  {
    json: '{"Network":"64.0.0.0/2"}',
    key: "Network",
    value: '"64.0.0.0/2"',
    message:
      'Network "64.0.0.0/2" overlaps 127.0.0.0/8 (loopback): choose a unicast range such as 10.0.0.0/8',
  },
  {
    json: "{not json",
    key: "Network config",
    value: "JSON",
    message: "Network config is not valid JSON: ",
  },
  { json: "[1,2]", key: "Network config", value: "[1,2]", message: "" },
  { json: '"10.1.0.0/16"', key: "Network config", value: '"10.1.0.0/16"', message: "" },
  {
    json: "{}",
    key: "Network",
    value: "missing",
    message: "Network is missing: it is required (or set EnableIPv4 false)",
  },
  {
    json: '{"Network":16}',
    key: "Network",
    value: "16",
    message: "Network 16 is not a string",
  },
  {
    json: '{"Network":"10.1.0.1/16"}',
    key: "Network",
    value: '"10.1.0.1/16"',
    message: 'Network "10.1.0.1/16" has host bits set (network address is 10.1.0.0/16)',
  },
  {
    json: '{"Network":"10.1.0.0"}',
    key: "Network",
    value: '"10.1.0.0"',
    message: 'Network "10.1.0.0" is not a CIDR (expected a.b.c.d/len)',
  },
  {
    json: '{"Network":"10.1.0.0/33"}',
    key: "Network",
    value: '"10.1.0.0/33"',
    message: 'Network "10.1.0.0/33" is not an IPv4 CIDR',
  },
  {
    json: '{"Network":"fc00::/64"}',
    key: "Network",
    value: '"fc00::/64"',
    message: 'Network "fc00::/64" is not an IPv4 CIDR',
  },
  {
    json: '{"Network":"10.1.0.0/30"}',
    key: "Network",
    value: '"10.1.0.0/30"',
    message: 'Network "10.1.0.0/30" is too small: the prefix must be /29 or shorter',
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetLen":33}',
    key: "SubnetLen",
    value: "33",
    message: "SubnetLen 33 is not between 17 and 30",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetLen":31}',
    key: "SubnetLen",
    value: "31",
    message: "SubnetLen 31 is not between 17 and 30",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetLen":16}',
    key: "SubnetLen",
    value: "16",
    message: "SubnetLen 16 is not between 17 and 30",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetLen":-1}',
    key: "SubnetLen",
    value: "-1",
    message: "SubnetLen -1 is not between 17 and 30",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetLen":"24"}',
    key: "SubnetLen",
    value: '"24"',
    message: 'SubnetLen "24" is not an integer',
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetLen":24.5}',
    key: "SubnetLen",
    value: "24.5",
    message: "SubnetLen 24.5 is not an integer",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetLen":1e400}',
    key: "SubnetLen",
    value: "Infinity",
    message: "SubnetLen Infinity is not an integer",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetMin":"10.2.0.0"}',
    key: "SubnetMin",
    value: "10.2.0.0",
    message: "SubnetMin 10.2.0.0 is not inside Network 10.1.0.0/16",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetMin":"10.1.0.5"}',
    key: "SubnetMin",
    value: "10.1.0.5",
    message: "SubnetMin 10.1.0.5 is not aligned to SubnetLen 24",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetLen":26,"SubnetMax":"10.1.3.32"}',
    key: "SubnetMax",
    value: "10.1.3.32",
    message: "SubnetMax 10.1.3.32 is not aligned to SubnetLen 26",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetMax":"9.255.255.0"}',
    key: "SubnetMax",
    value: "9.255.255.0",
    message: "SubnetMax 9.255.255.0 is not inside Network 10.1.0.0/16",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetMin":"10.1.9.0","SubnetMax":"10.1.3.0"}',
    key: "SubnetMin",
    value: "10.1.9.0",
    message: "SubnetMin 10.1.9.0 is greater than SubnetMax 10.1.3.0",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetMax":"10.1.0.0"}',
    key: "SubnetMax",
    value: "10.1.0.0",
    message: "SubnetMin 10.1.1.0 is greater than SubnetMax 10.1.0.0",
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetMin":"10.1.256.0"}',
    key: "SubnetMin",
    value: '"10.1.256.0"',
    message: 'SubnetMin "10.1.256.0" is not an IPv4 address',
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetMin":""}',
    key: "SubnetMin",
    value: '""',
    message: 'SubnetMin "" is not an IPv4 address',
  },
  {
    json: '{"Network":"10.1.0.0/16","SubnetMax":167837952}',
    key: "SubnetMax",
    value: "167837952",
    message: "SubnetMax 167837952 is not a string",
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"foo"}}',
    key: "Backend.Type",
    value: '"foo"',
    message: 'Backend.Type "foo" is not one of udp, vxlan, host-gw, alloc, aws-vpc, wireguard',
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":""}}',
    key: "Backend.Type",
    value: '""',
    message: 'Backend.Type "" is not one of udp, vxlan, host-gw, alloc, aws-vpc, wireguard',
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Port":8285}}',
    key: "Backend.Type",
    value: "missing",
    message:
      "Backend.Type is missing: must be one of udp, vxlan, host-gw, alloc, aws-vpc, wireguard",
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":7}}',
    key: "Backend.Type",
    value: "7",
    message: "Backend.Type 7 is not a string",
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":"vxlan"}',
    key: "Backend",
    value: '"vxlan"',
    message: 'Backend "vxlan" is not an object',
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"udp","Port":0}}',
    key: "Backend.Port",
    value: "0",
    message: "Backend.Port 0 is not between 1 and 65535",
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"udp","Port":70000}}',
    key: "Backend.Port",
    value: "70000",
    message: "Backend.Port 70000 is not between 1 and 65535",
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"udp","port":"8285"}}',
    key: "Backend.Port",
    value: '"8285"',
    message: 'Backend.Port "8285" is not an integer',
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"udp","Offload":"false"}}',
    key: "Backend.Offload",
    value: '"false"',
    message: 'Backend.Offload "false" is not a boolean',
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}',
    key: "Backend.VNI",
    value: "16777216",
    message: "Backend.VNI 16777216 is not between 1 and 16777215",
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","VNI":0}}',
    key: "Backend.VNI",
    value: "0",
    message: "Backend.VNI 0 is not between 1 and 16777215",
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","MTU":67}}',
    key: "Backend.MTU",
    value: "67",
    message: "Backend.MTU 67 is not between 68 and 65535",
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","DirectRouting":"yes"}}',
    key: "Backend.DirectRouting",
    value: '"yes"',
    message: 'Backend.DirectRouting "yes" is not a boolean',
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","GBP":1}}',
    key: "Backend.GBP",
    value: "1",
    message: "Backend.GBP 1 is not a boolean",
  },
  {
    json: '{"Network":"10.1.0.0/16","Backend":{"Type":"aws-vpc","RouteTableID":"rt-12"}}',
    key: "Backend.RouteTableID",
    value: '"rt-12"',
    message: 'Backend.RouteTableID "rt-12" is not a route table id (rtb- and hex digits)',
  },
];

Deno.test("parseNetworkConfig() fills defaults and accepts valid configs", async (t) => {
  for (const g of GOOD) {
    await t.step(g.name, () => {
      const c = parseNetworkConfig(JSON.stringify(g.json));
      assert.ok(c.ipv4);
      assert.equal(c.ipv4.network.toString(), g.network);
      assert.equal(c.ipv4.subnetLen, g.subnetLen);
      assert.equal(c.ipv4.subnetMin.toString(), g.min);
      assert.equal(c.ipv4.subnetMax.toString(), g.max);
      assert.equal(c.ipv6, null);
      assert.deepEqual(c.backend, g.backend);
    });
  }
});

Deno.test("parseNetworkConfig() rejects bad configs naming the key and the value", async (t) => {
  for (const b of BAD) {
    await t.step(b.json, () => {
      let message = "";
      try {
        parseNetworkConfig(b.json);
        assert.fail(`accepted ${b.json}`);
      } catch (e) {
        assert.ok(e instanceof ConfigError, String(e));
        assert.equal(e.name, "ConfigError");
        message = e.message;
      }
      if (b.message.endsWith(": ")) assert.ok(message.startsWith(b.message), message);
      else if (b.message !== "") assert.equal(message, b.message);
      assert.ok(message.includes(b.key), `${message} does not name ${b.key}`);
      assert.ok(message.includes(b.value), `${message} does not name ${b.value}`);
      assert.match(message, /^[A-Z]/);
      assert.doesNotMatch(message, /\.$/);
    });
  }
});

Deno.test("parseNetworkConfig() reports a non-object config as such", () => {
  assert.throws(() => parseNetworkConfig("[1,2]"), {
    name: "ConfigError",
    message: "Network config is not a JSON object: [1,2]",
  });
  assert.throws(() => parseNetworkConfig("null"), {
    message: "Network config is not a JSON object: null",
  });
});

Deno.test("parseNetworkConfig() shortens a huge bad value in the message", () => {
  const big = "x".repeat(10_000);
  let message = "";
  try {
    parseNetworkConfig(JSON.stringify({ Network: big }));
    assert.fail("accepted a 10,000-character Network");
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    message = (e as Error).message;
  }
  assert.ok(message.startsWith('Network "xxx'), message);
  assert.ok(message.length < 200, `message is ${message.length} characters long`);
});

Deno.test("wireguard config: upstream's keys and defaults, each bad value named", async (t) => {
  const parse = (backend: Record<string, unknown>) =>
    parseNetworkConfig(
      JSON.stringify({ Network: "10.1.0.0/16", Backend: { Type: "wireguard", ...backend } }),
    )
      .backend;
  await t.step("defaults", () => {
    assert.deepEqual(parse({}), {
      type: "wireguard",
      listenPort: 51820,
      listenPortV6: 51821,
      psk: null,
      persistentKeepaliveInterval: 0,
      mtu: null,
      mode: "separate",
    });
  });
  await t.step("every key set", () => {
    const b = parse({
      ListenPort: 5000,
      listenportv6: 5001,
      PSK: "uN2Sbx6qbqC8I3VWWIRMK+4upeSAcA1Im1A4mHBCZ1Y=",
      PersistentKeepaliveInterval: 25,
      MTU: 1400,
      Mode: "separate",
    });
    assert.ok(b.type === "wireguard");
    assert.equal(b.listenPort, 5000);
    assert.equal(b.listenPortV6, 5001);
    assert.equal(b.psk?.length, 32);
    assert.equal(b.persistentKeepaliveInterval, 25);
    assert.equal(b.mtu, 1400);
  });
  const bad: [Record<string, unknown>, string][] = [
    [{ ListenPort: 0 }, "Backend.ListenPort 0 is not between 1 and 65535"],
    [{ ListenPort: "51820" }, 'Backend.ListenPort "51820" is not an integer'],
    [{ PSK: "short" }, 'Backend.PSK "short" is not a key: 32 bytes of base64 (wg genpsk)'],
    [
      { PSK: "uN2Sbx6qbqC8I3VWWIRMK+4upeSAcA1Im1A4mHBCZ1Z=" },
      'Backend.PSK "uN2Sbx6qbqC8I3VWWIRMK+4upeSAcA1Im1A4mHBCZ1Z=" is not a key: 32 bytes of base64 (wg genpsk)',
    ],
    [
      { PersistentKeepaliveInterval: -1 },
      "Backend.PersistentKeepaliveInterval -1 is not between 0 and 65535",
    ],
    [{ MTU: 100 }, "Backend.MTU 100 is not between 576 and 65535"],
    [{ Mode: "both" }, 'Backend.Mode "both" is not one of separate, auto, ipv4, ipv6'],
    [{ Mode: "Auto" }, 'Backend.Mode "Auto" is not one of separate, auto, ipv4, ipv6'],
    [{ Mode: 4 }, "Backend.Mode 4 is not one of separate, auto, ipv4, ipv6"],
  ];
  for (const [b, message] of bad) {
    await t.step(message, () => {
      assert.throws(() => parse(b), { name: "ConfigError", message });
    });
  }
  await t.step("EnableIPv6 is accepted in separate mode (a flannel-wg-v6 device)", () => {
    const c = parseNetworkConfig(JSON.stringify({
      Network: "10.1.0.0/16",
      EnableIPv6: true,
      IPv6Network: "fd00:1::/56",
      Backend: { Type: "wireguard", ListenPortV6: 51900 },
    }));
    assert.equal(String(c.ipv6?.network), "fd00:1::/56");
    assert.equal(c.backend.type === "wireguard" && c.backend.listenPortV6, 51900);
    assert.equal(c.backend.type === "wireguard" && c.backend.mode, "separate");
  });
  const modeCase = (net: Record<string, unknown>, mode: string) =>
    parseNetworkConfig(JSON.stringify({ ...net, Backend: { Type: "wireguard", Mode: mode } }));
  const dual = { Network: "10.1.0.0/16", EnableIPv6: true, IPv6Network: "fd00:1::/56" };
  const only4 = { Network: "10.1.0.0/16" };
  const only6 = { EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00:1::/56" };
  for (const mode of ["auto", "ipv4", "ipv6", "separate"]) {
    await t.step(`Mode ${mode} on a dual-stack network`, () => {
      const c = modeCase(dual, mode);
      assert.equal(c.backend.type === "wireguard" && c.backend.mode, mode);
    });
  }
  await t.step(
    "Mode auto and ipv4 on an IPv4-only network; auto and ipv6 on an IPv6-only one",
    () => {
      for (
        const [net, mode] of [[only4, "auto"], [only4, "ipv4"], [only6, "auto"], [only6, "ipv6"]]
      ) {
        const c = modeCase(net as Record<string, unknown>, mode as string);
        assert.equal(c.backend.type === "wireguard" && c.backend.mode, mode);
      }
    },
  );
  await t.step("Mode ipv6 without EnableIPv6, Mode ipv4 without EnableIPv4: refused", () => {
    assert.throws(() => modeCase(only4, "ipv6"), {
      name: "ConfigError",
      message:
        'Backend.Mode "ipv6" needs EnableIPv6: the tunnel runs between the hosts\' IPv6 addresses',
    });
    assert.throws(() => modeCase(only6, "ipv4"), {
      name: "ConfigError",
      message:
        'Backend.Mode "ipv4" needs EnableIPv4: the tunnel runs between the hosts\' IPv4 addresses',
    });
  });
});
