/**
 * Keeping our lease: renewal before expiry (guarded on the revision of our last write) and a
 * watch on our own key that notices when it is deleted, taken by another host, rewritten by an
 * admin, or gone because etcd lost its memory (then it is re-created, same subnet, only while
 * no other host holds the key).
 */

import {
  decodeLeaseValue,
  describeSubnets,
  encodeLeaseValue,
  type Lease,
  subnetKey,
} from "../lease.ts";
import { abortable, sleep } from "../async.ts";
import { errText } from "../log.ts";
import { attrsEqual, isOurs } from "./acquire.ts";
import { retry, type SubnetContext } from "./context.ts";
import { buildLease } from "./entry.ts";
import { LeaseLostError } from "./mod.ts";

/** What keeping needs beyond the shared context. */
export interface KeepContext extends SubnetContext {
  /** Renew this long before expiry. */
  readonly renewMarginMs: number;
  /** Wait after a failed renewal. */
  readonly renewRetryMs: number;
}

/** How long a renewal that finds our key gone waits for the watch to re-create it. */
const RECREATE_GRACE_MS = 2_000;

interface KeepState {
  lease: Lease;
  /** Set while the renew loop sleeps: wakes it to recompute. */
  wake: (() => void) | null;
}

/** Keeps `lease` until `signal` aborts; rejects with LeaseLostError when it is lost. */
export async function keepLease(
  ctx: KeepContext,
  lease: Lease,
  signal: AbortSignal,
): Promise<void> {
  const state: KeepState = { lease, wake: null };
  const inner = new AbortController();
  const both = AbortSignal.any([signal, inner.signal]);
  const watching = watchOwn(ctx, state, both);
  // Also for a reservation: it sleeps until the watch sees an etcd lease attached to our key.
  const renewing = renewLoop(ctx, state, both);
  try {
    await Promise.race([watching, renewing]);
  } catch (err) {
    if (err instanceof LeaseLostError) throw err;
    if (!signal.aborted) throw err;
  } finally {
    inner.abort();
    await Promise.allSettled([watching, renewing]);
  }
}

async function renewLoop(ctx: KeepContext, state: KeepState, signal: AbortSignal): Promise<void> {
  const key = subnetKey(ctx.prefix, state.lease);
  const cidr = describeSubnets(state.lease);
  while (!signal.aborted) {
    const l = state.lease;
    if (l.etcdLeaseId === null || l.expiration === null) {
      // Turned into a reservation by an admin: nothing to renew any more.
      await waitOrWake(state, 2 ** 31 - 1, signal);
      continue;
    }
    const wait = l.expiration.getTime() - ctx.renewMarginMs - Date.now();
    if (wait > 0) {
      ctx.log.v(1, `Renewing lease ${cidr} in ${Math.round(wait / 1000)} s`);
      await waitOrWake(state, wait, signal);
      if (state.lease !== l) continue; // changed by the watch: recompute
      if (l.expiration.getTime() - ctx.renewMarginMs > Date.now()) continue;
    }
    try {
      const w = await abortable(
        ctx.registry.update(key, encodeLeaseValue(l.attrs), ctx.ttlSeconds, l.modRevision),
        signal,
      );
      if (w) {
        state.lease = buildLease(l, l.attrs, w, w.ttlSeconds);
        ctx.log.info(`Renewed lease ${cidr} (expires ${state.lease.expiration!.toISOString()})`);
        continue;
      }
      // The key changed since our last write: whose is it now?
      const cur = await abortable(ctx.registry.get(key), signal);
      if (!cur.kv) {
        // The watch reports a deletion too. But when this renewal was etcd's first answer since
        // it lost its memory, the watch is re-creating the key right now: give it a moment.
        await waitOrWake(state, RECREATE_GRACE_MS, signal);
        if (state.lease !== l) continue;
        throw new LeaseLostError(`Lease ${cidr} was deleted from etcd`);
      }
      // Rewritten with our PublicIP (e.g. by an admin) before the watch told us: adopt it as
      // the watch does, etcd lease included. Made a reservation, it is never renewed (a write
      // with a TTL would turn it back into a lease).
      observe(ctx, state, cidr, cur.kv.value, cur.kv.modRevision, cur.kv.leaseId);
    } catch (err) {
      if (err instanceof LeaseLostError || signal.aborted) throw err;
      ctx.log.error(
        `Error renewing lease ${cidr} (trying again in ${ctx.renewRetryMs / 1000} s): ${
          errText(err)
        }`,
      );
      await sleep(ctx.renewRetryMs, signal);
    }
  }
  signal.throwIfAborted();
}

