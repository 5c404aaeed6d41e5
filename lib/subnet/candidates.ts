/**
 * Which subnets a host may lease: the fit test for an existing lease and the list of free
 * candidates the acquire step picks from at random.
 *
 * Upstream only offers the first 100 free blocks from SubnetMin upward, so allocations cluster
 * low in the range while the random pick keeps create races rare.
 */

import type { SubnetRange } from "../config.ts";
import { IP, IPNet, isAligned, prefixSize } from "../ip.ts";

/**
 * True when `subnet` could have been allocated from one family's range of the config: its
 * prefix is SubnetLen, it is aligned to that length and its base lies within SubnetMin..SubnetMax.
 */
export function fitsConfig(config: SubnetRange, subnet: IPNet): boolean {
  return subnet.prefix === config.subnetLen &&
    subnet.family === config.subnetMin.family &&
    isAligned(subnet.ip, subnet.prefix) &&
    subnet.ip.compare(config.subnetMin) >= 0 &&
    subnet.ip.compare(config.subnetMax) <= 0;
}

/**
 * The first `limit` subnets of SubnetLen from SubnetMin upward, in one family's range, (up to SubnetMax) that overlap
 * none of `taken`. `taken` may hold networks of any length (reservations, leases from an older
 * config). Runs in O(t log t + limit) for t taken networks, whatever the size of the range.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNetworkConfig } from "../config.ts";
 * import { IPNet } from "../ip.ts";
 *
 * const config = parseNetworkConfig('{"Network":"10.1.0.0/16"}');
 * const taken = [IPNet.mustParse("10.1.2.0/24")];
 * const free = candidateSubnets(config.ipv4!, taken, 3);
 * assert.deepEqual(free.map(String), ["10.1.1.0/24", "10.1.3.0/24", "10.1.4.0/24"]);
 * const v6 = parseNetworkConfig(
 *   '{"EnableIPv6":true,"IPv6Network":"fc00::/48","Network":"10.1.0.0/16","Backend":{"Type":"vxlan"}}',
 * );
 * const free6 = candidateSubnets(v6.ipv6!, [IPNet.mustParse("fc00:0:0:2::/64")], 2);
 * assert.deepEqual(free6.map(String), ["fc00:0:0:1::/64", "fc00:0:0:3::/64"]);
 * ```
 */
export function candidateSubnets(
  config: SubnetRange,
  taken: readonly IPNet[],
  limit = 100,
): IPNet[] {
  const len = config.subnetLen;
  const family = config.subnetMin.family;
  const size = prefixSize(len, family);
  const busy = mergedRanges(taken.filter((t) => t.family === family));
  const out: IPNet[] = [];
  let i = 0;
  let s = config.subnetMin.toBigInt();
  const max = config.subnetMax.toBigInt();
  while (out.length < limit && s <= max) {
    const end = s + size - 1n;
    while (i < busy.length && busy[i][1] < s) i++;
    if (i < busy.length && busy[i][0] <= end) {
      // Jump past the whole busy range in one step, staying on the SubnetMin grid.
      const next = busy[i][1] + 1n;
      s += ((next - s + size - 1n) / size) * size;
      continue;
    }
    out.push(new IPNet(IP.fromBigInt(s, family), len));
    s += size;
  }
  return out;
}

/** `nets` as sorted, merged, inclusive [first, last] address ranges. */
function mergedRanges(nets: readonly IPNet[]): [bigint, bigint][] {
  const ranges = nets.map((n): [bigint, bigint] => {
    const first = n.ip.toBigInt();
    return [first, first + n.size() - 1n];
  });
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: [bigint, bigint][] = [];
  for (const r of ranges) {
    const top = merged[merged.length - 1];
    if (top && r[0] <= top[1] + 1n) top[1] = top[1] > r[1] ? top[1] : r[1];
    else merged.push(r);
  }
  return merged;
}
