/**
 * The udp data path's counters as Prometheus families (`flannel_udp_*`, laid out by
 * datapath/metrics.ts).
 */

import type { CounterName } from "./counters.ts";
import type { Metrics } from "../../health/metrics.ts";
import {
  type CounterFamilies,
  type CounterPlace,
  registerCounterFamilies,
  unregisterCounterFamilies,
} from "../datapath/metrics.ts";

/** Where each data-path counter goes: `[family, direction, reason?]`. */
const MAP: Record<CounterName, CounterPlace<Family>> = {
  tx_packets: ["packets", "tx"],
  tx_bytes: ["bytes", "tx"],
  tx_no_route: ["dropped", "tx", "no_route"],
  tx_ttl_expired: ["dropped", "tx", "ttl_expired"],
  tx_malformed: ["dropped", "tx", "malformed"],
  tx_send_errors: ["dropped", "tx", "send_error"],
  tx_icmp: ["icmp", "tx"],
  tx_gso_sends: ["gso_sends", "tx"],
  rx_packets: ["packets", "rx"],
  rx_bytes: ["bytes", "rx"],
  rx_not_peer: ["dropped", "rx", "not_peer"],
  rx_malformed: ["dropped", "rx", "malformed"],
  rx_truncated: ["dropped", "rx", "truncated"],
  rx_not_our_subnet: ["dropped", "rx", "not_our_subnet"],
  rx_wrong_source: ["dropped", "rx", "wrong_source"],
  rx_tun_errors: ["dropped", "rx", "tun_write_error"],
  rx_gro_batches: ["gro_batches", "rx"],
  rx_gso_writes: ["gso_writes", "rx"],
};

type Family = "packets" | "bytes" | "dropped" | "icmp" | "gso_sends" | "gro_batches" | "gso_writes";

const FAMILIES: Record<Family, string> = {
  packets: "Inner packets carried by the udp backend, by direction (tx = TUN to UDP).",
  bytes: "Inner packet bytes carried by the udp backend, by direction.",
  dropped: "Packets the udp backend dropped, by direction and reason.",
  icmp: "ICMP errors the udp backend wrote back into the TUN device.",
  gso_sends: "UDP GSO sends (several datagrams in one system call).",
  gro_batches: "Coalesced UDP GRO receives.",
  gso_writes: "TCP segments merged into one GSO super-packet TUN write.",
};

const UDP: CounterFamilies<CounterName, Family> = {
  prefix: "flannel_udp",
  help: FAMILIES,
  places: MAP,
};

/** Registers `flannel_udp_*` families that read `read()` at each scrape. */
export function registerUdpCounters(
  m: Metrics,
  read: () => Readonly<Record<CounterName, number>>,
): void {
  registerCounterFamilies(m, UDP, read);
}

/** Removes the families of {@link registerUdpCounters}. */
export function unregisterUdpCounters(m: Metrics): void {
  unregisterCounterFamilies(m, UDP);
}
