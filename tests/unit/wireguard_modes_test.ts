/**
 * tunnelFamily(): which of a peer's addresses carries the single device's tunnel, per Mode —
 * upstream's `selectMode` for auto, and the cases where upstream would dial an address one
 * side does not have.
 */

import assert from "node:assert/strict";
import { tunnelFamily } from "../../lib/backend/wireguard/modes.ts";
import { IP } from "../../lib/ip.ts";

const u = (v4: string | null, v6: string | null) => ({
  publicIP: v4 === null ? null : IP.mustParse(v4),
  publicIPv6: v6 === null ? null : IP.mustParse(v6),
});

Deno.test("tunnelFamily(): Mode auto as upstream's selectMode, ipv4/ipv6 fixed, no family both have → a reason", () => {
  const cases: [string, ReturnType<typeof u>, ReturnType<typeof u>, 4 | 6 | string][] = [
    // auto, both families on both sides.
    ["auto", u("10.0.0.2", "fd00::2"), u("10.0.0.1", "fd00::1"), 4], // all private: IPv4
    ["auto", u("10.0.0.2", "2001:db8::2"), u("10.0.0.1", "2001:db8::1"), 6], // public IPv6
    ["auto", u("172.20.0.2", "2001:db8::2"), u("10.0.0.1", "2001:db8::1"), 6],
    ["auto", u("192.168.1.2", "2001:db8::2"), u("10.0.0.1", "2001:db8::1"), 6],
    ["auto", u("172.32.0.2", "2001:db8::2"), u("10.0.0.1", "2001:db8::1"), 4], // 172.32/12 public
    ["auto", u("203.0.113.2", "2001:db8::2"), u("10.0.0.1", "2001:db8::1"), 4], // public IPv4 wins
    ["auto", u("10.0.0.2", "2001:db8::2"), u("10.0.0.1", "fd00::1"), 4], // our IPv6 private
    ["auto", u("10.0.0.2", "fc00::2"), u("10.0.0.1", "2001:db8::1"), 4], // fc00::/7 private
    // auto, a family missing on one side.
    ["auto", u("10.0.0.2", null), u("10.0.0.1", "2001:db8::1"), 4],
    ["auto", u("0.0.0.0", "fd00::2"), u(null, "fd00::1"), 6], // IPv6-only network's lease
    ["auto", u("203.0.113.2", "fd00::2"), u(null, "fd00::1"), 6], // we have no IPv4
    ["auto", u("0.0.0.0", null), u("10.0.0.1", null), "no address of a family both hosts have"],
    // The fixed modes.
    ["ipv4", u("10.0.0.2", "2001:db8::2"), u("10.0.0.1", "2001:db8::1"), 4],
    ["ipv6", u("203.0.113.2", "fd00::2"), u("10.0.0.1", "fd00::1"), 6],
    [
      "ipv6",
      u("10.0.0.2", null),
      u("10.0.0.1", "fd00::1"),
      "no IPv6 address to reach it at (Mode ipv6)",
    ],
    [
      "ipv4",
      u("0.0.0.0", "fd00::2"),
      u("10.0.0.1", "fd00::1"),
      "no IPv4 address to reach it at (Mode ipv4)",
    ],
  ];
  for (const [mode, peer, ours, want] of cases) {
    assert.equal(
      tunnelFamily(mode as "auto" | "ipv4" | "ipv6", peer, ours),
      want,
      `${mode} peer ${peer.publicIP}/${peer.publicIPv6} ours ${ours.publicIP}/${ours.publicIPv6}`,
    );
  }
});
