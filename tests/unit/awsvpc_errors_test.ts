/** The aws-vpc error table and retry classification (lib/backend/awsvpc/errors.ts). */

import assert from "node:assert/strict";
import {
  awsErrorCode,
  AwsVpcError,
  describeAwsError,
  isRetryable,
} from "../../lib/backend/awsvpc/errors.ts";
import { errText } from "../../lib/log.ts";

/** An error shaped like the SDK's ServiceException (`name` = EC2 code, HTTP status). */
function sdkError(code: string, status: number | undefined, message = "AWS says no"): Error {
  const e = new Error(message);
  e.name = code;
  if (status !== undefined) Object.assign(e, { $metadata: { httpStatusCode: status } });
  return e;
}

Deno.test("isRetryable() retries throttling, 5xx and no-answer, nothing else", async (t) => {
  const rows: [string, Error, boolean][] = [
    ["RequestLimitExceeded 503", sdkError("RequestLimitExceeded", 503), true],
    ["Throttling 400", sdkError("Throttling", 400), true],
    ["InternalError 500", sdkError("InternalError", 500), true],
    ["Unavailable 503", sdkError("Unavailable", 503), true],
    ["connection refused (no $metadata)", sdkError("Error", undefined), true],
    ["RouteLimitExceeded 400", sdkError("RouteLimitExceeded", 400), false],
    ["UnauthorizedOperation 403", sdkError("UnauthorizedOperation", 403), false],
    ["AuthFailure 401", sdkError("AuthFailure", 401), false],
    ["AbortError", sdkError("AbortError", undefined), false],
    ["no credentials", sdkError("CredentialsProviderError", undefined), false],
  ];
  for (const [name, err, want] of rows) {
    await t.step(name, () => assert.equal(isRetryable(err), want));
  }
});

Deno.test("describeAwsError() gives the code and what it means for the user", () => {
  assert.equal(
    describeAwsError(sdkError("RouteLimitExceeded", 400)),
    "RouteLimitExceeded: the route table holds its maximum of 50 routes; ask AWS for more or use vxlan",
  );
  assert.equal(describeAwsError(sdkError("SomethingNew", 400)), "SomethingNew");
  assert.equal(describeAwsError(sdkError("Error", undefined)), "no answer from EC2");
  assert.equal(awsErrorCode(sdkError("Error", undefined)), null);
});

Deno.test("AwsVpcError is one line: what, code, meaning, then AWS's own message", () => {
  const err = new AwsVpcError(
    "CreateRoute 10.1.15.0/24 → i-0aaaaaaaaaaaaaaa1 in rtb-0bb00000000000002",
    sdkError("UnauthorizedOperation", 403, "You are not authorized to perform this operation."),
  );
  assert.equal(err.code, "UnauthorizedOperation");
  const line = errText(err);
  assert.ok(!line.includes("\n"));
  assert.match(
    line,
    /^CreateRoute 10\.1\.15\.0\/24 → i-0aaaaaaaaaaaaaaa1 in rtb-0bb00000000000002 failed: UnauthorizedOperation: the credentials are not allowed this call; .*: You are not authorized to perform this operation\.$/,
  );
});
