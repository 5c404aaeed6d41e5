/**
 * A netlink connection over an `AF_NETLINK`/`NETLINK_ROUTE` socket: sequence numbers, port-id
 * checks, ACKs and `NLMSG_ERROR` (with the extended-ack text), multipart dumps.
 *
 * Requests are synchronous: the kernel answers rtnetlink requests before `sendto` returns, so a
 * blocking `recvfrom` with a `SO_RCVTIMEO` safety timeout never waits in practice. Subscriptions
 * use a non-blocking socket (see ./events.ts).
 *
 * @module
 */

import { EAGAIN, EINTR, EMSGSIZE, SyscallError } from "../errno.ts";
import { Fd } from "../fd.ts";
import { check, errno, sym } from "../libc.ts";
import { decodeSockaddrNl, encodeSockaddrNl, SOCKADDR_NL } from "../structs.ts";
import { NLMSG_HDRLEN } from "./align.ts";
import { decodeError, type NlMsg, parseMsgs, setSeqPid } from "./message.ts";
import {
  AF_NETLINK,
  MSG_TRUNC,
  msgTypeName,
  NETLINK_ADD_MEMBERSHIP,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_GET_STRICT_CHK,
  NETLINK_ROUTE,
  NLM_F_DUMP_INTR,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_RCVTIMEO,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET,
} from "./consts.ts";

/** How often a dump interrupted by a concurrent change (`NLM_F_DUMP_INTR`) is restarted. */
const DUMP_RETRIES = 5;

/**
 * What the verbs need from a connection. {@link NetlinkConn} is the real one; tests pass a
 * recording fake to check the bytes each verb sends.
 */
export interface NetlinkTransport {
  /** Sends a request carrying `NLM_F_ACK`; returns on the ACK, throws the kernel's error. */
  request(msg: Uint8Array<ArrayBuffer>): void;
  /** Sends a non-dump GET; returns the one reply, throws the kernel's error. */
  get(msg: Uint8Array<ArrayBuffer>): NlMsg;
  /** Sends an `NLM_F_DUMP` request; returns every message up to `NLMSG_DONE`. */
  dump(msg: Uint8Array<ArrayBuffer>): NlMsg[];
}

/** Options of {@link NetlinkConn.open}. */
export interface NetlinkConnOptions {
  /** Multicast groups (`RTNLGRP_*` numbers) to join. */
  groups?: number[];
  /** Open the socket with `SOCK_NONBLOCK` (subscriptions). */
  nonBlocking?: boolean;
  /** `SO_RCVBUF` wanted, bytes (default 1 MiB; `SO_RCVBUFFORCE` first, as root may exceed rmem_max). */
  rcvbuf?: number;
  /** Safety timeout of a blocking receive, ms (default 5000). */
  timeoutMs?: number;
}

/** The error of a message that failed: `RTM_NEWLINK: EEXIST (File exists)`, ext-ack as detail. */
function kernelError(msg: NlMsg, reqType: number): SyscallError {
  const e = decodeError(msg);
  return new SyscallError(msgTypeName(reqType), e.errno, e.message ?? undefined);
}

/** An rtnetlink socket with its own port id and sequence numbers. */
export class NetlinkConn implements NetlinkTransport, Disposable {
  readonly #fd: Fd;
  /** The port id the kernel assigned (`nl_pid` from getsockname). */
  readonly pid: number;
  #seq = 0;
  readonly #buf = new Uint8Array(256 * 1024);
  readonly #from = new Uint8Array(SOCKADDR_NL.size);
  readonly #fromLen = new Uint32Array(1);
  readonly #kernel = encodeSockaddrNl(0, 0);
  readonly #timeoutMs: number;

  private constructor(fd: Fd, pid: number, timeoutMs: number) {
    this.#fd = fd;
    this.pid = pid;
    this.#timeoutMs = timeoutMs;
  }

  /** Opens and binds a socket; enables `NETLINK_EXT_ACK`, `NETLINK_CAP_ACK`, strict dumps. */
  static open(opts: NetlinkConnOptions = {}): NetlinkConn {
    const type = SOCK_RAW | SOCK_CLOEXEC | (opts.nonBlocking ? SOCK_NONBLOCK : 0);
    const fd = new Fd(check(sym.socket(AF_NETLINK, type, NETLINK_ROUTE), "socket"), "netlink");
    try {
      const rcvbuf = opts.rcvbuf ?? 1 << 20;
      if (sym.setsockopt(fd.fd, SOL_SOCKET, SO_RCVBUFFORCE, i32(rcvbuf), 4) < 0) {
        setsockopt(fd.fd, SOL_SOCKET, SO_RCVBUF, i32(rcvbuf), "setsockopt(SO_RCVBUF)");
      }
      const timeoutMs = opts.timeoutMs ?? 5000;
      const tv = new BigInt64Array([
        BigInt(Math.floor(timeoutMs / 1000)),
        BigInt((timeoutMs % 1000) * 1000),
      ]);
      setsockopt(
        fd.fd,
        SOL_SOCKET,
        SO_RCVTIMEO,
        new Uint8Array(tv.buffer),
        "setsockopt(SO_RCVTIMEO)",
      );
      setsockopt(fd.fd, SOL_NETLINK, NETLINK_EXT_ACK, i32(1), "setsockopt(NETLINK_EXT_ACK)");
      setsockopt(fd.fd, SOL_NETLINK, NETLINK_CAP_ACK, i32(1), "setsockopt(NETLINK_CAP_ACK)");
      // Strict checking lets the kernel filter dumps by table / ifindex (kernel >= 4.20).
      sym.setsockopt(fd.fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, i32(1), 4);
      check(sym.bind(fd.fd, encodeSockaddrNl(0, 0), SOCKADDR_NL.size), "bind");
      for (const g of opts.groups ?? []) {
        setsockopt(
          fd.fd,
          SOL_NETLINK,
          NETLINK_ADD_MEMBERSHIP,
          i32(g),
          "setsockopt(NETLINK_ADD_MEMBERSHIP)",
        );
      }
      const sa = new Uint8Array(SOCKADDR_NL.size);
      const len = new Uint32Array([SOCKADDR_NL.size]);
      check(sym.getsockname(fd.fd, sa, new Uint8Array(len.buffer)), "getsockname");
      return new NetlinkConn(fd, decodeSockaddrNl(sa).pid, timeoutMs);
    } catch (err) {
      fd.close();
      throw err;
    }
  }

