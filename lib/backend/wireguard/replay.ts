/**
 * The receive counter's replay window: RFC 6479's sliding bitmap as the Linux WireGuard module
 * keeps it (drivers/net/wireguard/receive.c `counter_validate`): 2048 bits in 32-bit words, of
 * which the newest word is in use, so counters up to 2016 behind the greatest seen are judged
 * exactly and older ones are refused.
 *
 * Call {@link ReplayWindow.validate} only after the packet authenticated: an attacker must not
 * move the window.
 */

const BITS_PER_WORD = 32;
const TOTAL_BITS = 2048;
const WORDS = TOTAL_BITS / BITS_PER_WORD;
/** Counters this far behind the greatest seen are still judged by the bitmap. */
export const WINDOW_SIZE = TOTAL_BITS - BITS_PER_WORD;
/** WireGuard's REJECT_AFTER_MESSAGES (2^64 − 2^13 − 1); as a double it is 2^64 − 2^13. */
export const REJECT_AFTER_MESSAGES = 2 ** 64 - 2 ** 13 - 1;

/** A sliding-window replay filter for one keypair's receive counters. */
export class ReplayWindow {
  readonly #bits = new Uint32Array(WORDS);
  /** Greatest counter seen, plus one (0: nothing seen yet). */
  #top = 0;

  /**
   * True when `counter` is new (and marks it seen); false for a replay, a counter too far
   * behind the window, or one at or past REJECT_AFTER_MESSAGES.
   */
  validate(counter: number): boolean {
    if (counter >= REJECT_AFTER_MESSAGES || !Number.isSafeInteger(counter) || counter < 0) {
      return false;
    }
    const c = counter + 1;
    if (c + WINDOW_SIZE < this.#top) return false;
    const index = Math.floor(c / BITS_PER_WORD);
    if (c > this.#top) {
      const current = Math.floor(this.#top / BITS_PER_WORD);
      const clear = Math.min(index - current, WORDS);
      for (let i = 1; i <= clear; i++) this.#bits[(current + i) % WORDS] = 0;
      this.#top = c;
    }
    const word = index % WORDS;
    const bit = 1 << (c % BITS_PER_WORD);
    if ((this.#bits[word] & bit) !== 0) return false;
    this.#bits[word] |= bit;
    return true;
  }

  /** Forgets everything (a new keypair starts with a new window). */
  reset(): void {
    this.#bits.fill(0);
    this.#top = 0;
  }
}
