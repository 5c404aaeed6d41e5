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
import { IP } from "./ip.ts";
import {
  AF_INET,
  AF_INET6,
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

/** `IPPROTO_IPV6` (netinet/in.h). */
export const IPPROTO_IPV6 = 41;
/** `IPV6_V6ONLY` (linux/in6.h). */
export const IPV6_V6ONLY = 26;
/** `IPV6_MTU_DISCOVER` (linux/in6.h); takes the IP_PMTUDISC_* values. */
export const IPV6_MTU_DISCOVER = 23;

/** `struct sockaddr_in6` (linux/in6.h): 28 bytes, multi-byte fields network order. */
export const SOCKADDR_IN6 = {
  size: 28,
  family: 0, // sa_family_t sin6_family (u16, host order)
  port: 2, // in_port_t sin6_port (u16, network order)
  flowinfo: 4, // __be32 sin6_flowinfo
  addr: 8, // struct in6_addr sin6_addr (16 bytes)
  scopeId: 24, // __u32 sin6_scope_id (host order)
} as const;

/** Encodes a `sockaddr_in6` for 16 network-order address bytes. */
export function encodeSockaddrIn6(
  addr: Uint8Array,
  port: number,
  scopeId = 0,
): Uint8Array<ArrayBuffer> {
  if (addr.length !== 16) throw new TypeError(`IPv6 address: ${addr.length} bytes (expected 16)`);
  const b = new Uint8Array(SOCKADDR_IN6.size);
  const v = new DataView(b.buffer);
  v.setUint16(SOCKADDR_IN6.family, AF_INET6, true);
  v.setUint16(SOCKADDR_IN6.port, port, false);
  b.set(addr, SOCKADDR_IN6.addr);
  v.setUint32(SOCKADDR_IN6.scopeId, scopeId, true);
  return b;
}

/** Decodes a `sockaddr_in6`: a copy of the 16 address bytes and the port. */
export function decodeSockaddrIn6(b: Uint8Array): { addr: Uint8Array<ArrayBuffer>; port: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    addr: b.slice(SOCKADDR_IN6.addr, SOCKADDR_IN6.addr + 16),
    port: v.getUint16(SOCKADDR_IN6.port, false),
  };
}

/**
 * Creates a `SOCK_DGRAM` socket, non-blocking unless told otherwise: `AF_INET`, or with `ipv6`
 * an `AF_INET6` socket with `IPV6_V6ONLY` set (IPv6 peers only, no v4-mapped addresses, so an
 * IPv4 socket may share the port). With `dualStack` as well, `IPV6_V6ONLY` is cleared instead
 * (whatever `net.ipv6.bindv6only` says): bound to `::`, the one socket also sends to and
 * receives from IPv4 peers as v4-mapped addresses (`::ffff:a.b.c.d`).
 */
export function udpSocket(
  opts: { nonBlocking?: boolean; ipv6?: boolean; dualStack?: boolean } = {},
): Fd {
  let type = SOCK_DGRAM | SOCK_CLOEXEC;
  if (opts.nonBlocking !== false) type |= SOCK_NONBLOCK;
  const fd = new Fd(check(sym.socket(opts.ipv6 ? AF_INET6 : AF_INET, type, 0), "socket"), "udp");
  if (opts.ipv6) {
    try {
      setsockoptInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, opts.dualStack ? 0 : 1);
    } catch (err) {
      fd.close();
      throw err;
    }
  }
  return fd;
}

/** Binds to `ip:port` (host-order u32 address); port 0 lets the kernel choose. */
export function bind(fd: Fd, ip: number, port: number): void {
  const sa = encodeSockaddrIn(ip, port);
  if (sym.bind(fd.fd, sa, SOCKADDR_IN.size) < 0) {
    const e = errno();
    throw new SyscallError("bind", e, `${formatIp(ip)}:${port}`);
  }
}

/** Binds an `AF_INET6` socket to `[addr]:port` (16 network-order bytes); port 0 lets the kernel choose. */
export function bind6(fd: Fd, addr: Uint8Array, port: number, scopeId = 0): void {
  const sa = encodeSockaddrIn6(addr, port, scopeId);
  if (sym.bind(fd.fd, sa, SOCKADDR_IN6.size) < 0) {
    const e = errno();
    throw new SyscallError("bind", e, `[${formatIp6(addr)}]:${port}`);
  }
}

