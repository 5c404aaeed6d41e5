/**
 * The wireguard backend's data path, a Worker with synchronous FFI (the udp backend's design,
 * docs/udp-datapath-notes): one loop polls the TUN, the UDP socket and a wake-up eventfd
 * (timeout 50 ms, so timers run at least 20 times a second). TUN → UDP: up to {@link BATCH}
 * reads, each sealed straight into a datagram slot, one `sendmmsg`. UDP → TUN: one `recvmmsg`
 * of up to {@link BATCH} datagrams; transport data is opened into one plaintext buffer and
 * written to the TUN; handshake messages go to the {@link Device}. Nothing is allocated per
 * data packet; every buffer's address is registered with the {@link PacketAead} once.
 *
 * All WireGuard state (keys, sessions, timers) lives here, in the Device; the main thread
 * sends peer changes and asks for the UAPI text by message.
 */

/// <reference lib="deno.worker" />

import { DatagramBatch, drainEventFd, Poller, sendtoRaw } from "../../../ffi/udp.ts";
import { PacketSlots } from "../../../ffi/tun.ts";
import { PacketAead, randomBytes } from "../../../ffi/crypto.ts";
import { POLLIN, POLLOUT } from "../../../ffi/structs.ts";
import { SyscallError } from "../../../ffi/errno.ts";
import {
  COOKIE_SENT,
  Device,
  DROP_BAD_HANDSHAKE_MAC,
  DROP_BAD_MAC,
  DROP_EXPIRED,
  DROP_HANDSHAKE,
  DROP_MALFORMED,
  DROP_NO_ROUTE,
  DROP_NOT_ALLOWED,
  DROP_REPLAY,
  DROP_UNKNOWN_INDEX,
  DROP_UNKNOWN_PEER,
  STAGED,
} from "./device.ts";
import { COOKIE_SIZE, INITIATION_SIZE, RESPONSE_SIZE, TRANSPORT_HEADER } from "./noise.ts";
import { parseKey } from "./keys.ts";
import { systemClock } from "./timers.ts";
import { formatGet } from "./uapi.ts";
import { C } from "./counters.ts";
import {
  CTL_PENDING,
  CTL_STOP,
  type DumpRequest,
  type PeerBatch,
  type WorkerInit,
} from "./protocol.ts";

/** Packets per batch. */
const BATCH = 32;
/** Bytes per slot: a whole IPv4 packet plus WireGuard's header, padding and tag. */
const SLOT = 65536;
const POLL_MS = 50;
/** Key slots: two per keypair, three keypairs per peer, for up to 2048 peers. */
const KEY_SLOTS = 2 * 3 * 2048;
const EINTR = 4;
const EAGAIN = 11;

const RX_DROPS: Record<number, number> = {
  [DROP_UNKNOWN_INDEX]: C.rx_unknown_index,
  [DROP_BAD_MAC]: C.rx_bad_mac,
  [DROP_REPLAY]: C.rx_replay,
  [DROP_NOT_ALLOWED]: C.rx_not_allowed,
  [DROP_EXPIRED]: C.rx_expired,
  [DROP_MALFORMED]: C.rx_malformed,
};
const HS_DROPS: Record<number, number> = {
  [DROP_UNKNOWN_PEER]: C.hs_unknown_peer,
  [DROP_BAD_HANDSHAKE_MAC]: C.hs_bad_mac,
  [DROP_HANDSHAKE]: C.hs_refused,
  [COOKIE_SENT]: C.hs_cookie_sent,
  [DROP_UNKNOWN_INDEX]: C.rx_unknown_index,
  [DROP_MALFORMED]: C.rx_malformed,
};

class DataPath {
  readonly dev: Device;
  readonly listenPort: number;
  readonly #cnt: Float64Array;
  readonly #ctl: Int32Array;
  readonly #tun: number;
  readonly #udp: number;
  readonly #wake: number;
  readonly #wakeBuf = new Uint8Array(8);
  readonly #poller: Poller;
  readonly #pollOut: Poller;
  readonly #aead: PacketAead;
  readonly #tunIn: PacketSlots; // TUN reads, one per batch slot
  readonly #tunInIds: number[] = [];
  readonly #tx: DatagramBatch; // sealed datagrams
  readonly #txPayloadIds: number[] = [];
  readonly #rx: DatagramBatch; // received datagrams
  readonly #rxPayloadIds: number[] = [];
  readonly #plain: PacketSlots; // one opened packet at a time
  readonly #plainId: number;
  #lastTick = 0;

