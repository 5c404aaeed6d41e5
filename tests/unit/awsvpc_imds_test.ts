/**
 * readInstanceIdentity() (lib/backend/awsvpc/imds.ts) against
 * the fake IMDS: IMDSv2 token first, IMDSv1 fallback, token required, and no IMDS at all.
 */

import assert from "node:assert/strict";
import { NotEc2Error, readInstanceIdentity } from "../../lib/backend/awsvpc/imds.ts";
import { FakeEc2 } from "../fake_ec2/server.ts";
import { defaultState, type FakeFaults } from "../fake_ec2/state.ts";

async function withImds(
  faults: Partial<FakeFaults>,
  fn: (endpoint: string, fake: FakeEc2) => Promise<void>,
): Promise<void> {
  const fake = new FakeEc2(
    defaultState([{ instanceId: "i-0aaaaaaaaaaaaaaa1", privateIp: "10.0.1.10" }]),
  );
  Object.assign(fake.state.faults, faults);
  const ac = new AbortController();
  const server = fake.serve({ signal: ac.signal });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, fake);
  } finally {
    ac.abort();
    await server.finished;
  }
}

const EXPECTED = {
  instanceId: "i-0aaaaaaaaaaaaaaa1",
  region: "eu-west-1",
  availabilityZone: "eu-west-1a",
  privateIp: "10.0.1.10",
};

Deno.test("readInstanceIdentity() gets an IMDSv2 token and then the identity document", async () => {
  await withImds({}, async (endpoint, fake) => {
    assert.deepEqual(await readInstanceIdentity({ endpoint }), EXPECTED);
    assert.deepEqual(fake.imdsRequests, [
      "PUT /latest/api/token 200",
      "GET /latest/dynamic/instance-identity/document 200 +token",
    ]);
  });
});

Deno.test("readInstanceIdentity() falls back to IMDSv1 when the token request is refused", async () => {
  await withImds({ imdsV1Only: true }, async (endpoint, fake) => {
    assert.deepEqual(await readInstanceIdentity({ endpoint }), EXPECTED);
    assert.deepEqual(fake.imdsRequests, [
      "PUT /latest/api/token 404",
      "GET /latest/dynamic/instance-identity/document 200",
    ]);
  });
});

Deno.test("readInstanceIdentity() works when IMDS requires tokens (HttpTokens=required)", async () => {
  await withImds({ imdsTokenRequired: true }, async (endpoint) => {
    assert.deepEqual(await readInstanceIdentity({ endpoint }), EXPECTED);
  });
});

Deno.test("readInstanceIdentity() honours AWS_EC2_METADATA_SERVICE_ENDPOINT", async () => {
  await withImds({}, async (endpoint) => {
    const prev = Deno.env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    Deno.env.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint);
    try {
      assert.deepEqual(await readInstanceIdentity(), EXPECTED);
    } finally {
      if (prev === undefined) Deno.env.delete("AWS_EC2_METADATA_SERVICE_ENDPOINT");
      else Deno.env.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", prev);
    }
  });
});

Deno.test("readInstanceIdentity() says the host does not look like EC2 when IMDS is down", async (t) => {
  await t.step("IMDS never answers (timeouts)", async () => {
    await withImds({ imdsDown: true }, async (endpoint) => {
      const err = await readInstanceIdentity({ endpoint, timeoutMs: 200, retries: 1 }).then(
        () => assert.fail("resolved"),
        (e) => e,
      );
      assert.ok(err instanceof NotEc2Error);
      assert.match(err.message, /this host does not look like an EC2 instance/);
    });
  });
  await t.step("nothing listens (connection refused)", async () => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const err = await readInstanceIdentity({
      endpoint: `http://127.0.0.1:${port}`,
      timeoutMs: 200,
      retries: 1,
    }).then(() => assert.fail("resolved"), (e) => e);
    assert.ok(err instanceof NotEc2Error);
    assert.match(
      err.message,
      /^Cannot read the instance identity from the EC2 metadata service at http:\/\/127\.0\.0\.1:\d+: this host does not look like an EC2 instance/,
    );
  });
});

Deno.test("readInstanceIdentity() ends at once with the abort reason, its timers cleared", async () => {
  await withImds({ imdsDown: true }, async (endpoint) => {
    const ac = new AbortController();
    const t0 = performance.now();
    const p = readInstanceIdentity({ endpoint, timeoutMs: 5_000, retries: 3 }, ac.signal);
    setTimeout(() => ac.abort(new Error("stop")), 100);
    await assert.rejects(p, /^Error: stop$/);
    // The sanitizers fail this test if a request timer or a backoff sleep outlived the abort.
    assert.ok(performance.now() - t0 < 2_000, "aborted promptly");
  });
});
