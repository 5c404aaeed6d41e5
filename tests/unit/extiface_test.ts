import assert from "node:assert/strict";
import {
  checkExternalInterface,
  findExternalInterface,
  InterfaceError,
  type LinkReader,
} from "../../lib/extiface.ts";
import { ip } from "../helpers.ts";

/**
 * A host with lo, eth0 (default routes of both families), eth1 (two IPv4 addresses, one global
 * and one link-local IPv6) and a link-local-only eth2; eth3 is IPv6-only.
 */
function host(withDefault = true): LinkReader {
  const all = [
    { index: 1, address: ip("127.0.0.1"), prefix: 8, scope: 254 },
    { index: 2, address: ip("192.168.100.11"), prefix: 24, scope: 0 },
    { index: 3, address: ip("10.0.2.15"), prefix: 24, scope: 0 },
    { index: 3, address: ip("172.16.5.4"), prefix: 16, scope: 0 },
    { index: 4, address: ip("169.254.3.3"), prefix: 16, scope: 253 },
    { index: 1, address: ip("::1"), prefix: 128, scope: 254 },
    { index: 2, address: ip("fe80::2"), prefix: 64, scope: 253 },
    { index: 2, address: ip("fd00:100::11"), prefix: 64, scope: 0 },
    { index: 3, address: ip("fe80::3"), prefix: 64, scope: 253 },
    { index: 3, address: ip("fd00:5::4"), prefix: 64, scope: 0 },
    { index: 3, address: ip("fd00:5::5"), prefix: 64, scope: 0 },
    { index: 4, address: ip("fe80::4"), prefix: 64, scope: 253 },
    { index: 5, address: ip("fd00:6::6"), prefix: 64, scope: 0 },
  ];
  return {
    linkList: () => [
      { index: 3, name: "eth1", mtu: 9001 },
      { index: 1, name: "lo", mtu: 65536 },
      { index: 2, name: "eth0", mtu: 1500 },
      { index: 4, name: "eth2", mtu: 1400 },
      { index: 5, name: "eth3", mtu: 1480 },
    ],
    addrList: (_index, family = 4) => all.filter((a) => a.address.family === family),
    defaultRoute: (family = 4) =>
      withDefault
        ? { index: family === 4 ? 2 : 5, gateway: ip(family === 4 ? "192.168.100.1" : "fe80::1") }
        : null,
    routeGet: (dst) => {
      if (dst.toString() === "fd00:5::99") return { oif: 3, prefsrc: ip("fd00:5::5") };
      if (dst.toString() === "10.0.2.99") return { oif: 3, prefsrc: ip("10.0.2.15") };
      return null;
    },
  };
}

const none = { iface: [] as string[], ifaceRegex: [] as string[], publicIP: "" };
const DUAL = { ipv4: true, ipv6: true };
const V6ONLY = { ipv4: false, ipv6: true };

type Opts = Partial<typeof none> & { publicIPv6?: string; ifaceCanReach?: string };

function pick(reader: LinkReader, opts: Opts, families = { ipv4: true, ipv6: false }) {
  const ext = findExternalInterface(reader, { ...none, ...opts }, families);
  const str = (x: { toString(): string } | null) => x === null ? null : x.toString();
  const { networks: _networks, ...rest } = ext;
  return {
    ...rest,
    ifaceAddr: str(ext.ifaceAddr),
    publicIP: str(ext.publicIP),
    ifaceV6Addr: str(ext.ifaceV6Addr),
    publicIPv6: str(ext.publicIPv6),
  };
}

Deno.test("findExternalInterface() reports the interface's connected prefixes, enabled families only", () => {
  const nets = (opts: Opts, families = { ipv4: true, ipv6: false }) =>
    findExternalInterface(host(), { ...none, ...opts }, families).networks?.map(String);
  assert.deepEqual(nets({}), ["192.168.100.0/24"]);
  assert.deepEqual(nets({ iface: ["eth1"] }), ["10.0.2.0/24", "172.16.0.0/16"]);
  assert.deepEqual(nets({ iface: ["eth1"] }, DUAL), [
    "10.0.2.0/24",
    "172.16.0.0/16",
    "fe80::/64",
    "fd00:5::/64",
  ]);
  assert.deepEqual(nets({ iface: ["eth3"] }, V6ONLY), ["fd00:6::/64"]);
});

