/**
 * TUN devices: open `/dev/net/tun`, attach a named interface with `TUNSETIFF`, switch on
 * offloads, set the transmit queue length, and move packets with synchronous reads and writes.
 *
 * The hot-path helpers ({@link PacketSlots}) take preallocated memory whose addresses were
 * computed once, so a read or write costs one FFI call and no allocation.
 */

import { check, cstr, errno, sym } from "./libc.ts";
import { SyscallError } from "./errno.ts";
import { Fd } from "./fd.ts";
import {
  AF_INET,
  F_GETFL,
  F_SETFL,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
} from "./consts.ts";
import { decodeIfreqName, encodeIfreq, IFREQ } from "./structs.ts";

/** TUN ioctls and flags (linux/if_tun.h). `_IOW('T', nr, int)` = 0x400454xx. */
export const TUNSETIFF = 0x400454ca;
/** `TUNSETOFFLOAD` (linux/if_tun.h). */
export const TUNSETOFFLOAD = 0x400454d0;
/** `TUNSETVNETHDRSZ` (linux/if_tun.h). */
export const TUNSETVNETHDRSZ = 0x400454d8;
/** `IFF_TUN` (linux/if_tun.h). */
export const IFF_TUN = 0x0001;
/** `IFF_NO_PI` (linux/if_tun.h). */
export const IFF_NO_PI = 0x1000;
/** `IFF_MULTI_QUEUE` (linux/if_tun.h). */
export const IFF_MULTI_QUEUE = 0x0100;
/** `IFF_VNET_HDR` (linux/if_tun.h). */
export const IFF_VNET_HDR = 0x4000;
/** Offload bits for `TUNSETOFFLOAD` (linux/if_tun.h). */
export const TUN_F_CSUM = 0x01;
/** `TUN_F_TSO4` (linux/if_tun.h). */
export const TUN_F_TSO4 = 0x02;
/** `TUN_F_TSO6` (linux/if_tun.h). */
export const TUN_F_TSO6 = 0x04;
/** `TUN_F_TSO_ECN` (linux/if_tun.h). */
export const TUN_F_TSO_ECN = 0x08;
/** `TUN_F_UFO` (linux/if_tun.h). */
export const TUN_F_UFO = 0x10;
/** `TUN_F_USO4` (linux/if_tun.h). */
export const TUN_F_USO4 = 0x20;
/** `TUN_F_USO6` (linux/if_tun.h). */
export const TUN_F_USO6 = 0x40;

/** `SIOCSIFTXQLEN` (linux/sockios.h). */
const SIOCSIFTXQLEN = 0x8943;
/** `SIOCGIFTXQLEN` (linux/sockios.h). */
const SIOCGIFTXQLEN = 0x8942;
/** The errno value the non-blocking hot path returns as `-EAGAIN` (from ./errno.ts). */
export { EAGAIN } from "./errno.ts";

/** Options for {@link openTun}. */
export interface TunOptions {
  /** Requested name; `%d` lets the kernel pick the number (`flannel%d` → `flannel0`). */
  name: string;
  /** `IFF_MULTI_QUEUE`: several fds may attach to the same device. */
  multiQueue?: boolean;
  /** `IFF_VNET_HDR`: every packet carries a 10-byte `virtio_net_hdr` (needed for offloads). */
  vnetHdr?: boolean;
  /** Open the fd non-blocking (default true: the data path polls). */
  nonBlocking?: boolean;
}

/** An open TUN queue: its fd and the name the kernel chose. */
export interface Tun {
  /** The queue's file descriptor; closing the last one removes the device. */
  readonly fd: Fd;
  /** The interface name the kernel chose, e.g. `flannel0`. */
  readonly name: string;
}

/**
 * Opens `/dev/net/tun` and attaches a layer-3 device (`IFF_TUN|IFF_NO_PI`).
 *
 * @example
 * ```ts ignore
 * using tun = openTun({ name: "flannel%d" }).fd; // needs CAP_NET_ADMIN
 * ```
 */
export function openTun(opts: TunOptions): Tun {
  let flags = O_RDWR | O_CLOEXEC;
  if (opts.nonBlocking !== false) flags |= O_NONBLOCK;
  const raw = sym.open(cstr("/dev/net/tun"), flags, 0);
  if (raw < 0) {
    throw new SyscallError("open", errno(), "/dev/net/tun");
  }
  const fd = new Fd(raw, "tun");
  try {
    let ifflags = IFF_TUN | IFF_NO_PI;
    if (opts.multiQueue) ifflags |= IFF_MULTI_QUEUE;
    if (opts.vnetHdr) ifflags |= IFF_VNET_HDR;
    const ifr = encodeIfreq(opts.name, ifflags);
    if (sym.ioctl(raw, BigInt(TUNSETIFF), ifr) < 0) {
      throw new SyscallError("ioctl(TUNSETIFF)", errno(), opts.name);
    }
    return { fd, name: decodeIfreqName(ifr) };
  } catch (err) {
    fd.close();
    throw err;
  }
}

