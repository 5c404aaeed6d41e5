/**
 * C struct layouts for x86-64 Linux, each with named offsets and its size.
 *
 * Multi-byte fields in sockaddrs are network order (big-endian); netlink structs are host order
 * (little-endian here). Each codec is tested against its C size in tests/unit/ffi_structs_test.ts.
 */

import { AF_INET, AF_NETLINK } from "./consts.ts";

/** `struct sockaddr_in` (netinet/in.h): 16 bytes. */
export const SOCKADDR_IN = {
  size: 16,
  family: 0, // sa_family_t sin_family (u16, host order)
  port: 2, // in_port_t sin_port (u16, network order)
  addr: 4, // struct in_addr sin_addr (u32, network order)
  // 8..16: sin_zero
} as const;

/** Encodes a `sockaddr_in` for an IPv4 address given as a host-order u32. */
export function encodeSockaddrIn(ip: number, port: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(SOCKADDR_IN.size);
  const v = new DataView(b.buffer);
  v.setUint16(SOCKADDR_IN.family, AF_INET, true);
  v.setUint16(SOCKADDR_IN.port, port, false);
  v.setUint32(SOCKADDR_IN.addr, ip >>> 0, false);
  return b;
}

/** Decodes a `sockaddr_in` into a host-order u32 address and a port. */
export function decodeSockaddrIn(b: Uint8Array): { ip: number; port: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { ip: v.getUint32(SOCKADDR_IN.addr, false), port: v.getUint16(SOCKADDR_IN.port, false) };
}

/** `struct sockaddr_nl` (linux/netlink.h): 12 bytes. */
export const SOCKADDR_NL = {
  size: 12,
  family: 0, // __kernel_sa_family_t nl_family (u16)
  // 2: unsigned short nl_pad
  pid: 4, // __u32 nl_pid (port id)
  groups: 8, // __u32 nl_groups (multicast group mask)
} as const;

/** Encodes a `sockaddr_nl`. */
export function encodeSockaddrNl(pid = 0, groups = 0): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(SOCKADDR_NL.size);
  const v = new DataView(b.buffer);
  v.setUint16(SOCKADDR_NL.family, AF_NETLINK, true);
  v.setUint32(SOCKADDR_NL.pid, pid >>> 0, true);
  v.setUint32(SOCKADDR_NL.groups, groups >>> 0, true);
  return b;
}

/** Decodes a `sockaddr_nl`. */
export function decodeSockaddrNl(b: Uint8Array): { pid: number; groups: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { pid: v.getUint32(SOCKADDR_NL.pid, true), groups: v.getUint32(SOCKADDR_NL.groups, true) };
}

/** `struct pollfd` (poll.h): 8 bytes. */
export const POLLFD = {
  size: 8,
  fd: 0, // int fd
  events: 4, // short events
  revents: 6, // short revents
} as const;

/** poll(2) event bits, from asm-generic/poll.h. */
export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;

/** IFNAMSIZ, from linux/if.h: interface names are at most 15 bytes plus NUL. */
export const IFNAMSIZ = 16;

/**
 * `struct ifreq` (linux/if.h): 40 bytes. The name, then a 24-byte union of which the TUN and
 * interface ioctls use one member at a time.
 */
export const IFREQ = {
  size: 40,
  name: 0, // char ifr_name[IFNAMSIZ]
  flags: 16, // short ifr_flags (TUNSETIFF, SIOCGIFFLAGS)
  mtu: 16, // int ifr_mtu (SIOCSIFMTU)
  qlen: 16, // int ifr_qlen (SIOCSIFTXQLEN)
  ifindex: 16, // int ifr_ifindex (SIOCGIFINDEX)
} as const;

/** Encodes an `ifreq` with a name (at most 15 bytes) and a 16-bit flags/int union value. */
export function encodeIfreq(name: string, value = 0, wide = false): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length >= IFNAMSIZ) {
    throw new RangeError(`Interface name too long: ${JSON.stringify(name)} exceeds 15 bytes`);
  }
  const b = new Uint8Array(IFREQ.size);
  b.set(bytes, IFREQ.name);
  const v = new DataView(b.buffer);
  if (wide) v.setInt32(IFREQ.qlen, value, true);
  else v.setUint16(IFREQ.flags, value & 0xffff, true);
  return b;
}

