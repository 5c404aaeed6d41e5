/**
 * What every TUN ↔ UDP data-path Worker (the udp and wireguard backends') shares with the main
 * thread: the control words and the reports a Worker posts. Each backend's protocol.ts adds its
 * own init and peer messages.
 */

/** Int32 slots of the control SharedArrayBuffer. */
/** Control word set to 1 by the main thread: the Worker stops within one poll. */
export const CTL_STOP = 0;
/** Control word counting messages posted but not yet applied: the Worker yields to its event loop. */
export const CTL_PENDING = 1;
/** The number of Int32 control words. */
export const CTL_WORDS = 2;

/** What every Worker's first message carries besides its backend's fields. */
export interface BaseInit {
  /** The message kind. */
  readonly op: "init";
  /** An eventfd the main thread signals after posting messages, so that `poll` returns. */
  readonly wakeFd: number;
  /** The control words ({@link CTL_STOP}, {@link CTL_PENDING}). */
  readonly ctl: SharedArrayBuffer;
}

/** What a Worker posts back (a backend may add its own kinds, e.g. wireguard's UAPI dump). */
export type BaseReport =
  | { readonly type: "ready" }
  | { readonly type: "stopped" }
  | { readonly type: "warn"; readonly message: string }
  | { readonly type: "error"; readonly message: string };
