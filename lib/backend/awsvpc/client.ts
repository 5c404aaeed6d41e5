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

/** An EC2 client for `region` (`AWS_REGION` wins over the IMDS region, as in the SDK). */
export function ec2Client(region: string, env: Record<string, string | undefined>): EC2Client {
  return new EC2Client({
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || region,
    credentials: credentialProvider(env),
    maxAttempts: 1,
  });
}