/** The interface name in an `ifreq` (up to the first NUL). */
export function decodeIfreqName(b: Uint8Array): string {
  const name = b.subarray(IFREQ.name, IFREQ.name + IFNAMSIZ);
  const nul = name.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? name : name.subarray(0, nul));
}

/** `struct iovec` (sys/uio.h): 16 bytes. */
export const IOVEC = {
  size: 16,
  base: 0, // void *iov_base
  len: 8, // size_t iov_len
} as const;

/** `struct msghdr` (sys/socket.h): 56 bytes on x86-64. */
export const MSGHDR = {
  size: 56,
  name: 0, // void *msg_name
  namelen: 8, // socklen_t msg_namelen (u32), then 4 bytes padding
  iov: 16, // struct iovec *msg_iov
  iovlen: 24, // size_t msg_iovlen
  control: 32, // void *msg_control
  controllen: 40, // size_t msg_controllen
  flags: 48, // int msg_flags, then 4 bytes padding
} as const;

/** `struct mmsghdr` (sys/socket.h): 64 bytes, a `msghdr` and the byte count of that message. */
export const MMSGHDR = {
  size: 64,
  hdr: 0, // struct msghdr msg_hdr
  len: 56, // unsigned int msg_len, then 4 bytes padding
} as const;

/** `struct cmsghdr` (sys/socket.h): a 16-byte header before the data on x86-64. */
export const CMSGHDR = {
  size: 16,
  len: 0, // size_t cmsg_len (header + data, unpadded)
  level: 8, // int cmsg_level
  type: 12, // int cmsg_type
  data: 16, // unsigned char cmsg_data[]
} as const;

/** `CMSG_ALIGN` (sys/socket.h): control data is padded to 8 bytes. */
export function cmsgAlign(n: number): number {
  return (n + 7) & ~7;
}

/** `CMSG_LEN(n)`: the value of `cmsg_len` for `n` data bytes. */
export function cmsgLen(n: number): number {
  return CMSGHDR.size + n;
}

/** `CMSG_SPACE(n)`: the buffer space one control message with `n` data bytes takes. */
export function cmsgSpace(n: number): number {
  return CMSGHDR.size + cmsgAlign(n);
}

/**
 * `struct virtio_net_hdr` (linux/virtio_net.h): the 10-byte header before every packet on a TUN
 * opened with `IFF_VNET_HDR`. Fields are little-endian (TUN's default vnet byte order on x86).
 */
export const VIRTIO_NET_HDR = {
  size: 10,
  flags: 0, // __u8 flags (VIRTIO_NET_HDR_F_NEEDS_CSUM = 1, F_DATA_VALID = 2)
  gsoType: 1, // __u8 gso_type (VIRTIO_NET_HDR_GSO_NONE = 0, TCPV4 = 1, UDP = 3, TCPV6 = 4, ECN = 0x80)
  hdrLen: 2, // __u16 hdr_len (bytes of headers before the payload)
  gsoSize: 4, // __u16 gso_size (payload bytes per segment)
  csumStart: 6, // __u16 csum_start (offset where checksumming starts)
  csumOffset: 8, // __u16 csum_offset (where to store it, relative to csum_start)
} as const;

/** virtio_net_hdr flag and GSO type values (linux/virtio_net.h). */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
/** `VIRTIO_NET_HDR_F_DATA_VALID` (linux/virtio_net.h). */
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
/** `VIRTIO_NET_HDR_GSO_NONE` (linux/virtio_net.h). */
export const VIRTIO_NET_HDR_GSO_NONE = 0;
/** `VIRTIO_NET_HDR_GSO_TCPV4` (linux/virtio_net.h). */
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
/** `VIRTIO_NET_HDR_GSO_UDP` (linux/virtio_net.h). */
export const VIRTIO_NET_HDR_GSO_UDP = 3;
/** `VIRTIO_NET_HDR_GSO_TCPV6` (linux/virtio_net.h). */
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** `VIRTIO_NET_HDR_GSO_ECN` (linux/virtio_net.h). */
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;