/** Watches our own key; rejects with LeaseLostError when it is deleted or taken. */
async function watchOwn(ctx: KeepContext, state: KeepState, signal: AbortSignal): Promise<void> {
  const key = subnetKey(ctx.prefix, state.lease);
  const cidr = describeSubnets(state.lease);
  let from = state.lease.modRevision + 1;
  while (!signal.aborted) {
    let ended: { type: "compacted" } | { type: "reset"; reason: string } | null = null;
    for await (const ev of ctx.registry.watch(key, { prefix: false, fromRevision: from }, signal)) {
      if (ev.type === "compacted" || ev.type === "reset") {
        ended = ev;
        break;
      }
      if (ev.type === "reconnected" || ev.type === "progress") continue;
      from = ev.modRevision + 1;
      if (ev.type === "delete") {
        throw new LeaseLostError(`Lease ${cidr} was deleted from etcd (expired or revoked)`);
      }
      observe(ctx, state, cidr, ev.value, ev.modRevision, ev.leaseId);
    }
    if (ended === null) break;
    if (ended.type === "reset") {
      from = await recreate(ctx, state, ended.reason, signal) + 1;
      continue;
    }
    // History lost: read the key as it is now.
    const cur = await retry(ctx, () => ctx.registry.get(key), signal);
    if (!cur.kv) throw new LeaseLostError(`Lease ${cidr} was deleted from etcd`);
    observe(ctx, state, cidr, cur.kv.value, cur.kv.modRevision, cur.kv.leaseId);
    from = cur.revision + 1;
  }
  signal.throwIfAborted();
}

/** A write to our key: ours (adopt its revision) or another host's (lost). */
function observe(
  ctx: KeepContext,
  state: KeepState,
  cidr: string,
  value: string,
  modRevision: number,
  leaseId: string | null,
): void {
  if (modRevision <= state.lease.modRevision) return;
  const attrs = decodeLeaseValue(value);
  if (typeof attrs === "string" || !isOurs(ctx, attrs, state.lease.attrs)) {
    throw new LeaseLostError(`Lease ${cidr} is now held by ${holder(attrs)}`);
  }
  const l = state.lease;
  let expiration = l.expiration;
  if (leaseId === null) expiration = null;
  else if (leaseId !== l.etcdLeaseId) expiration = new Date(Date.now() + ctx.ttlSeconds * 1000);
  state.lease = { ...l, modRevision, etcdLeaseId: leaseId, expiration };
  state.wake?.();
}

function holder(attrs: ReturnType<typeof decodeLeaseValue>): string {
  if (typeof attrs === "string") return "an unreadable value";
  return String(attrs.publicIP ?? attrs.publicIPv6 ?? "(no address)");
}

/**
 * etcd lost its memory (wiped, or restored from an older snapshot): every revision we hold is
 * meaningless. Creates our key again with the same subnet, only where it does not exist; finds
 * it held with our PublicIP (a restored snapshot), adopts it. Resolves to the revision to watch
 * after; rejects with LeaseLostError when another host holds the key now.
 */
async function recreate(
  ctx: KeepContext,
  state: KeepState,
  reason: string,
  signal: AbortSignal,
): Promise<number> {
  const l = state.lease;
  const key = subnetKey(ctx.prefix, l);
  const cidr = describeSubnets(l);
  const value = encodeLeaseValue(l.attrs);
  ctx.log.warn(`Etcd lost its memory (${reason}): re-creating lease ${cidr}`);
  while (true) {
    const w = await retry(ctx, () => ctx.registry.create(key, value, ctx.ttlSeconds), signal);
    if (w) {
      state.lease = buildLease(l, l.attrs, w, w.ttlSeconds);
      state.wake?.();
      ctx.log.info(`Re-created lease ${cidr} (expires ${state.lease.expiration!.toISOString()})`);
      return w.modRevision;
    }
    const cur = await retry(ctx, () => ctx.registry.get(key), signal);
    const kv = cur.kv;
    if (!kv) continue; // gone again since the create: try again
    const attrs = decodeLeaseValue(kv.value);
    if (typeof attrs === "string" || !isOurs(ctx, attrs, l.attrs)) {
      throw new LeaseLostError(
        `Lease ${cidr} is now held by ${holder(attrs)} (etcd lost its memory: ${reason})`,
      );
    }
    if (!attrsEqual(attrs, l.attrs)) {
      // Ours in an older snapshot, with stale attributes (VtepMAC): write ours, with a TTL.
      const u = await retry(
        ctx,
        () => ctx.registry.update(key, value, ctx.ttlSeconds, kv.modRevision),
        signal,
      );
      if (!u) continue;
      state.lease = buildLease(l, l.attrs, u, u.ttlSeconds);
      state.wake?.();
      ctx.log.info(`Rewrote lease ${cidr} found in the restored etcd (attributes updated)`);
      return u.modRevision;
    }
    const id = kv.leaseId;
    const ttl = id === null ? null : await retry(ctx, () => ctx.registry.leaseTTL(id), signal);
    state.lease = buildLease(l, l.attrs, kv, ttl);
    state.wake?.();
    ctx.log.info(`Found lease ${cidr} in the restored etcd: keeping it`);
    return cur.revision;
  }
}

/** Sleeps `ms` (clamped to the timer maximum), or until `state.wake()`; rejects on abort. */
function waitOrWake(state: KeepState, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", onAbort);
      state.wake = null;
    };
    const onAbort = () => {
      done();
      reject(signal.reason);
    };
    const t = setTimeout(() => {
      done();
      resolve();
    }, Math.min(ms, 2 ** 31 - 1));
    state.wake = () => {
      done();
      resolve();
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
