/**
 * SigV4 checking for the fake EC2: the structure of the `Authorization` header, the `x-amz-date`
 * header (present, matching the scope date, within 15 minutes of now), the payload hash, and the
 * signature itself, recomputed with the access key's secret the way AWS does it (canonical request
 * → string to sign → HMAC chain).
 */

import { createHash, createHmac } from "node:crypto";

/** The parts of a well-formed `AWS4-HMAC-SHA256` Authorization header. */
export interface SigV4Auth {
  readonly accessKeyId: string;
  readonly date: string;
  readonly region: string;
  readonly service: string;
  readonly signedHeaders: string[];
  readonly signature: string;
}

/** Why a request was refused: an EC2 error code, HTTP status and message. */
export interface AuthRejection {
  readonly code: string;
  readonly status: number;
  readonly message: string;
}

const AUTH_RE =
  /^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;
const AMZ_DATE_RE = /^(\d{8})T\d{6}Z$/;

/** Parses the Authorization header; null when it is not a well-formed SigV4 header. */
export function parseAuthorization(header: string): SigV4Auth | null {
  const m = AUTH_RE.exec(header);
  if (!m) return null;
  return {
    accessKeyId: m[1],
    date: m[2],
    region: m[3],
    service: m[4],
    signedHeaders: m[5].split(";"),
    signature: m[6],
  };
}

function sha256hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function hmac(key: string | Uint8Array, data: string): Uint8Array {
  return createHmac("sha256", key).update(data).digest();
}

/** The SigV4 signature of a request with an empty query string, as AWS computes it. */
export function computeSignature(
  secret: string,
  auth: SigV4Auth,
  method: string,
  path: string,
  headers: Headers,
  body: Uint8Array,
): string {
  const canonicalHeaders = auth.signedHeaders
    .map((h) => `${h}:${(headers.get(h) ?? "").trim().replace(/\s+/g, " ")}\n`)
    .join("");
  const payloadHash = headers.get("x-amz-content-sha256") ?? sha256hex(body);
  const canonicalRequest = [
    method,
    path,
    "",
    canonicalHeaders,
    auth.signedHeaders.join(";"),
    payloadHash,
  ].join("\n");
  const scope = `${auth.date}/${auth.region}/${auth.service}/aws4_request`;
  const stringToSign = [
    "AWS4-HMAC-SHA256",
    headers.get("x-amz-date") ?? "",
    scope,
    sha256hex(canonicalRequest),
  ].join("\n");
  let key = hmac(`AWS4${secret}`, auth.date);
  key = hmac(key, auth.region);
  key = hmac(key, auth.service);
  key = hmac(key, "aws4_request");
  return createHmac("sha256", key).update(stringToSign).digest("hex");
}

/**
 * Checks a request's SigV4 authentication. `secrets` maps access key ids to secrets; an unknown
 * key id is refused as AWS does (AuthFailure). Returns the parsed header, or why it is refused.
 */
export function checkSigV4(
  method: string,
  path: string,
  headers: Headers,
  body: Uint8Array,
  secrets: Record<string, string>,
): SigV4Auth | AuthRejection {
  const header = headers.get("authorization");
  if (!header) {
    return {
      code: "MissingAuthenticationToken",
      status: 401,
      message: "Request is missing Authentication Token",
    };
  }
  const auth = parseAuthorization(header);
  if (!auth || auth.service !== "ec2") {
    return {
      code: "IncompleteSignature",
      status: 400,
      message:
        `Authorization header is not a well-formed AWS4-HMAC-SHA256 header for ec2: ${header}`,
    };
  }
  const amzDate = headers.get("x-amz-date") ?? "";
  const dm = AMZ_DATE_RE.exec(amzDate);
  if (!dm || dm[1] !== auth.date) {
    return {
      code: "IncompleteSignature",
      status: 400,
      message: `The x-amz-date header ${
        JSON.stringify(amzDate)
      } is missing or does not match the credential scope date`,
    };
  }
  for (const h of ["host", "x-amz-date"]) {
    if (!auth.signedHeaders.includes(h)) {
      return {
        code: "IncompleteSignature",
        status: 400,
        message: `SignedHeaders does not include ${h}`,
      };
    }
  }
  const signedAt = Date.UTC(
    Number(amzDate.slice(0, 4)),
    Number(amzDate.slice(4, 6)) - 1,
    Number(amzDate.slice(6, 8)),
    Number(amzDate.slice(9, 11)),
    Number(amzDate.slice(11, 13)),
    Number(amzDate.slice(13, 15)),
  );
  if (Math.abs(Date.now() - signedAt) > 15 * 60_000) {
    return {
      code: "RequestExpired",
      status: 400,
      message: `Request has expired. Timestamp date is ${amzDate}`,
    };
  }
  const claimed = headers.get("x-amz-content-sha256");
  if (claimed !== null && claimed !== sha256hex(body)) {
    return {
      code: "XAmzContentSHA256Mismatch",
      status: 400,
      message: "The provided 'x-amz-content-sha256' header does not match what was computed",
    };
  }
  const secret = secrets[auth.accessKeyId];
  if (secret === undefined) {
    return {
      code: "AuthFailure",
      status: 401,
      message: "AWS was not able to validate the provided access credentials",
    };
  }
  const expected = computeSignature(secret, auth, method, path, headers, body);
  if (expected !== auth.signature) {
    return {
      code: "SignatureDoesNotMatch",
      status: 403,
      message:
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method",
    };
  }
  return auth;
}
