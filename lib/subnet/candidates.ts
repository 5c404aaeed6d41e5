/**
 * Which subnets a host may lease: the fit test for an existing lease and the list of free
 * candidates the acquire step picks from at random.
 *
 * Upstream only offers the first 100 free blocks from SubnetMin upward, so allocations cluster
 * low in the range while the random pick keeps create races rare.
 */

import type { NetworkConfig } from "../config.ts";
import { type IPNet, netmask, prefixSize } from "../ip.ts";

/**
 * True when `subnet` could have been allocated under `config`: its prefix is SubnetLen, it is
 * aligned to that length and its base lies within SubnetMin..SubnetMax.
 */
export function fitsConfig(config: NetworkConfig, subnet: IPNet): boolean {
  return subnet.prefix === config.subnetLen &&
    ((subnet.ip & netmask(subnet.prefix)) >>> 0) === subnet.ip &&
    subnet.ip >= config.subnetMin &&
    subnet.ip <= config.subnetMax;
}

/**
 * The first `limit` subnets of SubnetLen from SubnetMin upward (up to SubnetMax) that overlap
 * none of `taken`. `taken` may hold networks of any length (reservations, leases from an older
 * config). Runs in O(t log t + limit) for t taken networks, whatever the size of the range.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNetworkConfig } from "../config.ts";
 * import { formatCIDR } from "../ip.ts";
 *
 * const config = parseNetworkConfig('{"Network":"10.1.0.0/16"}');
 * const taken = [{ ip: 0x0a010200, prefix: 24 }]; // 10.1.2.0/24
 * const free = candidateSubnets(config, taken, 3);
 * assert.deepEqual(free.map(formatCIDR), ["10.1.1.0/24", "10.1.3.0/24", "10.1.4.0/24"]);
 * ```
 */
export function candidateSubnets(
  config: NetworkConfig,
  taken: readonly IPNet[],
  limit = 100,
): IPNet[] {
  const len = config.subnetLen;
  const size = prefixSize(len);
  const busy = mergedRanges(taken);
  const out: IPNet[] = [];
  let i = 0;
  let s = config.subnetMin;
  while (out.length < limit && s <= config.subnetMax) {
    const end = s + size - 1;
    while (i < busy.length && busy[i][1] < s) i++;
    if (i < busy.length && busy[i][0] <= end) {
      // Jump past the whole busy range in one step, staying on the SubnetMin grid.
      const next = busy[i][1] + 1;
      s += Math.ceil((next - s) / size) * size;
      continue;
    }
    out.push({ ip: s, prefix: len });
    s += size;
  }
  return out;
}

/** `nets` as sorted, merged, inclusive [first, last] address ranges (plain numbers, no u32 wrap). */
function mergedRanges(nets: readonly IPNet[]): [number, number][] {
  const ranges = nets.map((n): [number, number] => {
    const first = (n.ip & netmask(n.prefix)) >>> 0;
    return [first, first + prefixSize(n.prefix) - 1];
  });
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const r of ranges) {
    const top = merged[merged.length - 1];
    if (top && r[0] <= top[1] + 1) top[1] = Math.max(top[1], r[1]);
    else merged.push(r);
  }
  return merged;
}
