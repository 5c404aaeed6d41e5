/**
 * The instance metadata service: who and where this instance is.
 *
 * Asks for an IMDSv2 token first and falls back to IMDSv1 when the token request is refused
 * (403/404/405) or times out; honours `AWS_EC2_METADATA_SERVICE_ENDPOINT`. This is what the SDK's
 * `MetadataService` does, written here because that one leaks a timer per request (its handler
 * returns 0 instead of the connection-timeout id when the timeout is under 2 s, so the timer is
 * only cleared if the socket's `connect` event fires, never on refusal or timeout) and cannot be
 * cancelled. Requests go through `node:http`, as the SDK's did: `fetch` would send link-local
 * IMDS traffic through `HTTP_PROXY`.
 */

import { request as httpRequest } from "node:http";
import { sleep } from "../../async.ts";

/** What the backend needs from the instance-identity document. */
export interface InstanceIdentity {
  readonly instanceId: string;
  readonly region: string;
  readonly availabilityZone: string;
  readonly privateIp: string;
}

/** IMDS did not answer or answered nonsense: this host does not look like an EC2 instance. */
export class NotEc2Error extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NotEc2Error";
  }
}

/** Options for {@link readInstanceIdentity}; the defaults suit a real instance. */
export interface ImdsOptions {
  /** Overrides `AWS_EC2_METADATA_SERVICE_ENDPOINT` (and the default http://169.254.169.254). */
  readonly endpoint?: string;
  /** Per-request timeout, default 1000 ms. */
  readonly timeoutMs?: number;
  /** Retries after the first attempt, default 3. */
  readonly retries?: number;
}

/**
 * Reads `/latest/dynamic/instance-identity/document`; rejects with {@link NotEc2Error}, or with
 * the abort reason when `signal` aborts (which also ends the request in flight and its timers).
 */
export async function readInstanceIdentity(
  opts: ImdsOptions = {},
  signal?: AbortSignal,
): Promise<InstanceIdentity> {
  const endpoint = opts.endpoint ?? Deno.env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") ??
    "http://169.254.169.254";
  let text: string;
  try {
    text = await getDocument(new URL(endpoint), opts, signal);
  } catch (err) {
    if (signal?.aborted && err === signal.reason) throw err;
    throw new NotEc2Error(
      `Cannot read the instance identity from the EC2 metadata service at ${endpoint}: this host does not look like an EC2 instance (aws-vpc runs only on EC2; set AWS_EC2_METADATA_SERVICE_ENDPOINT if IMDS lives elsewhere)`,
      { cause: err },
    );
  }
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new NotEc2Error(
      `The EC2 metadata service at ${endpoint} returned an instance identity that is not JSON: ${
        JSON.stringify(text.slice(0, 80))
      }`,
      { cause: err },
    );
  }
  const str = (k: string): string => {
    const v = doc[k];
    if (typeof v !== "string" || v === "") {
      throw new NotEc2Error(
        `The instance identity from ${endpoint} has no ${k}: ${JSON.stringify(v ?? null)}`,
      );
    }
    return v;
  };
  return {
    instanceId: str("instanceId"),
    region: str("region"),
    availabilityZone: str("availabilityZone"),
    privateIp: str("privateIp"),
  };
}

const DOCUMENT = "latest/dynamic/instance-identity/document";
const TOKEN_TTL_S = 21600;

/** One HTTP answer, or why there was none. */
interface Reply {
  readonly status: number;
  readonly body: string;
}

class ImdsStatusError extends Error {
  constructor(readonly status: number, what: string) {
    super(`${what} answered HTTP ${status}`);
    this.name = "ImdsStatusError";
  }
}

class ImdsTimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what} got no answer within ${ms} ms`);
    this.name = "ImdsTimeoutError";
  }
}

/**
 * The identity document: up to `1 + retries` attempts with 0.2 s · 2ⁿ between them; each
 * attempt asks for a token first unless a refusal or timeout showed this IMDS is v1-only.
 * 400/403/404 on the document are final.
 */
async function getDocument(base: URL, opts: ImdsOptions, signal?: AbortSignal): Promise<string> {
  const timeoutMs = opts.timeoutMs ?? 1000;
  const retries = opts.retries ?? 3;
  let tokens = true;
  for (let attempt = 0;; attempt++) {
    try {
      let token: string | undefined;
      if (tokens) {
        try {
          const r = await call(
            base,
            "PUT",
            "latest/api/token",
            {
              "x-aws-ec2-metadata-token-ttl-seconds": String(TOKEN_TTL_S),
            },
            timeoutMs,
            signal,
          );
          if (r.status === 200 && r.body !== "") token = r.body;
          else if ([403, 404, 405].includes(r.status)) tokens = false;
        } catch (err) {
          if (signal?.aborted) throw err;
          if (err instanceof ImdsTimeoutError) tokens = false;
          // Anything else: try IMDSv1 for this attempt, a token again on the next.
        }
      }
      const headers: Record<string, string> = token ? { "x-aws-ec2-metadata-token": token } : {};
      const r = await call(base, "GET", DOCUMENT, headers, timeoutMs, signal);
      if (r.status === 200) return r.body;
      throw new ImdsStatusError(r.status, `GET /${DOCUMENT}`);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const final = err instanceof ImdsStatusError && [400, 403, 404].includes(err.status);
      if (final || attempt >= retries) throw err;
    }
    await sleep(200 * 2 ** attempt, signal);
  }
}

/** One request with a deadline covering connect, answer and body; cancelled by `signal`. */
function call(
  base: URL,
  method: string,
  path: string,
  headers: Record<string, string>,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Reply> {
  signal?.throwIfAborted();
  // No leading slash in `path`: it joins the endpoint's own path ("/" or a prefix).
  const url = new URL(path, base.href.endsWith("/") ? base : `${base.href}/`);
  return new Promise<Reply>((resolve, reject) => {
    const req = httpRequest(url, { method, headers, agent: false });
    let done = false;
    const finish = (err: unknown, reply?: Reply) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      req.destroy();
      if (err === undefined) resolve(reply!);
      else reject(err);
    };
    const onAbort = () => finish(signal!.reason);
    const timer = setTimeout(
      () => finish(new ImdsTimeoutError(`${method} /${path}`, timeoutMs)),
      timeoutMs,
    );
    signal?.addEventListener("abort", onAbort, { once: true });
    req.on("error", (err) => finish(err));
    req.on("response", (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("error", (err) => finish(err));
      res.on("end", () => {
        const body = new TextDecoder().decode(concat(chunks));
        finish(undefined, { status: res.statusCode ?? 0, body });
      });
    });
    req.end();
  });
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
