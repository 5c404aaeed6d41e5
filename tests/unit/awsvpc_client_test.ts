/**
 * ec2Client() (lib/backend/awsvpc/client.ts): the endpoint variables the pinned SDK honours, the
 * region choice, and which session token is sent — checked on what reaches the fake EC2.
 */

import assert from "node:assert/strict";
import { DescribeRouteTablesCommand } from "@aws-sdk/client-ec2";
import { ec2Client } from "../../lib/backend/awsvpc/client.ts";
import { isRetryable } from "../../lib/backend/awsvpc/errors.ts";
import { FakeEc2 } from "../fake_ec2/server.ts";
import { defaultState, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY } from "../fake_ec2/state.ts";

const VARS = [
  "AWS_ENDPOINT_URL",
  "AWS_ENDPOINT_URL_EC2",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_SECURITY_TOKEN",
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
];

/** Sends one DescribeRouteTables with `vars` as the whole AWS environment; returns the fake. */
async function oneCall(vars: (url: string) => Record<string, string>): Promise<FakeEc2> {
  const fake = new FakeEc2(
    defaultState([{ instanceId: "i-0aaaaaaaaaaaaaaa1", privateIp: "10.0.1.10" }]),
  );
  const ac = new AbortController();
  const server = fake.serve({ signal: ac.signal });
  const saved = new Map(VARS.map((k) => [k, Deno.env.get(k)]));
  const env: Record<string, string> = {
    AWS_ACCESS_KEY_ID: TEST_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: TEST_SECRET_ACCESS_KEY,
    ...vars(`http://127.0.0.1:${server.addr.port}`),
  };
  for (const k of VARS) {
    if (env[k]) Deno.env.set(k, env[k]);
    else Deno.env.delete(k);
  }
  const client = ec2Client("eu-west-1", Deno.env.toObject());
  try {
    await client.send(new DescribeRouteTablesCommand({}));
  } finally {
    client.destroy();
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    ac.abort();
    await server.finished;
  }
  return fake;
}

Deno.test("ec2Client() reaches the endpoint in AWS_ENDPOINT_URL_EC2 or AWS_ENDPOINT_URL", async (t) => {
  for (const name of ["AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL"]) {
    await t.step(name, async () => {
      const fake = await oneCall((url) => ({ [name]: url }));
      assert.deepEqual(fake.calls.map((c) => [c.action, c.error]), [["DescribeRouteTables", null]]);
    });
  }
});

Deno.test("ec2Client() signs for the IMDS region unless AWS_REGION is set", async (t) => {
  await t.step("IMDS region", async () => {
    const fake = await oneCall((url) => ({ AWS_ENDPOINT_URL_EC2: url }));
    assert.equal(fake.calls[0].region, "eu-west-1");
  });
  await t.step("AWS_REGION", async () => {
    const fake = await oneCall((url) => ({ AWS_ENDPOINT_URL_EC2: url, AWS_REGION: "us-east-2" }));
    assert.equal(fake.calls[0].region, "us-east-2");
  });
});

Deno.test("ec2Client() sends AWS_SESSION_TOKEN, else AWS_SECURITY_TOKEN, else no token", async (t) => {
  const rows: [string, Record<string, string>, string | null][] = [
    ["none", {}, null],
    ["AWS_SECURITY_TOKEN only", { AWS_SECURITY_TOKEN: "legacy" }, "legacy"],
    [
      "both: AWS_SESSION_TOKEN wins",
      { AWS_SECURITY_TOKEN: "legacy", AWS_SESSION_TOKEN: "new" },
      "new",
    ],
  ];
  for (const [name, vars, token] of rows) {
    await t.step(name, async () => {
      const fake = await oneCall((url) => ({ AWS_ENDPOINT_URL_EC2: url, ...vars }));
      assert.equal(fake.calls[0].sessionToken, token);
    });
  }
});

Deno.test("ec2Client() gives up on an EC2 endpoint that never answers (retryable TimeoutError)", async () => {
  // Accepts the request and never answers, as a half-open connection or a hung proxy would.
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    () =>
      new Promise<Response>((resolve) => {
        ac.signal.addEventListener("abort", () => resolve(new Response(null, { status: 504 })), {
          once: true,
        });
      }),
  );
  // The SDK reads the endpoint and the credential chain from the process environment.
  const saved = new Map(VARS.map((k) => [k, Deno.env.get(k)]));
  for (const k of VARS) Deno.env.delete(k);
  Deno.env.set("AWS_ENDPOINT_URL_EC2", `http://127.0.0.1:${server.addr.port}`);
  Deno.env.set("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID);
  Deno.env.set("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY);
  const client = ec2Client("eu-west-1", Deno.env.toObject(), { requestMs: 300, connectMs: 300 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const outcome = await Promise.race([
      client.send(new DescribeRouteTablesCommand({})).then(
        () => "answered",
        (err: Error) => err,
      ),
      new Promise<string>((r) => timer = setTimeout(() => r("still waiting after 3 s"), 3000)),
    ]);
    assert.ok(outcome instanceof Error, String(outcome));
    assert.equal(outcome.name, "TimeoutError");
    assert.ok(isRetryable(outcome), "a timeout is retried like a network failure");
  } finally {
    clearTimeout(timer);
    client.destroy();
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    ac.abort();
    await server.finished;
  }
});
