/**
 * The WireGuard protocol core between two in-process Devices: a full handshake transcript, both
 * sides decrypting each other's data, drops by reason, cookies under load, and the timer state
 * machine on a fake clock.
 */

import assert from "node:assert/strict";
import { PacketAead, randomBytes } from "../../ffi/crypto.ts";
import {
  COOKIE_SENT,
  Device,
  DROP_BAD_MAC,
  DROP_HANDSHAKE,
  DROP_NOT_ALLOWED,
  DROP_REPLAY,
  DROP_UNKNOWN_INDEX,
  DROP_UNKNOWN_PEER,
  type Peer,
  STAGED,
} from "../../lib/backend/wireguard/device.ts";
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  identity,
  INITIAL_CHAIN_KEY,
  INITIAL_HASH,
  MSG_COOKIE,
  MSG_INITIATION,
  MSG_RESPONSE,
  MSG_TRANSPORT,
  peerKeys,
  tai64n,
  writeMacs,
} from "../../lib/backend/wireguard/noise.ts";
import { clamp, generatePrivateKey, toHex } from "../../lib/backend/wireguard/keys.ts";
import {
  KEEPALIVE_TIMEOUT,
  MAX_TIMER_HANDSHAKES,
  REJECT_AFTER_TIME,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME,
  REKEY_TIMEOUT,
} from "../../lib/backend/wireguard/timers.ts";

const IP_A = 0x0a000001, IP_B = 0x0a000002, PORT = 51820;
const NET_A = 0x0af40100, NET_B = 0x0af40200; // 10.244.1.0/24, 10.244.2.0/24

class FakeClock {
  t = 1_000_000;
  wall = 1_700_000_000_000;
  now = () => this.t;
  wallMs = () => this.wall + this.t;
  advance(ms: number) {
    this.t += ms;
  }
}

interface Sent {
  readonly bytes: Uint8Array;
  readonly ip: number;
  readonly port: number;
}

/** One side: a Device with its outbox and packet buffers bound in its PacketAead. */
class Side {
  readonly outbox: Sent[] = [];
  readonly aead = new PacketAead(64);
  readonly dev: Device;
  readonly plain = new Uint8Array(2048);
  readonly dgram = new Uint8Array(2048 + 32);
  readonly plainId: number;
  readonly dgramId: number;
  readonly payloadId: number;
  readonly priv = generatePrivateKey();
  constructor(readonly ip: number, readonly clock: FakeClock, mtu?: number) {
    this.dev = new Device(this.priv, {
      clock,
      random: randomBytes,
      send: (bytes, ip, port) => this.outbox.push({ bytes: bytes.slice(), ip, port }),
      mtu,
    }, this.aead);
    this.plainId = this.aead.bind(this.plain);
    this.dgramId = this.aead.bind(this.dgram);
    this.payloadId = this.aead.bind(this.dgram.subarray(16));
  }
  /** Seals an IPv4 packet from `src` to `dst`; the datagram, or the negative result. */
  send(src: number, dst: number, body = 40): Uint8Array | number {
    const n = ipv4(this.plain, src, dst, body);
    const r = this.dev.sealTransport(dst, this.plainId, this.plain, n, this.dgram, this.payloadId);
    return r < 0 ? r : this.dgram.slice(0, r);
  }
  /** Delivers a datagram from `ip`: the Device's result (inner length, 0, or a drop). */
  receive(bytes: Uint8Array, ip: number, port = PORT): number {
    if (bytes[0] === MSG_TRANSPORT) {
      this.dgram.set(bytes);
      return this.dev.openTransport(
        this.dgram,
        bytes.length,
        ip,
        port,
        this.payloadId,
        this.plainId,
        this.plain,
      );
    }
    return this.dev.handshakeMessage(bytes, ip, port);
  }
  [Symbol.dispose]() {
    this.aead[Symbol.dispose]();
  }
}

/** Writes an IPv4 header + `body` bytes into `buf`; returns the total length. */
function ipv4(buf: Uint8Array, src: number, dst: number, body: number): number {
  const n = 20 + body;
  buf.fill(0, 0, n);
  buf[0] = 0x45;
  buf[2] = n >> 8;
  buf[3] = n & 255;
  buf[8] = 64;
  buf[9] = 17;
  new DataView(buf.buffer, buf.byteOffset).setUint32(12, src);
  new DataView(buf.buffer, buf.byteOffset).setUint32(16, dst);
  for (let i = 20; i < n; i++) buf[i] = i & 255;
  return n;
}

