/**
 * An IPv6 WireGuard Device (family 6, upstream's `separate` mode): handshake and data between
 * two in-process devices over IPv6 endpoints, inner IPv6 packets checked against 128-bit
 * allowed IPs, roaming, cookies bound to the IPv6 source, longest-prefix lookup, `wg show` text.
 */

import assert from "node:assert/strict";
import { PacketAead, randomBytes } from "../../ffi/crypto.ts";
import {
  COOKIE_SENT,
  Device,
  DROP_MALFORMED,
  DROP_NO_ROUTE,
  DROP_NOT_ALLOWED,
  DROP_REPLAY,
  type Peer,
  STAGED,
} from "../../lib/backend/wireguard/device.ts";
import { addressBytes, CookieChecker } from "../../lib/backend/wireguard/cookie.ts";
import { MSG_COOKIE, MSG_INITIATION, MSG_TRANSPORT } from "../../lib/backend/wireguard/noise.ts";
import { generatePrivateKey, publicKey, toHex } from "../../lib/backend/wireguard/keys.ts";
import { REKEY_TIMEOUT } from "../../lib/backend/wireguard/timers.ts";
import { formatGet } from "../../lib/backend/wireguard/uapi.ts";
import { IP } from "../../lib/ip.ts";

const b6 = (s: string) => IP.mustParse(s).bytes;
const EP_A = b6("fd00:1::a"), EP_B = b6("fd00:1::b"), PORT = 51821;
const NET_A = "fc00:0:0:1::", NET_B = "fc00:0:0:2::"; // /64 each

class FakeClock {
  t = 1_000_000;
  now = () => this.t;
  wallMs = () => 1_700_000_000_000 + this.t;
  advance(ms: number) {
    this.t += ms;
  }
}

interface Sent {
  readonly bytes: Uint8Array;
  readonly ip: number;
  readonly port: number;
  readonly ip6: string | null;
}

class Side {
  readonly outbox: Sent[] = [];
  readonly aead = new PacketAead(64);
  readonly dev: Device;
  readonly plain = new Uint8Array(2048);
  readonly dgram = new Uint8Array(2048 + 32);
  readonly plainId: number;
  readonly payloadId: number;
  constructor(readonly ep: Uint8Array, clock: FakeClock) {
    this.dev = new Device(
      generatePrivateKey(),
      {
        clock,
        random: randomBytes,
        send: (bytes, ip, port, ip6) =>
          this.outbox.push({
            bytes: bytes.slice(),
            ip,
            port,
            ip6: ip6 === null ? null : IP.fromBytes(ip6).toString(),
          }),
      },
      this.aead,
    );
    this.plainId = this.aead.bind(this.plain);
    this.payloadId = this.aead.bind(this.dgram.subarray(16));
  }
  send(src: string, dst: string, body = 40): Uint8Array | number {
    const n = ipv6(this.plain, b6(src), b6(dst), body);
    const r = this.dev.sealTransport6(this.plainId, this.plain, n, this.dgram, this.payloadId);
    return r < 0 ? r : this.dgram.slice(0, r);
  }
  receive(bytes: Uint8Array, from: Uint8Array, port = PORT): number {
    // The source bytes sit inside a bigger buffer, as in a DatagramBatch's sockaddr_in6 memory.
    const sa = new Uint8Array(28);
    sa.set(from, 8);
    const ip6 = sa.subarray(8, 24);
    if (bytes[0] === MSG_TRANSPORT) {
      this.dgram.set(bytes);
      const r = this.dev.openTransport(
        this.dgram,
        bytes.length,
        0,
        port,
        this.payloadId,
        this.plainId,
        this.plain,
        0,
        ip6,
      );
      sa.fill(0xee); // the device must have copied what it keeps
      return r;
    }
    const r = this.dev.handshakeMessage(bytes, 0, port, ip6);
    sa.fill(0xee);
    return r;
  }
  [Symbol.dispose]() {
    this.aead[Symbol.dispose]();
  }
}

