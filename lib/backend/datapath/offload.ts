/**
 * Offload set-up shared by the TUN ↔ UDP data paths (udp and wireguard backends): a TUN with
 * `IFF_VNET_HDR` and TSO/checksum offloads when the kernel accepts them (TCP super-packets of
 * up to 64 KiB per read, cut into segments by the Worker), and the UDP socket's GSO/GRO
 * options. Each refusal is one warning, and the data path goes on without that offload.
 */

import type { Logger } from "../../log.ts";
import { errText } from "../../log.ts";
import {
  openTun,
  type Tun,
  TUN_F_CSUM,
  TUN_F_TSO4,
  TUN_F_TSO6,
  TUN_F_TSO_ECN,
  tunSetOffload,
} from "../../../ffi/tun.ts";
import { setsockoptInt, SOL_UDP, UDP_GRO, UDP_SEGMENT } from "../../../ffi/udp.ts";
import type { Fd } from "../../../ffi/fd.ts";

/** One `TUNSETOFFLOAD` set to try, and its name for the warning. */
export interface OffloadTry {
  readonly bits: number;
  readonly what: string;
}

/** TCP/IPv4 segmentation with checksum offload and ECN. */
export const TSO4: OffloadTry = { bits: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN, what: "TSO4" };
/** TCP/IPv6 segmentation with checksum offload and ECN. */
export const TSO6: OffloadTry = { bits: TUN_F_CSUM | TUN_F_TSO6 | TUN_F_TSO_ECN, what: "TSO6" };
/** Both families' segmentation. */
export const TSO46: OffloadTry = { bits: TSO4.bits | TSO6.bits, what: "TSO4 and TSO6" };

/**
 * Opens the TUN `name` with the first of `tries` the kernel accepts (a refusal is a warning);
 * without any (or with `tries` empty: offloads off), a TUN without a vnet header: one packet
 * per read.
 */
export function openOffloadTun(
  name: string,
  tries: readonly OffloadTry[],
  log: Logger,
): { tun: Tun; vnetHdr: boolean } {
  if (tries.length === 0) return { tun: openTun({ name }), vnetHdr: false };
  const tun = openTun({ name, vnetHdr: true });
  for (const t of tries) {
    try {
      tunSetOffload(tun.fd, t.bits);
      return { tun, vnetHdr: true };
    } catch (err) {
      log.warn(`TUN offloads (${t.what}) refused: ${errText(err)}`);
    }
  }
  log.warn("No TUN offloads: continuing with one packet per read");
  tun.fd.close();
  return { tun: openTun({ name }), vnetHdr: false };
}

/**
 * Turns on what the bound socket `sock` can do of UDP GSO (`UDP_SEGMENT`, probed: 0 sets no
 * default segment size but proves the kernel knows the option) and `UDP_GRO`; only with a vnet
 * header (without TSO there are no super-packets to send in one call, and a GRO read could not
 * be written back as one).
 */
export function probeUdpOffloads(
  sock: Fd,
  vnetHdr: boolean,
  log: Logger,
): { udpGso: boolean; udpGro: boolean } {
  const probe = (opt: number, value: number, what: string): boolean => {
    try {
      setsockoptInt(sock, SOL_UDP, opt, value);
      return true;
    } catch (err) {
      log.warn(`${what} refused, continuing without: ${errText(err)}`);
      return false;
    }
  };
  if (!vnetHdr) return { udpGso: false, udpGro: false };
  return { udpGso: probe(UDP_SEGMENT, 0, "UDP GSO"), udpGro: probe(UDP_GRO, 1, "UDP GRO") };
}
