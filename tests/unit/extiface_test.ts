import assert from "node:assert/strict";
import { findExternalInterface, InterfaceError, type LinkReader } from "../../lib/extiface.ts";
import { ip } from "../helpers.ts";

/** A host with lo, eth0 (default route), eth1 (two addresses) and a link-local-only eth2. */
function host(withDefault = true): LinkReader {
  return {
    linkList: () => [
      { index: 3, name: "eth1", mtu: 9001 },
      { index: 1, name: "lo", mtu: 65536 },
      { index: 2, name: "eth0", mtu: 1500 },
      { index: 4, name: "eth2", mtu: 1400 },
    ],
    addrList: () => [
      { index: 1, address: ip("127.0.0.1"), prefix: 8, scope: 254 },
      { index: 2, address: ip("192.168.100.11"), prefix: 24, scope: 0 },
      { index: 3, address: ip("10.0.2.15"), prefix: 24, scope: 0 },
      { index: 3, address: ip("172.16.5.4"), prefix: 16, scope: 0 },
      { index: 4, address: ip("169.254.3.3"), prefix: 16, scope: 253 },
    ],
    defaultRoute: () => withDefault ? { index: 2, gateway: ip("192.168.100.1") } : null,
  };
}

const none = { iface: [] as string[], ifaceRegex: [] as string[], publicIP: "" };

function pick(reader: LinkReader, opts: Partial<typeof none>) {
  const ext = findExternalInterface(reader, { ...none, ...opts });
  return { ...ext, ifaceAddr: ext.ifaceAddr.toString(), publicIP: ext.publicIP.toString() };
}

Deno.test("findExternalInterface() picks the interface, address and MTU", async (t) => {
  await t.step("default route interface and its first global address", () => {
    assert.deepEqual(pick(host(), {}), {
      name: "eth0",
      index: 2,
      ifaceAddr: "192.168.100.11",
      publicIP: "192.168.100.11",
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
    const bare: LinkReader = { ...r, addrList: () => r.addrList().filter((a) => a.index !== 2) };
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
