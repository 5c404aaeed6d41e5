/**
 * The main-thread side of a TUN ↔ UDP data-path Worker (udp and wireguard backends): starts
 * the Worker with its init message, posts messages (counting them in the control words and
 * waking the Worker's poll), turns its reports into `ready`, warnings and a `died` message, and
 * stops it: the stop flag, a grace period, then `terminate()`.
 */

import type { Logger } from "../../log.ts";
import { Wakeup } from "../../../ffi/udp.ts";
import { type BaseInit, type BaseReport, CTL_PENDING, CTL_STOP, CTL_WORDS } from "./protocol.ts";

/** How long {@link DataPathWorker.stop} waits for the Worker to stop before terminating it. */
const STOP_GRACE_MS = 800;

/**
 * One data-path Worker. `I` is the init message, `M` the other messages, `R` the reports
 * beyond {@link BaseReport} (handed to `onReport`).
 */
export class DataPathWorker<I extends BaseInit, M, R extends { type: string } = never> {
  readonly #ctl = new SharedArrayBuffer(CTL_WORDS * 4);
  readonly #ctlView = new Int32Array(this.#ctl);
  readonly #wake = new Wakeup();
  readonly #worker: Worker;
  readonly #ready = Promise.withResolvers<void>();
  readonly #stopped = Promise.withResolvers<void>();
  readonly #died = Promise.withResolvers<string>();
  #failed: string | null = null;
  #closed = false;

  /** Starts the Worker at `url`; warnings go to `log`, reports beyond the base to `onReport`. */
  constructor(
    url: URL,
    init: Omit<I, "op" | "wakeFd" | "ctl">,
    readonly log: Logger,
    onReport: (r: R) => void = () => {},
  ) {
    this.#worker = new Worker(url, { type: "module" });
    this.#worker.onmessage = (ev: MessageEvent<BaseReport | R>) => {
      const r = ev.data;
      if (r.type === "ready") this.#ready.resolve();
      else if (r.type === "stopped") this.#stopped.resolve();
      else if (r.type === "warn") log.warn((r as { message: string }).message);
      else if (r.type === "error") {
        this.#fail(`Data path failed: ${(r as { message: string }).message}`);
      } else onReport(r as R);
    };
    this.#worker.onerror = (ev) => {
      ev.preventDefault();
      this.#fail(`Data path Worker failed: ${ev.message}`);
    };
    this.#worker.postMessage({ ...init, op: "init", wakeFd: this.#wake.fd.fd, ctl: this.#ctl });
  }

  #fail(message: string): void {
    this.#failed ??= message;
    this.#died.resolve(this.#failed);
  }

  /** Resolves once the Worker has built its data path; rejects if it dies first. */
  ready(): Promise<void> {
    const failed = this.#died.promise.then((m) => Promise.reject(new Error(m)));
    failed.catch(() => {}); // a later death is `died`'s business
    return Promise.race([this.#ready.promise, failed]);
  }

  /** Resolves with the failure message when the data path dies. */
  get died(): Promise<string> {
    return this.#died.promise;
  }

  /** Posts `m`; the Worker applies it within one wake-up. */
  post(m: M): void {
    if (this.#closed) throw new Error("The data path is not running");
    this.#worker.postMessage(m);
    Atomics.add(this.#ctlView, CTL_PENDING, 1);
    this.#wake.signal(); // poll returns now, not after its timeout
  }

  /** Stops the Worker (idempotent): the stop flag, then `terminate()` after a grace period. */
  async stop(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#ctlView, CTL_STOP, 1);
    this.#wake.signal();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<boolean>((r) => timer = setTimeout(() => r(false), STOP_GRACE_MS));
    // A Worker that died has closed itself: nothing to wait for.
    const dead = this.#died.promise.then(() => true);
    const clean = await Promise.race([this.#stopped.promise.then(() => true), dead, grace]);
    clearTimeout(timer);
    this.#worker.terminate();
    this.#wake.fd.close();
    if (!clean) this.log.warn("Data path Worker did not stop in time: terminated");
  }
}
