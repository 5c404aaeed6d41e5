/**
 * {@link Registry} over etcd v3 (`npm:etcd3`, the only importer of it in the project).
 *
 * One etcd3 client per endpoint, so that endpoints are tried in turn and each failure is logged
 * with the endpoint it concerns ("Failed to reach etcd at <endpoint>: …"). etcd3's own retry and
 * circuit-breaker policies are turned off: the callers (subnet manager, config wait) own the
 * retry policy, with capped exponential backoff.
 *
 * TLS by IP address: Deno's `node:tls` refuses an IP address as `servername` (SNI), and grpc-js
 * always sets one. For an endpoint given as an IP, the channel sets
 * `grpc.ssl_target_name_override` to a placeholder DNS name (only sent as SNI, which etcd does not
 * use to pick its certificate) and installs its own `checkServerIdentity` that checks the server
 * certificate against the real IP address (IP SANs, `node:tls` `checkServerIdentity`). The chain
 * is still verified against the CA by the TLS layer (rejectUnauthorized stays on).
 */

import {
  castGrpcError,
  Etcd3,
  type IKeyValue,
  type IOptions,
  isRecoverableError,
  type ITxnResponse,
  type Watcher,
} from "etcd3";
import { type ChannelCredentials, credentials, Metadata } from "@grpc/grpc-js";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { Buffer } from "node:buffer";
import { Backoff, sleep } from "../async.ts";
import { errText, type Logger, logger } from "../log.ts";
import {
  type KeyValue,
  type ListedKeyValue,
  type Registry,
  RegistryUnavailableError,
  type WatchEvent,
  type WriteResult,
} from "./mod.ts";

/** How to reach etcd (flannel's `--etcd-*` flags). */
export interface EtcdOptions {
  /** `http://host:port` or `https://host:port`, tried in turn. */
  endpoints: string[];
  keyFile?: string;
  certFile?: string;
  caFile?: string;
  username?: string;
  password?: string;
  /** Deadline of each unary call, default 5000 ms. */
  callTimeoutMs?: number;
  log?: Logger;
}

/** SNI sent for endpoints given as an IP (see the module note). */
const SNI_FOR_IP = "etcd.flannel.invalid";
/** Concurrent TimeToLive calls while listing (5,000 leases must list in well under a second). */
const TTL_PARALLELISM = 64;

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;
/** A policy that runs the call once (the registry's callers own retries). */
const ONCE = {
  // async: etcd3 calls `.catch()` on the result, so a synchronous throw must become a rejection.
  execute: async (fn: (ctx: unknown) => unknown) => await fn({}),
} as unknown as Policy;

type WatchBackoff = NonNullable<NonNullable<IOptions["faultHandling"]>["watchBackoff"]>;
/**
 * etcd3's own watch reconnect, made immediate: the registry cancels a broken watcher and opens a
 * new one itself (own backoff, endpoint rotation, resume revision), so etcd3 must not leave a
 * backoff timer pending that would outlive the watch.
 */
const NO_WATCH_BACKOFF: WatchBackoff = {
  duration: 0,
  next: () => NO_WATCH_BACKOFF,
} as unknown as WatchBackoff;

interface Endpoint {
  url: string;
  client: Etcd3;
}

/**
 * Connects to etcd (lazily: no call is made here). Throws when a TLS file cannot be read or an
 * endpoint is not a URL.
 */
export function connectEtcd(opts: EtcdOptions): Registry {
  return new EtcdRegistry(opts);
}

/**
 * Reads a PEM file and checks that it parses: grpc-js accepts any bytes and only fails each
 * handshake later, with texts such as "unsupported protocol" or "write EPIPE", retried forever.
 */
function readPem(
  what: string,
  path: string | undefined,
  kind: "certificate" | "private key",
): Buffer | null {
  if (!path) return null;
  let pem: Buffer;
  try {
    pem = Buffer.from(Deno.readFileSync(path));
  } catch (err) {
    throw new Error(`Cannot read etcd ${what} ${path}: ${errText(err)}`, { cause: err });
  }
  try {
    if (kind === "certificate") new X509Certificate(pem);
    else createPrivateKey(pem);
  } catch (err) {
    throw new Error(`Etcd ${what} ${path} is not a PEM ${kind}: ${errText(err)}`, { cause: err });
  }
  return pem;
}

function num(s: string | number | undefined): number {
  return Number(s ?? 0);
}

function leaseOf(kv: IKeyValue): string | null {
  const l = String(kv.lease ?? "0");
  return l === "0" ? null : l;
}

class EtcdRegistry implements Registry {
  readonly #endpoints: Endpoint[];
  readonly #log: Logger;
  #current = 0;
  #closed = false;
  #tlsWithoutClientCert = false;

