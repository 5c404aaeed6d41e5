/**
 * The wireguard backend's data path, a Worker with synchronous FFI (the udp backend's design,
 * docs/udp-datapath-notes): one loop polls the TUN, the UDP socket and a wake-up eventfd
 * (timeout 50 ms, so timers run at least 20 times a second). TUN → UDP: up to {@link BATCH}
 * reads, each sealed straight into a datagram slot, one `sendmmsg`; with offloads a TCP
 * super-packet (TCP/IPv4, or TCP/IPv6 with TSO6) is cut into MSS segments (udp/segment.ts,
 * udp/segment6.ts), each sealed, and the sealed segments of one super-packet go back to back
 * into one slot for a UDP GSO send. UDP → TUN: `recvmmsg` of up to {@link BATCH}
 * (`UDP_GRO`-coalesced) datagrams; each transport message is opened on its own into one
 * plaintext buffer, and consecutive segments of one TCP flow (either family) are merged into
 * one GSO write to the TUN; handshake messages go to the {@link Device}. The wire format is
 * WireGuard's throughout: one sealed inner packet per datagram. Nothing is allocated per data
 * packet; every buffer's address is registered with the {@link PacketAead} once.
 *
 * All WireGuard state (keys, sessions, timers) lives here, in the Device; the main thread
 * sends peer changes and asks for the UAPI text by message.
 */

/// <reference lib="deno.worker" />

import { DatagramBatch, drainEventFd, Poller, sendtoRaw, sendtoRaw6 } from "../../../ffi/udp.ts";
import { PacketSlots, writeBuf } from "../../../ffi/tun.ts";
import { PacketAead, randomBytes } from "../../../ffi/crypto.ts";
import {
  POLLIN,
  POLLOUT,
  VIRTIO_NET_HDR,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
} from "../../../ffi/structs.ts";
import {
  completeChecksum,
  finishTcpSuper,
  segmentCount,
  tcpCanAppend,
  tcpCanStartRun,
  tcpHeaderLength,
  vnetCsumOffset,
  vnetCsumStart,
  vnetFlags,
  vnetGsoSize,
  vnetGsoType,
  writeSegment,
} from "../udp/segment.ts";
import {
  finishTcp6Super,
  IPV6_HEADER,
  tcp6CanAppend,
  tcp6CanStartRun,
  tcp6HeaderLength,
  writeSegment6,
} from "../udp/segment6.ts";
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
  type Endpoint,
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
import { serveDataPath } from "../datapath/serve.ts";