/** Moves every queued datagram between a and b until both are quiet; returns results per hop. */
function pump(a: Side, b: Side, log: string[] = []): string[] {
  for (let round = 0; round < 20; round++) {
    const fromA = a.outbox.splice(0), fromB = b.outbox.splice(0);
    if (fromA.length === 0 && fromB.length === 0) return log;
    for (const m of fromA) log.push(`A→B type ${m.bytes[0]}: ${b.receive(m.bytes, a.ip)}`);
    for (const m of fromB) log.push(`B→A type ${m.bytes[0]}: ${a.receive(m.bytes, b.ip)}`);
  }
  throw new Error("pump did not settle");
}

function pair(
  opts: { pskA?: Uint8Array; pskB?: Uint8Array; keepalive?: number; mtu?: number } = {},
) {
  const clock = new FakeClock();
  const a = new Side(IP_A, clock, opts.mtu), b = new Side(IP_B, clock, opts.mtu);
  const pa = a.dev.setPeer({
    publicKey: b.dev.id.pub,
    presharedKey: opts.pskA,
    endpoint: { ip: IP_B, port: PORT },
    allowedIPs: [{ net: NET_B, prefix: 24 }],
    persistentKeepalive: opts.keepalive ?? 0,
  });
  const pb = b.dev.setPeer({
    publicKey: a.dev.id.pub,
    presharedKey: opts.pskB,
    endpoint: { ip: IP_A, port: PORT },
    allowedIPs: [{ net: NET_A, prefix: 24 }],
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

function types(s: Side): number[] {
  return s.outbox.map((m) => m.bytes[0]);
}

Deno.test("the handshake starts from HASH(construction) and HASH(ck ‖ identifier) (whitepaper §5.4)", () => {
  assert.equal(
    toHex(INITIAL_CHAIN_KEY),
    "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36",
  );
  assert.equal(
    toHex(INITIAL_HASH),
    "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3",
  );
});

Deno.test("tai64n() encodes 2^62 + 10 + seconds, then whitened nanoseconds, big-endian", () => {
  assert.equal(toHex(tai64n(0)), "400000000000000a" + "00000000");
  assert.equal(toHex(tai64n(1_000_500)), "40000000000003f2" + "1d000000"); // 500 ms → 0x1d000000 ns
});

Deno.test("Noise_IKpsk2: initiator and responder derive crosswise transport keys; a wrong PSK fails", () => {
  const ia = identity(generatePrivateKey()), ib = identity(generatePrivateKey());
  const psk = randomBytes(32);
  const aToB = peerKeys(ia, ib.pub, psk), bToA = peerKeys(ib, ia.pub, psk);
  const init = createInitiation(ia, aToB, 0x11223344, 1_700_000_000_000)!;
  assert.equal(init.msg.length, 148);
  assert.deepEqual([...init.msg.subarray(0, 8)], [1, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
  const got = consumeInitiation(
    ib,
    init.msg,
    (pub) => toHex(pub) === toHex(ia.pub) ? bToA : undefined,
  );
  assert.ok(got !== null && got !== "unknown-peer");
  assert.equal(toHex(got.init.peerPub), toHex(ia.pub));
  assert.equal(toHex(got.init.timestamp), toHex(tai64n(1_700_000_000_000)));
  assert.equal(got.init.remoteIndex, 0x11223344);
  const resp = createResponse(bToA, got.init, 0x55667788)!;
  assert.equal(resp.msg.length, 92);
  const keys = consumeResponse(ia, aToB, init.state, resp.msg)!;
  assert.ok(keys !== null);
  assert.equal(toHex(keys.send), toHex(resp.keys.recv));
  assert.equal(toHex(keys.recv), toHex(resp.keys.send));
  assert.notEqual(toHex(keys.send), toHex(keys.recv));
  assert.equal(keys.remoteIndex, 0x55667788);
  assert.equal(resp.keys.remoteIndex, 0x11223344);
  // An initiation from a stranger is "unknown-peer"; a tampered one does not decrypt.
  assert.equal(consumeInitiation(ib, init.msg, () => undefined), "unknown-peer");
  const bad = init.msg.slice();
  bad[50] ^= 1;
  assert.equal(consumeInitiation(ib, bad, () => bToA), null);
  // A responder with another PSK makes a response the initiator cannot consume.
  const wrong = createResponse(peerKeys(ib, ia.pub, randomBytes(32)), got.init, 1)!;
  assert.equal(consumeResponse(ia, aToB, init.state, wrong.msg), null);
});

Deno.test("a full handshake transcript matches an independent implementation byte for byte", () => {
  // Fixed keys, ephemerals, indices, time and PSK; the expected bytes come from
  // tests/fixtures/wireguard/transcript.py (Python, cryptography + hashlib, no shared code).
  const k = (seed: number) =>
    clamp(Uint8Array.from({ length: 32 }, (_, i) => (i * 7 + seed) & 255));
  const ia = identity(k(1)), ib = identity(k(2));
  const psk = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);
  const ab = peerKeys(ia, ib.pub, psk), ba = peerKeys(ib, ia.pub, psk);
  const init = createInitiation(ia, ab, 0x01020304, 1_700_000_000_123, k(3))!;
  writeMacs(init.msg, ab.mac1Key, null);
  assert.equal(
    toHex(init.msg),
    "0100000004030201bb50ff9e82a574cfbf820e97f60fb9c143ec7415cf514f8cfd98eff59e0596149c8012d1" +
      "93b4aa851af47ce34a5618c7c0673c2dccf004ae5a2c863e7f8f9187d0f07eebcb322940999de3c569990484" +
      "d08d25afb2d92d0d5067094557c0bb839c5a6483419b0b22ff30b2a27e3059c77080c2c32b4ebfe5e7cc0d7b" +
      "00000000000000000000000000000000",
  );
  const got = consumeInitiation(ib, init.msg, () => ba);
  assert.ok(got !== null && got !== "unknown-peer");
  const resp = createResponse(ba, got.init, 0x0a0b0c0d, k(4))!;
  writeMacs(resp.msg, ba.mac1Key, null);
  assert.equal(
    toHex(resp.msg),
    "020000000d0c0b0a04030201f74e5bb7515d565274967af75d88497dc6fc7fcd607da9dd91a617db86ad0110" +
      "80e6ea91ec8a8f525c64fe0e7ee4aa6fe5e9874476305819fcb30979bcc7b09f000000000000000000000000" +
      "00000000",
  );
  const keys = consumeResponse(ia, ab, init.state, resp.msg)!;
  assert.equal(
    toHex(keys.send),
    "3be452662adb69bf6f0bc1b933fae805ea88bf2940c03c6ca255a32ef8e1b165",
  );
  assert.equal(
    toHex(keys.recv),
    "94f7f2734d62e3bc80610c3b59f3b86c8ebc1635a4dde95ea1b2ee7ed939bfda",
  );
  assert.equal(toHex(resp.keys.recv), toHex(keys.send));
});

Deno.test("timers: REKEY_AFTER_MESSAGES sent on a keypair starts a handshake on the next send", () => {
  using p = pair();
  const { a, b, pa, clock } = p;
  a.send(NET_A + 1, NET_B + 1);
  pump(a, b);
  a.outbox.length = 0;
  clock.advance(REKEY_TIMEOUT + 1); // past the one-initiation-per-REKEY_TIMEOUT limit
  assert.ok(a.send(NET_A + 1, NET_B + 1) instanceof Uint8Array);
  assert.deepEqual(types(a), [], "no rekey below the limit");
  a.dev.keypairs(pa).current!.sendCounter = REKEY_AFTER_MESSAGES;
  assert.ok(a.send(NET_A + 1, NET_B + 1) instanceof Uint8Array, "still sent on the old keypair");
  assert.deepEqual(types(a), [MSG_INITIATION]);
});

Deno.test("Device pair: staged packet → handshake → both sides decrypt each other's data", () => {
  using p = pair({ pskA: undefined });
  const { a, b, pa, pb } = p;
  // A has no keypair: the packet is staged and an initiation goes out.
  assert.equal(a.send(NET_A + 5, NET_B + 7), STAGED);
  assert.deepEqual(types(a), [MSG_INITIATION]);
  const log = pump(a, b);
  // B answers; A confirms with the staged packet; nothing else is needed.
  assert.deepEqual(log, ["A→B type 1: 0", "B→A type 2: 0", "A→B type 4: 60"]);
  assert.equal(toHex(b.plain.subarray(16, 20)), toHex(Uint8Array.of(10, 244, 2, 7)));
  assert.ok(b.dev.keypairs(pb).current !== null, "B's next became current on A's first data");
  assert.equal(b.dev.keypairs(pb).next, null);
  // B answers with data that A decrypts.
  const back = b.send(NET_B + 7, NET_A + 5, 100);
  assert.ok(back instanceof Uint8Array);
  assert.equal(back.length, 16 + 128 + 16, "120-byte packet padded to 128");
  assert.equal(a.receive(back, IP_B), 120);
  assert.equal(a.dev.lastPeer, pa);
  // Data from A again, now on the current keypair.
  const d = a.send(NET_A + 5, NET_B + 7, 1380);
  assert.ok(d instanceof Uint8Array);
  assert.equal(b.receive(d, IP_A), 1400);
  assert.ok(pa.lastHandshakeWallMs > 0 && pb.lastHandshakeWallMs > 0);
});

Deno.test("Device drops by reason: replay, bad MAC, unknown index, disallowed source, no route", () => {
  using p = pair();
  const { a, b } = p;
  a.send(NET_A + 1, NET_B + 1);
  pump(a, b);
  const d = a.send(NET_A + 1, NET_B + 1) as Uint8Array;
  assert.equal(b.receive(d, IP_A), 60);
  assert.equal(b.receive(d, IP_A), DROP_REPLAY, "the same datagram again");
  const forged = (a.send(NET_A + 1, NET_B + 1) as Uint8Array).slice();
  forged[40] ^= 0x20;
  assert.equal(b.receive(forged, IP_A), DROP_BAD_MAC);
  const unknown = (a.send(NET_A + 1, NET_B + 1) as Uint8Array).slice();
  unknown[4] ^= 0xff;
  assert.equal(b.receive(unknown, IP_A), DROP_UNKNOWN_INDEX);
  // A authenticated packet whose inner source is not A's subnet: A may not speak for 10.244.2.x.
  const spoof = a.send(NET_B + 9, NET_B + 1) as Uint8Array;
  assert.equal(b.receive(spoof, IP_A), DROP_NOT_ALLOWED);
  assert.equal(a.send(NET_A + 1, 0x08080808), -11, "no route to 8.8.8.8");
});

Deno.test("Device refuses an initiation from an unknown key, a replayed initiation and a PSK mismatch", () => {
  {
    using p = pair({ pskA: randomBytes(32), pskB: randomBytes(32) });
    const { a, b } = p;
    a.send(NET_A + 1, NET_B + 1);
    const log = pump(a, b);
    assert.deepEqual(
      log,
      ["A→B type 1: 0", "B→A type 2: " + DROP_HANDSHAKE].map((s, i) =>
        i === 1 ? "B→A type 2: " + DROP_HANDSHAKE : s
      ),
    );
    assert.equal(a.dev.keypairs(p.pa).current, null, "no session with a wrong PSK");
  }
  {
    using p = pair();
    const { a, b, clock } = p;
    a.send(NET_A + 1, NET_B + 1);
    const init = a.outbox[0].bytes;
    assert.equal(b.receive(init, IP_A), 0);
    clock.advance(100);
    assert.equal(b.receive(init, IP_A), DROP_HANDSHAKE, "same timestamp twice");
    b.dev.removePeer(a.dev.id.pub);
    assert.equal(b.receive(init, IP_A), DROP_UNKNOWN_PEER);
  }
});

Deno.test("under load, a responder answers with a cookie; the initiator's MAC2 then gets through", () => {
  using p = pair();
  const { a, b, clock } = p;
  // Flood B with 70 valid-MAC1 initiations from a stranger address within a second.
  a.send(NET_A + 1, NET_B + 1);
  const init = a.outbox.splice(0)[0].bytes;
  for (let i = 0; i < 70; i++) b.dev.handshakeMessage(init, 0x0b000000 + i, 1000);
  b.outbox.length = 0;
  assert.ok(b.dev.underLoad);
  // A's retransmission (no MAC2) is answered with a cookie reply.
  clock.advance(REKEY_TIMEOUT + 400);
  for (let i = 0; i < 70; i++) b.dev.handshakeMessage(init, 0x0b000000 + i, 1000);
  b.outbox.length = 0;
  a.dev.tick();
  assert.deepEqual(types(a), [MSG_INITIATION]);
  const retry = a.outbox.splice(0)[0];
  assert.equal(b.receive(retry.bytes, IP_A), COOKIE_SENT);
  assert.deepEqual(types(b), [MSG_COOKIE]);
  assert.equal(a.receive(b.outbox.splice(0)[0].bytes, IP_B), 0, "cookie accepted");
  // Still under load (B keeps getting flooded); the next retry carries MAC2 and is processed.
  clock.advance(REKEY_TIMEOUT + 400);
  for (let i = 0; i < 70; i++) b.dev.handshakeMessage(init, 0x0b000000 + i, 1000);
  b.outbox.length = 0;
  a.dev.tick();
  const log = pump(a, b);
  assert.deepEqual(log.slice(0, 2), ["A→B type 1: 0", "B→A type 2: 0"]);
  assert.ok(a.dev.keypairs(p.pa).current !== null);
});

Deno.test("timers: retransmit every REKEY_TIMEOUT + jitter, give up after REKEY_ATTEMPT_TIME", () => {
  using p = pair();
  const { a, clock } = p;
  a.send(NET_A + 1, NET_B + 1); // B never answers
  let sent = a.outbox.splice(0).length;
  for (let t = 0; t < 120_000; t += 100) {
    clock.advance(100);
    a.dev.tick();
    const n = a.outbox.splice(0).length;
    if (n > 0) {
      sent += n;
      assert.ok(clock.t > 0);
    }
  }
  assert.equal(sent, 1 + MAX_TIMER_HANDSHAKES, "1 initiation + 18 retries");
  assert.equal(p.pa.staged.length, 0, "staged packets dropped on giving up");
});

Deno.test("timers: keepalive after KEEPALIVE_TIMEOUT of receiving without sending", () => {
  using p = pair();
  const { a, b, clock } = p;
  a.send(NET_A + 1, NET_B + 1);
  pump(a, b);
  // B received data (the staged packet) and sends nothing: after 10 s it sends a keepalive.
  clock.advance(KEEPALIVE_TIMEOUT - 100);
  b.dev.tick();
  assert.deepEqual(types(b), []);
  clock.advance(200);
  b.dev.tick();
  assert.deepEqual(types(b), [MSG_TRANSPORT]);
  assert.equal(b.outbox[0].bytes.length, 32, "an empty transport message");
  assert.equal(a.receive(b.outbox.splice(0)[0].bytes, IP_B), 0);
  // Receiving a keepalive does not call for another.
  clock.advance(KEEPALIVE_TIMEOUT + 1000);
  a.dev.tick();
  assert.deepEqual(types(a), []);
});

Deno.test("timers: a new handshake when data sent gets no answer for KEEPALIVE + REKEY_TIMEOUT", () => {
  using p = pair();
  const { a, b, clock } = p;
  a.send(NET_A + 1, NET_B + 1);
  pump(a, b);
  assert.equal(a.receive(b.send(NET_B + 1, NET_A + 1) as Uint8Array, IP_B), 60); // B answers
  clock.advance(6000);
  a.send(NET_A + 1, NET_B + 1); // B never answers this one
  a.outbox.length = 0;
  clock.advance(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT - 100);
  a.dev.tick();
  assert.deepEqual(types(a), []);
  clock.advance(500);
  a.dev.tick();
  assert.deepEqual(types(a), [MSG_INITIATION]);
});

Deno.test("timers: the initiator rekeys after REKEY_AFTER_TIME; the old keypair becomes previous", () => {
  using p = pair();
  const { a, b, clock, pa } = p;
  a.send(NET_A + 1, NET_B + 1);
  pump(a, b);
  const first = a.dev.keypairs(pa).current!;
  // Traffic both ways every 5 s, so no other timer fires.
  for (let t = 0; t < REKEY_AFTER_TIME; t += 5000) {
    clock.advance(5000);
    b.receive(a.send(NET_A + 1, NET_B + 1) as Uint8Array, IP_A);
    a.receive(b.send(NET_B + 1, NET_A + 1) as Uint8Array, IP_B);
    a.dev.tick();
    b.dev.tick();
  }
  clock.advance(1000);
  const d = a.send(NET_A + 1, NET_B + 1) as Uint8Array;
  assert.deepEqual(types(a).slice(-1), [MSG_INITIATION], "rekey on send after 120 s");
  const log = pump(a, b);
  assert.ok(log.includes("A→B type 1: 0") && log.includes("B→A type 2: 0"), log.join());
  const now = a.dev.keypairs(pa);
  assert.notEqual(now.current, first);
  assert.equal(now.previous, first);
  // A datagram sealed with the previous keypair still opens on B (its previous/current).
  assert.equal(b.receive(d, IP_A), 60);
});

Deno.test("timers: a keypair is rejected after REJECT_AFTER_TIME; all keys erased after 3×", () => {
  using p = pair();
  const { a, b, clock, pa } = p;
  a.send(NET_A + 1, NET_B + 1);
  pump(a, b);
  const old = a.send(NET_A + 1, NET_B + 1) as Uint8Array;
  a.outbox.length = 0;
  clock.advance(REJECT_AFTER_TIME);
  assert.equal(b.receive(old, IP_A), -5, "DROP_EXPIRED");
  assert.equal(a.send(NET_A + 1, NET_B + 1), STAGED, "no sending with an expired keypair");
  a.outbox.length = 0;
  // Nobody answers A's handshakes; after 3 × REJECT_AFTER_TIME from the last session every key is gone.
  for (let t = 0; t < 2 * REJECT_AFTER_TIME + 1000; t += 1000) {
    clock.advance(1000);
    a.dev.tick();
  }
  assert.deepEqual(a.dev.keypairs(pa), { previous: null, current: null, next: null });
});

Deno.test("timers: persistent keepalive every interval while idle", () => {
  using p = pair({ keepalive: 25 });
  const { a, b, clock } = p;
  // Configuring it sends a first keepalive, which needs a handshake.
  assert.deepEqual(types(a), [MSG_INITIATION]);
  pump(a, b);
  let keepalives = 0;
  for (let t = 0; t < 100_000; t += 1000) {
    clock.advance(1000);
    a.dev.tick();
    for (const m of a.outbox.splice(0)) {
      if (m.bytes[0] === MSG_TRANSPORT && m.bytes.length === 32) keepalives++;
      b.receive(m.bytes, IP_A);
    }
    b.outbox.length = 0;
  }
  assert.equal(keepalives, 4, "at 25, 50, 75, 100 s");
});

Deno.test("a responder's next keypair is not used to send until the initiator confirms it", () => {
  using p = pair();
  const { a, b, pb } = p;
  a.dev.initiate(p.pa);
  const init = a.outbox.splice(0)[0].bytes;
  assert.equal(b.receive(init, IP_A), 0);
  assert.ok(b.dev.keypairs(pb).next !== null);
  assert.equal(b.dev.keypairs(pb).current, null);
  assert.equal(b.send(NET_B + 1, NET_A + 1), STAGED);
  // B's staged packet goes out once A's keepalive confirms the keypair.
  const resp = b.outbox.filter((m) => m.bytes[0] === MSG_RESPONSE);
  assert.equal(resp.length, 1);
  b.outbox.length = 0;
  assert.equal(a.receive(resp[0].bytes, IP_B), 0);
  const ka = a.outbox.splice(0);
  assert.deepEqual(ka.map((m) => [m.bytes[0], m.bytes.length]), [[MSG_TRANSPORT, 32]]);
  assert.equal(b.receive(ka[0].bytes, IP_A), 0);
  assert.deepEqual(types(b), [MSG_TRANSPORT], "the staged packet, flushed");
  assert.equal(a.receive(b.outbox[0].bytes, IP_B), 60);
});

export type { Peer };

Deno.test("Device with an MTU pads to 16 but never past the MTU (as the kernel and wireguard-go)", () => {
  using p = pair({ mtu: 1420 });
  const { a, b } = p;
  assert.equal(a.send(NET_A + 5, NET_B + 7), STAGED);
  pump(a, b);
  // [inner length, padded length]: 1420 is not a multiple of 16; 1424 would overflow it.
  for (const [inner, padded] of [[1400, 1408], [1410, 1420], [1420, 1420], [60, 64]]) {
    const d = a.send(NET_A + 5, NET_B + 7, inner - 20);
    assert.ok(d instanceof Uint8Array);
    assert.equal(d.length, 16 + padded + 16, `${inner}-byte packet padded to ${padded}`);
    assert.equal(b.receive(d, IP_A), inner, "the peer opens it");
  }
});
