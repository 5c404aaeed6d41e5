/**
 * UDP sockets for the udp backend's data path: socket, bind, socket options (buffer sizes,
 * `UDP_SEGMENT`, `UDP_GRO`), one-off `sendto`/`recvfrom`, `poll`, and {@link DatagramBatch} for
 * `recvmmsg`/`sendmmsg` over preallocated memory.
 *
 * Hot-path methods return a count or `-errno` instead of throwing, and write only lengths
 * through 32-bit views: every pointer is computed once in the constructor (see
 * docs/udp-datapath-notes.md: `UnsafePointer.of` and 64-bit FFI arguments are slow).
 */

import { check, errno, sym } from "./libc.ts";
import { EAGAIN, SyscallError } from "./errno.ts";
import { Fd } from "./fd.ts";
import {
  AF_INET,
  MSG_DONTWAIT,
  MSG_TRUNC,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_SOCKET,
} from "./consts.ts";
import {
  CMSGHDR,
  cmsgLen,
  cmsgSpace,
  decodeSockaddrIn,
  encodeSockaddrIn,
  IOVEC,
  MMSGHDR,
  MSGHDR,
  POLLFD,
  SOCKADDR_IN,
} from "./structs.ts";

// The generic socket constants live in ./consts.ts; these callers set socket options with them.
export { SO_RCVBUF, SO_SNDBUF, SOL_SOCKET } from "./consts.ts";

/** `IPPROTO_IP` (netinet/in.h). */
export const IPPROTO_IP = 0;
/** `IPPROTO_UDP` (netinet/in.h). */
export const IPPROTO_UDP = 17;
/** `SOL_UDP` (linux/udp.h). */
export const SOL_UDP = 17;
/** `UDP_SEGMENT` (linux/udp.h). */
export const UDP_SEGMENT = 103;
/** `UDP_GRO` (linux/udp.h). */
export const UDP_GRO = 104;
/** `IP_MTU_DISCOVER` (netinet/in.h). */
export const IP_MTU_DISCOVER = 10;
/** IP_PMTUDISC_* values for {@link IP_MTU_DISCOVER}. */
export const IP_PMTUDISC_DONT = 0;
/** `IP_PMTUDISC_DO` (netinet/in.h). */
export const IP_PMTUDISC_DO = 2;

/** Creates an `AF_INET`/`SOCK_DGRAM` socket, non-blocking unless told otherwise. */
export function udpSocket(opts: { nonBlocking?: boolean } = {}): Fd {
  let type = SOCK_DGRAM | SOCK_CLOEXEC;
  if (opts.nonBlocking !== false) type |= SOCK_NONBLOCK;
  return new Fd(check(sym.socket(AF_INET, type, 0), "socket"), "udp");
}

/** Binds to `ip:port` (host-order u32 address); port 0 lets the kernel choose. */
export function bind(fd: Fd, ip: number, port: number): void {
  const sa = encodeSockaddrIn(ip, port);
  if (sym.bind(fd.fd, sa, SOCKADDR_IN.size) < 0) {
    const e = errno();
    throw new SyscallError("bind", e, `${formatIp(ip)}:${port}`);
  }
}

/** The local address of a bound socket. */
export function getsockname(fd: Fd): { ip: number; port: number } {
  const sa = new Uint8Array(SOCKADDR_IN.size);
  const len = new Uint32Array([SOCKADDR_IN.size]);
  check(sym.getsockname(fd.fd, sa, new Uint8Array(len.buffer)), "getsockname");
  return decodeSockaddrIn(sa);
}

/** `setsockopt` with an `int` value. */
export function setsockoptInt(fd: Fd, level: number, name: number, value: number): void {
  const v = new Int32Array([value]);
  if (sym.setsockopt(fd.fd, level, name, new Uint8Array(v.buffer), 4) < 0) {
    throw new SyscallError("setsockopt", errno(), optName(level, name));
  }
}

/** `getsockopt` of an `int` value. */
export function getsockoptInt(fd: Fd, level: number, name: number): number {
  const v = new Int32Array(1);
  const len = new Uint32Array([4]);
  if (
    sym.getsockopt(fd.fd, level, name, new Uint8Array(v.buffer), new Uint8Array(len.buffer)) < 0
  ) {
    throw new SyscallError("getsockopt", errno(), optName(level, name));
  }
  return v[0];
}

/**
 * Sets the receive and send buffers to `bytes`, with the `…FORCE` variants (root may exceed
 * `net.core.rmem_max`), falling back to the plain options when FORCE is refused (`EPERM`).
 */
