/**
 * The wireguard backend's pieces without privileges: leases → peers (upstream's BackendData,
 * with and without `Port`), the key file, and the UAPI `get` text.
 */

import assert from "node:assert/strict";
import {
  LeasePeers,
  leasePeerSide,
  ownLeaseAttrs,
  peerFromLease,
  singlePeerFromLease,
} from "../../lib/backend/wireguard/lease_peers.ts";
import { keyFilePath, loadOrCreateKey } from "../../lib/backend/wireguard/keyfile.ts";
import {
  generatePrivateKey,
  parseKey,
  publicKey,
  toBase64,
  toHex,
} from "../../lib/backend/wireguard/keys.ts";
import { formatGet, REFUSED } from "../../lib/backend/wireguard/uapi.ts";
import { Device } from "../../lib/backend/wireguard/device.ts";
import { PacketAead, randomBytes } from "../../ffi/crypto.ts";
import {
  decodeLeaseValue,
  encodeLeaseValue,
  type Lease,
  type LeaseAttrs,
} from "../../lib/lease.ts";
import type { NetworkConfig, WireguardMode } from "../../lib/config.ts";
import type { ExternalInterface } from "../../lib/extiface.ts";
import type { Acquired, LeaseEvent, SubnetManager } from "../../lib/subnet/mod.ts";
import { create, type DeviceSetup, type WireguardDevice } from "../../lib/backend/wireguard/mod.ts";
import type { PeerBatch } from "../../lib/backend/wireguard/protocol.ts";
import { fakeContext, lease as fakeLease } from "./fake_netlink.ts";
import { ip, logCapture, net } from "../helpers.ts";
import { IPNet } from "../../lib/ip.ts";

const PUB = toBase64(publicKey(generatePrivateKey()));

function lease(backendType: string, backendData: unknown): Lease {
  return fakeLease("10.1.2.0/24", "192.168.100.11", backendType, backendData);
}

const OWN = { port: 51820, psk: null, keepalive: 0 };

Deno.test("peerFromLease() reads upstream's BackendData; no Port means our ListenPort", () => {
  assert.deepEqual(peerFromLease(lease("wireguard", { PublicKey: PUB, Port: 40000 }), OWN), {
    publicKey: PUB,
    presharedKey: null,
    ip: 0xc0a8640b,
    ip6: null,
    port: 40000,
    allowedIPs: [{ net: 0x0a010200, prefix: 24 }],
    persistentKeepalive: 0,
  });
  // Upstream before v0.26.6 writes only the key: the peer listens where we do.
  const old = peerFromLease(lease("wireguard", { PublicKey: PUB }), { ...OWN, port: 5555 });
  assert.ok(typeof old !== "string");
  assert.equal(old.port, 5555);
  const psk = randomBytes(32);
  const withPsk = peerFromLease(lease("wireguard", { PublicKey: PUB }), {
    port: 1,
    psk,
    keepalive: 25,
  });
  assert.ok(typeof withPsk !== "string");
  assert.equal(withPsk.presharedKey, toBase64(psk));
  assert.equal(withPsk.persistentKeepalive, 25);
});

Deno.test("peerFromLease() names what is wrong with a lease it cannot use", () => {
  assert.equal(peerFromLease(lease("vxlan", {}), OWN), 'backend type "vxlan" is not wireguard');
  assert.equal(peerFromLease(lease("wireguard", null), OWN), "BackendData has no PublicKey");
  assert.equal(
    peerFromLease(lease("wireguard", { PublicKey: "abc" }), OWN),
    "Invalid PublicKey: not 32 bytes of base64",
  );
  assert.equal(
    peerFromLease(lease("wireguard", { PublicKey: PUB, Port: 70000 }), OWN),
    "BackendData Port 70000 is not a port",
  );
});

function dualLease(v4Data: unknown, v6Data: unknown, publicIPv6: string | null = "fd00::b"): Lease {
  const l = lease("wireguard", v4Data);
  return {
    ...l,
    ipv6Subnet: IPNet.mustParse("fc00:0:0:22::/64"),
    attrs: {
      ...l.attrs,
      publicIPv6: publicIPv6 === null ? null : ip(publicIPv6),
      backendV6Data: v6Data,
    },
  };
}

