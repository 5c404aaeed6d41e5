/**
 * The one `Deno.dlopen` of libc in the project.
 *
 * Files inside `ffi/` use {@link sym} and the helpers below; nothing outside `ffi/` may import
 * raw symbols or pointers. Every Worker that imports this module opens libc for itself (a
 * Worker is its own isolate), which is cheap and gives each thread its own `__errno_location`.
 *
 * The library is found by probing absolute paths; `FLANNEL_LIBC` overrides the probe for
 * distributions that keep libc elsewhere (e.g. musl's `/lib/ld-musl-x86_64.so.1`).
 */

import { SyscallError } from "./errno.ts";

const CANDIDATES = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/usr/lib/x86_64-linux-gnu/libc.so.6",
  "/lib64/libc.so.6",
  "/usr/lib64/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
  "/usr/lib/libc.so.6",
  "/lib/libc.so.6",
  "/lib/ld-musl-x86_64.so.1",
];

/**
 * The C prototypes, as Deno FFI signatures.
 *
 * `ssize_t` results are declared `i32` and byte counts `u32` on purpose: 64-bit FFI types leave
 * V8's fast call path (see docs/udp-datapath-notes.md). On x86-64 a 32-bit argument is
 * zero-extended, and no single read or write here exceeds 2 GiB.
 */
const SYMBOLS = {
  // int socket(int domain, int type, int protocol);
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int bind(int fd, const struct sockaddr *addr, socklen_t len);
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int connect(int fd, const struct sockaddr *addr, socklen_t len);
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count);
  read: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // ssize_t write(int fd, const void *buf, size_t count);
  write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count); -- pointer form for preallocated buffers
  read_ptr: { name: "read", parameters: ["i32", "pointer", "u32"], result: "i32" },
  // ssize_t write(int fd, const void *buf, size_t count); -- pointer form
  write_ptr: { name: "write", parameters: ["i32", "pointer", "u32"], result: "i32" },
  // int open(const char *path, int flags, mode_t mode);
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  // ssize_t sendto(int fd, const void *buf, size_t len, int flags,
  //                const struct sockaddr *dest, socklen_t addrlen);
  sendto: { parameters: ["i32", "buffer", "u32", "i32", "buffer", "u32"], result: "i32" },
  // ssize_t recvfrom(int fd, void *buf, size_t len, int flags,
  //                  struct sockaddr *src, socklen_t *addrlen);
  recvfrom: { parameters: ["i32", "buffer", "u32", "i32", "buffer", "buffer"], result: "i32" },
  // ssize_t sendmsg(int fd, const struct msghdr *msg, int flags);
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // ssize_t recvmsg(int fd, struct msghdr *msg, int flags);
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags);
  sendmmsg: { parameters: ["i32", "pointer", "u32", "i32"], result: "i32" },
  // int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags,
  //              struct timespec *timeout);
  recvmmsg: { parameters: ["i32", "pointer", "u32", "i32", "pointer"], result: "i32" },
  // int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen);
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  // int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen);
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // int getsockname(int fd, struct sockaddr *addr, socklen_t *len);
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int fcntl(int fd, int cmd, ... /* int arg */);
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int ioctl(int fd, unsigned long request, ... /* void *arg */);
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // int ioctl(int fd, unsigned long request, ... /* unsigned long arg */);
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout);
  poll: { parameters: ["buffer", "u32", "i32"], result: "i32" },
  // int poll(...) run on a Deno pool thread, so the event loop is not blocked. errno is lost.
  poll_async: {
    name: "poll",
    parameters: ["buffer", "u32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // sighandler_t signal(int signum, sighandler_t handler);
  signal: { parameters: ["i32", "pointer"], result: "pointer" },
  // int sigaction(int signum, const struct sigaction *act, struct sigaction *oldact);
  sigaction: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int pthread_sigmask(int how, const sigset_t *set, sigset_t *oldset);
  pthread_sigmask: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int execve(const char *path, char *const argv[], char *const envp[]);
  execve: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
  // pid_t getpid(void);
  getpid: { parameters: [], result: "i32" },
  // unsigned int if_nametoindex(const char *ifname);
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  // int eventfd(unsigned int initval, int flags); -- wakes a pending poll_async (netlink subscribe)
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

function openLibc(): Deno.DynamicLibrary<typeof SYMBOLS> {
  const override = Deno.env.get("FLANNEL_LIBC");
  const paths = override ? [override] : CANDIDATES;
  const failures: string[] = [];
  for (const path of paths) {
    try {
      Deno.statSync(path);
    } catch {
      failures.push(`${path}: not found`);
      continue;
    }
    try {
      return Deno.dlopen(path, SYMBOLS);
    } catch (err) {
      failures.push(`${path}: ${(err as Error).message}`);
    }
  }
  throw new Error(
    `Cannot load libc (set FLANNEL_LIBC to its absolute path): ${failures.join("; ")}`,
  );
}

const lib = openLibc();

/** The raw libc symbols. Only for files inside `ffi/`. */
export const sym = lib.symbols;

let errnoView: Deno.UnsafePointerView | null = null;

/** The calling thread's errno. Read it right after the failing call, before any other FFI. */
export function errno(): number {
  if (errnoView === null) {
    const p = sym.__errno_location();
    if (p === null) throw new Error("Cannot locate errno: __errno_location returned NULL");
    errnoView = new Deno.UnsafePointerView(p);
  }
  return errnoView.getInt32();
}

/** Throws a {@link SyscallError} with the current errno when `ret` is negative. */
export function check(ret: number, syscall: string): number {
  if (ret < 0) throw new SyscallError(syscall, errno());
  return ret;
}

/** A NUL-terminated C string. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

/** The process id, from libc (the same as `Deno.pid`). */
export function getpid(): number {
  return sym.getpid();
}