  /** The raw descriptor, for `poll` in ./events.ts. */
  get fd(): number {
    return this.#fd.fd;
  }

  /** Closes the socket; idempotent. */
  close(): void {
    this.#fd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Sends one message with a fresh sequence number and our port id; returns the seq. */
  send(msg: Uint8Array<ArrayBuffer>): number {
    const seq = this.#seq = (this.#seq + 1) >>> 0;
    setSeqPid(msg, seq, this.pid);
    const type = new DataView(msg.buffer, msg.byteOffset, 6).getUint16(4, true);
    for (;;) {
      const n = sym.sendto(this.#fd.fd, msg, msg.length, 0, this.#kernel, SOCKADDR_NL.size);
      if (n >= 0) return seq;
      const e = errno();
      if (e !== EINTR) throw new SyscallError(msgTypeName(type), e, "sendto failed");
    }
  }

  /**
   * Receives one datagram from the kernel. Returns null when a non-blocking socket has nothing
   * (EAGAIN); throws `SyscallError("recvfrom", ENOBUFS)` when multicast messages were dropped.
   */
  recv(): NlMsg[] | null {
    for (;;) {
      this.#fromLen[0] = SOCKADDR_NL.size;
      const n = sym.recvfrom(
        this.#fd.fd,
        this.#buf,
        this.#buf.length,
        MSG_TRUNC,
        this.#from,
        new Uint8Array(this.#fromLen.buffer),
      );
      if (n < 0) {
        const e = errno();
        if (e === EINTR) continue;
        if (e === EAGAIN) return null;
        throw new SyscallError("recvfrom", e);
      }
      if (n > this.#buf.length) {
        throw new SyscallError("recvfrom", EMSGSIZE, `Netlink datagram of ${n} bytes truncated`);
      }
      if (decodeSockaddrNl(this.#from).pid !== 0) continue; // only the kernel talks to us
      // Copy: the buffer is reused by the next receive.
      return parseMsgs(this.#buf.slice(0, n));
    }
  }

  /** Blocking receive for a request: EAGAIN here is the SO_RCVTIMEO timeout. */
  #recvReply(reqType: number): NlMsg[] {
    const msgs = this.recv();
    if (msgs === null) {
      throw new SyscallError(
        msgTypeName(reqType),
        EAGAIN,
        `No reply from the kernel within ${this.#timeoutMs} ms`,
      );
    }
    return msgs;
  }

  #isOurs(m: NlMsg, seq: number): boolean {
    return m.seq === seq && m.pid === this.pid;
  }

  request(msg: Uint8Array<ArrayBuffer>): void {
    const type = msgType(msg);
    const seq = this.send(msg);
    for (;;) {
      for (const m of this.#recvReply(type)) {
        if (!this.#isOurs(m, seq) || m.type !== NLMSG_ERROR) continue;
        const e = decodeError(m);
        if (e.errno === 0) return;
        throw kernelError(m, type);
      }
    }
  }

  get(msg: Uint8Array<ArrayBuffer>): NlMsg {
    const type = msgType(msg);
    const seq = this.send(msg);
    for (;;) {
      for (const m of this.#recvReply(type)) {
        if (!this.#isOurs(m, seq) || m.type === NLMSG_NOOP) continue;
        if (m.type === NLMSG_ERROR) {
          if (decodeError(m).errno === 0) continue; // an ACK, if the caller asked for one
          throw kernelError(m, type);
        }
        return m;
      }
    }
  }

  dump(msg: Uint8Array<ArrayBuffer>): NlMsg[] {
    const type = msgType(msg);
    for (let attempt = 0;; attempt++) {
      const seq = this.send(msg);
      const out: NlMsg[] = [];
      let interrupted = false;
      let done = false;
      while (!done) {
        for (const m of this.#recvReply(type)) {
          if (!this.#isOurs(m, seq)) continue;
          if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
          if (m.type === NLMSG_DONE) {
            // The DONE payload starts with the dump's status (an errno, negated).
            if (m.payload.length >= 4 && decodeError(m).errno !== 0) throw kernelError(m, type);
            done = true;
            break;
          }
          if (m.type === NLMSG_ERROR) throw kernelError(m, type);
          if (m.type !== NLMSG_NOOP) out.push(m);
        }
      }
      if (!interrupted) return out;
      if (attempt >= DUMP_RETRIES) {
        throw new SyscallError(
          msgTypeName(type),
          EINTR,
          "Dump interrupted by changes, retries exhausted",
        );
      }
    }
  }
}

function msgType(msg: Uint8Array): number {
  if (msg.length < NLMSG_HDRLEN) throw new TypeError("Netlink message shorter than nlmsghdr");
  return new DataView(msg.buffer, msg.byteOffset, msg.byteLength).getUint16(4, true);
}

function i32(v: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Int32Array([v]).buffer);
}

function setsockopt(
  fd: number,
  level: number,
  name: number,
  val: Uint8Array<ArrayBuffer>,
  what: string,
) {
  check(sym.setsockopt(fd, level, name, val, val.length), what);
}