  constructor(init: WorkerInit) {
    this.#cnt = new Float64Array(init.counters);
    this.#ctl = new Int32Array(init.ctl);
    this.#tun = init.tunFd;
    this.#udp = init.udpFd;
    this.#wake = init.wakeFd;
    this.listenPort = init.listenPort;
    this.#poller = new Poller([init.tunFd, init.udpFd, init.wakeFd], POLLIN);
    this.#pollOut = new Poller([init.udpFd], POLLOUT);
    this.#aead = new PacketAead(KEY_SLOTS);
    this.#tunIn = new PacketSlots(BATCH, SLOT);
    this.#tx = new DatagramBatch(BATCH, SLOT + 2 * TRANSPORT_HEADER);
    this.#rx = new DatagramBatch(BATCH, SLOT + 2 * TRANSPORT_HEADER);
    this.#plain = new PacketSlots(1, SLOT + 2 * TRANSPORT_HEADER);
    for (let i = 0; i < BATCH; i++) {
      this.#tunInIds.push(this.#aead.bind(this.#tunIn.bufs[i]));
      this.#txPayloadIds.push(this.#aead.bind(this.#tx.slots[i].subarray(TRANSPORT_HEADER)));
      this.#rxPayloadIds.push(this.#aead.bind(this.#rx.slots[i].subarray(TRANSPORT_HEADER)));
    }
    this.#plainId = this.#aead.bind(this.#plain.bufs[0]);
    const udp = this.#udp;
    const cnt = this.#cnt;
    this.dev = new Device(init.privateKey, {
      clock: systemClock,
      random: randomBytes,
      send: (bytes, ip, port) => {
        const b = bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 &&
            bytes.byteLength === bytes.buffer.byteLength
          ? bytes as Uint8Array<ArrayBuffer>
          : new Uint8Array(bytes);
        if (sendtoRaw(udp, b, ip, port) < 0) cnt[C.tx_send_errors]++;
      },
    }, this.#aead);
  }

  /** Runs until the stop flag is set or messages are pending; true when it should stop. */
  run(): boolean {
    const ctl = this.#ctl;
    for (;;) {
      if (Atomics.load(ctl, CTL_STOP) !== 0) return true;
      if (Atomics.load(ctl, CTL_PENDING) > 0) return false;
      const n = this.#poller.poll(POLL_MS);
      if (n < 0) {
        if (n === -EINTR) continue;
        throw new SyscallError("poll", -n);
      }
      if (n > 0) {
        if (this.#poller.revents(0) !== 0) this.#tunToUdp();
        if (this.#poller.revents(1) !== 0) this.#udpToTun();
        if (this.#poller.revents(2) !== 0) drainEventFd(this.#wake, this.#wakeBuf);
      }
      const now = performance.now();
      if (now - this.#lastTick >= POLL_MS) {
        this.#lastTick = now;
        this.dev.tick();
      }
    }
  }

  #tunToUdp(): void {
    const cnt = this.#cnt, tx = this.#tx, tunIn = this.#tunIn, dev = this.dev;
    let k = 0;
    for (let r = 0; r < BATCH; r++) {
      const n = tunIn.read(this.#tun, k);
      if (n <= 0) break;
      const buf = tunIn.bufs[k];
      if (n < 20 || (buf[0] >> 4) !== 4) {
        cnt[C.tx_malformed]++;
        continue;
      }
      const dst = ((buf[16] << 24) | (buf[17] << 16) | (buf[18] << 8) | buf[19]) >>> 0;
      const len = dev.sealTransport(
        dst,
        this.#tunInIds[k],
        buf,
        n,
        tx.slots[k],
        this.#txPayloadIds[k],
      );
      if (len < 0) {
        if (len === DROP_NO_ROUTE) cnt[C.tx_no_route]++;
        else if (len === STAGED) cnt[C.tx_staged]++;
        continue;
      }
      const ep = dev.lastPeer!.endpoint!;
      tx.setSend(k, len, ep.ip, ep.port);
      cnt[C.tx_packets]++;
      cnt[C.tx_bytes] += n;
      k++;
    }
    this.#send(k);
  }

  #send(n: number): void {
    let first = 0;
    let waits = 0;
    while (first < n) {
      const r = this.#tx.send(this.#udp, n - first, first);
      if (r > 0) {
        first += r;
        continue;
      }
      if (r === -EAGAIN && waits < 3) {
        waits++;
        this.#pollOut.poll(5);
        continue;
      }
      this.#cnt[C.tx_send_errors] += n - first;
      return;
    }
  }

  #udpToTun(): void {
    const cnt = this.#cnt, rx = this.#rx, dev = this.dev, plain = this.#plain;
    const pbuf = plain.bufs[0];
    for (let round = 0; round < 4; round++) {
      const got = rx.recv(this.#udp, BATCH);
      if (got <= 0) return;
      for (let i = 0; i < got; i++) {
        if (rx.truncated(i)) {
          cnt[C.rx_truncated]++;
          continue;
        }
        const len = rx.len(i);
        const slot = rx.slots[i];
        const type = slot[0];
        if (type === 4) {
          const r = dev.openTransport(
            slot,
            len,
            rx.addrIp(i),
            rx.addrPort(i),
            this.#rxPayloadIds[i],
            this.#plainId,
            pbuf,
          );
          if (r > 0) {
            if (plain.write(this.#tun, 0, r) < 0) cnt[C.rx_tun_errors]++;
            else {
              cnt[C.rx_packets]++;
              cnt[C.rx_bytes] += r;
            }
          } else if (r === 0) cnt[C.rx_keepalives]++;
          else cnt[RX_DROPS[r] ?? C.rx_malformed]++;
          continue;
        }
        // Handshake messages have exact sizes; anything else is dropped before any work.
        if (
          !(type === 1 && len === INITIATION_SIZE) && !(type === 2 && len === RESPONSE_SIZE) &&
          !(type === 3 && len === COOKIE_SIZE)
        ) {
          cnt[C.rx_malformed]++;
          continue;
        }
        cnt[C.hs_received]++;
        const r = dev.handshakeMessage(slot.subarray(0, len), rx.addrIp(i), rx.addrPort(i));
        if (r < 0) cnt[HS_DROPS[r] ?? C.hs_refused]++;
      }
      if (got < BATCH) return;
    }
  }

  /** Applies peer changes from the main thread. */
  apply(m: PeerBatch): void {
    for (const c of m.changes) {
      if (c.op === "del") {
        this.dev.removePeer(parseKey(c.publicKey, "peer public key"));
        continue;
      }
      const p = c.peer;
      this.dev.setPeer({
        publicKey: parseKey(p.publicKey, "peer public key"),
        presharedKey: p.presharedKey === null ? undefined : parseKey(p.presharedKey, "PSK"),
        endpoint: { ip: p.ip, port: p.port },
        allowedIPs: p.allowedIPs,
        persistentKeepalive: p.persistentKeepalive,
      });
    }
  }

  close(): void {
    this.dev.close();
    this.#aead[Symbol.dispose]();
  }
}

let path: DataPath | null = null;
let ctlView: Int32Array | null = null;

function loop(): void {
  try {
    if (path!.run()) {
      path!.close();
      self.postMessage({ type: "stopped" });
      self.close();
      return;
    }
    setTimeout(loop, 0);
  } catch (err) {
    self.postMessage({ type: "error", message: (err as Error).message });
    self.close();
  }
}

self.onmessage = (ev: MessageEvent<WorkerInit | PeerBatch | DumpRequest>) => {
  const m = ev.data;
  try {
    if (m.op === "init") {
      path = new DataPath(m);
      ctlView = new Int32Array(m.ctl);
      self.postMessage({ type: "ready" });
      setTimeout(loop, 0);
      return;
    }
    if (m.op === "dump") {
      self.postMessage({ type: "dump", id: m.id, text: formatGet(path!.dev, path!.listenPort) });
      return;
    }
    path!.apply(m);
  } catch (err) {
    self.postMessage({ type: "warn", message: (err as Error).message });
  } finally {
    if (m.op !== "init" && ctlView) Atomics.sub(ctlView, CTL_PENDING, 1);
  }
};