export function setBufferSizes(fd: Fd, bytes: number): void {
  for (const [force, plain] of [[SO_RCVBUFFORCE, SO_RCVBUF], [SO_SNDBUFFORCE, SO_SNDBUF]]) {
    try {
      setsockoptInt(fd, SOL_SOCKET, force, bytes);
    } catch (err) {
      if (!(err instanceof SyscallError) || err.code !== "EPERM") throw err;
      setsockoptInt(fd, SOL_SOCKET, plain, bytes);
    }
  }
}

/** Sends one datagram to `ip:port`: the byte count. Throws on error (not for the hot path). */
export function sendto(fd: Fd, data: Uint8Array<ArrayBuffer>, ip: number, port: number): number {
  const sa = encodeSockaddrIn(ip, port);
  const n = sym.sendto(fd.fd, data, data.length, 0, sa, SOCKADDR_IN.size);
  if (n < 0) throw new SyscallError("sendto", errno(), `${formatIp(ip)}:${port}`);
  return n;
}

/** Sends one datagram on a raw fd (e.g. inside a Worker): the byte count, or `-errno`. */
export function sendtoRaw(
  fd: number,
  data: Uint8Array<ArrayBuffer>,
  ip: number,
  port: number,
): number {
  const sa = encodeSockaddrIn(ip, port);
  const n = sym.sendto(fd, data, data.length, 0, sa, SOCKADDR_IN.size);
  return n < 0 ? -errno() : n;
}

/**
 * Receives one datagram into `buf`; null when nothing is waiting (`EAGAIN`). `truncated` is
 * true when the datagram was longer than `buf` (`MSG_TRUNC`: `length` is then the real size).
 */
export function recvfrom(
  fd: Fd,
  buf: Uint8Array<ArrayBuffer>,
  flags = MSG_DONTWAIT,
): { length: number; truncated: boolean; ip: number; port: number } | null {
  const sa = new Uint8Array(SOCKADDR_IN.size);
  const len = new Uint32Array([SOCKADDR_IN.size]);
  const n = sym.recvfrom(fd.fd, buf, buf.length, flags | MSG_TRUNC, sa, new Uint8Array(len.buffer));
  if (n < 0) {
    const e = errno();
    if (e === EAGAIN) return null;
    throw new SyscallError("recvfrom", e);
  }
  const { ip, port } = decodeSockaddrIn(sa);
  return { length: n, truncated: n > buf.length, ip, port };
}

// The eventfd wake-up of the data-path Worker's poll is ./eventfd.ts.
export { drainEventFd, Wakeup } from "./eventfd.ts";

/** One `poll(2)` over up to a few fds with preallocated memory. */
export class Poller {
  readonly #buf: Uint8Array<ArrayBuffer>;
  readonly #v: DataView;
  /** Polls `fds` for `events` (e.g. `POLLIN`). */
  constructor(readonly fds: number[], events: number) {
    this.#buf = new Uint8Array(POLLFD.size * fds.length);
    this.#v = new DataView(this.#buf.buffer);
    fds.forEach((fd, i) => {
      this.#v.setInt32(i * POLLFD.size + POLLFD.fd, fd, true);
      this.#v.setInt16(i * POLLFD.size + POLLFD.events, events, true);
    });
  }
  /** Waits up to `timeoutMs`: the number of ready fds, 0 on timeout, `-errno` on failure. */
  poll(timeoutMs: number): number {
    const n = sym.poll(this.#buf, this.fds.length, timeoutMs);
    return n < 0 ? -errno() : n;
  }
  /** The `revents` of fd number `i` after the last poll. */
  revents(i: number): number {
    return this.#v.getInt16(i * POLLFD.size + POLLFD.revents, true);
  }
  /** Changes the events fd number `i` waits for. */
  setEvents(i: number, events: number): void {
    this.#v.setInt16(i * POLLFD.size + POLLFD.events, events, true);
  }
}

const CTL_SPACE = cmsgSpace(4); // one UDP_SEGMENT (u16) or UDP_GRO (int) message

/**
 * `count` datagram slots for `recvmmsg`/`sendmmsg`, all preallocated: a payload buffer of
 * `headroom + size` bytes per slot (the iovec covers the `size` bytes after the headroom, so a
 * TUN read with a virtio header lands right before the payload), a `sockaddr_in`, an iovec, an
 * mmsghdr and one control message.
 */
export class DatagramBatch {
  /** Whole slots (headroom + payload), one view each. */
  readonly slots: Uint8Array<ArrayBuffer>[];
  readonly #slotPtrs: Deno.PointerValue[];
  readonly #mm: Uint8Array<ArrayBuffer>;
  readonly #mmPtr: Deno.PointerValue;
  readonly #mm32: Uint32Array;
  readonly #iov32: Uint32Array;
  readonly #sa: DataView;
  readonly #ctl: DataView;
  readonly #ctl32: Uint32Array;
  /** Bytes per slot: headroom + payload. */
  readonly slotSize: number;

