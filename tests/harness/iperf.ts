/**
 * iperf3 between two hosts of a cluster, for tests and benchmarks: a one-shot server on the
 * server host, bound to the destination address, then a client run with JSON output.
 */

import type { Host } from "./cluster.ts";

/** What iperf3 -J reports at the end of a run (the fields read by tests and benchmarks). */
export interface IperfEnd {
  /** TCP: what arrived. */
  readonly sum_received: { readonly bits_per_second: number };
  /** TCP: what was sent, with the retransmits. */
  readonly sum_sent: { readonly retransmits?: number };
  /** UDP (`-u`): the receiver's summary. */
  readonly sum: {
    readonly lost_percent: number;
    readonly lost_packets: number;
    readonly packets: number;
    readonly seconds: number;
  };
}

/**
 * Runs iperf3 for `seconds` from `from` on `client` to `to` on `server` (`extra`: client
 * options, e.g. `-u -b 0 -l 1400`) and returns its end summary; throws with iperf3's output
 * when the run fails.
 */
export async function iperf(
  client: Host,
  server: Host,
  from: string,
  to: string,
  seconds = 2,
  extra: string[] = [],
): Promise<IperfEnd> {
  const srv = new Deno.Command("ip", {
    args: ["netns", "exec", server.ns, "iperf3", "-s", "-1", "-B", to],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    // A client that connects before the server listens fails with "Connection refused".
    for (let i = 0; i < 100; i++) {
      const ss = await server.exec(["ss", "-Hltn", "sport", "=", ":5201"]);
      if (ss.stdout.trim() !== "") break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = await client.exec(
      ["iperf3", "-c", to, "-B", from, "-t", String(seconds), "-J", ...extra],
    );
    if (r.code !== 0) throw new Error(`iperf3 ${from} → ${to}: ${r.stdout}${r.stderr}`);
    return JSON.parse(r.stdout).end as IperfEnd;
  } finally {
    try {
      srv.kill("SIGTERM"); // the one-shot server exits after a run, not after a failed one
    } catch {
      // already exited
    }
    await srv.status;
  }
}