  constructor(opts: EtcdOptions) {
    if (opts.endpoints.length === 0) throw new Error("No etcd endpoints given");
    this.#log = opts.log ?? logger("etcd");
    const ca = readPem("CA file", opts.caFile, "certificate");
    const key = readPem("key file", opts.keyFile, "private key");
    const cert = readPem("certificate file", opts.certFile, "certificate");
    if ((key === null) !== (cert === null)) {
      throw new Error("Etcd TLS needs both --etcd-keyfile and --etcd-certfile");
    }
    if (key && cert && !new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) {
      throw new Error(
        `Etcd certificate file ${opts.certFile} does not match key file ${opts.keyFile}`,
      );
    }
    const timeout = opts.callTimeoutMs ?? 5000;
    this.#endpoints = opts.endpoints.map((url) => {
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch (err) {
        throw new Error(`Invalid etcd endpoint ${JSON.stringify(url)}: ${errText(err)}`);
      }
      const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
      const tls = parsed.protocol === "https:" || ca !== null || cert !== null;
      const grpcOptions: Record<string, string | number> = {
        "grpc.max_receive_message_length": 256 * 1024 * 1024,
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 2000,
      };
      if (tls && cert === null) this.#tlsWithoutClientCert = true;
      if (tls && isIP(host)) grpcOptions["grpc.ssl_target_name_override"] = SNI_FOR_IP;
      const client = new Etcd3({
        // No port in the URL: etcd's client port (grpc-js would otherwise pick 443).
        hosts: [`http://${parsed.host}${parsed.port ? "" : ":2379"}`],
        auth: opts.username
          ? { username: opts.username, password: opts.password ?? "" }
          : undefined,
        dialTimeout: timeout,
        grpcOptions,
        defaultCallOptions: (ctx) => ctx.isStream ? {} : { deadline: Date.now() + timeout },
        faultHandling: { host: () => ONCE, global: ONCE, watchBackoff: NO_WATCH_BACKOFF },
      });
      if (tls) {
        const creds = credentials.createSsl(ca, key, cert, {
          // grpc-js passes the SNI name; the certificate must match the endpoint's real host.
          checkServerIdentity: (_sni: string, peer: PeerCertificate) =>
            checkServerIdentity(host, peer),
        });
        injectCredentials(client, creds);
      }
      return { url, client };
    });
  }

  /**
   * One-line error text without grpc-js's timestamps and empty "Resolution note", with a hint
   * when a TLS server drops the handshake and we have no client certificate to offer.
   */
  #describe(err: unknown): string {
    let text = errText(err)
      .replace(/\s*\(\d{4}-\d\d-\d\dT[\d:.]+Z\)/g, "")
      .replace(/\.?\s*Resolution note:\s*$/, "");
    if (
      this.#tlsWithoutClientCert &&
      /EPIPE|ECONNRESET|BadCertificate|CertificateRequired|certificate required/i.test(text)
    ) {
      text += " (the server may require a client certificate: set --etcd-certfile and " +
        "--etcd-keyfile)";
    }
    return text;
  }

  /** Runs `fn` on the current endpoint, then the others in turn; logs each unreachable one. */
  async #call<T>(what: string, fn: (c: Etcd3) => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error("Etcd registry is closed");
    let last: unknown;
    for (let i = 0; i < this.#endpoints.length; i++) {
      const idx = (this.#current + i) % this.#endpoints.length;
      const ep = this.#endpoints[idx];
      try {
        const r = await fn(ep.client);
        this.#current = idx;
        return r;
      } catch (err) {
        if (!isUnreachable(err)) {
          const why = this.#describe(err);
          throw new Error(`Etcd ${what} failed: ${why}`, { cause: new Error(why) });
        }
        this.#log.warn(`Failed to reach etcd at ${ep.url}: ${this.#describe(err)}`);
        last = err;
      }
    }
    this.#current = (this.#current + 1) % this.#endpoints.length;
    // The cause is grpc-js's text as #describe cleans it: errText() prints every cause the
    // message does not already hold, and the raw one (timestamps, an empty "Resolution note")
    // would repeat the whole text.
    const why = this.#describe(last);
    throw new RegistryUnavailableError(
      `Cannot reach etcd at ${this.#endpoints.map((e) => e.url).join(",")}: ${why}`,
      { cause: new Error(why) },
    );
  }

  async get(key: string): Promise<{ kv: KeyValue | null; revision: number }> {
    const res = await this.#call("get", (c) => c.get(key).exec());
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
    const res = await this.#call("list", (c) => c.getAll().prefix(prefix).exec());
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
    const r = await this.#call(
      "lease TimeToLive",
      (c) => c.leaseClient.leaseTimeToLive({ ID: leaseId }),
    );
    const ttl = num(r.TTL);
    return ttl < 0 ? null : ttl;
  }

  async #grant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const g = await this.#call("lease grant", (c) => c.leaseClient.leaseGrant({ TTL: ttlSeconds }));
    return { id: String(g.ID), ttl: num(g.TTL) };
  }

  async #revoke(id: string): Promise<void> {
    try {
      await this.#call("lease revoke", (c) => c.leaseClient.leaseRevoke({ ID: id }));
    } catch (err) {
      // It expires on its own; nothing is attached to it.
      this.#log.v(1, `Cannot revoke unused etcd lease ${id}: ${errText(err)}`);
    }
  }

  // Writes and ambiguous failures: an endpoint may apply a transaction and then miss the call's
  // deadline; #call then runs it again on the next endpoint, whose compare fails on our own
  // write. So a failed compare returns the key (else branch) to recognise that write, and a
  // failed call leaves the fresh etcd lease to expire by itself: revoking it would delete the
  // key we may now hold.

  async create(key: string, value: string, ttlSeconds: number): Promise<WriteResult | null> {
    const lease = await this.#grant(ttlSeconds);
    const res = await this.#call(
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
    const res = await this.#call("update", (c) => {
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
      const r = await this.#call("delete", (c) => c.delete().key(key).exec());
      return num(r.deleted) > 0;
    }
    const r = await this.#call(
      "delete",
      (c) => c.if(key, "Mod", "==", modRevision).then(c.delete().key(key)).commit(),
    );
    return r.succeeded;
  }

  async *watch(
    key: string,
    opts: { prefix: boolean; fromRevision: number },
    signal: AbortSignal,
  ): AsyncIterable<WatchEvent> {
    let next = opts.fromRevision;
    const backoff = new Backoff();
    let reconnecting = false;
    while (!signal.aborted && !this.#closed) {
      const ep = this.#endpoints[this.#current];
      const stream = new WatchStream(ep.client, key, opts.prefix, next, signal);
      try {
        for await (const item of stream) {
          if (item.kind === "connected") {
            backoff.reset();
            if (reconnecting) {
              reconnecting = false;
              yield { type: "reconnected", revision: next - 1 };
            }
            continue;
          }
          if (item.kind === "progress") {
            next = Math.max(next, item.revision + 1);
            yield { type: "progress", revision: item.revision };
            continue;
          }
          if (item.kind === "compacted") {
            yield { type: "compacted" };
            return;
          }
          const ev = item.event;
          next = Math.max(next, ev.modRevision + 1);
          yield ev;
        }
      } finally {
        stream.cancel();
      }
      if (signal.aborted || this.#closed) return;
      if (stream.cancelledByServer && await this.#compacted(key, next)) {
        // etcd 3.4 cancels such a watch with an empty reason; etcd3 does not pass on its
        // compact_revision, so a read at that revision tells.
        yield { type: "compacted" };
        return;
      }
      // The stream broke: log, move to the next endpoint, back off, resume from `next`.
      this.#log.warn(`Failed to reach etcd at ${ep.url}: ${this.#describe(stream.error)}`);
      this.#current = (this.#current + 1) % this.#endpoints.length;
      reconnecting = true;
      try {
        await sleep(backoff.next(), signal);
      } catch {
        return;
      }
    }
  }

  /** True when `revision` has been compacted away (a read at it fails). */
  async #compacted(key: string, revision: number): Promise<boolean> {
    try {
      await this.#call("get", (c) => c.get(key).revision(revision).exec());
      return false;
    } catch (err) {
      return /compacted/i.test(errText(err));
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const ep of this.#endpoints) ep.client.close();
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

/** grpc-js errors that mean "this endpoint cannot be used now" (try the next one). */
function isUnreachable(err: unknown): boolean {
  if (err instanceof Error && isRecoverableError(err)) return true;
  const msg = err instanceof Error ? err.message : String(err);
  return /UNAVAILABLE|DEADLINE_EXCEEDED|No connection established|ECONNREFUSED|Deadline/i.test(
    msg,
  );
}

/** The parts of etcd3 1.1.2's connection pool that TLS by IP has to reach. */
interface PoolInternals {
  hosts: {
    channelCredentials: unknown;
    getServiceClient(name: "Auth"): {
      authenticate(
        req: { name: string; password: string },
        md: Metadata,
        opts: object,
        cb: (err: Error | null, res?: { token: string }) => void,
      ): void;
    };
  }[];
  authenticator: {
    credentials: unknown;
    getCredentialsFromHost(
      address: string,
      name: string,
      password: string,
      callOptions: object | undefined,
    ): Promise<string>;
  };
}

/**
 * Replaces the channel credentials etcd3 built (it has no way to pass grpc-js `verifyOptions`)
 * with ours, and makes the user/password token exchange use the host's own Auth client: etcd3
 * builds a separate one for it without the channel options (so without the SNI override, which
 * Deno then refuses for an IP). Relies on etcd3 1.1.2's pool internals (the version is pinned);
 * tests/e2e/registry_test.ts fails if they change.
 */
function injectCredentials(client: Etcd3, creds: ChannelCredentials): void {
  const pool = (client as unknown as { pool: PoolInternals }).pool;
  if (
    pool?.hosts?.length !== 1 || typeof pool.hosts[0].getServiceClient !== "function" ||
    typeof pool.authenticator?.getCredentialsFromHost !== "function"
  ) {
    throw new Error("Etcd3 internals changed: cannot install TLS credentials");
  }
  const host = pool.hosts[0];
  host.channelCredentials = creds;
  pool.authenticator.credentials = creds;
  pool.authenticator.getCredentialsFromHost = (_address, name, password, callOptions) =>
    new Promise((resolve, reject) => {
      host.getServiceClient("Auth").authenticate(
        { name, password },
        new Metadata(),
        callOptions ?? {},
        (err, res) => err ? reject(castGrpcError(err)) : resolve(res!.token),
      );
    });
}

type StreamItem =
  | { kind: "connected" }
  | { kind: "progress"; revision: number }
  | { kind: "compacted" }
  | { kind: "event"; event: Extract<WatchEvent, { type: "put" | "delete" }> };

/** One etcd3 watcher as an async iterable; ends on disconnect (with `error` set) or abort. */
class WatchStream implements AsyncIterable<StreamItem> {
  #items: StreamItem[] = [];
  #wake: (() => void) | null = null;
  #done = false;
  #serverCancelled = false;
  /** etcd cancelled the watch (compaction, permission, …); see `error`. */
  get cancelledByServer(): boolean {
    return this.#serverCancelled;
  }
  #watcher: Watcher;
  error: unknown = null;

  constructor(
    client: Etcd3,
    key: string,
    prefix: boolean,
    from: number,
    readonly signal: AbortSignal,
  ) {
    const b = client.watch();
    (prefix ? b.prefix(key) : b.key(key)).startRevision(String(from));
    this.#watcher = b.watcher();
    this.#watcher.on("connected", () => this.#push({ kind: "connected" }));
    this.#watcher.on("data", (res) => {
      for (const ev of res.events) {
        const kv = ev.kv;
        const modRevision = num(kv.mod_revision);
        this.#push({
          kind: "event",
          event: ev.type === "Put"
            ? {
              type: "put",
              key: kv.key.toString(),
              value: kv.value.toString(),
              modRevision,
              createRevision: num(kv.create_revision),
              leaseId: leaseOf(kv),
            }
            : { type: "delete", key: kv.key.toString(), modRevision },
        });
      }
      // etcd sends a watcher that is catching up its backlog in chunks of 1,000 revisions,
      // each headed with the store's current revision: only the last event delivered is
      // known to be complete (resuming from the header would skip the rest of the backlog).
      // An empty response (a progress notification) goes only to a caught-up watcher.
      const last = res.events[res.events.length - 1];
      this.#push({
        kind: "progress",
        revision: last ? num(last.kv.mod_revision) : num(res.header.revision),
      });
    });
    this.#watcher.on("disconnected", (err) => this.#end(err ?? new Error("watch disconnected")));
    this.#watcher.on("error", (err) => {
      // etcd cancelled the watch and etcd3 already dropped it: cancelling again would send a
      // cancel request for an id etcd3 no longer knows, whose answer etcd3 cannot route.
      this.#serverCancelled = true;
      if (/compacted/i.test(errText(err))) {
        this.#push({ kind: "compacted" });
        this.#end(null);
      } else {
        this.#end(err);
      }
    });
    signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  #onAbort = () => this.#end(null);

  #push(item: StreamItem): void {
    if (this.#done) return;
    this.#items.push(item);
    this.#wake?.();
  }

  #end(err: unknown): void {
    if (this.#done) return;
    this.error = err;
    this.#done = true;
    this.#wake?.();
  }

  cancel(): void {
    this.#done = true;
    this.signal.removeEventListener("abort", this.#onAbort);
    this.#watcher.removeAllListeners();
    // Keep a listener so a late error on the detached watcher is not an unhandled 'error'.
    this.#watcher.on("error", () => {});
    if (!this.#serverCancelled) this.#watcher.cancel().catch(() => {});
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamItem> {
    while (true) {
      const item = this.#items.shift();
      if (item) {
        yield item;
        continue;
      }
      if (this.#done) return;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = null;
    }
  }
}