/** Writes an IPv6 header + `body` bytes (next header UDP) into `buf`; the total length. */
function ipv6(buf: Uint8Array, src: Uint8Array, dst: Uint8Array, body: number): number {
  buf.fill(0, 0, 40 + body);
  buf[0] = 0x60;
  buf[4] = body >> 8;
  buf[5] = body & 255;
  buf[6] = 17;
  buf[7] = 64;
  buf.set(src, 8);
  buf.set(dst, 24);
  for (let i = 40; i < 40 + body; i++) buf[i] = i & 255;
  return 40 + body;
}

function pump(a: Side, b: Side): string[] {
  const log: string[] = [];
  for (let round = 0; round < 20; round++) {
    const fromA = a.outbox.splice(0), fromB = b.outbox.splice(0);
    if (fromA.length === 0 && fromB.length === 0) return log;
    for (const m of fromA) log.push(`A→B type ${m.bytes[0]}: ${b.receive(m.bytes, a.ep)}`);
    for (const m of fromB) log.push(`B→A type ${m.bytes[0]}: ${a.receive(m.bytes, b.ep)}`);
  }
  throw new Error("pump did not settle");
}

function pair() {
  const clock = new FakeClock();
  const a = new Side(EP_A, clock), b = new Side(EP_B, clock);
  const pa = a.dev.setPeer({
    publicKey: b.dev.id.pub,
    endpoint: { ip: 0, port: PORT, ip6: EP_B },
    allowedIPs: [{ net: 0, prefix: 64, net6: b6(NET_B) }],
    persistentKeepalive: 0,
  });
  const pb = b.dev.setPeer({
    publicKey: a.dev.id.pub,
    endpoint: { ip: 0, port: PORT, ip6: EP_A },
    allowedIPs: [{ net: 0, prefix: 64, net6: b6(NET_A) }],
    persistentKeepalive: 0,
  });
  return {
    clock,
    a,
    b,
    pa,
    pb,
    [Symbol.dispose]() {
      a[Symbol.dispose]();
      b[Symbol.dispose]();
    },
  };
}

Deno.test("IPv6 Device pair: staged packet → handshake over [v6]:port → both sides decrypt", () => {
  using p = pair();
  const { a, b, pa, pb } = p;
  assert.equal(a.send("fc00:0:0:1::5", "fc00:0:0:2::7"), STAGED);
  assert.deepEqual(a.outbox.map((m) => [m.bytes[0], m.ip6, m.port]), [
    [MSG_INITIATION, "fd00:1::b", PORT],
  ]);
  assert.deepEqual(pump(a, b), ["A→B type 1: 0", "B→A type 2: 0", "A→B type 4: 80"]);
  assert.equal(IP.fromBytes(b.plain.subarray(24, 40)).toString(), "fc00:0:0:2::7");
  // B learnt A's endpoint from the handshake: a copy, not the caller's (since overwritten) bytes.
  assert.equal(IP.fromBytes(pb.endpoint!.ip6!).toString(), "fd00:1::a");
  const back = b.send("fc00:0:0:2::7", "fc00:0:0:1::5", 100);
  assert.ok(back instanceof Uint8Array);
  assert.equal(back.length, 16 + 144 + 16, "140-byte packet padded to 144");
  assert.equal(a.receive(back, EP_B), 140);
  assert.equal(a.dev.lastPeer, pa);
  const d = a.send("fc00:0:0:1::5", "fc00:0:0:2::7", 1360) as Uint8Array;
  assert.equal(b.receive(d, EP_A), 1400);
  assert.equal(b.receive(d, EP_A), DROP_REPLAY);
});

