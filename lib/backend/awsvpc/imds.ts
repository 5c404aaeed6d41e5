/**
 * The instance metadata service: who and where this instance is.
 *
 * Uses the SDK's `MetadataService`, which asks for an IMDSv2 token first and falls back to IMDSv1
 * when the token request is refused (403/404/405) or times out, and which honours
 * `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
 */

import { MetadataService } from "@aws-sdk/ec2-metadata-service";

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
 * the abort reason when `signal` aborts (the SDK request itself cannot be cancelled and ends on
 * its own timeout).
 */
export async function readInstanceIdentity(
  opts: ImdsOptions = {},
  signal?: AbortSignal,
): Promise<InstanceIdentity> {
  const endpoint = opts.endpoint ?? Deno.env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") ??
    "http://169.254.169.254";
  const imds = new MetadataService({
    endpoint,
    httpOptions: { timeout: opts.timeoutMs ?? 1000 },
    retries: opts.retries ?? 3,
    backoff: (n: number) => 0.2 * 2 ** n,
  });
  let text: string;
  try {
    // No leading slash: the SDK joins the endpoint's path ("/") and this one.
    text = await abortable(imds.request("latest/dynamic/instance-identity/document", {}), signal);
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

/** `p`, or a rejection with the abort reason as soon as `signal` aborts. */
function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
