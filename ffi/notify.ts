/**
 * systemd readiness notification (`sd_notify(3)`): one datagram to the AF_UNIX socket named by
 * `$NOTIFY_SOCKET`, so a unit with `Type=notify` knows when subnet.env is written.
 */

import { check, sym } from "./libc.ts";
import { Fd } from "./fd.ts";
import { AF_UNIX, MSG_NOSIGNAL, SOCK_CLOEXEC, SOCK_DGRAM } from "./consts.ts";

/** `struct sockaddr_un` (sys/un.h): family (u16) + 108-byte path. */
const SOCKADDR_UN = { size: 110, family: 0, path: 2, pathMax: 108 } as const;

/** Encodes a `sockaddr_un`; a leading `@` names an abstract socket. Returns the bytes and length. */
export function encodeSockaddrUn(path: string): { addr: Uint8Array<ArrayBuffer>; len: number } {
  const abstract = path.startsWith("@");
  const name = new TextEncoder().encode(abstract ? path.slice(1) : path);
  const pathLen = name.length + (abstract ? 1 : 1); // abstract: leading NUL; file: trailing NUL
  if (pathLen > SOCKADDR_UN.pathMax) {
    throw new Error(`Socket path is too long (${name.length} bytes): ${path}`);
  }
  const addr = new Uint8Array(SOCKADDR_UN.size);
  new DataView(addr.buffer).setUint16(SOCKADDR_UN.family, AF_UNIX, true);
  addr.set(name, SOCKADDR_UN.path + (abstract ? 1 : 0));
  // An abstract name's length is exact (no terminator); a file path counts its NUL.
  return { addr, len: SOCKADDR_UN.path + pathLen };
}

/**
 * Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`. Returns false when the variable is unset
 * (not run by systemd); throws a SyscallError when sending fails.
 */
export function sdNotify(state: string, socketPath = Deno.env.get("NOTIFY_SOCKET")): boolean {
  if (!socketPath) return false;
  const { addr, len } = encodeSockaddrUn(socketPath);
  using fd = new Fd(check(sym.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket"), "notify");
  const msg = new TextEncoder().encode(state);
  check(sym.sendto(fd.fd, msg, msg.length, MSG_NOSIGNAL, addr, len), `sendto(${socketPath})`);
  return true;
}
