/**
 * The wireguard data path's counters (counters.ts, summed over the devices) as Prometheus
 * families `flannel_wireguard_*`: packets and bytes by direction, drops by direction and reason
 * (bad MAC, replay, unknown index, not-allowed source …), handshake messages by outcome.
 */

import type { CounterName } from "./counters.ts";
import type { Metrics } from "../../health/metrics.ts";
import {
  type CounterFamilies,
  type CounterPlace,
  registerCounterFamilies,
  unregisterCounterFamilies,
} from "../datapath/metrics.ts";

type Family = "packets" | "bytes" | "dropped" | "staged" | "keepalives" | "handshakes";

const PLACES: Record<CounterName, CounterPlace<Family>> = {
  tx_packets: ["packets", "tx"],
  tx_bytes: ["bytes", "tx"],
  tx_no_route: ["dropped", "tx", "no_route"],
  tx_staged: ["staged", "tx"],
  tx_malformed: ["dropped", "tx", "malformed"],
  tx_send_errors: ["dropped", "tx", "send_error"],
  rx_packets: ["packets", "rx"],
  rx_bytes: ["bytes", "rx"],
  rx_keepalives: ["keepalives", "rx"],
  rx_bad_mac: ["dropped", "rx", "bad_mac"],
  rx_replay: ["dropped", "rx", "replay"],
  rx_unknown_index: ["dropped", "rx", "unknown_index"],
  rx_not_allowed: ["dropped", "rx", "not_allowed"],
  rx_expired: ["dropped", "rx", "expired"],
  rx_malformed: ["dropped", "rx", "malformed"],
  rx_truncated: ["dropped", "rx", "truncated"],
  rx_tun_errors: ["dropped", "rx", "tun_write_error"],
  hs_received: ["handshakes", "rx", "received"],
  hs_unknown_peer: ["handshakes", "rx", "unknown_peer"],
  hs_bad_mac: ["handshakes", "rx", "bad_mac"],
  hs_refused: ["handshakes", "rx", "refused"],
  hs_cookie_sent: ["handshakes", "rx", "cookie_sent"],
};

const WIREGUARD: CounterFamilies<CounterName, Family> = {
  prefix: "flannel_wireguard",
  help: {
    packets: "Inner packets carried by the wireguard backend, by direction (tx = TUN to peer).",
    bytes: "Inner packet bytes carried by the wireguard backend, by direction.",
    dropped: "Packets the wireguard backend dropped, by direction and reason.",
    staged: "Packets held for a handshake to complete.",
    keepalives: "Authenticated keepalives received.",
    handshakes:
      "Handshake messages received: all (reason received), and those refused by reason, or answered with a cookie under load.",
  },
  places: PLACES,
};

/** Registers the `flannel_wireguard_*` families, reading `read()` at each scrape. */
export function registerWireguardCounters(
  m: Metrics,
  read: () => Readonly<Record<CounterName, number>>,
): void {
  registerCounterFamilies(m, WIREGUARD, read);
}

/** Removes the families of {@link registerWireguardCounters}. */
export function unregisterWireguardCounters(m: Metrics): void {
  unregisterCounterFamilies(m, WIREGUARD);
}
