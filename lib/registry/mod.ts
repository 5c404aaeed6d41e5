/**
 * The lease storage interface: raw keys and string values with etcd revisions, no policy.
 *
 * The subnet manager (lib/subnet/) and the config wait (lib/subnet/config_wait.ts) are
 * written against this interface; lib/registry/etcd/ implements it over etcd v3, and the unit
 * tests over an in-memory fake.
 */

/** A key as stored: value, mod revision and the attached etcd lease. */
export interface KeyValue {
  readonly key: string;
  readonly value: string;
  /** The key's mod revision (the store revision of its last write). */
  readonly modRevision: number;
  /** The store revision that created the key (of its current incarnation). */
  readonly createRevision: number;
  /** The etcd lease id (decimal string) attached to the key; null when none (a reservation). */
  readonly leaseId: string | null;
}

/** A listed key with the time its etcd lease has left. */
export interface ListedKeyValue extends KeyValue {
  /** Seconds left on the etcd lease at listing time; null without a lease or when unknown. */
  readonly ttlSeconds: number | null;
}

/** The result of a write: the key's new mod revision and its etcd lease. */
export interface WriteResult {
  readonly modRevision: number;
  /** The etcd lease granted for the write; null for a write without TTL. */
  readonly leaseId: string | null;
  /** The TTL granted by etcd, in seconds; null for a write without TTL. */
  readonly ttlSeconds: number | null;
}

/**
 * An event of {@link Registry.watch}.
 *
 * - `put` / `delete`: a change to a watched key.
 * - `compacted`: the requested revision is no longer in etcd's history; the watch has ended and
 *   the caller must re-list and start a new watch from the listing's revision.
 * - `reconnected`: the watch stream broke and was re-established from the last revision seen;
 *   no event was lost.
 * - `progress`: every change up to `revision` has been delivered (the end of one etcd watch
 *   response: callers may apply the events before it as one batch).
 * - `reset`: etcd lost its memory (wiped, or restored from an older snapshot): a (re)connect or
 *   any other answer showed another cluster id, or a revision or raft term below the highest one
 *   seen (a lower one confirmed by a linearizable read). Every watch open at that moment yields it once and
 *   ends, like `compacted`; what the caller knew (its own lease too) may be gone. The caller
 *   re-lists and starts a new watch from the listing's revision. `reason` is one line naming the
 *   endpoint and what changed.
 */
export type WatchEvent =
  | {
    readonly type: "put";
    readonly key: string;
    readonly value: string;
    readonly modRevision: number;
    readonly createRevision: number;
    readonly leaseId: string | null;
  }
  | { readonly type: "delete"; readonly key: string; readonly modRevision: number }
  | { readonly type: "compacted" }
  | { readonly type: "reconnected"; readonly revision: number }
  | { readonly type: "progress"; readonly revision: number }
  | { readonly type: "reset"; readonly reason: string };

/** Thrown when no endpoint of the store could be reached. */
export class RegistryUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RegistryUnavailableError";
  }
}

/** Storage for the network config and the subnet leases. */
export interface Registry {
  /** Reads one key; `revision` is the store revision of the read. */
  get(key: string): Promise<{ kv: KeyValue | null; revision: number }>;

  /**
   * Lists every key under `prefix` with the remaining TTL of its etcd lease; `revision` is the
   * store revision of the listing (watch from `revision + 1` to miss nothing).
   */
  list(prefix: string): Promise<{ entries: ListedKeyValue[]; revision: number }>;

  /**
   * Creates `key` with an etcd lease of `ttlSeconds`, only when the key does not exist.
   * Returns null when it exists (the granted etcd lease is revoked then).
   */
  create(key: string, value: string, ttlSeconds: number): Promise<WriteResult | null>;

  /**
   * Rewrites `key` only while its mod revision is still `modRevision`. With `ttlSeconds` a fresh
   * etcd lease is attached (the old one is left to expire); with null the key has no lease.
   * Returns null when the key changed or is gone.
   */
  update(
    key: string,
    value: string,
    ttlSeconds: number | null,
    modRevision: number,
  ): Promise<WriteResult | null>;

  /**
   * Deletes `key`; with `modRevision` only while the key is still at that revision.
   * Returns false when nothing was deleted.
   */
  delete(key: string, modRevision?: number): Promise<boolean>;

  /** Seconds left on an etcd lease; null when it has expired or does not exist. */
  leaseTTL(leaseId: string): Promise<number | null>;

  /**
   * Watches `key` (or every key under it with `prefix`) from `fromRevision` (inclusive).
   * Reconnects by itself (logging each failed attempt, capped backoff) and resumes from the last
   * revision seen. Ends after a `compacted` or `reset` event, or when `signal` aborts.
   */
  watch(
    key: string,
    opts: { prefix: boolean; fromRevision: number },
    signal: AbortSignal,
  ): AsyncIterable<WatchEvent>;

  /** Closes every connection. */
  close(): void;
}
