/**
 * The udp backend's data path, run as a Worker so that it can make synchronous FFI calls
 * without blocking the daemon's event loop (docs/udp-datapath-notes.md: a Promise per packet is
 * 7–8× slower).
 *
 * One loop: `poll` on the TUN and the UDP socket (timeout 100 ms), then up to {@link BATCH} TUN
 * reads sent with one `sendmmsg`, and one `recvmmsg` of up to {@link BATCH} datagrams written to
 * the TUN. Nothing is allocated per packet. The stop flag and the "messages pending" count live
 * in a SharedArrayBuffer: peer-table changes arrive as messages, so when some are pending the
 * loop returns to the event loop for one turn (a `setTimeout(0)`), applies them, and resumes.
 *
 * With offloads (`vnetHdr`), TUN reads carry a virtio_net_hdr and may be TCP super-packets;
 * they are segmented in TypeScript (see segment.ts) and sent with UDP GSO where possible.
 * Received datagrams (coalesced by `UDP_GRO`) are split and each written to the TUN.
 */

/// <reference lib="deno.worker" />

import { DatagramBatch, drainEventFd, Poller, sendtoRaw } from "../../../ffi/udp.ts";
import { EAGAIN, writeBuf } from "../../../ffi/tun.ts";
import {
  POLLIN,
  POLLOUT,
  VIRTIO_NET_HDR,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
} from "../../../ffi/structs.ts";
import { endpointIp, endpointPort, EndpointTable, type PeerSource } from "./endpoints.ts";
import {
  buildIcmpError,
  decrementTTL,
  dstAddr,
  ICMP_DEST_UNREACH,
  ICMP_EXC_TTL,
  ICMP_NET_UNREACH,
  ICMP_TIME_EXCEEDED,
  srcAddr,
  validateIPv4,
} from "./packet.ts";
import { C } from "./counters.ts";
import { SyscallError } from "../../../ffi/errno.ts";
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
} from "./segment.ts";
import { CTL_PENDING, CTL_STOP, type PeerBatch, type WorkerInit } from "./protocol.ts";
import { serveDataPath } from "../datapath/serve.ts";

/** Packets per batch (TUN reads per wake-up, datagrams per recvmmsg/sendmmsg). */
const BATCH = 64;
/** Payload bytes per slot: a whole IPv4 packet (≤ 65535) or a TUN super-packet of up to 64 KiB. */
const SLOT = 65536;
const POLL_MS = 100;
/** The kernel's limit of segments per UDP GSO send (UDP_MAX_SEGMENTS). */
const GSO_MAX_SEGMENTS = 64;
/** Payload bytes per GSO send: below the 65507-byte UDP limit (IPv4 header + UDP header). */
const GSO_MAX_BYTES = 65000;
const EINTR = 4;
const EIO = 5;
const EINVAL = 22;

const TX_PACKETS = C.tx_packets;
const TX_BYTES = C.tx_bytes;
const TX_NO_ROUTE = C.tx_no_route;
const TX_TTL = C.tx_ttl_expired;
const TX_MALFORMED = C.tx_malformed;
const TX_SEND_ERRORS = C.tx_send_errors;
const TX_ICMP = C.tx_icmp;
const TX_GSO = C.tx_gso_sends;
const RX_PACKETS = C.rx_packets;
const RX_BYTES = C.rx_bytes;
const RX_NOT_PEER = C.rx_not_peer;
const RX_MALFORMED = C.rx_malformed;
const RX_TRUNCATED = C.rx_truncated;
const RX_NOT_OURS = C.rx_not_our_subnet;
const RX_WRONG_SOURCE = C.rx_wrong_source;
const RX_TUN_ERRORS = C.rx_tun_errors;
const RX_GRO = C.rx_gro_batches;
const RX_GSO = C.rx_gso_writes;

