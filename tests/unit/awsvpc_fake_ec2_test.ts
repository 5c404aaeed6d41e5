/**
 * The fake EC2 itself: raw HTTP requests check that it refuses unsigned or malformed SigV4
 * requests with the real error document and status, and answers in the 2016-11-15 namespace.
 */

import assert from "node:assert/strict";
import { FakeEc2 } from "../fake_ec2/server.ts";
import { defaultState, TEST_ACCESS_KEY_ID } from "../fake_ec2/state.ts";
import { parseAuthorization } from "../fake_ec2/sigv4.ts";

async function withFake(fn: (url: string, fake: FakeEc2) => Promise<void>): Promise<void> {
  const fake = new FakeEc2(
    defaultState([{ instanceId: "i-0aaaaaaaaaaaaaaa1", privateIp: "10.0.1.10" }]),
  );
  const ac = new AbortController();
  const server = fake.serve({ signal: ac.signal });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/`, fake);
  } finally {
    ac.abort();
    await server.finished;
  }
}

const BODY = "Action=DescribeRouteTables&Version=2016-11-15";
/** Now as x-amz-date (`20261127T180102Z`) and its day: the fake refuses stale signatures. */
const AMZ_DATE = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
const DAY = AMZ_DATE.slice(0, 8);
const ZEROS = "0".repeat(64);
const FORM = { "content-type": "application/x-www-form-urlencoded" };

Deno.test("the fake refuses EC2 requests without a well-formed SigV4 Authorization header", async (t) => {
  await withFake(async (url, fake) => {
    const rows: [string, Record<string, string>, number, string][] = [
      ["no Authorization header", {}, 401, "MissingAuthenticationToken"],
      ["not SigV4", { authorization: "Basic Zm9vOmJhcg==" }, 400, "IncompleteSignature"],
      [
        "signature not 64 hex digits",
        {
          authorization:
            `AWS4-HMAC-SHA256 Credential=${TEST_ACCESS_KEY_ID}/${DAY}/eu-west-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc`,
          "x-amz-date": AMZ_DATE,
        },
        400,
        "IncompleteSignature",
      ],
      [
        "x-amz-date missing",
        {
          authorization:
            `AWS4-HMAC-SHA256 Credential=${TEST_ACCESS_KEY_ID}/${DAY}/eu-west-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=${
              "0".repeat(64)
            }`,
        },
        400,
        "IncompleteSignature",
      ],
      [
        "well-formed but wrong signature",
        {
          authorization:
            `AWS4-HMAC-SHA256 Credential=${TEST_ACCESS_KEY_ID}/${DAY}/eu-west-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=${
              "0".repeat(64)
            }`,
          "x-amz-date": AMZ_DATE,
        },
        403,
        "SignatureDoesNotMatch",
      ],
      [
        "signed more than 15 minutes ago",
        {
          authorization:
            `AWS4-HMAC-SHA256 Credential=${TEST_ACCESS_KEY_ID}/20200101/eu-west-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=${ZEROS}`,
          "x-amz-date": "20200101T000000Z",
        },
        400,
        "RequestExpired",
      ],
      [
        "payload hash does not match the body",
        {
          authorization:
            `AWS4-HMAC-SHA256 Credential=${TEST_ACCESS_KEY_ID}/${DAY}/eu-west-1/ec2/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=${ZEROS}`,
          "x-amz-date": AMZ_DATE,
          "x-amz-content-sha256": ZEROS,
        },
        400,
        "XAmzContentSHA256Mismatch",
      ],
      [
        "unknown access key",
        {
          authorization:
            `AWS4-HMAC-SHA256 Credential=AKIANOTKNOWN/${DAY}/eu-west-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=${
              "0".repeat(64)
            }`,
          "x-amz-date": AMZ_DATE,
        },
        401,
        "AuthFailure",
      ],
    ];
    for (const [name, headers, status, code] of rows) {
      await t.step(name, async () => {
        const res = await fetch(url, {
          method: "POST",
          headers: { ...FORM, ...headers },
          body: BODY,
        });
        const xml = await res.text();
        assert.equal(res.status, status);
        assert.match(
          xml,
          new RegExp(
            `^<\\?xml version="1.0" encoding="UTF-8"\\?>\\n<Response><Errors><Error><Code>${code}</Code><Message>[^<]+</Message></Error></Errors><RequestID>[0-9a-f-]{36}</RequestID></Response>$`,
          ),
        );
      });
    }
    assert.equal(fake.state.routeTables[1].routes.length, 1);
  });
});

Deno.test("parseAuthorization() splits a SigV4 header into its parts", () => {
  const sig = "70f1bebd121abd8e3bc061b28120b704159c601ad2d16794eff4892c91b65d66";
  assert.deepEqual(
    parseAuthorization(
      `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/eu-west-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=${sig}`,
    ),
    {
      accessKeyId: "AKIDEXAMPLE",
      date: "20261127",
      region: "eu-west-1",
      service: "ec2",
      signedHeaders: ["content-type", "host", "x-amz-date"],
      signature: sig,
    },
  );
  assert.equal(parseAuthorization("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE"), null);
});

Deno.test("the fake IMDS serves the meta-data paths with an IMDSv2 token", async () => {
  await withFake(async (url, fake) => {
    const base = url.replace(/\/$/, "");
    const tokenRes = await fetch(`${base}/latest/api/token`, {
      method: "PUT",
      headers: { "x-aws-ec2-metadata-token-ttl-seconds": "21600" },
    });
    const token = await tokenRes.text();
    assert.equal(tokenRes.status, 200);
    const get = async (path: string, t: string | null = token) => {
      const res = await fetch(`${base}/latest/${path}`, {
        headers: t === null ? {} : { "x-aws-ec2-metadata-token": t },
      });
      return [res.status, await res.text()];
    };
    const mac = "02:00:00:00:00:01";
    assert.deepEqual(await get("meta-data/instance-id"), [200, "i-0aaaaaaaaaaaaaaa1"]);
    assert.deepEqual(await get("meta-data/placement/region"), [200, "eu-west-1"]);
    assert.deepEqual(await get("meta-data/mac"), [200, mac]);
    assert.deepEqual(
      await get(`meta-data/network/interfaces/macs/${mac}/subnet-id`),
      [200, "subnet-0aa0000000000001"],
    );
    assert.deepEqual(
      await get(`meta-data/network/interfaces/macs/${mac}/vpc-id`),
      [200, "vpc-0ff0000000000001"],
    );
    assert.deepEqual(await get("meta-data/no-such-path"), [404, "Not Found\n"]);
    assert.deepEqual(await get("meta-data/instance-id", "forged"), [401, ""]);
    fake.state.faults.imdsTokenRequired = true;
    assert.deepEqual(await get("meta-data/instance-id", null), [401, ""]);
  });
});
