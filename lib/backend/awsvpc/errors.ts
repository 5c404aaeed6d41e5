/**
 * AWS error codes → one line a user can act on, and which errors are worth retrying.
 *
 * The SDK raises a `ServiceException` whose `name` is the EC2 error code and whose `$metadata`
 * holds the HTTP status; a failure before any answer (connection refused, timeout) has no
 * `$metadata` and counts as transient.
 */

/** What each EC2 error code means for a flannel user. */
export const AWS_ERROR_MEANINGS: Readonly<Record<string, string>> = {
  RouteLimitExceeded:
    "the route table holds its maximum of 50 routes; ask AWS for more or use vxlan",
  UnauthorizedOperation:
    "the credentials are not allowed this call; the IAM policy needs ec2:DescribeInstances, ec2:DescribeRouteTables, ec2:CreateRoute, ec2:ReplaceRoute, ec2:DeleteRoute and ec2:ModifyInstanceAttribute",
  AuthFailure:
    "AWS did not accept the credentials; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the instance role",
  InvalidClientTokenId:
    "AWS does not know this access key id; check AWS_ACCESS_KEY_ID or the instance role",
  SignatureDoesNotMatch:
    "the secret access key does not belong to the access key id; check AWS_SECRET_ACCESS_KEY",
  MissingAuthenticationToken: "no credentials were sent; set AWS_ACCESS_KEY_ID or attach a role",
  ExpiredToken: "the session token has expired; renew AWS_SESSION_TOKEN or use the instance role",
  RequestExpired: "the request was signed too long ago; check the host's clock",
  "InvalidRouteTableID.NotFound":
    "there is no such route table in this region; fix RouteTableID in the network config",
  "InvalidRouteTableID.Malformed": "RouteTableID in the network config is not a route table id",
  "InvalidInstanceID.NotFound":
    "EC2 does not know this instance in this region; check the region (AWS_REGION) and IMDS",
  IncorrectInstanceState: "the instance is not running, so it cannot be a route target",
  "InvalidRoute.NotFound": "the route does not exist",
  RouteAlreadyExists: "a route for this destination already exists",
  RequestLimitExceeded: "EC2 is throttling this account's API calls",
  Throttling: "EC2 is throttling this account's API calls",
  InternalError: "EC2 had an internal error",
  Unavailable: "EC2 is temporarily unavailable",
  ServiceUnavailable: "EC2 is temporarily unavailable",
};

/** The SDK's error when the whole credential chain came up empty (nothing was sent). */
const NO_CREDENTIALS = "CredentialsProviderError";

const THROTTLING = new Set(["RequestLimitExceeded", "Throttling", "ThrottlingException"]);

interface SdkErrorShape {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** The EC2 error code of an SDK error; null when no AWS answer came back. */
export function awsErrorCode(err: unknown): string | null {
  const e = err as SdkErrorShape | null;
  if (!e || typeof e !== "object" || e.$metadata?.httpStatusCode === undefined) return null;
  return e.name ?? null;
}

/** True for throttling, 5xx answers and failures before any answer (network, timeout). */
export function isRetryable(err: unknown): boolean {
  const e = err as SdkErrorShape | null;
  if (!e || typeof e !== "object") return false;
  if (e.name === "AbortError" || e.name === NO_CREDENTIALS) return false;
  const status = e.$metadata?.httpStatusCode;
  if (status === undefined) return true;
  return THROTTLING.has(e.name ?? "") || status >= 500;
}

/**
 * `Code: meaning` for an SDK error; just the code when the table has no meaning for it,
 * `no AWS credentials: …` when the credential chain found none, and `no answer from EC2` when
 * none came back (AWS's or the SDK's own message is in the error's cause).
 */
export function describeAwsError(err: unknown): string {
  const code = awsErrorCode(err);
  if ((err as SdkErrorShape | null)?.name === NO_CREDENTIALS) {
    return "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or attach an instance role";
  }
  if (code === null) return "no answer from EC2";
  const meaning = AWS_ERROR_MEANINGS[code];
  return meaning ? `${code}: ${meaning}` : code;
}

/**
 * An EC2 call that failed: `<what> failed: <Code>: <meaning>`, with the SDK error as `cause`
 * (so `errText` appends AWS's own message). `code` is the EC2 error code, null when EC2 never
 * answered.
 */
export class AwsVpcError extends Error {
  readonly code: string | null;
  constructor(what: string, cause: unknown) {
    super(`${what} failed: ${describeAwsError(cause)}`, { cause });
    this.name = "AwsVpcError";
    this.code = awsErrorCode(cause);
  }
}
