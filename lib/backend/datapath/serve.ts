/**
 * The Worker side of a TUN ↔ UDP data path (udp and wireguard backends): the first message
 * builds the data path, which then runs synchronously (`run()`, polling its fds) until the
 * main thread sets the stop flag or has messages pending (the pending count in the control
 * words); then the Worker yields to its event loop with `setTimeout(…, 0)`, the messages are
 * handled, and the loop goes on. No Promise per packet, and messages never wait longer than
 * one wake-up (the main thread signals the eventfd after each post).
 */

/// <reference lib="deno.worker" />

import { type BaseInit, CTL_PENDING } from "./protocol.ts";

/** A data path as the driver runs it. */
export interface DataPathLoop<M> {
  /** Runs until the stop flag (true: stop now) or pending messages (false: yield). */
  run(): boolean;
  /** Applies one message from the main thread. */
  handle(m: M): void;
  /** Releases what the data path holds, once, when it stops. */
  close?(): void;
}

/**
 * Serves the Worker: `make` builds the data path from the init message. A message that throws
 * is reported as `messageErrors` ("error": the main thread fails the data path, as the udp
 * backend wants for a peer table it could not update; "warn": logged, the data path goes on).
 */
export function serveDataPath<I extends BaseInit, M>(
  make: (init: I) => DataPathLoop<M>,
  messageErrors: "warn" | "error",
): void {
  let path: DataPathLoop<M> | null = null;
  let ctl: Int32Array | null = null;
  const loop = (): void => {
    try {
      if (path!.run()) {
        path!.close?.();
        self.postMessage({ type: "stopped" });
        self.close();
        return;
      }
      setTimeout(loop, 0);
    } catch (err) {
      self.postMessage({ type: "error", message: (err as Error).message });
      self.close();
    }
  };
  self.onmessage = (ev: MessageEvent<I | M>) => {
    const m = ev.data;
    const init = (m as { op?: string }).op === "init";
    try {
      if (init) {
        path = make(m as I);
        ctl = new Int32Array((m as I).ctl);
        self.postMessage({ type: "ready" });
        setTimeout(loop, 0);
        return;
      }
      path!.handle(m as M);
    } catch (err) {
      self.postMessage({ type: init ? "error" : messageErrors, message: (err as Error).message });
    } finally {
      if (!init && ctl !== null) Atomics.sub(ctl, CTL_PENDING, 1);
    }
  };
}
