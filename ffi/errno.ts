/**
 * errno names and messages for x86-64 Linux (asm-generic/errno-base.h, asm-generic/errno.h).
 *
 * Only the numbers this project can meet are named; others print as `E<number>`.
 */

const ERRNO: Record<number, [string, string]> = {
  1: ["EPERM", "Operation not permitted"],
  2: ["ENOENT", "No such file or directory"],
  3: ["ESRCH", "No such process"],
  4: ["EINTR", "Interrupted system call"],
  5: ["EIO", "Input/output error"],
  6: ["ENXIO", "No such device or address"],
  7: ["E2BIG", "Argument list too long"],
  9: ["EBADF", "Bad file descriptor"],
  11: ["EAGAIN", "Resource temporarily unavailable"],
  12: ["ENOMEM", "Cannot allocate memory"],
  13: ["EACCES", "Permission denied"],
  14: ["EFAULT", "Bad address"],
  16: ["EBUSY", "Device or resource busy"],
  17: ["EEXIST", "File exists"],
  19: ["ENODEV", "No such device"],
  20: ["ENOTDIR", "Not a directory"],
  21: ["EISDIR", "Is a directory"],
  22: ["EINVAL", "Invalid argument"],
  23: ["ENFILE", "Too many open files in system"],
  24: ["EMFILE", "Too many open files"],
  25: ["ENOTTY", "Inappropriate ioctl for device"],
  28: ["ENOSPC", "No space left on device"],
  32: ["EPIPE", "Broken pipe"],
  34: ["ERANGE", "Numerical result out of range"],
  61: ["ENODATA", "No data available"],
  71: ["EPROTO", "Protocol error"],
  75: ["EOVERFLOW", "Value too large for defined data type"],
  88: ["ENOTSOCK", "Socket operation on non-socket"],
  89: ["EDESTADDRREQ", "Destination address required"],
  90: ["EMSGSIZE", "Message too long"],
  91: ["EPROTOTYPE", "Protocol wrong type for socket"],
  92: ["ENOPROTOOPT", "Protocol not available"],
  93: ["EPROTONOSUPPORT", "Protocol not supported"],
  95: ["EOPNOTSUPP", "Operation not supported"],
  97: ["EAFNOSUPPORT", "Address family not supported by protocol"],
  98: ["EADDRINUSE", "Address already in use"],
  99: ["EADDRNOTAVAIL", "Cannot assign requested address"],
  100: ["ENETDOWN", "Network is down"],
  101: ["ENETUNREACH", "Network is unreachable"],
  104: ["ECONNRESET", "Connection reset by peer"],
  105: ["ENOBUFS", "No buffer space available"],
  110: ["ETIMEDOUT", "Connection timed out"],
  111: ["ECONNREFUSED", "Connection refused"],
  113: ["EHOSTUNREACH", "No route to host"],
  114: ["EALREADY", "Operation already in progress"],
  115: ["EINPROGRESS", "Operation now in progress"],
};

/** `EINTR` (asm-generic/errno-base.h). */
export const EINTR = 4;
/** `EAGAIN` (asm-generic/errno-base.h): a non-blocking call would block. */
export const EAGAIN = 11;
/** `EMSGSIZE` (asm-generic/errno.h). */
export const EMSGSIZE = 90;

/** The symbolic name of an errno value, e.g. `errnoName(17) === "EEXIST"`. */
export function errnoName(errno: number): string {
  return ERRNO[errno]?.[0] ?? `E${errno}`;
}

/** The strerror(3)-style text of an errno value. */
export function errnoMessage(errno: number): string {
  return ERRNO[errno]?.[1] ?? `Unknown error ${errno}`;
}

/** The errno value of a name, e.g. `errnoNumber("ENODEV") === 19`; undefined when unknown. */
export function errnoNumber(name: string): number | undefined {
  for (const [num, [n]] of Object.entries(ERRNO)) if (n === name) return Number(num);
  return undefined;
}

/**
 * A failed system call: `socket: EPERM (Operation not permitted)`.
 *
 * Callers test {@link SyscallError.code}, never the message text.
 */
export class SyscallError extends Error {
  /** The errno name, e.g. `EEXIST`. */
  readonly code: string;
  constructor(
    /** The call that failed, e.g. `socket` or `RTM_NEWLINK`. */
    readonly syscall: string,
    /** The errno number. */
    readonly errno: number,
    /** Extra text, e.g. a netlink extended-ack message. */
    readonly detail?: string,
    options?: ErrorOptions,
  ) {
    const name = errnoName(errno);
    super(
      `${syscall}: ${name} (${errnoMessage(errno)})${detail ? `: ${detail}` : ""}`,
      options,
    );
    this.name = "SyscallError";
    this.code = name;
  }
}

/** True when `err` is a {@link SyscallError} with the errno name `code`. */
export function isErrno(err: unknown, code: string): boolean {
  return err instanceof SyscallError && err.code === code;
}
