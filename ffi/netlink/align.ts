/**
 * Netlink alignment and header sizes, as the kernel's macros in linux/netlink.h name them.
 *
 * @module
 */

/** `NLMSG_ALIGNTO` (linux/netlink.h). */
export const NLMSG_ALIGNTO = 4;
/** `NLMSG_ALIGN(len)` (linux/netlink.h). */
export function NLMSG_ALIGN(len: number): number {
  return (len + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1);
}
/** `NLMSG_HDRLEN`: the aligned size of `struct nlmsghdr` (linux/netlink.h). */
export const NLMSG_HDRLEN = 16;
/** `NLA_ALIGNTO` (linux/netlink.h); `RTA_ALIGNTO` is the same 4. */
export const NLA_ALIGNTO = 4;
/** `NLA_ALIGN(len)` (linux/netlink.h), the same as `RTA_ALIGN`. */
export function NLA_ALIGN(len: number): number {
  return (len + NLA_ALIGNTO - 1) & ~(NLA_ALIGNTO - 1);
}
/** `NLA_HDRLEN`: the aligned size of `struct nlattr` (linux/netlink.h). */
export const NLA_HDRLEN = 4;
/** `NLA_F_NESTED` (linux/netlink.h). */
export const NLA_F_NESTED = 0x8000;
/** `NLA_F_NET_BYTEORDER` (linux/netlink.h). */
export const NLA_F_NET_BYTEORDER = 0x4000;
/** `NLA_TYPE_MASK` (linux/netlink.h): the attribute type without the two flag bits. */
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;
