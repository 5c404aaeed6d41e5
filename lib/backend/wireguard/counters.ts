/**
 * The wireguard data path's counters: one Float64Array over a SharedArrayBuffer that the Worker
 * writes and the daemon reads (the layout of the udp backend's counters.ts).
 */

import { counterLayout } from "../datapath/counters.ts";

/** Counter names in slot order. */
export const COUNTER_NAMES = [
  "tx_packets", // TUN → peer: inner packets sealed and sent
  "tx_bytes", // inner bytes
  "tx_no_route", // no peer's allowed IPs hold the destination
  "tx_staged", // waiting for a handshake (sent when it completes, or dropped after 90 s)
  "tx_malformed", // not IPv4 (from our own kernel: should stay 0)
  "tx_send_errors", // sendmmsg failed or the socket buffer stayed full
  "rx_packets", // peer → TUN: inner packets opened and written
  "rx_bytes", // inner bytes
  "rx_keepalives", // authenticated empty transport messages
  "rx_bad_mac", // transport data whose tag does not verify (forged, corrupt, wrong key)
  "rx_replay", // a counter seen before or behind the replay window
  "rx_unknown_index", // transport data or cookie for an index we do not have (no session)
  "rx_not_allowed", // authenticated, but the inner source is not the peer's allowed IPs
  "rx_expired", // a keypair older than REJECT_AFTER_TIME
  "rx_malformed", // wrong size or type, or not one well-formed IPv4 packet inside
  "rx_truncated", // larger than the receive buffer
  "rx_tun_errors", // the TUN write failed
  "hs_received", // handshake messages (types 1–3) processed
  "hs_unknown_peer", // an initiation from a static key that is no peer of ours
  "hs_bad_mac", // wrong MAC1 (not for us), or a cookie reply that does not decrypt
  "hs_refused", // replayed timestamp, flood, rate limit, failed decryption (e.g. PSK mismatch)
  "hs_cookie_sent", // under load: answered with a cookie reply
] as const;

const layout = counterLayout(COUNTER_NAMES);

/** A counter name. */
export type CounterName = typeof COUNTER_NAMES[number];

/** Slot indexes by name. */
export const C = layout.C;

/** Allocates the shared counter memory. */
export const newCounterMemory = layout.newMemory;

/** A snapshot of the counters as a plain object. */
export const readCounters = layout.read;
