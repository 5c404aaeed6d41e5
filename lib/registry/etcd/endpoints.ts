/**
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
 *
 * A frozen endpoint (a stopped process, a dead host whose TCP connection is not reset): unary
 * calls end at their deadline; streams (watches) are held open only by gRPC keepalive pings,
 * sent every {@link KEEPALIVE_TIME_MS} and given {@link KEEPALIVE_TIMEOUT_MS} to be answered, so
 * an endpoint that stopped answering is given up within about 10 s. etcd refuses clients that
 * ping more often than its `--grpc-keepalive-min-time` (default 5 s) with GOAWAY, hence not less.
 */

import { Etcd3, type IOptions, isRecoverableError } from "etcd3";
import { credentials } from "@grpc/grpc-js";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { isIP } from "node:net";
import { errText, type Logger } from "../../log.ts";
import { RegistryUnavailableError } from "../mod.ts";
import { type Header, History } from "./history.ts";
import { closeClient, patchClient } from "./internals.ts";
import type { TlsFiles } from "./tls.ts";

/** SNI sent for endpoints given as an IP (see the module note). */
const SNI_FOR_IP = "etcd.flannel.invalid";
/** Interval of gRPC keepalive pings on a connection with open calls. */
const KEEPALIVE_TIME_MS = 6000;
/** How long a keepalive ping may go unanswered before the connection is dropped. */
const KEEPALIVE_TIMEOUT_MS = 3000;

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

/** One endpoint and its client. */
export interface Endpoint {
  readonly url: string;
  readonly client: Etcd3;
}

/** How to reach etcd: the endpoint URLs and the credentials for all of them. */
export interface EndpointOptions {
  endpoints: string[];
  tls: TlsFiles;
  username?: string;
  password?: string;
  /** Deadline of each unary call in ms. */
  callTimeoutMs: number;
  log: Logger;
}

/** The endpoints, the one in use, failover, and what their answers say about etcd's history. */
export class Endpoints {
  readonly all: Endpoint[];
  readonly history = new History();
  readonly log: Logger;
  /** Index of the endpoint in use. */
  current = 0;
  closed = false;
  readonly #tlsWithoutClientCert: boolean;
  readonly #certFile: string | null;

