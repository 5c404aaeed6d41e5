/**
 * The EC2 client: the SDK's standard credential chain plus the legacy `AWS_SECURITY_TOKEN`.
 *
 * Endpoints: the SDK itself honours `AWS_ENDPOINT_URL_EC2` and then `AWS_ENDPOINT_URL` (checked
 * with the pinned @aws-sdk/client-ec2 3.1169.0). Retries are ours (ec2.ts), so the client makes
 * one attempt per call.
 */

import { EC2Client } from "@aws-sdk/client-ec2";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";

/** A function that resolves AWS credentials, as the SDK's client config takes it. */
export type CredentialProvider = ReturnType<typeof fromNodeProviderChain>;

/**
 * The credential provider: the SDK's chain (environment, shared files, SSO, web identity, ECS,
 * instance role), except that a key pair from the environment with only `AWS_SECURITY_TOKEN` (the
 * name flannel v0.4 documented) uses it as the session token, which the SDK no longer reads.
 */
export function credentialProvider(
  env: Record<string, string | undefined>,
): CredentialProvider {
  const { AWS_ACCESS_KEY_ID: id, AWS_SECRET_ACCESS_KEY: secret } = env;
  const legacyToken = env.AWS_SECURITY_TOKEN;
  if (id && secret && legacyToken && !env.AWS_SESSION_TOKEN) {
    const creds = {
      accessKeyId: id,
      secretAccessKey: secret,
      sessionToken: legacyToken,
    };
    return () => Promise.resolve(creds);
  }
  return fromNodeProviderChain();
}

/** Per-call limits of the EC2 client, in milliseconds. */
export interface Ec2Timeouts {
  /** TCP connect, default 5 000. */
  readonly connectMs?: number;
  /** The whole request until the answer, default 30 000. */
  readonly requestMs?: number;
}

/**
 * An EC2 client for `region` (`AWS_REGION` wins over the IMDS region, as in the SDK).
 *
 * The SDK's HTTP handler has no timeout by default: one call to an endpoint that never answers
 * (a half-open connection, a hung proxy) would stall the backend's retries for good. A timeout
 * fails the call with a `TimeoutError`, which ec2.ts retries like any network failure.
 */
export function ec2Client(
  region: string,
  env: Record<string, string | undefined>,
  timeouts: Ec2Timeouts = {},
): EC2Client {
  return new EC2Client({
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || region,
    credentials: credentialProvider(env),
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: timeouts.connectMs ?? 5_000,
      requestTimeout: timeouts.requestMs ?? 30_000,
      throwOnRequestTimeout: true,
    },
  });
}