Deno.test("ownLeaseAttrs() encodes to upstream's newSubnetAttrs bytes, per enabled family", () => {
  const both = ownLeaseAttrs({
    publicKey: PUB,
    publicIP: ip("192.168.100.11"),
    publicIPv6: ip("fd00::b"),
    port: 51820,
    portV6: 51821,
  });
  // Go's json.Marshal of lease.LeaseAttrs with both wireguardLeaseAttrs raw messages.
  assert.equal(
    encodeLeaseValue(both),
    `{"PublicIP":"192.168.100.11","PublicIPv6":"fd00::b","BackendType":"wireguard",` +
      `"BackendData":{"PublicKey":"${PUB}","Port":51820},` +
      `"BackendV6Data":{"PublicKey":"${PUB}","Port":51821}}`,
  );
  const v4 = ownLeaseAttrs({
    publicKey: PUB,
    publicIP: ip("192.168.100.11"),
    publicIPv6: null,
    port: 51820,
    portV6: 51821,
  });
  assert.equal(
    encodeLeaseValue(v4),
    `{"PublicIP":"192.168.100.11","PublicIPv6":null,"BackendType":"wireguard",` +
      `"BackendData":{"PublicKey":"${PUB}","Port":51820}}`,
  );
  const v6 = ownLeaseAttrs({
    publicKey: PUB,
    publicIP: null,
    publicIPv6: ip("fd00::b"),
    port: 51820,
    portV6: 40001,
  });
  assert.equal(
    encodeLeaseValue(v6),
    `{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::b","BackendType":"wireguard",` +
      `"BackendV6Data":{"PublicKey":"${PUB}","Port":40001}}`,
  );
});

Deno.test("leasePeerSide() reads each family from its own fields, as upstream", () => {
  const l = dualLease({ PublicKey: PUB, Port: 51820 }, { PublicKey: PUB, Port: 40001 });
  const s4 = leasePeerSide(l, 4, 1);
  assert.ok(typeof s4 !== "string");
  assert.equal(String(s4.endpoint), "192.168.100.11");
  assert.equal(s4.port, 51820);
  assert.equal(String(s4.subnet), "10.1.2.0/24");
  const s6 = leasePeerSide(l, 6, 1);
  assert.ok(typeof s6 !== "string");
  assert.equal(s6.publicKey, PUB);
  assert.equal(String(s6.endpoint), "fd00::b");
  assert.equal(s6.port, 40001);
  assert.equal(String(s6.subnet), "fc00:0:0:22::/64");
  // No (or zero) Port in BackendV6Data: our own ListenPortV6.
  const noPort = leasePeerSide(dualLease(null, { PublicKey: PUB, Port: 0 }), 6, 51821);
  assert.ok(typeof noPort !== "string");
  assert.equal(noPort.port, 51821);
  // Each family fails on its own.
  assert.equal(leasePeerSide(dualLease(null, {}), 4, 1), "BackendData has no PublicKey");
  assert.equal(
    leasePeerSide(dualLease({ PublicKey: PUB }, null), 6, 1),
    "BackendV6Data has no PublicKey",
  );
  assert.equal(
    leasePeerSide(dualLease({ PublicKey: PUB }, { PublicKey: PUB, Port: -1 }), 6, 1),
    "BackendV6Data Port -1 is not a port",
  );
  assert.equal(
    leasePeerSide(dualLease({ PublicKey: PUB }, { PublicKey: PUB }, null), 6, 1),
    "no IPv6 subnet and PublicIPv6 (IPv4-only host)",
  );
  assert.equal(
    leasePeerSide(lease("wireguard", { PublicKey: PUB }), 6, 1),
    "no IPv6 subnet and PublicIPv6 (IPv4-only host)",
  );
  // An upstream dual-stack host's lease still gives our IPv4 device its peer.
  const p = peerFromLease(l, OWN);
  assert.ok(typeof p !== "string");
  assert.equal(p.port, 51820);
});

