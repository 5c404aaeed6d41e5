/**
 * The lease watch: a listing, then a watch on `<prefix>/subnets/` from the revision after it,
 * reduced by {@link PeerLeases}. The changes of one etcd response go to the backend as one
 * batch. When the watch ends because its history was compacted, or because etcd lost its memory
 * (wiped, or restored from an older snapshot), the keys are listed again and the backend gets
 * the difference, so the kernel is reconciled without a restart. After a reset the listing
 * waits `resetSettleMs`: every running host re-creates its lease as soon as it notices, and a
 * listing taken at once would remove (and a moment later restore) the routes of all of them.
 */

import { sleep } from "../async.ts";
import { type LeaseSubnets, subnetKey, subnetsPrefix } from "../lease.ts";
import { listSubnets } from "./acquire.ts";
import { retry, type SubnetContext } from "./context.ts";
import { readEntry } from "./entry.ts";
import type { LeaseEvent, LeaseSnapshot } from "./mod.ts";
import { PeerLeases } from "./peer_leases.ts";

/** Other hosts' leases from `from` (a fresh listing when null), until `signal` aborts. */
export async function* watchLeases(
  ctx: SubnetContext & { readonly resetSettleMs: number },
  own: LeaseSubnets,
  from: LeaseSnapshot | null,
  signal: AbortSignal,
): AsyncIterable<LeaseEvent[]> {
  const prefix = subnetsPrefix(ctx.prefix);
  const peers = new PeerLeases(ctx.config, own, subnetKey(ctx.prefix, own), ctx.log);
  const first = from ?? await retry(ctx, () => listSubnets(ctx, signal), signal);
  let next = first.revision + 1;
  yield peers.replace(first.entries);
  while (!signal.aborted) {
    let relist: string | null = null;
    let settle = 0;
    for await (
      const ev of ctx.registry.watch(prefix, { prefix: true, fromRevision: next }, signal)
    ) {
      if (ev.type === "reconnected") continue;
      if (ev.type === "progress") {
        const batch = peers.flush();
        if (batch.length > 0) yield batch;
        continue;
      }
      if (ev.type === "compacted") {
        relist = `Lease history compacted: listing ${prefix} again`;
        break;
      }
      if (ev.type === "reset") {
        settle = ctx.resetSettleMs;
        relist = `Etcd lost its memory (${ev.reason}): listing ${prefix} again in ${
          settle / 1000
        } s, once the hosts have re-created their leases`;
        break;
      }
      next = ev.modRevision + 1;
      if (ev.type === "delete") peers.delete(ev.key);
      else peers.put(readEntry(ev, ctx.ttlSeconds));
    }
    const rest = peers.flush();
    if (rest.length > 0) yield rest;
    if (relist === null) break;
    ctx.log.info(relist);
    if (settle > 0) await sleep(settle, signal);
    const listing = await retry(ctx, () => listSubnets(ctx, signal), signal);
    const batch = peers.replace(listing.entries);
    next = listing.revision + 1;
    if (batch.length > 0) yield batch;
  }
}
