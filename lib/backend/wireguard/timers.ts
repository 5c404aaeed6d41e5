/**
 * WireGuard's protocol constants (whitepaper §6.1) and the clock the device runs on.
 *
 * Times are milliseconds. The device never reads a clock itself: it gets a {@link Clock}, so
 * the timer state machine is unit-tested with a fake one.
 */

/** Rekey once this many messages were sent with a keypair. */
export const REKEY_AFTER_MESSAGES = 2 ** 60;
/** An initiator rekeys a keypair this old on the next send. */
export const REKEY_AFTER_TIME = 120_000;
/** A keypair this old is neither used to send nor accepted on receive. */
export const REJECT_AFTER_TIME = 180_000;
/** Give up a handshake after retrying it this long. */
export const REKEY_ATTEMPT_TIME = 90_000;
/** Retry an unanswered initiation after this (plus up to {@link REKEY_TIMEOUT_JITTER} ms). */
export const REKEY_TIMEOUT = 5_000;
/** The random extra on retransmission and new-handshake timers (wireguard-go: 0–333 ms). */
export const REKEY_TIMEOUT_JITTER = 334;
/** Send a keepalive when data was received but nothing sent back for this long. */
export const KEEPALIVE_TIMEOUT = 10_000;
/** Handshake retries before giving up (REKEY_ATTEMPT_TIME / REKEY_TIMEOUT). */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT;
/** Initiations consumed per peer per second, at most (wireguard-go's flood protection). */
export const INITIATIONS_PER_SECOND = 50;
/** Packets kept per peer while a handshake is pending (wireguard-go: QueueStagedSize). */
export const MAX_STAGED_PACKETS = 128;
/** Handshake messages per second above which the device is "under load" and wants cookies. */
export const UNDER_LOAD_PER_SECOND = 64;
/** How long the device stays under load after the rate drops. */
export const UNDER_LOAD_HOLD = 1_000;
/** Handshake messages per second and source address accepted under load (with a valid MAC2). */
export const RATELIMIT_PER_SECOND = 20;
/** The burst of handshake messages per source address under load. */
export const RATELIMIT_BURST = 5;

/** Time for the device: monotonic milliseconds, and wall-clock ms since the epoch (TAI64N). */
export interface Clock {
  /** Monotonic milliseconds (timers, ages). */
  now(): number;
  /** Milliseconds since the Unix epoch (timestamps in initiations, last-handshake times). */
  wallMs(): number;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallMs: () => Date.now(),
};