Deno.test("findExternalInterface() picks the interface, address and MTU", async (t) => {
  await t.step("default route interface and its first global address", () => {
    assert.deepEqual(pick(host(), {}), {
      name: "eth0",
      index: 2,
      ifaceAddr: "192.168.100.11",
      publicIP: "192.168.100.11",
      ifaceV6Addr: null,
      publicIPv6: null,
      mtu: 1500,
    });
  });
  await t.step("--iface by name", () => {
    assert.deepEqual(pick(host(), { iface: ["eth1"] }).ifaceAddr, "10.0.2.15");
  });
  await t.step("--iface by address uses that address", () => {
    const ext = pick(host(), { iface: ["172.16.5.4"] });
    assert.deepEqual([ext.name, ext.ifaceAddr, ext.mtu], ["eth1", "172.16.5.4", 9001]);
  });
  await t.step("repeated --iface: first match wins, missing ones skipped", () => {
    assert.deepEqual(pick(host(), { iface: ["wlan0", "10.9.9.9", "eth1", "eth0"] }).name, "eth1");
  });
  await t.step("--iface-regex on names, then on addresses", () => {
    assert.deepEqual(pick(host(), { ifaceRegex: ["^eth[01]$"] }).name, "eth0"); // index order
    const ext = pick(host(), { ifaceRegex: ["nomatch", "^172\\.16\\."] });
    assert.deepEqual([ext.name, ext.ifaceAddr], ["eth1", "172.16.5.4"]);
  });
  await t.step("--public-ip overrides only what is advertised", () => {
    const ext = pick(host(), { publicIP: "203.0.113.7" });
    assert.deepEqual([ext.ifaceAddr, ext.publicIP], ["192.168.100.11", "203.0.113.7"]);
  });
  await t.step("a link-local address is used when no global one exists", () => {
    assert.deepEqual(pick(host(), { iface: ["eth2"] }).ifaceAddr, "169.254.3.3");
  });
});

Deno.test("findExternalInterface() fails with a clear message", async (t) => {
  await t.step("unknown --iface names the flag and lists interfaces", () => {
    assert.throws(
      () => findExternalInterface(host(), { ...none, iface: ["wlan0"] }),
      (e) =>
        e instanceof InterfaceError &&
        e.message.startsWith(
          "No interface matches --iface wlan0: interfaces here are lo, eth0, eth1, eth2",
        ),
    );
  });
  await t.step("no default route", () => {
    assert.throws(
      () => findExternalInterface(host(false), none),
      (e) => e instanceof InterfaceError && e.message.startsWith("No default IPv4 route"),
    );
  });
  await t.step("interface without IPv4 address", () => {
    const r = host();
    const bare: LinkReader = {
      ...r,
      addrList: (i, f) => r.addrList(i, f).filter((a) => a.index !== 2),
    };
    assert.throws(
      () => findExternalInterface(bare, { ...none, iface: ["eth0"] }),
      (e) =>
        e instanceof InterfaceError &&
        e.message.startsWith("Failed to find IPv4 address for interface eth0"),
    );
  });
  await t.step("regex that matches nothing", () => {
    assert.throws(
      () => findExternalInterface(host(), { ...none, ifaceRegex: ["^ens"] }),
      (e) =>
        e instanceof InterfaceError &&
        e.message.startsWith("No interface name or address matches --iface-regex ^ens"),
    );
  });
});

Deno.test("findExternalInterface() finds the IPv6 address when EnableIPv6 is set", async (t) => {
  await t.step("dual-stack: the IPv4 default route's interface, its first global IPv6", () => {
    const ext = pick(host(), {}, DUAL);
    assert.deepEqual(
      [ext.name, ext.ifaceAddr, ext.ifaceV6Addr, ext.publicIPv6],
      ["eth0", "192.168.100.11", "fd00:100::11", "fd00:100::11"],
    );
  });
  await t.step("IPv6-only: the IPv6 default route's interface, no IPv4 address needed", () => {
    const ext = pick(host(), {}, V6ONLY);
    assert.deepEqual(
      [ext.name, ext.ifaceAddr, ext.publicIP, ext.ifaceV6Addr],
      ["eth3", null, null, "fd00:6::6"],
    );
  });
  await t.step("--iface by IPv6 address uses that address, the IPv4 one as found", () => {
    const ext = pick(host(), { iface: ["fd00:5::5"] }, DUAL);
    assert.deepEqual(
      [ext.name, ext.ifaceAddr, ext.ifaceV6Addr],
      ["eth1", "10.0.2.15", "fd00:5::5"],
    );
  });
  await t.step("--iface-regex matches IPv6 addresses", () => {
    const ext = pick(host(), { ifaceRegex: ["^fd00:5::5$"] }, V6ONLY);
    assert.deepEqual([ext.name, ext.ifaceV6Addr], ["eth1", "fd00:5::5"]);
  });
  await t.step("--iface-can-reach an IPv6 address: the route's interface and source", () => {
    const ext = pick(host(), { ifaceCanReach: "fd00:5::99" }, DUAL);
    assert.deepEqual(
      [ext.name, ext.ifaceAddr, ext.ifaceV6Addr],
      ["eth1", "10.0.2.15", "fd00:5::5"],
    );
  });
  await t.step("--iface-can-reach an IPv4 address still picks the first global IPv6", () => {
    const ext = pick(host(), { ifaceCanReach: "10.0.2.99" }, DUAL);
    assert.deepEqual([ext.ifaceAddr, ext.ifaceV6Addr], ["10.0.2.15", "fd00:5::4"]);
  });
  await t.step("--public-ipv6 overrides only what is advertised", () => {
    const ext = pick(host(), { publicIPv6: "2001:db8::7" }, DUAL);
    assert.deepEqual([ext.ifaceV6Addr, ext.publicIPv6], ["fd00:100::11", "2001:db8::7"]);
  });
  await t.step("without EnableIPv6 no IPv6 address is looked up", () => {
    const ext = pick(host(), { iface: ["eth2"] });
    assert.deepEqual([ext.ifaceAddr, ext.ifaceV6Addr], ["169.254.3.3", null]);
  });
});