Deno.test("leasePeerSide() reads a lease value as upstream's dual-stack host writes it", () => {
  const value = `{"PublicIP":"192.168.100.12","PublicIPv6":"fd00::c","BackendType":"wireguard",` +
    `"BackendData":{"PublicKey":"${PUB}","Port":51820},` +
    `"BackendV6Data":{"PublicKey":"${PUB}","Port":51821}}`;
  const attrs = decodeLeaseValue(value);
  assert.ok(typeof attrs !== "string");
  const l: Lease = { ...dualLease(null, null), attrs };
  const s4 = leasePeerSide(l, 4, 1), s6 = leasePeerSide(l, 6, 1);
  assert.ok(typeof s4 !== "string" && typeof s6 !== "string");
  assert.deepEqual(
    [String(s4.endpoint), s4.port, String(s6.endpoint), s6.port, s6.publicKey],
    ["192.168.100.12", 51820, "fd00::c", 51821, PUB],
  );
  // And our attrs survive etcd's round trip unchanged.
  const ours = ownLeaseAttrs({
    publicKey: PUB,
    publicIP: ip("192.168.100.11"),
    publicIPv6: ip("fd00::b"),
    port: 51820,
    portV6: 51821,
  });
  const back = decodeLeaseValue(encodeLeaseValue(ours));
  assert.ok(typeof back !== "string");
  assert.equal(encodeLeaseValue(back), encodeLeaseValue(ours));
});

