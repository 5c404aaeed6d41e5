/**
 * The eventfd wake-up: a file descriptor that a `poll` (on a pool thread or in the data-path
 * Worker) watches beside its sockets, so another thread can end the wait at once.
 *
 * @module
 */

import { EFD_CLOEXEC, EFD_NONBLOCK } from "./consts.ts";
import { Fd } from "./fd.ts";
import { check, sym } from "./libc.ts";

/** A non-blocking eventfd: {@link Wakeup.signal} makes it readable, {@link drainEventFd} resets it. */
export class Wakeup implements Disposable {
  /** The eventfd, to poll (in the Worker: its raw number). */
  readonly fd: Fd;
  readonly #one = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]); // u64 1, little-endian
  constructor() {
    this.fd = new Fd(check(sym.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd"), "eventfd");
  }
  /** Makes the fd readable (never blocks; a saturated counter just stays readable). */
  signal(): void {
    if (!this.fd.closed) sym.write(this.fd.fd, this.#one, 8);
  }
  /** Closes the eventfd; idempotent. */
  close(): void {
    this.fd.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Resets an eventfd's counter (on a raw fd, e.g. inside a Worker); `buf` holds 8 bytes. */
export function drainEventFd(fd: number, buf: Uint8Array<ArrayBuffer>): void {
  sym.read(fd, buf, 8);
}
