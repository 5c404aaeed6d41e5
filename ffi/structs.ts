/**
 * C struct layouts for x86-64 Linux, each with named offsets and its size.
 *
 * Multi-byte fields in sockaddrs are network order (big-endian); netlink structs are host order
 * (little-endian here). Each codec is tested against its C size in tests/unit/ffi_structs_test.ts.
 */

/** `struct sockaddr_in` (netinet/in.h): 16 bytes. */
export const SOCKADDR_IN = {
  size: 16,
  family: 0, // sa_family_t sin_family (u16, host order)
  port: 2, // in_port_t sin_port (u16, network order)
  addr: 4, // struct in_addr sin_addr (u32, network order)
  // 8..16: sin_zero
} as const;

/** AF_INET, from sys/socket.h. */
export const AF_INET = 2;
/** AF_NETLINK, from sys/socket.h. */
export const AF_NETLINK = 16;
/** AF_UNIX, from sys/socket.h. */
export const AF_UNIX = 1;
/** AF_BRIDGE (PF_BRIDGE), from sys/socket.h. */
export const AF_BRIDGE = 7;

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
