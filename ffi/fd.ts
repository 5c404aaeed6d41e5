/** File descriptors as objects with an idempotent close. */

import { sym } from "./libc.ts";

/** An owned file descriptor. `close()` may be called any number of times. */
export class Fd implements Disposable {
  #fd: number;
  constructor(fd: number, readonly what = "fd") {
    this.#fd = fd;
  }
  /** The raw number, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }
  get closed(): boolean {
    return this.#fd < 0;
  }
  /** Closes the descriptor once; later calls do nothing. */
  close(): void {
    if (this.#fd >= 0) {
      sym.close(this.#fd);
      this.#fd = -1;
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