Deno.test("findExternalInterface() IPv6 failures are clear", async (t) => {
  await t.step("only a link-local IPv6 address", () => {
    assert.throws(
      () => findExternalInterface(host(), { ...none, iface: ["eth2"] }, DUAL),
      {
        name: "InterfaceError",
        message: "Failed to find a global IPv6 address for interface eth2 (EnableIPv6 is true)",
      },
    );
  });
  await t.step("no default IPv6 route on an IPv6-only network", () => {
    assert.throws(() => findExternalInterface(host(false), none, V6ONLY), {
      message: "No default IPv6 route to find the external interface: use --iface",
    });
  });
  await t.step("--public-ipv6 of the wrong family", () => {
    assert.throws(
      () => findExternalInterface(host(), { ...none, publicIPv6: "10.0.0.1" }, DUAL),
      { message: "--public-ipv6 10.0.0.1 is not an IPv6 address" },
    );
  });
  await t.step("--iface-can-reach without a route", () => {
    assert.throws(
      () => findExternalInterface(host(), { ...none, ifaceCanReach: "fd99::1" }, DUAL),
      { message: "No route to --iface-can-reach fd99::1" },
    );
  });
});

Deno.test("checkExternalInterface() (before the config is known) accepts an IPv6-only interface", async (t) => {
  /** A host whose eth0 has only IPv6 addresses and whose only default route is the IPv6 one. */
  const v6host = (withDefault = true): LinkReader => {
    const all = [
      { index: 1, address: ip("127.0.0.1"), prefix: 8, scope: 254 },
      { index: 1, address: ip("::1"), prefix: 128, scope: 254 },
      { index: 2, address: ip("fd00:100::11"), prefix: 64, scope: 0 },
      { index: 2, address: ip("fe80::11"), prefix: 64, scope: 253 },
    ];
    return {
      linkList: () => [{ index: 1, name: "lo", mtu: 65536 }, { index: 2, name: "eth0", mtu: 1500 }],
      addrList: (_index, family = 4) => all.filter((a) => a.address.family === family),
      defaultRoute: (family = 4) =>
        withDefault && family === 6 ? { index: 2, gateway: ip("fd00:100::1") } : null,
      routeGet: () => null,
    };
  };
  await t.step("the IPv6 default route when there is no IPv4 one", () => {
    assert.equal(checkExternalInterface(v6host(), none), "eth0");
  });
  await t.step("--iface by IPv6 address", () => {
    assert.equal(checkExternalInterface(v6host(), { ...none, iface: ["fd00:100::11"] }), "eth0");
  });
  await t.step("the IPv4 default route first when both exist", () => {
    assert.equal(checkExternalInterface(host(), none), "eth0");
  });
  await t.step("--iface by an IPv6 address nobody holds", () => {
    assert.throws(() => checkExternalInterface(v6host(), { ...none, iface: ["fd00:100::99"] }), {
      name: "InterfaceError",
      message: "No interface matches --iface fd00:100::99: interfaces here are lo, eth0",
    });
  });
  await t.step("no default route of either family", () => {
    assert.throws(() => checkExternalInterface(v6host(false), none), {
      message: "No default IPv4 or IPv6 route to find the external interface: use --iface",
    });
  });
  await t.step("then an IPv6-only config finds the address, an IPv4 one refuses clearly", () => {
    const ext = findExternalInterface(v6host(), { ...none, iface: ["fd00:100::11"] }, V6ONLY);
    assert.deepEqual([ext.name, String(ext.ifaceV6Addr), ext.ifaceAddr], [
      "eth0",
      "fd00:100::11",
      null,
    ]);
    assert.throws(() => findExternalInterface(v6host(), none), {
      message: "No default IPv4 route to find the external interface: use --iface",
    });
    assert.throws(() => findExternalInterface(v6host(), { ...none, iface: ["eth0"] }), {
      message: "Failed to find IPv4 address for interface eth0",
    });
  });
});
