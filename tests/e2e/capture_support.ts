/**
 * Helpers shared by the udp and wireguard end-to-end tests (no tests here): a tcpdump in a host
 * namespace, a pcap reader, and the counters of a daemon's last "Data path stopped:" line.
 */

import assert from "node:assert/strict";
import type { Host } from "../harness/cluster.ts";

/** The counters from the daemon's last "Data path stopped:" line. */
export function countersOf(logs: string): Record<string, number> {
  const line = logs.split("\n").findLast((l) => l.includes("Data path stopped:"));
  assert.ok(line, "no 'Data path stopped' line in the daemon log");
  const c: Record<string, number> = {};
  for (const m of line.matchAll(/(\w+)=(\d+)/g)) c[m[1]] = Number(m[2]);
  return c;
}

/** Packets of a pcap file: link type and the bytes of each frame. */
export function readPcap(b: Uint8Array): { linkType: number; frames: Uint8Array[] } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  assert.equal(v.getUint32(0, true), 0xa1b2c3d4, "pcap magic (little-endian, microseconds)");
  const linkType = v.getUint32(20, true);
  const frames: Uint8Array[] = [];
  for (let off = 24; off + 16 <= b.length;) {
    const incl = v.getUint32(off + 8, true);
    frames.push(b.subarray(off + 16, off + 16 + incl));
    off += 16 + incl;
  }
  return { linkType, frames };
}

/** Starts tcpdump in `host` writing to `file`; resolves once it listens. */
export async function tcpdump(host: Host, iface: string, filter: string[], file: string) {
  const p = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      host.ns,
      "tcpdump",
      "-Z",
      "root",
      "--immediate-mode",
      "-i",
      iface,
      "-n",
      "-U",
      "-s",
      "0",
      "-w",
      file,
      ...filter,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = p.stderr.getReader();
  let text = "";
  while (!text.includes("listening on")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`tcpdump on ${iface} exited: ${text}`);
    text += new TextDecoder().decode(value);
  }
  return {
    async stop() {
      await new Promise((r) => setTimeout(r, 300));
      p.kill("SIGINT");
      await p.status;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      return text;
    },
  };
}