/** Packets per batch. */
const BATCH = 32;
/** Bytes per slot: a whole IPv4 packet plus WireGuard's header, padding and tag. */
const SLOT = 65536;
const POLL_MS = 50;
/** Key slots: two per keypair, three keypairs per peer, for up to 2048 peers. */
const KEY_SLOTS = 2 * 3 * 2048;
/** Where the opened packet goes in the receive memory: after a vnet header and a 64 KiB run. */
const SCRATCH = 65536 + 64;
/** The largest IPv4 packet: a coalesced run (either family) stays below it. */
const MAX_IP = 65535;
const EINTR = 4;
const EIO = 5;
const EAGAIN = 11;
const EINVAL = 22;
/** The kernel's limit of segments per UDP GSO send (UDP_MAX_SEGMENTS). */
const GSO_MAX_SEGMENTS = 64;
/** Bytes per GSO send: below the 65507-byte UDP limit. */
const GSO_MAX_BYTES = 65000;

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
  /** True for the IPv6 device (inner IPv6 only, `sockaddr_in6` slots). */
  readonly #v6: boolean;
  /**
   * True for the one device of a single-device mode: inner packets of both families, one
   * dual-stack `AF_INET6` socket whose IPv4 peers are v4-mapped addresses (`::ffff:a.b.c.d`),
   * translated at this boundary so the Device sees IPv4 endpoints as IPv4.
   */
  readonly #dual: boolean;
  /** The v4-mapped form of an IPv4 destination the Device sends to by itself (dual). */
  readonly #mapped = new Uint8Array(16);
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
  /**
   * Received plaintext: `[vnet header][run of coalesced TCP segments ≤ 64 KiB]` then, at
   * {@link SCRATCH}, `[zero vnet header][one opened packet]`. One ArrayBuffer, so a segment is
   * appended to the run with `copyWithin` (no view per packet).
   */
  readonly #rxMem: Uint8Array<ArrayBuffer>;
  readonly #scratch: Uint8Array<ArrayBuffer>; // the opened packet
  readonly #scratchOut: Uint8Array<ArrayBuffer>; // the same with its zero vnet header
  readonly #plainId: number;
  #runSegs = 0; // segments in the run (0: none)
  #runV6 = false; // the run is TCP/IPv6
  #runEnd = 0;
  #runHdr = 0;
  #runMss = 0;
  #runNextSeq = 0;
  #runClosed = false;
  #runPsh = false;
  /** Bytes of virtio_net_hdr before every TUN read and write (0 without offloads). */
  readonly #vnet: number;
  readonly #mtu: number;
  readonly #tunInPkt: Uint8Array[] = []; // the packet after the vnet header, per slot
  readonly #tunInPktIds: number[] = [];
  readonly #seg: Uint8Array<ArrayBuffer>; // one segment cut from a TCP super-packet
  readonly #segId: number;
  #lastTick = 0;
  #udpGso: boolean;
  readonly #udpGro: boolean;
  readonly #txSegs = new Int32Array(BATCH); // inner packets per datagram slot (GSO: several)

  constructor(init: WorkerInit) {
    this.#cnt = new Float64Array(init.counters);
    this.#ctl = new Int32Array(init.ctl);
    this.#tun = init.tunFd;
    this.#udp = init.udpFd;
    this.#wake = init.wakeFd;
    this.listenPort = init.listenPort;
    this.#v6 = init.family === 6;
    this.#dual = init.family === "dual";
    const batchFamily = init.family === 4 ? 4 : 6;
    this.#poller = new Poller([init.tunFd, init.udpFd, init.wakeFd], POLLIN);
    this.#pollOut = new Poller([init.udpFd], POLLOUT);
    this.#aead = new PacketAead(KEY_SLOTS);
    this.#tunIn = new PacketSlots(BATCH, SLOT);
    this.#tx = new DatagramBatch(BATCH, SLOT + 2 * TRANSPORT_HEADER, 0, 0, batchFamily);
    this.#rx = new DatagramBatch(BATCH, SLOT + 2 * TRANSPORT_HEADER, 0, 0, batchFamily);
    for (let i = 0; i < BATCH; i++) {
      this.#tunInIds.push(this.#aead.bind(this.#tunIn.bufs[i]));
      this.#txPayloadIds.push(this.#aead.bind(this.#tx.slots[i].subarray(TRANSPORT_HEADER)));
      this.#rxPayloadIds.push(this.#aead.bind(this.#rx.slots[i].subarray(TRANSPORT_HEADER)));
    }
    this.#vnet = init.vnetHdr ? VIRTIO_NET_HDR.size : 0;
    this.#mtu = init.mtu;
    this.#udpGso = init.udpGso;
    this.#udpGro = init.udpGro;
    for (let i = 0; i < BATCH; i++) {
      const v = this.#tunIn.bufs[i].subarray(this.#vnet);
      this.#tunInPkt.push(v);
      this.#tunInPktIds.push(this.#aead.bind(v));
    }
    this.#seg = new Uint8Array(SLOT);
    this.#segId = this.#aead.bind(this.#seg);
    this.#rxMem = new Uint8Array(SCRATCH + SLOT + 2 * TRANSPORT_HEADER);
    this.#scratch = this.#rxMem.subarray(SCRATCH);
    this.#scratchOut = this.#rxMem.subarray(SCRATCH - this.#vnet);
    this.#plainId = this.#aead.bind(this.#scratch);
    const udp = this.#udp;
    const cnt = this.#cnt;
    const dual = this.#dual, mapped = this.#mapped;
    mapped[10] = mapped[11] = 0xff;
    this.dev = new Device(
      init.privateKey,
      {
        clock: systemClock,
        random: randomBytes,
        mtu: init.mtu,
        send: (bytes, ip, port, ip6) => {
          const b = bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 &&
              bytes.byteLength === bytes.buffer.byteLength
            ? bytes as Uint8Array<ArrayBuffer>
            : new Uint8Array(bytes);
          let r: number;
          if (ip6 !== null) r = sendtoRaw6(udp, b, ip6, port);
          else if (dual) {
            mapped[12] = ip >>> 24;
            mapped[13] = (ip >>> 16) & 255;
            mapped[14] = (ip >>> 8) & 255;
            mapped[15] = ip & 255;
            r = sendtoRaw6(udp, b, mapped, port);
          } else r = sendtoRaw(udp, b, ip, port);
          if (r < 0) cnt[C.tx_send_errors]++;
        },
      },
      this.#aead,
    );
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
    const cnt = this.#cnt, tunIn = this.#tunIn, vnet = this.#vnet;
    let k = 0;
    for (let r = 0; r < BATCH; r++) {
      if (k >= BATCH) {
        this.#send(k);
        k = 0;
      }
      const n = tunIn.read(this.#tun, r);
      if (n <= vnet) break;
      const len = n - vnet;
      const buf = tunIn.bufs[r];
      if (vnet !== 0) {
        const gso = vnetGsoType(buf, 0) & ~VIRTIO_NET_HDR_GSO_ECN;
        if (gso === VIRTIO_NET_HDR_GSO_TCPV4 || gso === VIRTIO_NET_HDR_GSO_TCPV6) {
          k = this.#segment(r, len, k, gso === VIRTIO_NET_HDR_GSO_TCPV6);
          continue;
        }
        if (
          gso !== VIRTIO_NET_HDR_GSO_NONE ||
          ((vnetFlags(buf, 0) & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0 &&
            !completeChecksum(buf, vnet, len, vnetCsumStart(buf, 0), vnetCsumOffset(buf, 0)))
        ) {
          cnt[C.tx_malformed]++;
          continue;
        }
      }
      if (this.#seal(this.#tunInPktIds[r], this.#tunInPkt[r], len, k)) k++;
    }
    this.#send(k);
  }

  /**
   * Seals one whole IPv4 packet (buffer `id`, view `pkt`) into datagram slot `k`; the IPv6
   * device's packets, and the single device's IPv6 ones, go to {@link DataPath.#seal6}.
   */
  #seal(id: number, pkt: Uint8Array, len: number, k: number): boolean {
    if (this.#v6 || (this.#dual && (pkt[0] >> 4) === 6)) return this.#seal6(id, pkt, len, k);
    const cnt = this.#cnt, tx = this.#tx;
    // Room for the padding and the tag after the packet, in its own buffer.
    if (len < 20 || (pkt[0] >> 4) !== 4 || len + 16 > pkt.length) {
      cnt[C.tx_malformed]++;
      return false;
    }
    const dst = ((pkt[16] << 24) | (pkt[17] << 16) | (pkt[18] << 8) | pkt[19]) >>> 0;
    const n = this.dev.sealTransport(dst, id, pkt, len, tx.slots[k], this.#txPayloadIds[k]);
    if (n < 0) {
      if (n === DROP_NO_ROUTE) cnt[C.tx_no_route]++;
      else if (n === STAGED) cnt[C.tx_staged]++;
      return false;
    }
    this.#dest(k, n, this.dev.lastPeer!.endpoint!, 0);
    this.#txSegs[k] = 1;
    cnt[C.tx_packets]++;
    cnt[C.tx_bytes] += len;
    return true;
  }

  /** {@link DataPath.#seal} on the IPv6 device: one whole IPv6 packet into slot `k`. */
  #seal6(id: number, pkt: Uint8Array, len: number, k: number): boolean {
    const cnt = this.#cnt, tx = this.#tx;
    if (len < 40 || (pkt[0] >> 4) !== 6 || len + 16 > pkt.length) {
      cnt[C.tx_malformed]++;
      return false;
    }
    const n = this.dev.sealTransport6(id, pkt, len, tx.slots[k], this.#txPayloadIds[k]);
    if (n < 0) {
      if (n === DROP_NO_ROUTE) cnt[C.tx_no_route]++;
      else if (n === STAGED) cnt[C.tx_staged]++;
      return false;
    }
    this.#dest(k, n, this.dev.lastPeer!.endpoint!, 0);
    this.#txSegs[k] = 1;
    cnt[C.tx_packets]++;
    cnt[C.tx_bytes] += len;
    return true;
  }

  /**
   * Cuts the TCP super-packet in TUN slot `r` (TCP/IPv6 when `v6`, which only the IPv6 and the
   * single device take) into MSS-sized packets (segment.ts, segment6.ts) and seals each into the
   * next datagram slot, sending full batches; returns the next free slot.
   */
  #segment(r: number, len: number, k: number, v6: boolean): number {
    const buf = this.#tunIn.bufs[r];
    const vnet = this.#vnet;
    let hdrLen = 0; // 0: not one to segment (the IPv4 device carries no IPv6)
    if (!v6) hdrLen = tcpHeaderLength(buf, vnet, len);
    else if (this.#v6 || this.#dual) hdrLen = tcp6HeaderLength(buf, vnet, len);
    const mss = vnetGsoSize(buf, 0);
    if (hdrLen === 0 || mss === 0 || hdrLen + mss > this.#mtu) {
      this.#cnt[C.tx_malformed]++;
      return k;
    }
    const nseg = segmentCount(len, hdrLen, mss);
    if (!this.#udpGso) {
      for (let i = 0; i < nseg; i++) {
        if (k >= BATCH) {
          this.#send(k);
          k = 0;
        }
        const segLen = v6
          ? writeSegment6(buf, vnet, len, hdrLen, mss, i, this.#seg, 0)
          : writeSegment(buf, vnet, len, hdrLen, mss, i, this.#seg, 0);
        if (this.#seal(this.#segId, this.#seg, segLen, k)) k++;
      }
      return k;
    }
    // UDP GSO: the sealed segments back to back in one slot, one send for up to 64 of them
    // (all the same size but the last, as GSO wants; the wire still has one per datagram).
    const cnt = this.#cnt, tx = this.#tx, dev = this.dev, txIds = this.#txPayloadIds;
    // The Device pads to 16, not past the MTU (hdrLen + mss is within it).
    const dgLen = 32 + Math.min((hdrLen + mss + 15) & ~15, this.#mtu);
    const perSend = Math.min(GSO_MAX_SEGMENTS, Math.floor(GSO_MAX_BYTES / dgLen));
    const dst = v6 ? 0 : ((buf[vnet + 16] << 24) | (buf[vnet + 17] << 16) |
      (buf[vnet + 18] << 8) | buf[vnet + 19]) >>> 0; // IPv4's, for all its segments
    let i = 0;
    while (i < nseg) {
      if (k >= BATCH) {
        this.#send(k);
        k = 0;
      }
      let off = 0, count = 0;
      for (; count < perSend && i < nseg; i++) {
        let n: number, segLen: number;
        if (v6) {
          // Routed by each segment's destination (bytes 24..40), as whole packets are.
          segLen = writeSegment6(buf, vnet, len, hdrLen, mss, i, this.#seg, 0);
          n = dev.sealTransport6(this.#segId, this.#seg, segLen, tx.slots[k], txIds[k], off);
        } else {
          segLen = writeSegment(buf, vnet, len, hdrLen, mss, i, this.#seg, 0);
          n = dev.sealTransport(dst, this.#segId, this.#seg, segLen, tx.slots[k], txIds[k], off);
        }
        if (n < 0) {
          if (n === DROP_NO_ROUTE) cnt[C.tx_no_route]++;
          else if (n === STAGED) cnt[C.tx_staged]++;
          continue;
        }
        off += n;
        count++;
        cnt[C.tx_packets]++;
        cnt[C.tx_bytes] += segLen;
      }
      if (count === 0) continue;
      this.#dest(k, off, dev.lastPeer!.endpoint!, count > 1 ? dgLen : 0);
      this.#txSegs[k] = count;
      k++;
    }
    return k;
  }

  /**
   * Sets slot `k`'s length and destination: the peer's endpoint, of either family on the single
   * device's dual-stack socket (an IPv4 one as v4-mapped), whichever the inner packet was.
   */
  #dest(k: number, len: number, ep: Endpoint, gso: number): void {
    if (ep.ip6 !== null) this.#tx.setSend6(k, len, ep.ip6, 0, ep.port, gso);
    else if (this.#dual) this.#tx.setSendMapped(k, len, ep.ip, ep.port, gso);
    else this.#tx.setSend(k, len, ep.ip, ep.port, gso);
  }

  #send(n: number): void {
    if (n === 0) return;
    let first = 0;
    let waits = 0;
    while (first < n) {
      const r = this.#tx.send(this.#udp, n - first, first);
      if (r > 0) {
        first += r;
        continue;
      }
      if (r === -EAGAIN) {
        if (waits++ < 3) {
          this.#pollOut.poll(5);
          continue;
        }
        for (let i = first; i < n; i++) this.#cnt[C.tx_send_errors] += this.#txSegs[i];
        return;
      }
      // The datagram at `first` is refused. A GSO send the device cannot take (EIO, EINVAL):
      // no more GSO from now on.
      if (this.#txSegs[first] > 1 && this.#udpGso && (r === -EIO || r === -EINVAL)) {
        this.#udpGso = false;
        self.postMessage({
          type: "warn",
          message: `UDP GSO send refused (errno ${-r}): one datagram per segment from now on`,
        });
      }
      this.#cnt[C.tx_send_errors] += this.#txSegs[first];
      first++;
    }
  }

  #udpToTun(): void {
    const cnt = this.#cnt, rx = this.#rx;
    for (let round = 0; round < 4; round++) {
      const got = rx.recv(this.#udp, BATCH, this.#udpGro);
      if (got <= 0) break;
      for (let i = 0; i < got; i++) {
        if (rx.truncated(i)) {
          cnt[C.rx_truncated]++;
          continue;
        }
        const total = rx.len(i);
        const slot = rx.slots[i];
        const gro = this.#udpGro ? rx.groSize(i) : 0;
        const step = gro > 0 && gro < total ? gro : total; // UDP_GRO: equal datagrams back to back
        for (let off = 0; off < total; off += step) {
          this.#datagram(slot, off, Math.min(step, total - off), i);
        }
      }
      if (got < BATCH) break;
    }
    this.#flushRun();
  }

  /** One received datagram: `len` bytes at `off` of receive slot `i`. */
  #datagram(slot: Uint8Array<ArrayBuffer>, off: number, len: number, i: number): void {
    const cnt = this.#cnt, rx = this.#rx;
    // The source: an IPv4 u32 (ip6 null), or 16 bytes; on the dual socket a v4-mapped source
    // is IPv4.
    let ip = 0, ip6: Uint8Array | null = null;
    if (this.#v6) ip6 = rx.addr6(i);
    else if (this.#dual) {
      ip = rx.mappedIp(i);
      if (ip < 0) {
        ip = 0;
        ip6 = rx.addr6(i);
      }
    } else ip = rx.addrIp(i);
    const type = slot[off];
    if (type === 4) {
      const r = this.dev.openTransport(
        slot,
        len,
        ip,
        rx.addrPort(i),
        this.#rxPayloadIds[i],
        this.#plainId,
        this.#scratch,
        off,
        ip6,
      );
      if (r > 0) {
        cnt[C.rx_bytes] += r;
        if (this.#vnet !== 0) this.#coalesce(r);
        else this.#writeTun(this.#scratchOut, r, 1);
      } else if (r === 0) cnt[C.rx_keepalives]++;
      else cnt[RX_DROPS[r] ?? C.rx_malformed]++;
      return;
    }
    // Handshake messages have exact sizes; anything else is dropped before any work.
    if (
      !(type === 1 && len === INITIATION_SIZE) && !(type === 2 && len === RESPONSE_SIZE) &&
      !(type === 3 && len === COOKIE_SIZE)
    ) {
      cnt[C.rx_malformed]++;
      return;
    }
    cnt[C.hs_received]++;
    const r = this.dev.handshakeMessage(slot.subarray(off, off + len), ip, rx.addrPort(i), ip6);
    if (r < 0) cnt[HS_DROPS[r] ?? C.hs_refused]++;
  }

  #writeTun(buf: Uint8Array<ArrayBuffer>, len: number, segs: number): void {
    if (writeBuf(this.#tun, buf, this.#vnet + len) < 0) this.#cnt[C.rx_tun_errors] += segs;
    else this.#cnt[C.rx_packets] += segs;
  }

  /**
   * Hands the opened packet (`n` bytes at {@link SCRATCH}) to the TUN, merging consecutive
   * segments of one TCP flow into one GSO super-packet (the udp backend's receive coalescing:
   * one TUN write and one pass through the kernel's TCP stack per run instead of per segment).
   * Each segment was authenticated and checked on its own before it gets here.
   */
  #coalesce(n: number): void {
    const b = this.#rxMem, v = this.#vnet, p = SCRATCH;
    if (this.#runSegs > 0 && !this.#runClosed) {
      const hdr = this.#runHdr, v6 = this.#runV6;
      if (
        this.#runEnd - v + n - hdr <= MAX_IP &&
        (v6
          ? tcp6CanAppend(b, v, p, n, hdr, this.#runMss, this.#runNextSeq)
          : tcpCanAppend(b, v, p, n, hdr, this.#runMss, this.#runNextSeq))
      ) {
        const pay = n - hdr;
        const ipLen = v6 ? IPV6_HEADER : (b[p] & 0x0f) << 2;
        if ((b[p + ipLen + 13] & 0x08) !== 0) this.#runPsh = true;
        b.copyWithin(this.#runEnd, p + hdr, p + n);
        this.#runEnd += pay;
        this.#runSegs++;
        this.#runNextSeq = (this.#runNextSeq + pay) >>> 0;
        if (pay < this.#runMss || this.#runPsh) this.#runClosed = true;
        return;
      }
    }
    this.#flushRun();
    const v6 = (b[p] >>> 4) === 6;
    const h = v6 ? tcp6HeaderLength(b, p, n) : tcpHeaderLength(b, p, n);
    if (h > 0 && n > h && (v6 ? tcp6CanStartRun(b, p) : tcpCanStartRun(b, p))) {
      b.copyWithin(v, p, p + n);
      this.#runSegs = 1;
      this.#runV6 = v6;
      this.#runEnd = v + n;
      this.#runHdr = h;
      this.#runMss = n - h;
      const t = v + (v6 ? IPV6_HEADER : (b[v] & 0x0f) << 2);
      this.#runPsh = (b[t + 13] & 0x08) !== 0;
      this.#runClosed = this.#runPsh;
      const seq = ((b[t + 4] << 24) | (b[t + 5] << 16) | (b[t + 6] << 8) | b[t + 7]) >>> 0;
      this.#runNextSeq = (seq + this.#runMss) >>> 0;
      return;
    }
    this.#writeTun(this.#scratchOut, n, 1);
  }

  #flushRun(): void {
    const segs = this.#runSegs;
    if (segs === 0) return;
    this.#runSegs = 0;
    const b = this.#rxMem, v = this.#vnet;
    const len = this.#runEnd - v;
    if (segs === 1) b.fill(0, 0, v); // a whole packet: GSO_NONE, checksum complete
    else if (this.#runV6) finishTcp6Super(b, v, len, this.#runHdr, this.#runMss, this.#runPsh);
    else finishTcpSuper(b, v, len, this.#runHdr, this.#runMss, this.#runPsh);
    this.#writeTun(b, len, segs);
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
        endpoint: { ip: p.ip, port: p.port, ip6: p.ip6 },
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

serveDataPath<WorkerInit, PeerBatch | DumpRequest>((init) => {
  const path = new DataPath(init);
  return {
    run: () => path.run(),
    handle(m) {
      if (m.op === "dump") {
        self.postMessage({ type: "dump", id: m.id, text: formatGet(path.dev, path.listenPort) });
      } else path.apply(m);
    },
    close: () => path.close(),
  };
}, "warn");