/**
 * `TUNSETOFFLOAD`: tells the kernel which offloads this reader handles (`TUN_F_*` bits). Throws
 * `EINVAL` when the kernel refuses a bit; callers fall back to fewer offloads.
 */
export function tunSetOffload(fd: Fd, offloads: number): void {
  if (sym.ioctl_int(fd.fd, BigInt(TUNSETOFFLOAD), BigInt(offloads)) < 0) {
    throw new SyscallError("ioctl(TUNSETOFFLOAD)", errno(), `0x${offloads.toString(16)}`);
  }
}

function withInetSocket<T>(fn: (s: number) => T): T {
  const s = check(sym.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket");
  try {
    return fn(s);
  } finally {
    sym.close(s);
  }
}

/** `SIOCSIFTXQLEN`: sets an interface's transmit queue length (`ip link set … txqueuelen`). */
export function setTxQueueLen(name: string, qlen: number): void {
  withInetSocket((s) => {
    const ifr = encodeIfreq(name, qlen, true);
    if (sym.ioctl(s, BigInt(SIOCSIFTXQLEN), ifr) < 0) {
      throw new SyscallError("ioctl(SIOCSIFTXQLEN)", errno(), name);
    }
  });
}

/** `SIOCGIFTXQLEN`: an interface's transmit queue length. */
export function getTxQueueLen(name: string): number {
  return withInetSocket((s) => {
    const ifr = encodeIfreq(name, 0, true);
    if (sym.ioctl(s, BigInt(SIOCGIFTXQLEN), ifr) < 0) {
      throw new SyscallError("ioctl(SIOCGIFTXQLEN)", errno(), name);
    }
    return new DataView(ifr.buffer).getInt32(IFREQ.qlen, true);
  });
}

/** Sets or clears `O_NONBLOCK` on a descriptor (a raw number, for use inside Workers too). */
export function setNonBlocking(fd: number, on = true): void {
  const fl = check(sym.fcntl(fd, F_GETFL, 0), "fcntl(F_GETFL)");
  const next = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
  if (next !== fl) check(sym.fcntl(fd, F_SETFL, next), "fcntl(F_SETFL)");
}

/**
 * Preallocated packet buffers for synchronous `read`/`write` on a raw fd: `count` slots of
 * `size` bytes in one ArrayBuffer, each slot's address computed once.
 *
 * `read(fd, i)` and `write(fd, i, len)` return the byte count, or `-errno` (e.g. `-EAGAIN`)
 * so that the data path tests a number instead of catching exceptions.
 */
export class PacketSlots {
  /** One view per slot, `size` bytes each. */
  readonly bufs: Uint8Array<ArrayBuffer>[];
  readonly #ptrs: Deno.PointerValue[];
  /** Allocates `count` slots of `size` bytes and computes their addresses once. */
  constructor(readonly count: number, readonly size: number) {
    const mem = new ArrayBuffer(count * size);
    const base = Deno.UnsafePointer.of(mem);
    this.bufs = [];
    this.#ptrs = [];
    for (let i = 0; i < count; i++) {
      this.bufs.push(new Uint8Array(mem, i * size, size));
      this.#ptrs.push(Deno.UnsafePointer.offset(base!, i * size));
    }
  }
  /** Reads one packet into slot `i`: its length, or `-errno`. */
  read(fd: number, i: number): number {
    const n = sym.read_ptr(fd, this.#ptrs[i], this.size);
    return n < 0 ? -errno() : n;
  }
  /** Writes `len` bytes of slot `i` starting at `off`: the count written, or `-errno`. */
  write(fd: number, i: number, len: number, off = 0): number {
    const p = off === 0 ? this.#ptrs[i] : Deno.UnsafePointer.offset(this.#ptrs[i]!, off);
    const n = sym.write_ptr(fd, p, len);
    return n < 0 ? -errno() : n;
  }
}

/** A one-off synchronous write of a whole buffer to a raw fd: the count written, or `-errno`. */
export function writeBuf(fd: number, buf: Uint8Array<ArrayBuffer>, len = buf.length): number {
  const n = sym.write(fd, buf, len);
  return n < 0 ? -errno() : n;
}
