/**
 * The udp data path's counters: one Float64Array over a SharedArrayBuffer that the Worker
 * writes and the daemon reads (exact up to 2^53; an aligned 8-byte store does not tear on the
 * platforms Deno supports).
 */

import { counterLayout } from "../datapath/counters.ts";

/** Counter names in slot order: direction, then what happened. */
export const COUNTER_NAMES = [
  "tx_packets", // TUN → UDP: inner packets sent to a peer
  "tx_bytes",
  "tx_no_route", // no peer holds the destination: ICMP net unreachable
  "tx_ttl_expired", // TTL would reach 0: ICMP time exceeded
  "tx_malformed", // not IPv4 or not well-formed (from our own kernel: should stay 0)
  "tx_send_errors", // sendmmsg/sendmsg failed or the socket buffer stayed full
  "tx_icmp", // ICMP errors written back into the TUN
  "tx_gso_sends", // UDP GSO sends (several datagrams in one call)
  "rx_packets", // UDP → TUN: inner packets written to the TUN
  "rx_bytes",
  "rx_not_peer", // source is not a current peer's PublicIP:Port
  "rx_malformed", // not exactly one well-formed IPv4 packet
  "rx_truncated", // larger than the receive buffer (never forwarded cut)
  "rx_not_our_subnet", // inner destination outside our lease
  "rx_wrong_source", // inner source outside the subnet of the peer that sent it (spoofed)
  "rx_tun_errors", // the TUN write failed (queue full)
  "rx_gro_batches", // coalesced UDP_GRO receives
  "rx_gso_writes", // TCP runs merged into one GSO super-packet TUN write
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

export { formatCounters } from "../datapath/counters.ts";