  /**
   * The whole data memory: `count` slots of `slotSize` bytes, then `extra` bytes of scratch at
   * {@link DatagramBatch.extraOffset} (so copies between them can use `copyWithin`).
   */
  readonly all: Uint8Array<ArrayBuffer>;
  /** Where the scratch bytes start in {@link DatagramBatch.all}. */
  readonly extraOffset: number;

  /** Preallocates everything; `extra` scratch bytes follow the slots in {@link DatagramBatch.all}. */
  constructor(
    readonly count: number,
    readonly size: number,
    readonly headroom = 0,
    extra = 0,
  ) {
    this.slotSize = headroom + size;
    this.extraOffset = count * this.slotSize;
    const data = new ArrayBuffer(count * this.slotSize + extra);
    this.all = new Uint8Array(data);
    const mm = new ArrayBuffer(count * MMSGHDR.size);
    const iov = new ArrayBuffer(count * IOVEC.size);
    const sa = new ArrayBuffer(count * SOCKADDR_IN.size);
    const ctl = new ArrayBuffer(count * CTL_SPACE);
    const dataP = Deno.UnsafePointer.of(data)!;
    const iovP = Deno.UnsafePointer.of(iov)!;
    const saP = Deno.UnsafePointer.of(sa)!;
    const ctlP = Deno.UnsafePointer.of(ctl)!;
    this.#mm = new Uint8Array(mm);
    this.#mmPtr = Deno.UnsafePointer.of(mm);
    this.#mm32 = new Uint32Array(mm);
    this.#iov32 = new Uint32Array(iov);
    this.#sa = new DataView(sa);
    this.#ctl = new DataView(ctl);
    this.#ctl32 = new Uint32Array(ctl);
    const mm64 = new DataView(mm);
    const iov64 = new DataView(iov);
    const addr = (p: Deno.PointerObject, off: number) =>
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.offset(p, off)));
    this.slots = [];
    this.#slotPtrs = [];
    for (let i = 0; i < count; i++) {
      this.slots.push(new Uint8Array(data, i * this.slotSize, this.slotSize));
      this.#slotPtrs.push(Deno.UnsafePointer.offset(dataP, i * this.slotSize));
      iov64.setBigUint64(
        i * IOVEC.size + IOVEC.base,
        addr(dataP, i * this.slotSize + headroom),
        true,
      );
      iov64.setBigUint64(i * IOVEC.size + IOVEC.len, BigInt(size), true);
      const m = i * MMSGHDR.size;
      mm64.setBigUint64(m + MSGHDR.name, addr(saP, i * SOCKADDR_IN.size), true);
      mm64.setUint32(m + MSGHDR.namelen, SOCKADDR_IN.size, true);
      mm64.setBigUint64(m + MSGHDR.iov, addr(iovP, i * IOVEC.size), true);
      mm64.setBigUint64(m + MSGHDR.iovlen, 1n, true);
      mm64.setBigUint64(m + MSGHDR.control, addr(ctlP, i * CTL_SPACE), true);
      mm64.setBigUint64(m + MSGHDR.controllen, 0n, true);
      this.#sa.setUint16(i * SOCKADDR_IN.size + SOCKADDR_IN.family, AF_INET, true);
    }
  }

  /** The payload view of slot `i` (after the headroom), `size` bytes. */
  payload(i: number): Uint8Array<ArrayBuffer> {
    return this.slots[i].subarray(this.headroom);
  }

  /**
   * `recvmmsg` into up to `n` slots (default all) with `MSG_DONTWAIT`: the number received, or
   * `-errno`. With `gro`, room for a `UDP_GRO` control message is offered on every slot.
   */
  recv(fd: number, n = this.count, gro = false): number {
    const ctl = gro ? CTL_SPACE : 0;
    for (let i = 0; i < n; i++) {
      const w = (i * MMSGHDR.size) >> 2;
      this.#mm32[w + (MSGHDR.namelen >> 2)] = SOCKADDR_IN.size;
      this.#mm32[w + (MSGHDR.controllen >> 2)] = ctl; // recvmmsg overwrites it: reset each time
      this.#mm32[w + (MSGHDR.flags >> 2)] = 0;
      this.#iov32[(i * IOVEC.size + IOVEC.len) >> 2] = this.size;
    }
    const r = sym.recvmmsg(fd, this.#mmPtr, n, MSG_DONTWAIT, null);
    return r < 0 ? -errno() : r;
  }

  /** `sendmmsg` of slots `0..n-1` with their lengths and destinations: the number sent or `-errno`. */
  send(fd: number, n: number, first = 0): number {
    const p = first === 0
      ? this.#mmPtr
      : Deno.UnsafePointer.offset(this.#mmPtr!, first * MMSGHDR.size);
    const r = sym.sendmmsg(fd, p, n, 0);
    return r < 0 ? -errno() : r;
  }

  /** The byte count of slot `i` after `recv` (may exceed `size` when `truncated(i)`). */
  len(i: number): number {
    return this.#mm32[(i * MMSGHDR.size + MMSGHDR.len) >> 2];
  }
  /** True when the datagram in slot `i` did not fit (`MSG_TRUNC` in `msg_flags`). */
  truncated(i: number): boolean {
    return (this.#mm32[(i * MMSGHDR.size + MSGHDR.flags) >> 2] & MSG_TRUNC) !== 0;
  }
  /** The source address of slot `i` as a host-order u32. */
  addrIp(i: number): number {
    return this.#sa.getUint32(i * SOCKADDR_IN.size + SOCKADDR_IN.addr, false);
  }
  /** The source port of slot `i`. */
  addrPort(i: number): number {
    return this.#sa.getUint16(i * SOCKADDR_IN.size + SOCKADDR_IN.port, false);
  }
  /** The `UDP_GRO` segment size of slot `i` after a `recv` with `gro`; 0 when not coalesced. */
  groSize(i: number): number {
    const m = (i * MMSGHDR.size + MSGHDR.controllen) >> 2;
    if (this.#mm32[m] < cmsgLen(4)) return 0;
    const c = i * CTL_SPACE;
    if (
      this.#ctl.getInt32(c + CMSGHDR.level, true) !== SOL_UDP ||
      this.#ctl.getInt32(c + CMSGHDR.type, true) !== UDP_GRO
    ) return 0;
    return this.#ctl.getInt32(c + CMSGHDR.data, true);
  }

  /** Prepares slot `i` for `send`: payload length, destination, and a GSO segment size (0 = none). */
  setSend(i: number, len: number, ip: number, port: number, gsoSize = 0): void {
    this.#iov32[(i * IOVEC.size + IOVEC.len) >> 2] = len;
    const s = i * SOCKADDR_IN.size;
    this.#sa.setUint32(s + SOCKADDR_IN.addr, ip, false);
    this.#sa.setUint16(s + SOCKADDR_IN.port, port, false);
    const w = (i * MMSGHDR.size) >> 2;
    this.#mm32[w + (MSGHDR.namelen >> 2)] = SOCKADDR_IN.size;
    if (gsoSize > 0) {
      const c = i * CTL_SPACE;
      this.#ctl32[(c + CMSGHDR.len) >> 2] = cmsgLen(2);
      this.#ctl32[((c + CMSGHDR.len) >> 2) + 1] = 0;
      this.#ctl.setInt32(c + CMSGHDR.level, SOL_UDP, true);
      this.#ctl.setInt32(c + CMSGHDR.type, UDP_SEGMENT, true);
      this.#ctl.setUint16(c + CMSGHDR.data, gsoSize, true);
      this.#mm32[w + (MSGHDR.controllen >> 2)] = cmsgSpace(2);
    } else {
      this.#mm32[w + (MSGHDR.controllen >> 2)] = 0;
    }
  }

  /** Reads one packet from `fd` into the whole of slot `i` (headroom included): length or `-errno`. */
  readInto(fd: number, i: number): number {
    const n = sym.read_ptr(fd, this.#slotPtrs[i], this.slotSize);
    return n < 0 ? -errno() : n;
  }
  /** Writes the first `len` bytes of slot `i` (headroom included) to `fd`: count or `-errno`. */
  writeFrom(fd: number, i: number, len: number): number {
    const n = sym.write_ptr(fd, this.#slotPtrs[i], len);
    return n < 0 ? -errno() : n;
  }
}

function formatIp(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

function optName(level: number, name: number): string {
  const names: Record<string, string> = {
    "1/32": "SO_SNDBUFFORCE",
    "1/33": "SO_RCVBUFFORCE",
    "1/7": "SO_SNDBUF",
    "1/8": "SO_RCVBUF",
    "1/2": "SO_REUSEADDR",
    "17/103": "UDP_SEGMENT",
    "17/104": "UDP_GRO",
    "0/10": "IP_MTU_DISCOVER",
  };
  return names[`${level}/${name}`] ?? `level ${level} option ${name}`;
}
export { setNonBlocking } from "./tun.ts";