class DataPath {
  readonly peers = new EndpointTable();
  readonly #cnt: Float64Array;
  readonly #ctl: Int32Array;
  readonly #tun: number;
  readonly #udp: number;
  readonly #ownNet: number;
  readonly #ownMask: number;
  readonly #tunAddr: number;
  readonly #vnet: number; // bytes of virtio header on every TUN packet (0 or 10)
  readonly #poller: Poller;
  readonly #wake: number;
  readonly #wakeBuf = new Uint8Array(8);
  readonly #pollOut: Poller;
  readonly #tx: DatagramBatch; // TUN reads (plain mode) / segments to send
  readonly #rx: DatagramBatch; // datagrams received, written to the TUN from their slot
  readonly #txLen: Int32Array;
  readonly #icmp: Uint8Array<ArrayBuffer>; // vnet header + ICMP error
  readonly #icmpBody: Uint8Array<ArrayBuffer>;
  readonly #offload: boolean;
  #udpGso: boolean;
  readonly #txSegLen: Int32Array; // segment size of a GSO slot
  readonly #txSegs: Int32Array; // inner packets per slot (several in a GSO send)
  readonly #mtu: number;

  constructor(init: WorkerInit) {
    this.#cnt = new Float64Array(init.counters);
    this.#ctl = new Int32Array(init.ctl);
    this.#tun = init.tunFd;
    this.#udp = init.udpFd;
    const mask = init.ownPrefix === 0 ? 0 : (0xffffffff << (32 - init.ownPrefix)) >>> 0;
    this.#ownMask = mask;
    this.#ownNet = (init.ownNet & mask) >>> 0;
    this.#tunAddr = init.tunAddr;
    this.#mtu = init.mtu;
    this.#vnet = init.vnetHdr ? VIRTIO_NET_HDR.size : 0;
    this.#poller = new Poller([init.tunFd, init.udpFd, init.wakeFd], POLLIN);
    this.#wake = init.wakeFd;
    this.#pollOut = new Poller([init.udpFd], POLLOUT);
    // With offloads, a super-packet is copied to the scratch bytes after the slots and cut from
    // there into the slots.
    this.#tx = new DatagramBatch(BATCH, SLOT, this.#vnet, init.vnetHdr ? SLOT + this.#vnet : 0);
    this.#rx = new DatagramBatch(BATCH, SLOT, this.#vnet);
    this.#txLen = new Int32Array(BATCH);
    this.#txSegs = new Int32Array(BATCH);
    this.#txSegLen = new Int32Array(BATCH);
    this.#offload = init.vnetHdr;
    this.#udpGso = init.udpGso;
    this.#icmp = new Uint8Array(this.#vnet + 600);
    this.#icmpBody = this.#icmp.subarray(this.#vnet);
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
      if (n === 0) continue;
      if (this.#poller.revents(0) !== 0) {
        if (this.#offload) this.#tunToUdpOffload();
        else this.#tunToUdp();
      }
      if (this.#poller.revents(1) !== 0) this.#udpToTun();
      if (this.#poller.revents(2) !== 0) drainEventFd(this.#wake, this.#wakeBuf);
    }
  }

  #noRoute(buf: Uint8Array, off: number, len: number, type: number, code: number): void {
    const n = buildIcmpError(this.#icmpBody, buf, off, len, type, code, this.#tunAddr);
    if (n === 0) return;
    if (writeBuf(this.#tun, this.#icmp, this.#vnet + n) > 0) this.#cnt[TX_ICMP]++;
  }

  /** Checks and routes one inner packet in place: the packed endpoint, or -1 when consumed. */
  route(buf: Uint8Array, off: number, len: number): number {
    const cnt = this.#cnt;
    if (len < 20 || (buf[off] >>> 4) !== 4 || ((buf[off + 2] << 8) | buf[off + 3]) !== len) {
      cnt[TX_MALFORMED]++;
      return -1;
    }
    const e = this.peers.lookup(dstAddr(buf, off));
    if (e < 0) {
      cnt[TX_NO_ROUTE]++;
      this.#noRoute(buf, off, len, ICMP_DEST_UNREACH, ICMP_NET_UNREACH);
      return -1;
    }
    if (decrementTTL(buf, off) === 0) {
      cnt[TX_TTL]++;
      this.#noRoute(buf, off, len, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL);
      return -1;
    }
    return e;
  }

  #tunToUdp(): void {
    const tx = this.#tx;
    const tun = this.#tun;
    let k = 0;
    for (let r = 0; r < BATCH; r++) {
      const n = tx.readInto(tun, k);
      if (n <= 0) break;
      const e = this.route(tx.slots[k], 0, n);
      if (e < 0) continue;
      tx.setSend(k, n, endpointIp(e), endpointPort(e));
      this.#txLen[k] = n;
      this.#txSegs[k] = 1;
      k++;
    }
    if (k > 0) this.#flush(k);
  }

  /** TUN reads with a virtio header: whole packets (checksum completed) or TCP super-packets. */
  #tunToUdpOffload(): void {
    const tx = this.#tx;
    const tun = this.#tun;
    const vnet = this.#vnet;
    let k = 0;
    for (let r = 0; r < BATCH; r++) {
      if (k >= tx.count) {
        this.#flush(k);
        k = 0;
      }
      const n = tx.readInto(tun, k);
      if (n <= vnet) break;
      const buf = tx.slots[k];
      const len = n - vnet;
      const gso = vnetGsoType(buf, 0) & ~VIRTIO_NET_HDR_GSO_ECN;
      if (gso === VIRTIO_NET_HDR_GSO_NONE) {
        if (
          (vnetFlags(buf, 0) & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0 &&
          !completeChecksum(buf, vnet, len, vnetCsumStart(buf, 0), vnetCsumOffset(buf, 0))
        ) {
          this.#cnt[TX_MALFORMED]++;
          continue;
        }
        const e = this.route(buf, vnet, len);
        if (e < 0) continue;
        tx.setSend(k, len, endpointIp(e), endpointPort(e));
        this.#txLen[k] = len;
        this.#txSegs[k] = 1;
        k++;
      } else if (gso === VIRTIO_NET_HDR_GSO_TCPV4) {
        k = this.#segment(k, len);
      } else {
        this.#cnt[TX_MALFORMED]++;
      }
    }
    if (k > 0) this.#flush(k);
  }

  /**
   * Splits the TCP super-packet in slot `k` into MTU-sized packets in slots `k…`, as GSO sends
   * of up to 64 segments when UDP GSO is on, else one datagram per slot. Returns the next free
   * slot.
   */
  #segment(k: number, len: number): number {
    const tx = this.#tx;
    const vnet = this.#vnet;
    const buf = tx.slots[k];
    const hdrLen = tcpHeaderLength(buf, vnet, len);
    const mss = vnetGsoSize(buf, 0);
    if (hdrLen === 0 || mss === 0 || hdrLen + mss > this.#mtu) {
      this.#cnt[TX_MALFORMED]++;
      return k;
    }
    const e = this.peers.lookup(dstAddr(buf, vnet));
    if (e < 0) {
      this.#cnt[TX_NO_ROUTE]++;
      this.#noRoute(buf, vnet, len, ICMP_DEST_UNREACH, ICMP_NET_UNREACH);
      return k;
    }
    if (decrementTTL(buf, vnet) === 0) {
      this.#cnt[TX_TTL]++;
      this.#noRoute(buf, vnet, len, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL);
      return k;
    }
    const ip = endpointIp(e);
    const port = endpointPort(e);
    const all = tx.all;
    const src = tx.extraOffset; // the slot is reused for the segments: cut from a copy
    all.copyWithin(src, k * tx.slotSize, k * tx.slotSize + vnet + len);
    const nseg = segmentCount(len, hdrLen, mss);
    const segLen = hdrLen + mss;
    const perSend = this.#udpGso
      ? Math.min(GSO_MAX_SEGMENTS, Math.floor(GSO_MAX_BYTES / segLen))
      : 1;
    let i = 0;
    while (i < nseg) {
      if (k >= tx.count) {
        this.#flush(k);
        k = 0;
      }
      const base = k * tx.slotSize;
      let pos = vnet;
      const first = i;
      for (let c = 0; c < perSend && i < nseg; c++, i++) {
        pos += writeSegment(all, src + vnet, len, hdrLen, mss, i, all, base + pos);
      }
      const count = i - first;
      tx.setSend(k, pos - vnet, ip, port, count > 1 ? segLen : 0);
      this.#txLen[k] = pos - vnet;
      this.#txSegs[k] = count;
      this.#txSegLen[k] = segLen;
      k++;
    }
    return k;
  }

  /** Sends slots 0..k-1, waiting briefly for socket buffer space; counts what went out. */
  #flush(k: number): void {
    const cnt = this.#cnt;
    let sent = 0;
    let waited = false;
    while (sent < k) {
      const r = this.#tx.send(this.#udp, k - sent, sent);
      if (r > 0) {
        for (let j = sent; j < sent + r; j++) {
          cnt[TX_BYTES] += this.#txLen[j];
          cnt[TX_PACKETS] += this.#txSegs[j];
          if (this.#txSegs[j] > 1) cnt[TX_GSO]++;
        }
        sent += r;
        continue;
      }
      if (r === -EAGAIN && !waited) {
        waited = true;
        if (this.#pollOut.poll(10) > 0) continue;
      }
      if (r === -EAGAIN) {
        for (let j = sent; j < k; j++) cnt[TX_SEND_ERRORS] += this.#txSegs[j];
        return;
      }
      if ((r === -EIO || r === -EINVAL) && this.#txSegs[sent] > 1) {
        // The kernel refuses UDP GSO on this path (e.g. no checksum offload on the egress
        // device): send this slot's segments one by one, and stop building GSO sends.
        if (this.#udpGso) {
          this.#udpGso = false;
          self.postMessage({
            type: "warn",
            message: `UDP GSO send refused (errno ${-r}): one datagram per segment from now on`,
          });
        }
        this.#sendSplit(sent);
        sent++;
        continue;
      }
      // This datagram is refused (e.g. EMSGSIZE): count it and go on with the next.
      cnt[TX_SEND_ERRORS] += this.#txSegs[sent];
      sent++;
    }
  }

  /** Sends the segments of GSO slot `i` as separate datagrams (the fallback path). */
  #sendSplit(i: number): void {
    const tx = this.#tx;
    const cnt = this.#cnt;
    const payload = tx.payload(i);
    const total = this.#txLen[i];
    const seg = this.#txSegLen[i];
    const ip = tx.addrIp(i);
    const port = tx.addrPort(i);
    for (let off = 0; off < total; off += seg) {
      const n = Math.min(seg, total - off);
      if (sendtoRaw(this.#udp, payload.subarray(off, off + n), ip, port) < 0) {
        cnt[TX_SEND_ERRORS]++;
      } else {
        cnt[TX_PACKETS]++;
        cnt[TX_BYTES] += n;
      }
    }
  }

  #udpToTun(): void {
    const rx = this.#rx;
    const cnt = this.#cnt;
    const vnet = this.#vnet;
    const r = rx.recv(this.#udp, BATCH, this.#offload);
    if (r <= 0) return;
    for (let i = 0; i < r; i++) {
      const len = rx.len(i);
      if (rx.truncated(i) || len > rx.size) {
        cnt[RX_TRUNCATED]++;
        continue;
      }
      const gro = vnet > 0 ? rx.groSize(i) : 0;
      const peer = this.peers.source(rx.addrIp(i), rx.addrPort(i));
      if (peer === undefined) {
        // A UDP_GRO read holds several datagrams: count each.
        cnt[RX_NOT_PEER] += gro > 0 && gro < len ? Math.ceil(len / gro) : 1;
        continue;
      }
      const buf = rx.slots[i];
      if (gro > 0 && gro < len) {
        cnt[RX_GRO]++;
        this.#rxGro(buf, len, gro, peer);
        continue;
      }
      if (!this.#acceptInner(buf, vnet, len, peer)) continue;
      // The vnet header (flags 0, GSO_NONE): zero the headroom (a GRO run may have used it).
      if (vnet > 0) buf.fill(0, 0, vnet);
      if (rx.writeFrom(this.#tun, i, vnet + len) < 0) cnt[RX_TUN_ERRORS]++;
      else {
        cnt[RX_PACKETS]++;
        cnt[RX_BYTES] += len;
      }
    }
  }

  /**
   * One well-formed IPv4 packet, to our subnet, from the subnet of `peer` (the sender by outer
   * address): anything else is dropped and counted. A peer's PublicIP proves nothing about the
   * inner source, so without the last check a spoofed outer source could inject any address.
   */
  #acceptInner(buf: Uint8Array, off: number, len: number, peer: PeerSource): boolean {
    if (validateIPv4(buf, off, len) !== 0) {
      this.#cnt[RX_MALFORMED]++;
      return false;
    }
    if (((dstAddr(buf, off) & this.#ownMask) >>> 0) !== this.#ownNet) {
      this.#cnt[RX_NOT_OURS]++;
      return false;
    }
    if (!peer.holds(srcAddr(buf, off))) {
      this.#cnt[RX_WRONG_SOURCE]++;
      return false;
    }
    return true;
  }

  /**
   * A `UDP_GRO` datagram holds several inner packets of `gro` bytes (the last may be shorter).
   * Each is checked on its own; runs of consecutive segments of one TCP flow are merged in place
   * into one GSO super-packet (one TUN write, the kernel's GRO sees one big packet); anything
   * else is written alone.
   */
  #rxGro(buf: Uint8Array<ArrayBuffer>, len: number, gro: number, peer: PeerSource): void {
    const vnet = this.#vnet;
    const end = vnet + len;
    let run = -1; // offset of the current run's first packet, -1 = none
    let runEnd = 0; // where the run's next payload goes
    let hdrLen = 0;
    let mss = 0;
    let segs = 0;
    let nextSeq = 0;
    let closed = false; // a short or PSH segment ends a run
    let psh = false;
    for (let p = vnet; p < end; p += gro) {
      const n = Math.min(gro, end - p);
      if (!this.#acceptInner(buf, p, n, peer)) continue;
      if (run >= 0 && !closed && tcpCanAppend(buf, run, p, n, hdrLen, mss, nextSeq)) {
        const pay = n - hdrLen;
        // Read the flags first: the copy may overwrite this packet's own header.
        if ((buf[p + ((buf[p] & 0x0f) << 2) + 13] & 0x08) !== 0) psh = true;
        buf.copyWithin(runEnd, p + hdrLen, p + n);
        runEnd += pay;
        segs++;
        nextSeq = (nextSeq + pay) >>> 0;
        if (pay < mss || psh) closed = true;
        continue;
      }
      if (run >= 0) this.#writeRun(buf, run, runEnd, hdrLen, mss, segs, psh);
      run = -1;
      const h = tcpHeaderLength(buf, p, n);
      if (h > 0 && n > h && tcpCanStartRun(buf, p)) {
        run = p;
        runEnd = p + n;
        hdrLen = h;
        mss = n - h;
        segs = 1;
        const t = p + ((buf[p] & 0x0f) << 2);
        psh = (buf[t + 13] & 0x08) !== 0;
        closed = psh;
        nextSeq = ((((buf[t + 4] << 24) | (buf[t + 5] << 16) | (buf[t + 6] << 8) | buf[t + 7]) >>>
          0) + mss) >>> 0;
      } else {
        this.#writeOne(buf, p, n, 0, 1);
      }
    }
    if (run >= 0) this.#writeRun(buf, run, runEnd, hdrLen, mss, segs, psh);
  }

  #writeRun(
    buf: Uint8Array<ArrayBuffer>,
    run: number,
    runEnd: number,
    hdrLen: number,
    mss: number,
    segs: number,
    psh: boolean,
  ): void {
    if (segs === 1) {
      this.#writeOne(buf, run, runEnd - run, 0, 1);
      return;
    }
    // The header checksum and TCP fields change: only now, once the run is complete.
    finishTcpSuper(buf, run, runEnd - run, hdrLen, mss, psh);
    this.#cnt[RX_GSO]++;
    this.#writeOne(buf, run, runEnd - run, -1, segs);
  }

  /** Writes `n` bytes at `p` with the vnet header before it (zeroed unless `keepHdr` < 0). */
  #writeOne(buf: Uint8Array<ArrayBuffer>, p: number, n: number, keepHdr: number, segs: number) {
    const vnet = this.#vnet;
    if (keepHdr >= 0) buf.fill(0, p - vnet, p); // overwrites the tail of a packet already written
    const w = writeBuf(this.#tun, buf.subarray(p - vnet, p + n), vnet + n);
    if (w < 0) this.#cnt[RX_TUN_ERRORS] += segs;
    else {
      this.#cnt[RX_PACKETS] += segs;
      this.#cnt[RX_BYTES] += n; // inner bytes (a merged run counts its headers once)
    }
  }
}

serveDataPath<WorkerInit, PeerBatch>((init) => {
  const path = new DataPath(init);
  return {
    run: () => path.run(),
    handle(m) {
      for (const c of m.changes) {
        if (c.op === "set") path.peers.set(c.net, c.prefix, c.ip, c.port);
        else path.peers.delete(c.net, c.prefix);
      }
    },
  };
}, "error");
