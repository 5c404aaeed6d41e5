/**
 * libc and socket constants shared by the ffi/ files, each under its C name with the header it
 * comes from (x86-64 Linux, glibc). Netlink's own constants are in ./netlink/consts.ts; errno
 * numbers are in ./errno.ts.
 *
 * @module
 */

// Address families (bits/socket.h, linux/socket.h).
/** `AF_UNIX`. */
export const AF_UNIX = 1;
/** `AF_INET`. */
export const AF_INET = 2;
/** `AF_BRIDGE` (= `PF_BRIDGE`). */
export const AF_BRIDGE = 7;
/** `AF_INET6`. */
export const AF_INET6 = 10;
/** `AF_NETLINK`. */
export const AF_NETLINK = 16;
/** `AF_PACKET`. */
export const AF_PACKET = 17;

// Socket types and their flags (bits/socket_type.h).
/** `SOCK_DGRAM`. */
export const SOCK_DGRAM = 2;
/** `SOCK_RAW`. */
export const SOCK_RAW = 3;
/** `SOCK_NONBLOCK` (= `O_NONBLOCK`). */
export const SOCK_NONBLOCK = 0x800;
/** `SOCK_CLOEXEC` (= `O_CLOEXEC`). */
export const SOCK_CLOEXEC = 0x80000;

// Socket options (asm-generic/socket.h).
/** `SOL_SOCKET`. */
export const SOL_SOCKET = 1;
/** `SO_SNDBUF`. */
export const SO_SNDBUF = 7;
/** `SO_RCVBUF`. */
export const SO_RCVBUF = 8;
/** `SO_RCVTIMEO` (`SO_RCVTIMEO_OLD`: a `struct timeval`, 16 bytes on x86-64). */
export const SO_RCVTIMEO = 20;
/** `SO_SNDBUFFORCE`. */
export const SO_SNDBUFFORCE = 32;
/** `SO_RCVBUFFORCE`. */
export const SO_RCVBUFFORCE = 33;

// Message flags (bits/socket.h).
/** `MSG_TRUNC`. */
export const MSG_TRUNC = 0x20;
/** `MSG_DONTWAIT`. */
export const MSG_DONTWAIT = 0x40;
/** `MSG_NOSIGNAL`. */
export const MSG_NOSIGNAL = 0x4000;

// open(2) and fcntl(2) (asm-generic/fcntl.h).
/** `O_RDWR`. */
export const O_RDWR = 0x2;
/** `O_NONBLOCK`. */
export const O_NONBLOCK = 0x800;
/** `O_CLOEXEC`. */
export const O_CLOEXEC = 0x80000;
/** `F_GETFL`. */
export const F_GETFL = 3;
/** `F_SETFL`. */
export const F_SETFL = 4;

// eventfd(2) (sys/eventfd.h).
/** `EFD_NONBLOCK` (= `O_NONBLOCK`). */
export const EFD_NONBLOCK = 0x800;
/** `EFD_CLOEXEC` (= `O_CLOEXEC`). */
export const EFD_CLOEXEC = 0x80000;