  constructor(opts: EndpointOptions) {
    if (opts.endpoints.length === 0) throw new Error("No etcd endpoints given");
    this.log = opts.log;
    const { ca, key, cert } = opts.tls;
    this.#certFile = opts.tls.certFile;
    let tlsWithoutClientCert = false;
    this.all = opts.endpoints.map((url) => {
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
        "grpc.keepalive_time_ms": KEEPALIVE_TIME_MS,
        "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 2000,
        // A subchannel pool of the channel's own, not grpc-js's process-wide one: its cleanup
        // interval (10 s) ends when the channel closes, and no connection is shared with a
        // client that was closed.
        "grpc.use_local_subchannel_pool": 1,
      };
      if (tls && cert === null) tlsWithoutClientCert = true;
      if (tls && isIP(host)) grpcOptions["grpc.ssl_target_name_override"] = SNI_FOR_IP;
      const client = new Etcd3({
        // No port in the URL: etcd's client port (grpc-js would otherwise pick 443).
        hosts: [`http://${parsed.host}${parsed.port ? "" : ":2379"}`],
        auth: opts.username
          ? { username: opts.username, password: opts.password ?? "" }
          : undefined,
        dialTimeout: opts.callTimeoutMs,
        grpcOptions,
        defaultCallOptions: (ctx) =>
          ctx.isStream ? {} : { deadline: Date.now() + opts.callTimeoutMs },
        faultHandling: { host: () => ONCE, global: ONCE, watchBackoff: NO_WATCH_BACKOFF },
      });
      const creds = tls
        ? credentials.createSsl(ca, key, cert, {
          // grpc-js passes the SNI name; the certificate must match the endpoint's real host.
          checkServerIdentity: (_sni: string, peer: PeerCertificate) =>
            checkServerIdentity(host, peer),
        })
        : null;
      patchClient(client, creds);
      return { url, client };
    });
    this.#tlsWithoutClientCert = tlsWithoutClientCert;
  }

  /**
   * One-line error text without grpc-js's timestamps and empty "Resolution note", with a hint
   * when a TLS server drops the handshake: it may want a client certificate we do not have, or
   * refuse the one we sent.
   */
  describe(err: unknown): string {
    let text = errText(err)
      .replace(/\s*\(\d{4}-\d\d-\d\dT[\d:.]+Z\)/g, "")
      .replace(/\.?\s*Resolution note:\s*$/, "");
    const dropped =
      /EPIPE|ECONNRESET|BadCertificate|CertificateRequired|certificate required|unknown ca|bad certificate|socket disconnected before secure TLS/i
        .test(text);
    if (dropped && this.#tlsWithoutClientCert) {
      text += " (the server may require a client certificate: set --etcd-certfile and " +
        "--etcd-keyfile)";
    } else if (dropped && this.#certFile !== null) {
      text += ` (the server may have rejected the client certificate ${this.#certFile}: ` +
        "check that it is signed by a CA etcd trusts (--trusted-ca-file) and not expired)";
    }
    return text;
  }

  /** Moves to the next endpoint. */
  rotate(): void {
    this.current = (this.current + 1) % this.all.length;
  }

  /**
   * Runs `fn` on the current endpoint, then the others in turn; logs each unreachable one. The
   * answer's header is checked against etcd's history ({@link check}).
   */
  async call<T>(what: string, fn: (c: Etcd3) => Promise<T>): Promise<T> {
    if (this.closed) throw new Error("Etcd registry is closed");
    let last: unknown;
    for (let i = 0; i < this.all.length; i++) {
      const idx = (this.current + i) % this.all.length;
      const ep = this.all[idx];
      try {
        const r = await fn(ep.client);
        this.current = idx;
        const header = (r as { header?: Header } | null)?.header;
        if (header) await this.check(ep, header);
        return r;
      } catch (err) {
        if (!isUnreachable(err)) {
          const why = this.describe(err);
          throw new Error(`Etcd ${what} failed: ${why}`, { cause: new Error(why) });
        }
        this.log.warn(`Failed to reach etcd at ${ep.url}: ${this.describe(err)}`);
        last = err;
      }
    }
    this.rotate();
    // The cause is grpc-js's text as describe() cleans it: errText() prints every cause the
    // message does not already hold, and the raw one (timestamps, an empty "Resolution note")
    // would repeat the whole text.
    const why = this.describe(last);
    throw new RegistryUnavailableError(
      `Cannot reach etcd at ${this.all.map((e) => e.url).join(",")}: ${why}`,
      { cause: new Error(why) },
    );
  }

  /**
   * Compares a response header of `ep` with etcd's history and declares a reset when etcd lost
   * its memory (a lower revision only once a linearizable read on `ep` confirms it). Throws
   * (unreachable) when that read fails.
   */
  async check(ep: Endpoint, header: Header): Promise<void> {
    const s = this.history.suspect(header, ep.url);
    if (s === null) return;
    let reason: string | null = s.kind === "cluster" ? s.reason : null;
    let now = header;
    if (s.kind === "history") {
      // Linearizable (etcd3's default): answered once the member has applied the whole log.
      now = (await ep.client.get("\0").exec()).header;
      reason = this.history.confirm(now, ep.url);
    }
    if (reason === null) return;
    this.log.warn(`Etcd lost its memory: ${reason}`);
    this.history.reset(now, reason);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ep of this.all) closeClient(ep.client);
  }
}

/** grpc-js errors that mean "this endpoint cannot be used now" (try the next one). */
function isUnreachable(err: unknown): boolean {
  if (err instanceof Error && isRecoverableError(err)) return true;
  const msg = err instanceof Error ? err.message : String(err);
  return /UNAVAILABLE|DEADLINE_EXCEEDED|No connection established|ECONNREFUSED|Deadline|no leader/i
    .test(msg);
}
