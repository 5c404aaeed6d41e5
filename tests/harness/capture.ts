/**
 * Packet capture for end-to-end assertions: which source address did a packet carry when it
 * arrived? `tcpdump` runs inside a namespace while the test sends traffic.
 */

/** One captured ICMP echo request. */
export interface Echo {
  src: string;
  dst: string;
}

/**
 * Captures ICMP echo requests on `dev` in namespace `ns` while `send()` runs, and returns them.
 * tcpdump's own "listening" line is awaited before `send()` starts, so nothing is missed.
 * `family: 6` captures ICMPv6 echo requests instead (type 128 right after the IPv6 header).
 */
export async function captureEchoRequests(
  ns: string,
  dev: string,
  send: () => Promise<unknown>,
  opts: { count?: number; timeoutMs?: number; family?: 4 | 6 } = {},
): Promise<Echo[]> {
  const count = opts.count ?? 1;
  const v6 = opts.family === 6;
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      "tcpdump",
      "-n",
      "-l",
      "-i",
      dev,
      "-c",
      String(count),
      v6 ? "icmp6 and ip6[40] == 128" : "icmp[icmptype] == icmp-echo",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const dec = new TextDecoder();
  let err = "";
  const errReader = child.stderr.getReader();
  const listening = (async () => {
    for (;;) {
      const { value, done } = await errReader.read();
      if (done) return false;
      err += dec.decode(value);
      if (err.includes("listening on")) return true;
    }
  })();
  const out = new Response(child.stdout).text();
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 10_000);
  try {
    if (!await listening) throw new Error(`tcpdump in ${ns} on ${dev} did not start: ${err}`);
    // Keep draining stderr so tcpdump never blocks on it.
    const drain = (async () => {
      for (;;) if ((await errReader.read()).done) return;
    })();
    await send();
    const text = await out;
    await child.status;
    await drain;
    const echoes: Echo[] = [];
    const line = v6
      ? /IP6 ([\da-f:]+) > ([\da-f:]+): ICMP6, echo request/g
      : /IP (\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+): ICMP echo request/g;
    for (const m of text.matchAll(line)) echoes.push({ src: m[1], dst: m[2] });
    return echoes;
  } finally {
    clearTimeout(timer);
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status.catch(() => {});
  }
}
