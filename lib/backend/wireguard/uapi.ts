/**
 * The cross-platform WireGuard UAPI's `get` answer (https://www.wireguard.com/xplatform/), so
 * that `wg show flannel-wg` works against our device as against wireguard-go. Pure: the text
 * from a {@link Device}'s state.
 *
 * The socket that serves it (uapi_server.ts) is root-only (0700 directory, 0600 socket), which
 * is what allows the private key in the answer, as wireguard-go does. `set` is refused: the
 * peers are flannel's leases, and a change made with `wg set` would silently disagree with
 * etcd until the next lease event overwrote it.
 */

import type { Device } from "./device.ts";
import { toHex } from "./keys.ts";
import { IP } from "../../ip.ts";

/** The `get=1` answer, ending with `errno=0` and the blank line. */
export function formatGet(dev: Device, listenPort: number): string {
  const lines = [`private_key=${toHex(dev.id.priv)}`, `listen_port=${listenPort}`];
  for (const peer of dev.peers()) {
    lines.push(`public_key=${toHex(peer.keys.pub)}`);
    lines.push(`preshared_key=${toHex(peer.keys.psk)}`);
    lines.push("protocol_version=1");
    const ep = peer.endpoint;
    if (ep !== null) {
      const host = ep.ip6 !== null ? `[${IP.fromBytes(ep.ip6)}]` : `${IP.fromU32(ep.ip)}`;
      lines.push(`endpoint=${host}:${ep.port}`);
    }
    const ms = peer.lastHandshakeWallMs;
    lines.push(`last_handshake_time_sec=${Math.floor(ms / 1000)}`);
    lines.push(`last_handshake_time_nsec=${(ms % 1000) * 1_000_000}`);
    lines.push(`tx_bytes=${peer.txBytes}`);
    lines.push(`rx_bytes=${peer.rxBytes}`);
    lines.push(`persistent_keepalive_interval=${peer.persistentKeepalive}`);
    for (const a of peer.allowedIPs) {
      const net = a.net6 !== undefined ? IP.fromBytes(a.net6) : IP.fromU32(a.net);
      lines.push(`allowed_ip=${net}/${a.prefix}`);
    }
  }
  lines.push("errno=0");
  return lines.join("\n") + "\n\n";
}

/** The answer to a `set=1` (or anything but `get=1`): EPERM. */
export const REFUSED = "errno=1\n\n";
