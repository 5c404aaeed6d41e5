/** Measuring helpers shared by the benchmark scripts (statistics are in bench_stats.ts). */

import type { Host } from "../tests/harness/cluster.ts";

/** Runs `cmd` in `host`; its stdout, or an error naming the host, the command and stderr. */
export async function sh(host: Host, cmd: string[]): Promise<string> {
  const r = await host.exec(cmd);
  if (r.code !== 0) throw new Error(`${host.name}: ${cmd.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** CPU seconds (user + system) of a process, all its threads. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
}

/** `count` pings 10 ms apart from `src` on `host` to `dst`: average and maximum RTT in ms. */
export async function pingStats(
  host: Host,
  src: string,
  dst: string,
  count: number,
): Promise<{ avgMs: number; maxMs: number }> {
  const out = await sh(host, [
    "ping",
    "-n",
    "-q",
    "-i",
    "0.01",
    "-c",
    String(count),
    "-I",
    src,
    dst,
  ]);
  const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\//.exec(out);
  if (!m) throw new Error(`Unexpected ping output: ${out}`);
  return { avgMs: Number(m[2]), maxMs: Number(m[3]) };
}