/** The local address of a bound `AF_INET6` socket. */
export function getsockname6(fd: Fd): { addr: Uint8Array<ArrayBuffer>; port: number } {
  const sa = new Uint8Array(SOCKADDR_IN6.size);
  const len = new Uint32Array([SOCKADDR_IN6.size]);
  check(sym.getsockname(fd.fd, sa, new Uint8Array(len.buffer)), "getsockname");
  return decodeSockaddrIn6(sa);
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

/** Sends one datagram to `[addr]:port` on an `AF_INET6` socket. Throws on error (not for the hot path). */
export function sendto6(
  fd: Fd,
  data: Uint8Array<ArrayBuffer>,
  addr: Uint8Array,
  port: number,
): number {
  const sa = encodeSockaddrIn6(addr, port);
  const n = sym.sendto(fd.fd, data, data.length, 0, sa, SOCKADDR_IN6.size);
  if (n < 0) throw new SyscallError("sendto", errno(), `[${formatIp6(addr)}]:${port}`);
  return n;
}

/** {@link sendtoRaw} for an `AF_INET6` fd and 16 address bytes: the byte count, or `-errno`. */
export function sendtoRaw6(
  fd: number,
  data: Uint8Array<ArrayBuffer>,
  addr: Uint8Array,
  port: number,
): number {
  const sa = encodeSockaddrIn6(addr, port);
  const n = sym.sendto(fd, data, data.length, 0, sa, SOCKADDR_IN6.size);
  return n < 0 ? -errno() : n;
}

/** {@link recvfrom} on an `AF_INET6` socket: the source as 16 address bytes (a copy). */
export function recvfrom6(
  fd: Fd,
  buf: Uint8Array<ArrayBuffer>,
  flags = MSG_DONTWAIT,
): { length: number; truncated: boolean; addr: Uint8Array<ArrayBuffer>; port: number } | null {
  const sa = new Uint8Array(SOCKADDR_IN6.size);
  const len = new Uint32Array([SOCKADDR_IN6.size]);
  const n = sym.recvfrom(fd.fd, buf, buf.length, flags | MSG_TRUNC, sa, new Uint8Array(len.buffer));
  if (n < 0) {
    const e = errno();
    if (e === EAGAIN) return null;
    throw new SyscallError("recvfrom", e);
  }
  const { addr, port } = decodeSockaddrIn6(sa);
  return { length: n, truncated: n > buf.length, addr, port };
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
 * TUN read with a virtio header lands right before the payload), a `sockaddr_in` (or with
 * family 6 a `sockaddr_in6`), an iovec, an mmsghdr and one control message.
 *
 * An IPv4 batch uses {@link DatagramBatch.setSend}/{@link DatagramBatch.addrIp}; an IPv6 batch
 * {@link DatagramBatch.setSend6}/{@link DatagramBatch.addr6}, each on a socket of its family.
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
  readonly #saBytes: Uint8Array<ArrayBuffer>;
  readonly #saSize: number;
  readonly #addr6: Uint8Array<ArrayBuffer>[];
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
    readonly family: 4 | 6 = 4,
  ) {
    const saSize = family === 6 ? SOCKADDR_IN6.size : SOCKADDR_IN.size;
    this.#saSize = saSize;
    this.slotSize = headroom + size;
    this.extraOffset = count * this.slotSize;
    const data = new ArrayBuffer(count * this.slotSize + extra);
    this.all = new Uint8Array(data);
    const mm = new ArrayBuffer(count * MMSGHDR.size);
    const iov = new ArrayBuffer(count * IOVEC.size);
    const sa = new ArrayBuffer(count * saSize);
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
    this.#saBytes = new Uint8Array(sa);
    this.#addr6 = [];
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
      mm64.setBigUint64(m + MSGHDR.name, addr(saP, i * saSize), true);
      mm64.setUint32(m + MSGHDR.namelen, saSize, true);
      mm64.setBigUint64(m + MSGHDR.iov, addr(iovP, i * IOVEC.size), true);
      mm64.setBigUint64(m + MSGHDR.iovlen, 1n, true);
      mm64.setBigUint64(m + MSGHDR.control, addr(ctlP, i * CTL_SPACE), true);
      mm64.setBigUint64(m + MSGHDR.controllen, 0n, true);
      this.#sa.setUint16(i * saSize, family === 6 ? AF_INET6 : AF_INET, true); // sa_family at 0
      if (family === 6) {
        const a = i * saSize + SOCKADDR_IN6.addr;
        this.#addr6.push(new Uint8Array(sa, a, 16));
      }
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
      this.#mm32[w + (MSGHDR.namelen >> 2)] = this.#saSize;
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
  /** The source address of slot `i` of an IPv4 batch as a host-order u32. */
  addrIp(i: number): number {
    return this.#sa.getUint32(i * SOCKADDR_IN.size + SOCKADDR_IN.addr, false);
  }
  /** The source port of slot `i` (the port is at offset 2 of both sockaddr forms). */
  addrPort(i: number): number {
    return this.#sa.getUint16(i * this.#saSize + SOCKADDR_IN.port, false);
  }
  /**
   * The 16 source-address bytes of slot `i` of an IPv6 batch: a view into the batch's own memory
   * (preallocated, valid until the next `recv` or `setSend6` of that slot), not a copy.
   */
  addr6(i: number): Uint8Array<ArrayBuffer> {
    return this.#addr6[i];
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
    this.#setGso(i, w, gsoSize);
  }

  /**
   * {@link DatagramBatch.setSend} for an IPv6 batch: the destination is 16 network-order bytes
   * at `addr[off..off+16]` (copied into the slot's `sockaddr_in6`; flow info and scope are 0).
   */
  setSend6(
    i: number,
    len: number,
    addr: Uint8Array,
    off: number,
    port: number,
    gsoSize = 0,
  ): void {
    this.#iov32[(i * IOVEC.size + IOVEC.len) >> 2] = len;
    const s = i * SOCKADDR_IN6.size;
    const sb = this.#saBytes, d = s + SOCKADDR_IN6.addr;
    for (let k = 0; k < 16; k++) sb[d + k] = addr[off + k]; // no subarray: no per-packet view
    this.#sa.setUint16(s + SOCKADDR_IN6.port, port, false);
    const w = (i * MMSGHDR.size) >> 2;
    this.#mm32[w + (MSGHDR.namelen >> 2)] = SOCKADDR_IN6.size;
    this.#setGso(i, w, gsoSize);
  }

  /**
   * {@link DatagramBatch.setSend6} to an IPv4 destination (host-order u32) as its v4-mapped
   * IPv6 address, for a dual-stack socket.
   */
  setSendMapped(i: number, len: number, ip: number, port: number, gsoSize = 0): void {
    this.#iov32[(i * IOVEC.size + IOVEC.len) >> 2] = len;
    const s = i * SOCKADDR_IN6.size;
    const sb = this.#saBytes, d = s + SOCKADDR_IN6.addr;
    for (let k = 0; k < 10; k++) sb[d + k] = 0;
    sb[d + 10] = sb[d + 11] = 0xff;
    this.#sa.setUint32(d + 12, ip, false);
    this.#sa.setUint16(s + SOCKADDR_IN6.port, port, false);
    const w = (i * MMSGHDR.size) >> 2;
    this.#mm32[w + (MSGHDR.namelen >> 2)] = SOCKADDR_IN6.size;
    this.#setGso(i, w, gsoSize);
  }

  /**
   * The source of slot `i` of an IPv6 batch as a host-order IPv4 u32 when it is v4-mapped
   * (`::ffff:a.b.c.d`, a dual-stack socket's IPv4 peer), else -1.
   */
  mappedIp(i: number): number {
    const b = this.#addr6[i];
    for (let k = 0; k < 10; k++) if (b[k] !== 0) return -1;
    if (b[10] !== 0xff || b[11] !== 0xff) return -1;
    return ((b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15]) >>> 0;
  }

  #setGso(i: number, w: number, gsoSize: number): void {
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

function formatIp6(addr: Uint8Array): string {
  return addr.length === 16 ? IP.fromBytes(addr).toString() : `(${addr.length}-byte address)`;
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
    "41/26": "IPV6_V6ONLY",
    "41/23": "IPV6_MTU_DISCOVER",
  };
  return names[`${level}/${name}`] ?? `level ${level} option ${name}`;
}
export { setNonBlocking } from "./tun.ts";