Deno.test("loadOrCreateKey() creates a 0600 base64 key once, then reads the same key", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/sub/wgkey`;
    const a = await loadOrCreateKey(path);
    assert.ok(a.created);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const text = await Deno.readTextFile(path);
    assert.match(text, /^[A-Za-z0-9+/]{43}=$/);
    assert.equal(a.key[0] & 7, 0, "clamped");
    const b = await loadOrCreateKey(path);
    assert.ok(!b.created);
    assert.equal(toHex(b.key), toHex(a.key));
    assert.equal(b.warning, undefined);
    await Deno.chmod(path, 0o644);
    assert.equal(
      (await loadOrCreateKey(path)).warning,
      `WireGuard key file ${path} has mode 0644: other users may read the private key (chmod 600 it)`,
    );
    await Deno.writeTextFile(path, "junk");
    await assert.rejects(
      () => loadOrCreateKey(path),
      {
        message:
          `Cannot use WireGuard key file ${path}: Invalid private key: not 32 bytes of base64`,
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(keyFilePath(() => undefined), "/run/flannel/wgkey");
  assert.equal(keyFilePath((n) => n === "WIREGUARD_KEY_FILE" ? "/tmp/k" : undefined), "/tmp/k");
});

Deno.test("formatGet() answers get=1 as wireguard-go does (keys in hex, one peer block each)", () => {
  using aead = new PacketAead(8);
  const priv = generatePrivateKey();
  const dev = new Device(priv, {
    clock: { now: () => 0, wallMs: () => 0 },
    random: randomBytes,
    send: () => {},
  }, aead);
  const peerPriv = generatePrivateKey();
  dev.setPeer({
    publicKey: publicKey(peerPriv),
    endpoint: { ip: 0xc0a8640c, port: 51820 },
    allowedIPs: [{ net: 0x0a010300, prefix: 24 }],
    persistentKeepalive: 0,
  });
  assert.equal(
    formatGet(dev, 51820),
    `private_key=${toHex(priv)}\nlisten_port=51820\n` +
      `public_key=${toHex(publicKey(peerPriv))}\npreshared_key=${"0".repeat(64)}\n` +
      "protocol_version=1\nendpoint=192.168.100.12:51820\n" +
      "last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n" +
      "persistent_keepalive_interval=0\nallowed_ip=10.1.3.0/24\nerrno=0\n\n",
  );
  assert.equal(REFUSED, "errno=1\n\n");
  assert.equal(toHex(parseKey(toBase64(priv), "k")), toHex(priv));
});

Deno.test("LeasePeers: added → set, removed → del, a re-keyed host's old key removed, own lease skipped", () => {
  const own = IPNet.mustParse("10.1.1.0/24");
  const lp = new LeasePeers(own, OWN);
  const at = (subnet: string, key: string, type: "added" | "removed" = "added"): LeaseEvent => ({
    type,
    lease: fakeLease(subnet, "192.168.100.12", "wireguard", { PublicKey: key }),
  });
  const k1 = toBase64(publicKey(generatePrivateKey())),
    k2 = toBase64(publicKey(generatePrivateKey()));
  let r = lp.apply([at("10.1.1.0/24", k1), at("10.1.2.0/24", k1)]);
  assert.deepEqual(r.changes.map((c) => c.op), ["set"], "our own lease is not a peer");
  assert.deepEqual(r.lines, ["Subnet added: 10.1.2.0/24 via 192.168.100.12:51820"]);
  r = lp.apply([at("10.1.2.0/24", k2)]);
  assert.deepEqual(
    r.changes.map((c) => c.op === "del" ? `del ${c.publicKey}` : `set ${c.peer.publicKey}`),
    [
      `del ${k1}`,
      `set ${k2}`,
    ],
  );
  // The same host moved to a new subnet and the old lease expires: its key stays.
  r = lp.apply([at("10.1.3.0/24", k2)]);
  r = lp.apply([at("10.1.2.0/24", k2, "removed")]);
  assert.deepEqual(r.changes, []);
  assert.deepEqual(r.lines, ["Subnet removed: 10.1.2.0/24"]);
  r = lp.apply([at("10.1.3.0/24", k2, "removed")]);
  assert.deepEqual(r.changes, [{ op: "del", publicKey: k2 }]);
  r = lp.apply([{
    type: "added",
    lease: fakeLease("10.1.4.0/24", "192.168.100.13", "vxlan", null),
  }]);
  assert.deepEqual(r.changes, []);
  assert.deepEqual(r.warnings, [
    'Ignoring the lease of 10.1.4.0/24: backend type "vxlan" is not wireguard',
  ]);
  assert.equal(lp.size, 0);
});

Deno.test("wireguard backend through the device seam: lease data, MTU, key file, peers from leases", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config: NetworkConfig = {
      ipv4: {
        network: net("10.1.0.0/16"),
        subnetLen: 24,
        subnetMin: ip("10.1.1.0"),
        subnetMax: ip("10.1.255.0"),
      },
      ipv6: null,
      backend: {
        type: "wireguard",
        listenPort: 51820,
        listenPortV6: 51821,
        psk: null,
        persistentKeepaliveInterval: 25,
        mtu: null,
        mode: "separate",
      },
    };
    const ext: ExternalInterface = {
      name: "eth0",
      index: 2,
      ifaceAddr: ip("192.168.0.1"),
      publicIP: ip("192.168.0.1"),
      ifaceV6Addr: null,
      publicIPv6: null,
      mtu: 1500,
    };
    const peerKey = toBase64(publicKey(generatePrivateKey()));
    const peer = (subnet: string, data: unknown) =>
      fakeLease(subnet, "192.168.0.2", "wireguard", data);
    const acquired: LeaseAttrs[] = [];
    const subnets: SubnetManager = {
      config,
      acquireLease(attrs: LeaseAttrs): Promise<Acquired> {
        acquired.push(attrs);
        return Promise.resolve({
          lease: { ...fakeLease("10.1.1.0/24", "192.168.0.1"), attrs },
          peers: { revision: 1, entries: [] },
        });
      },
      keepLease: () => Promise.resolve(),
      async *watchLeases(_own: unknown, _from: unknown, signal: AbortSignal) {
        yield [{
          type: "added",
          lease: peer("10.1.2.0/24", { PublicKey: peerKey }),
        }] as LeaseEvent[];
        yield [{
          type: "removed",
          lease: peer("10.1.2.0/24", { PublicKey: peerKey }),
        }] as LeaseEvent[];
        await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
      },
    };
    const setups: DeviceSetup[] = [];
    const applied: PeerBatch[] = [];
    const events: string[] = [];
    const device = (s: DeviceSetup): WireguardDevice => {
      setups.push(s);
      return {
        name: s.name,
        start: () => Promise.resolve(void events.push("start")),
        died: new Promise(() => {}),
        apply: (b) => void applied.push(b),
        dump: () => Promise.resolve("errno=0\n\n"),
        counters: () => ({}) as ReturnType<WireguardDevice["counters"]>,
        close: () => Promise.resolve(void events.push("close")),
      };
    };
    const ctx = fakeContext({
      config,
      ext,
      subnets,
      env: { WIREGUARD_KEY_FILE: `${dir}/wgkey`, FLANNEL_WG_SOCKET_DIR: `${dir}/wg` },
    });
    using _log = logCapture();
    const network = await create(ctx, device).init(new AbortController().signal);
    assert.equal(network.mtu, 1420, "external MTU − 80");
    assert.equal(network.device, "flannel-wg");
    const pub = toBase64(publicKey(parseKey(await Deno.readTextFile(`${dir}/wgkey`), "k")));
    assert.equal(
      encodeLeaseValue(acquired[0]),
      `{"PublicIP":"192.168.0.1","PublicIPv6":null,"BackendType":"wireguard",` +
        `"BackendData":{"PublicKey":"${pub}","Port":51820}}`,
    );
    assert.equal(setups[0].name, "flannel-wg");
    assert.equal(String(setups[0].addresses), "10.1.1.0");
    assert.equal(String(setups[0].networks), "10.1.0.0/16");
    const ac = new AbortController();
    const running = network.run(ac.signal);
    for (let i = 0; i < 100 && applied.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    // The UAPI socket answers from the device while running.
    const conn = await Deno.connect({ transport: "unix", path: `${dir}/wg/flannel-wg.sock` });
    await conn.write(new TextEncoder().encode("get=1\n\n"));
    const buf = new Uint8Array(64);
    const n = await conn.read(buf);
    conn.close();
    assert.equal(new TextDecoder().decode(buf.subarray(0, n ?? 0)), "errno=0\n\n");
    ac.abort();
    await running;
    assert.deepEqual(events, ["start", "close"]);
    assert.deepEqual(applied, [
      {
        op: "peers",
        changes: [{
          op: "set",
          peer: {
            publicKey: peerKey,
            presharedKey: null,
            ip: ip("192.168.0.2").toU32(),
            ip6: null,
            port: 51820,
            allowedIPs: [{ net: ip("10.1.2.0").toU32(), prefix: 24 }],
            persistentKeepalive: 25,
          },
        }],
      },
      { op: "peers", changes: [{ op: "del", publicKey: peerKey }] },
    ]);
    await assert.rejects(() => Deno.stat(`${dir}/wg/flannel-wg.sock`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("peerFromLease(…, 6) and LeasePeers of family 6: the IPv6 side as 16-byte endpoint and allowed IP", () => {
  const l = dualLease({ PublicKey: PUB, Port: 51820 }, { PublicKey: PUB, Port: 40001 });
  const p = peerFromLease(l, { port: 51821, psk: null, keepalive: 5 }, 6);
  assert.ok(typeof p !== "string");
  assert.equal(p.ip, 0);
  assert.equal(p.port, 40001);
  assert.deepEqual(p.ip6, ip("fd00::b").bytes);
  assert.deepEqual(p.allowedIPs, [{ net: 0, prefix: 64, net6: ip("fc00:0:0:22::").bytes }]);
  assert.equal(p.persistentKeepalive, 5);
  // The v6 device follows IPv6 subnets: its own skipped, an IPv4-only lease ignored, removal.
  const lp = new LeasePeers(IPNet.mustParse("fc00:0:0:11::/64"), OWN, 6);
  const own6: Lease = { ...l, ipv6Subnet: IPNet.mustParse("fc00:0:0:11::/64") };
  let r = lp.apply([
    { type: "added", lease: own6 },
    { type: "added", lease: lease("wireguard", { PublicKey: PUB }) },
    { type: "added", lease: l },
  ]);
  assert.deepEqual(r.changes.map((c) => c.op), ["set"]);
  assert.deepEqual(r.lines, ["Subnet added: fc00:0:0:22::/64 via [fd00::b]:40001"]);
  assert.deepEqual(r.warnings, []);
  r = lp.apply([{ type: "removed", lease: l }]);
  assert.deepEqual(r.changes, [{ op: "del", publicKey: PUB }]);
  assert.deepEqual(r.lines, ["Subnet removed: fc00:0:0:22::/64"]);
  // A lease whose IPv6 side is unusable is a warning for the v6 device only.
  const bad = dualLease({ PublicKey: PUB }, {});
  assert.deepEqual(lp.apply([{ type: "added", lease: bad }]).warnings, [
    "Ignoring the lease of fc00:0:0:22::/64: BackendV6Data has no PublicKey",
  ]);
  assert.equal(
    new LeasePeers(IPNet.mustParse("10.1.1.0/24"), OWN).apply([
      { type: "added", lease: bad },
    ]).changes.length,
    1,
  );
});

/**
 * The wireguard backend on a dual-stack network in `mode`, with fake devices: one peer lease
 * of both families; returns what init set up and the network.
 */
async function dualStackBackend(dir: string, mode: WireguardMode, withIPv6 = true) {
  const config: NetworkConfig = {
    ipv4: {
      network: net("10.1.0.0/16"),
      subnetLen: 24,
      subnetMin: ip("10.1.1.0"),
      subnetMax: ip("10.1.255.0"),
    },
    ipv6: withIPv6
      ? {
        network: net("fc00::/48"),
        subnetLen: 64,
        subnetMin: ip("fc00:0:0:1::"),
        subnetMax: ip("fc00:0:0:ffff::"),
      }
      : null,
    backend: {
      type: "wireguard",
      listenPort: 51820,
      listenPortV6: 51900,
      psk: null,
      persistentKeepaliveInterval: 0,
      mtu: null,
      mode,
    },
  };
  const ext: ExternalInterface = {
    name: "eth0",
    index: 2,
    ifaceAddr: ip("192.168.0.1"),
    publicIP: ip("192.168.0.1"),
    ifaceV6Addr: ip("fd00::a"),
    publicIPv6: ip("fd00::a"),
    mtu: 1500,
  };
  const peerKey = toBase64(publicKey(generatePrivateKey()));
  const peerLease: Lease = {
    ...fakeLease("10.1.2.0/24", "192.168.0.2", "wireguard", { PublicKey: peerKey, Port: 51820 }),
    ipv6Subnet: net("fc00:0:0:2::/64"),
  };
  const peer6: Lease = {
    ...peerLease,
    attrs: {
      ...peerLease.attrs,
      publicIPv6: ip("fd00::b"),
      backendV6Data: { PublicKey: peerKey, Port: 51900 },
    },
  };
  const acquired: LeaseAttrs[] = [];
  const subnets: SubnetManager = {
    config,
    acquireLease(attrs: LeaseAttrs): Promise<Acquired> {
      acquired.push(attrs);
      return Promise.resolve({
        lease: {
          ...fakeLease("10.1.1.0/24", "192.168.0.1"),
          ipv6Subnet: net("fc00:0:0:1::/64"),
          attrs,
        },
        peers: { revision: 1, entries: [] },
      });
    },
    keepLease: () => Promise.resolve(),
    async *watchLeases(_own: unknown, _from: unknown, signal: AbortSignal) {
      yield [{ type: "added", lease: peer6 }] as LeaseEvent[];
      await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
    },
  };
  const setups: DeviceSetup[] = [];
  const applied = new Map<string, PeerBatch[]>();
  const device = (s: DeviceSetup): WireguardDevice => {
    setups.push(s);
    applied.set(s.name, []);
    return {
      name: s.name,
      start: () => Promise.resolve(),
      died: new Promise(() => {}),
      apply: (b) => void applied.get(s.name)!.push(b),
      dump: () => Promise.resolve("errno=0\n\n"),
      counters: () => ({ rx_replay: s.family }) as ReturnType<WireguardDevice["counters"]>,
      close: () => Promise.resolve(),
    };
  };
  const ctx = fakeContext({
    config,
    ext,
    subnets,
    env: { WIREGUARD_KEY_FILE: `${dir}/wgkey`, FLANNEL_WG_SOCKET_DIR: `${dir}/wg` },
  });
  const network = await create(ctx, device).init(new AbortController().signal);
  return { network, setups, applied, acquired, peerKey };
}

Deno.test("wireguard backend with EnableIPv6: flannel-wg and flannel-wg-v6, each family's peers to its device", async () => {
  const dir = await Deno.makeTempDir();
  try {
    using _log = logCapture();
    const { network, setups, applied, acquired } = await dualStackBackend(dir, "separate");
    const pub = toBase64(publicKey(parseKey(await Deno.readTextFile(`${dir}/wgkey`), "k")));
    assert.equal(
      encodeLeaseValue(acquired[0]),
      `{"PublicIP":"192.168.0.1","PublicIPv6":"fd00::a","BackendType":"wireguard",` +
        `"BackendData":{"PublicKey":"${pub}","Port":51820},` +
        `"BackendV6Data":{"PublicKey":"${pub}","Port":51900}}`,
    );
    assert.deepEqual(
      setups.map((s) =>
        `${s.name} ${s.family} ${s.bindIp}:${s.listenPort} ${s.addresses} ${s.networks} ${s.mtu}`
      ),
      [
        "flannel-wg 4 192.168.0.1:51820 10.1.1.0 10.1.0.0/16 1420",
        "flannel-wg-v6 6 fd00::a:51900 fc00:0:0:1:: fc00::/48 1420",
      ],
    );
    assert.deepEqual(network.devices, ["flannel-wg", "flannel-wg-v6"]);
    assert.equal(network.counters().rx_replay, 10, "counters summed over both devices");
    const ac = new AbortController();
    const running = network.run(ac.signal);
    for (let i = 0; i < 100 && applied.get("flannel-wg-v6")!.length < 1; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const name of ["flannel-wg", "flannel-wg-v6"]) {
      await Deno.stat(`${dir}/wg/${name}.sock`); // one UAPI socket per device
    }
    ac.abort();
    await running;
    const set = (name: string) => {
      const c = applied.get(name)![0].changes[0];
      assert.ok(c.op === "set");
      return c.peer;
    };
    assert.deepEqual(
      [set("flannel-wg").ip, set("flannel-wg").ip6, set("flannel-wg").port],
      [ip("192.168.0.2").toU32(), null, 51820],
    );
    assert.deepEqual(
      [set("flannel-wg-v6").ip, set("flannel-wg-v6").ip6, set("flannel-wg-v6").port],
      [0, ip("fd00::b").bytes, 51900],
    );
    assert.deepEqual(set("flannel-wg-v6").allowedIPs, [
      { net: 0, prefix: 64, net6: ip("fc00:0:0:2::").bytes },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("wireguard backend in the single-device modes: one flannel-wg for both families, the peer's subnets as its allowed IPs, the endpoint by Mode", async (t) => {
  for (
    const [mode, ip6, ip4] of [
      ["ipv6", "fd00::b", 0],
      ["ipv4", null, "192.168.0.2"],
      ["auto", null, "192.168.0.2"], // both underlays private: IPv4, as upstream
    ] as const
  ) {
    await t.step(`Mode ${mode}`, async () => {
      const dir = await Deno.makeTempDir();
      try {
        using _log = logCapture();
        const { network, setups, applied, acquired } = await dualStackBackend(dir, mode);
        const pub = toBase64(publicKey(parseKey(await Deno.readTextFile(`${dir}/wgkey`), "k")));
        // Both sides advertise the one port the device listens on.
        assert.equal(
          encodeLeaseValue(acquired[0]),
          `{"PublicIP":"192.168.0.1","PublicIPv6":"fd00::a","BackendType":"wireguard",` +
            `"BackendData":{"PublicKey":"${pub}","Port":51820},` +
            `"BackendV6Data":{"PublicKey":"${pub}","Port":51820}}`,
        );
        assert.deepEqual(
          setups.map((s) =>
            `${s.name} ${s.family} ${s.bindIp}:${s.listenPort} ${s.addresses} ${s.networks} ${s.mtu}`
          ),
          ["flannel-wg dual null:51820 10.1.1.0,fc00:0:0:1:: 10.1.0.0/16,fc00::/48 1420"],
        );
        assert.deepEqual(network.devices, ["flannel-wg"]);
        const ac = new AbortController();
        const running = network.run(ac.signal);
        for (let i = 0; i < 100 && applied.get("flannel-wg")!.length < 1; i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        await Deno.stat(`${dir}/wg/flannel-wg.sock`);
        ac.abort();
        await running;
        const c = applied.get("flannel-wg")![0].changes[0];
        assert.ok(c.op === "set");
        // The peer lease says Port 51900 in BackendV6Data (upstream's ListenPortV6): not read.
        assert.deepEqual(
          [c.peer.ip, c.peer.ip6, c.peer.port],
          [ip4 === 0 ? 0 : ip(ip4).toU32(), ip6 === null ? null : ip(ip6).bytes, 51820],
        );
        assert.deepEqual(c.peer.allowedIPs, [
          { net: ip("10.1.2.0").toU32(), prefix: 24 },
          { net: 0, prefix: 64, net6: ip("fc00:0:0:2::").bytes },
        ]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("singlePeerFromLease(): both subnets allowed, endpoint by Mode, BackendData's port, refusals named", () => {
  const us = { publicIP: ip("192.168.100.10"), publicIPv6: ip("fd00::a") };
  const both = dualLease({ PublicKey: PUB, Port: 40000 }, { PublicKey: PUB, Port: 51821 });
  const p6 = singlePeerFromLease(both, OWN, { mode: "ipv6", ours: us });
  assert.ok(typeof p6 !== "string");
  assert.deepEqual([p6.ip, p6.ip6, p6.port], [0, ip("fd00::b").bytes, 40000]);
  assert.deepEqual(p6.allowedIPs, [
    { net: 0x0a010200, prefix: 24 },
    { net: 0, prefix: 64, net6: ip("fc00:0:0:22::").bytes },
  ]);
  const p4 = singlePeerFromLease(both, OWN, { mode: "auto", ours: us });
  assert.ok(typeof p4 !== "string");
  assert.deepEqual([p4.ip, p4.ip6, p4.port], [0xc0a8640b, null, 40000]);
  // An IPv4-only peer in auto: reached over IPv4, its one subnet allowed.
  const only4 = singlePeerFromLease(lease("wireguard", { PublicKey: PUB }), OWN, {
    mode: "auto",
    ours: us,
  });
  assert.ok(typeof only4 !== "string");
  assert.deepEqual([only4.ip6, only4.port, only4.allowedIPs.length], [null, 51820, 1]);
  // An IPv6-only network's lease (no BackendData): our own ListenPort, not BackendV6Data's.
  const v6only: Lease = {
    ...dualLease(null, { PublicKey: PUB, Port: 51821 }),
    subnet: null,
    attrs: { ...both.attrs, publicIP: ip("0.0.0.0"), backendData: null },
  };
  const p = singlePeerFromLease(v6only, OWN, { mode: "auto", ours: us });
  assert.ok(typeof p !== "string");
  assert.deepEqual([p.ip6, p.port, p.allowedIPs.length], [ip("fd00::b").bytes, 51820, 1]);
  // Refusals, each a reason for the warning line.
  const other = toBase64(publicKey(generatePrivateKey()));
  assert.equal(
    singlePeerFromLease(dualLease({ PublicKey: PUB }, { PublicKey: other }), OWN, {
      mode: "auto",
      ours: us,
    }),
    "BackendData and BackendV6Data name different PublicKeys",
  );
  assert.equal(
    singlePeerFromLease(lease("wireguard", { PublicKey: PUB }), OWN, { mode: "ipv6", ours: us }),
    "no IPv6 address to reach it at (Mode ipv6)",
  );
  assert.equal(
    singlePeerFromLease(dualLease({ PublicKey: PUB }, {}), OWN, { mode: "ipv6", ours: us }),
    "BackendV6Data has no PublicKey",
  );
});

Deno.test("wireguard Mode auto or ipv4 on an IPv4-only network: the IPv4 device on an IPv4 socket (no IPv6 needed on the host)", async () => {
  for (const mode of ["auto", "ipv4"] as const) {
    const dir = await Deno.makeTempDir();
    try {
      using _log = logCapture();
      const { setups, network } = await dualStackBackend(dir, mode, false);
      assert.deepEqual(
        setups.map((s) => `${s.name} ${s.family} ${s.bindIp}:${s.listenPort} ${s.networks}`),
        ["flannel-wg 4 192.168.0.1:51820 10.1.0.0/16"],
      );
      assert.deepEqual(network.devices, ["flannel-wg"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});