Deno.test("IPv6 Device drops a disallowed inner source, an IPv4 inner packet, a short one; no route", () => {
  using p = pair();
  const { a, b } = p;
  a.send("fc00:0:0:1::1", "fc00:0:0:2::1");
  pump(a, b);
  // Authenticated, but A may not speak for fc00:0:0:2::/64 nor for another /64 next to its own.
  assert.equal(
    b.receive(a.send("fc00:0:0:2::9", "fc00:0:0:2::1") as Uint8Array, EP_A),
    DROP_NOT_ALLOWED,
  );
  assert.equal(
    b.receive(a.send("fc00:0:0:3::9", "fc00:0:0:2::1") as Uint8Array, EP_A),
    DROP_NOT_ALLOWED,
  );
  // An IPv4 packet from a peer with only IPv6 allowed IPs: its source is not allowed.
  const n = ipv6(a.plain, b6(NET_A), b6("fc00:0:0:2::1"), 40);
  a.plain.set([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 1, 0, 0, 10, 1, 1, 1, 10, 1, 2, 1]);
  const r = a.dev.sealTransport6(a.plainId, a.plain, n, a.dgram, a.payloadId);
  assert.ok(r > 0);
  assert.equal(b.receive(a.dgram.slice(0, r), EP_A), DROP_NOT_ALLOWED);
  // Neither version 4 nor 6.
  ipv6(a.plain, b6(NET_A), b6("fc00:0:0:2::1"), 40);
  a.plain[0] = 0x50;
  const r1 = a.dev.sealTransport6(a.plainId, a.plain, n, a.dgram, a.payloadId);
  assert.equal(b.receive(a.dgram.slice(0, r1), EP_A), DROP_MALFORMED);
  // A payload length beyond the datagram.
  ipv6(a.plain, b6("fc00:0:0:1::1"), b6("fc00:0:0:2::1"), 40);
  a.plain[4] = 0x10;
  const r2 = a.dev.sealTransport6(a.plainId, a.plain, 80, a.dgram, a.payloadId);
  assert.equal(b.receive(a.dgram.slice(0, r2), EP_A), DROP_MALFORMED);
  assert.equal(a.send("fc00:0:0:1::1", "2001:db8::1"), DROP_NO_ROUTE);
  assert.equal(a.dev.sealTransport6(a.plainId, a.plain, 39, a.dgram, a.payloadId), DROP_MALFORMED);
});

Deno.test("IPv6 Device roams to the IPv6 source of an authenticated packet", () => {
  using p = pair();
  const { a, b, pb } = p;
  a.send("fc00:0:0:1::1", "fc00:0:0:2::1");
  pump(a, b);
  const moved = b6("fd00:2::a");
  assert.equal(b.receive(a.send("fc00:0:0:1::1", "fc00:0:0:2::1") as Uint8Array, moved, 4000), 80);
  assert.deepEqual([IP.fromBytes(pb.endpoint!.ip6!).toString(), pb.endpoint!.port], [
    "fd00:2::a",
    4000,
  ]);
  b.send("fc00:0:0:2::1", "fc00:0:0:1::1");
  b.dev.tick();
  // A forged datagram from elsewhere does not move the endpoint.
  const forged = (a.send("fc00:0:0:1::1", "fc00:0:0:2::1") as Uint8Array).slice();
  forged[30] ^= 1;
  assert.ok(b.receive(forged, b6("fd00:666::1")) < 0);
  assert.equal(IP.fromBytes(pb.endpoint!.ip6!).toString(), "fd00:2::a");
});

Deno.test("IPv6 cookies: bound to the 16 address bytes and port; the initiator's MAC2 gets through", () => {
  assert.deepEqual(
    [...addressBytes(0, 0x1234, b6("fd00::1"))],
    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x12, 0x34],
  );
  const c = new CookieChecker(randomBytes(32), randomBytes, 0);
  assert.equal(
    toHex(c.cookie(0, 1, 0, b6("fd00::1"))),
    toHex(c.cookie(0, 1, 0, b6("fd00::1"))),
  );
  assert.notEqual(toHex(c.cookie(0, 1, 0, b6("fd00::1"))), toHex(c.cookie(0, 1, 0, b6("fd00::2"))));
  assert.notEqual(toHex(c.cookie(0, 1, 0, b6("fd00::1"))), toHex(c.cookie(0, 2, 0, b6("fd00::1"))));

  using p = pair();
  const { a, b, clock } = p;
  a.send("fc00:0:0:1::1", "fc00:0:0:2::1");
  const init = a.outbox.splice(0)[0].bytes;
  const flood = (): void => {
    for (let i = 0; i < 70; i++) {
      const src = b6("fd00:9::");
      src[15] = i;
      b.dev.handshakeMessage(init, 0, 1000, src);
    }
    b.outbox.length = 0;
  };
  flood();
  assert.ok(b.dev.underLoad);
  clock.advance(REKEY_TIMEOUT + 400);
  flood();
  a.dev.tick();
  const retry = a.outbox.splice(0)[0];
  assert.equal(b.receive(retry.bytes, EP_A), COOKIE_SENT);
  assert.deepEqual(b.outbox.map((m) => [m.bytes[0], m.ip6]), [[MSG_COOKIE, "fd00:1::a"]]);
  assert.equal(a.receive(b.outbox.splice(0)[0].bytes, EP_B), 0, "cookie accepted");
  clock.advance(REKEY_TIMEOUT + 400);
  flood();
  a.dev.tick();
  // The MAC2 was made for A's address: from another source it is answered with a cookie again.
  const withMac2 = a.outbox[0].bytes;
  assert.equal(b.dev.handshakeMessage(withMac2, 0, PORT, b6("fd00:1::c")), COOKIE_SENT);
  b.outbox.length = 0;
  assert.deepEqual(pump(a, b).slice(0, 2), ["A→B type 1: 0", "B→A type 2: 0"]);
  assert.ok(a.dev.keypairs(p.pa).current !== null);
});

