/**
 * Keys, leases and guarded writes over {@link Endpoints}: the non-watch half of
 * {@link Registry}.
 *
 * Writes and ambiguous failures: an endpoint may apply a transaction and then miss the call's
 * deadline; the failover then runs it again on the next endpoint, whose compare fails on our own
 * write. So a failed compare returns the key (else branch) to recognise that write, and a failed
 * call leaves the fresh etcd lease to expire by itself: revoking it would delete the key we may
 * now hold.
 */

import type { IKeyValue, ITxnResponse } from "etcd3";
import { errText } from "../../log.ts";
import type { KeyValue, ListedKeyValue, Registry, WriteResult } from "../mod.ts";
import type { Endpoints } from "./endpoints.ts";

/** Concurrent TimeToLive calls while listing (5,000 leases must list in well under a second). */
const TTL_PARALLELISM = 64;

/** A decimal uint64 field of an etcd answer as a number. */
export function num(s: string | number | undefined): number {
  return Number(s ?? 0);
}

/** The etcd lease of a key, null when none. */
export function leaseOf(kv: IKeyValue): string | null {
  const l = String(kv.lease ?? "0");
  return l === "0" ? null : l;
}

/** Every {@link Registry} method but `watch` and `close`. */
export class EtcdKV implements Omit<Registry, "watch" | "close"> {
  constructor(readonly eps: Endpoints) {}

  async get(key: string): Promise<{ kv: KeyValue | null; revision: number }> {
    const res = await this.eps.call("get", (c) => c.get(key).exec());
    const kv = res.kvs[0];
    return {
      kv: kv
        ? {
          key,
          value: kv.value.toString(),
          modRevision: num(kv.mod_revision),
          createRevision: num(kv.create_revision),
          leaseId: leaseOf(kv),
        }
        : null,
      revision: num(res.header.revision),
    };
  }

  async list(prefix: string): Promise<{ entries: ListedKeyValue[]; revision: number }> {
    const res = await this.eps.call("list", (c) => c.getAll().prefix(prefix).exec());
    const ids = new Set<string>();
    for (const kv of res.kvs) {
      const l = leaseOf(kv);
      if (l) ids.add(l);
    }
    // One TimeToLive per distinct etcd lease, in bounded parallel (not one round trip per key
    // in sequence: 5,000 peers must list in well under a second).
    const ttls = new Map<string, number | null>();
    const queue = [...ids];
    const worker = async () => {
      for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
        ttls.set(id, await this.leaseTTL(id));
      }
    };
    await Promise.all(Array.from({ length: Math.min(TTL_PARALLELISM, queue.length) }, worker));
    const entries = res.kvs.map((kv) => {
      const leaseId = leaseOf(kv);
      return {
        key: kv.key.toString(),
        value: kv.value.toString(),
        modRevision: num(kv.mod_revision),
        createRevision: num(kv.create_revision),
        leaseId,
        ttlSeconds: leaseId ? ttls.get(leaseId) ?? null : null,
      };
    });
    return { entries, revision: num(res.header.revision) };
  }

  async leaseTTL(leaseId: string): Promise<number | null> {
    const r = await this.eps.call(
      "lease TimeToLive",
      (c) => c.leaseClient.leaseTimeToLive({ ID: leaseId }),
    );
    const ttl = num(r.TTL);
    return ttl < 0 ? null : ttl;
  }

  async #grant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const g = await this.eps.call(
      "lease grant",
      (c) => c.leaseClient.leaseGrant({ TTL: ttlSeconds }),
    );
    return { id: String(g.ID), ttl: num(g.TTL) };
  }

  async #revoke(id: string): Promise<void> {
    try {
      await this.eps.call("lease revoke", (c) => c.leaseClient.leaseRevoke({ ID: id }));
    } catch (err) {
      // It expires on its own; nothing is attached to it.
      this.eps.log.v(1, `Cannot revoke unused etcd lease ${id}: ${errText(err)}`);
    }
  }

  async create(key: string, value: string, ttlSeconds: number): Promise<WriteResult | null> {
    const lease = await this.#grant(ttlSeconds);
    const res = await this.eps.call(
      "create",
      (c) =>
        c.if(key, "Version", "==", 0)
          .then(c.put(key).value(value).lease(lease.id))
          .else(c.get(key))
          .commit(),
    );
    if (!res.succeeded) {
      const mine = ownWrite(res, value, lease.id);
      if (mine) return { modRevision: mine, leaseId: lease.id, ttlSeconds: lease.ttl };
      await this.#revoke(lease.id);
      return null;
    }
    return { modRevision: num(res.header.revision), leaseId: lease.id, ttlSeconds: lease.ttl };
  }

  async update(
    key: string,
    value: string,
    ttlSeconds: number | null,
    modRevision: number,
  ): Promise<WriteResult | null> {
    const lease = ttlSeconds === null ? null : await this.#grant(ttlSeconds);
    const res = await this.eps.call("update", (c) => {
      const put = c.put(key).value(value);
      if (lease) put.lease(lease.id);
      return c.if(key, "Mod", "==", modRevision).then(put).else(c.get(key)).commit();
    });
    if (!res.succeeded) {
      const mine = ownWrite(res, value, lease?.id ?? null);
      if (mine) {
        return { modRevision: mine, leaseId: lease?.id ?? null, ttlSeconds: lease?.ttl ?? null };
      }
      if (lease) await this.#revoke(lease.id);
      return null;
    }
    return {
      modRevision: num(res.header.revision),
      leaseId: lease?.id ?? null,
      ttlSeconds: lease?.ttl ?? null,
    };
  }

  async delete(key: string, modRevision?: number): Promise<boolean> {
    if (modRevision === undefined) {
      const r = await this.eps.call("delete", (c) => c.delete().key(key).exec());
      return num(r.deleted) > 0;
    }
    const r = await this.eps.call(
      "delete",
      (c) => c.if(key, "Mod", "==", modRevision).then(c.delete().key(key)).commit(),
    );
    return r.succeeded;
  }

  /** True when `revision` has been compacted away (a read at it fails). */
  async compacted(key: string, revision: number): Promise<boolean> {
    try {
      await this.eps.call("get", (c) => c.get(key).revision(revision).exec());
      return false;
    } catch (err) {
      return /compacted/i.test(errText(err));
    }
  }
}

/**
 * The mod revision of the key a failed compare found (the else branch's get), when it is our own
 * write: it carries the etcd lease granted for this write, or (no lease) exactly our value.
 */
function ownWrite(res: ITxnResponse, value: string, leaseId: string | null): number | null {
  const kv = res.responses?.[0]?.response_range?.kvs?.[0];
  if (!kv) return null;
  const mine = leaseId !== null
    ? leaseOf(kv) === leaseId
    : leaseOf(kv) === null && kv.value.toString() === value;
  return mine ? num(kv.mod_revision) : null;
}