Deno.test("route6(): longest prefix among /0, /48, /64, /65, /127, /128; removal drops the entries", () => {
  using aead = new PacketAead(64);
  const dev = new Device(
    generatePrivateKey(),
    {
      clock: { now: () => 0, wallMs: () => 0 },
      random: randomBytes,
      send: () => {},
    },
    aead,
  );
  const peers: Record<string, Peer> = {};
  const add = (name: string, nets: [string, number][]) => {
    const priv = generatePrivateKey();
    peers[name] = dev.setPeer({
      publicKey: publicKey(priv),
      endpoint: null,
      allowedIPs: nets.map(([n, prefix]) => ({ net: 0, prefix, net6: b6(n) })),
      persistentKeepalive: 0,
    });
    return publicKey(priv);
  };
  add("default", [["::", 0]]);
  add("p48", [["fc00:1:2::", 48]]);
  const k64 = add("p64", [["fc00:1:2:3::", 64]]);
  add("p65", [["fc00:1:2:3:8000::", 65]]);
  add("p127", [["fc00:1:2:3::10", 127]]);
  add("p128", [["fc00:1:2:3::11", 128], ["2001:db8::", 32]]);
  const who = (s: string) => {
    const buf = new Uint8Array(40);
    buf.set(b6(s), 7);
    const peer = dev.route6(buf, 7);
    return Object.entries(peers).find(([, v]) => v === peer)?.[0];
  };
  assert.equal(who("fc00:1:2:3::1"), "p64");
  assert.equal(who("fc00:1:2:3:7fff:ffff:ffff:ffff"), "p64");
  assert.equal(who("fc00:1:2:3:8000::1"), "p65");
  assert.equal(who("fc00:1:2:3::10"), "p127");
  assert.equal(who("fc00:1:2:3::11"), "p128");
  assert.equal(who("fc00:1:2:3::12"), "p64");
  assert.equal(who("fc00:1:2:4::1"), "p48");
  assert.equal(who("fc00:1:3::1"), "default");
  assert.equal(who("2001:db8:ffff::1"), "p128");
  dev.removePeer(k64);
  assert.equal(who("fc00:1:2:3::1"), "p48");
  assert.equal(dev.route(0x0a000001), undefined, "no IPv4 allowed IPs on this device");
});

Deno.test("formatGet() of an IPv6 device: endpoint in brackets, IPv6 allowed IPs", () => {
  using aead = new PacketAead(8);
  const dev = new Device(
    generatePrivateKey(),
    {
      clock: { now: () => 0, wallMs: () => 0 },
      random: randomBytes,
      send: () => {},
    },
    aead,
  );
  dev.setPeer({
    publicKey: publicKey(generatePrivateKey()),
    endpoint: { ip: 0, port: 51821, ip6: b6("fd00:1::b") },
    allowedIPs: [{ net: 0, prefix: 64, net6: b6("fc00:0:0:2::") }],
    persistentKeepalive: 0,
  });
  const text = formatGet(dev, 51821);
  assert.match(text, /\nendpoint=\[fd00:1::b\]:51821\n/);
  assert.match(text, /\nallowed_ip=fc00:0:0:2::\/64\nerrno=0\n\n$/);
  assert.match(text, /\nlisten_port=51821\n/);
});
