/**
 * VpcRoutes (lib/backend/awsvpc/ec2.ts) against the fake EC2 over real HTTP with the real SDK:
 * route-table choice, ensure own route, departed-route deletion, error lines and retries.
 */

import assert from "node:assert/strict";
import { EC2Client } from "@aws-sdk/client-ec2";
import { VpcRoutes } from "../../lib/backend/awsvpc/ec2.ts";
import { AwsVpcError } from "../../lib/backend/awsvpc/errors.ts";
import { type IPNet, parseCIDR } from "../../lib/ip.ts";
import { Logger, setSink } from "../../lib/log.ts";
import { FakeEc2 } from "../fake_ec2/server.ts";
import {
  defaultState,
  type FakeRouteTable,
  TEST_ACCESS_KEY_ID,
  TEST_SECRET_ACCESS_KEY,
} from "../fake_ec2/state.ts";

const SELF = "i-0aaaaaaaaaaaaaaa1";
const PEER = "i-0bbbbbbbbbbbbbbb2";
const NETWORK = parseCIDR("10.1.0.0/16") as IPNet;

interface Env {
  fake: FakeEc2;
  routes: VpcRoutes;
  logs: string[];
  table(id: string): FakeRouteTable;
}

async function withFake(fn: (env: Env) => Promise<void>, secret = TEST_SECRET_ACCESS_KEY) {
  const fake = new FakeEc2(
    defaultState([{ instanceId: SELF, privateIp: "10.0.1.10" }, {
      instanceId: PEER,
      privateIp: "10.0.1.11",
    }]),
  );
  const ac = new AbortController();
  const server = fake.serve({ signal: ac.signal });
  const client = new EC2Client({
    region: "eu-west-1",
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    credentials: { accessKeyId: TEST_ACCESS_KEY_ID, secretAccessKey: secret },
    maxAttempts: 1,
  });
  const logs: string[] = [];
  const prev = setSink((l) => logs.push(l));
  try {
    const routes = new VpcRoutes({
      client,
      instanceId: SELF,
      network: NETWORK,
      subnetLen: 24,
      retry: { attempts: 4, baseMs: 10, capMs: 40 },
      log: new Logger("aws-vpc"),
    });
    await fn({
      fake,
      routes,
      logs,
      table: (id) => fake.state.routeTables.find((t) => t.routeTableId === id)!,
    });
  } finally {
    setSink(prev);
    client.destroy();
    ac.abort();
    await server.finished;
  }
}

const sig = () => new AbortController().signal;
function assertStringIncludes(s: string, part: string): void {
  assert.ok(s.includes(part), `${JSON.stringify(s)} lacks ${JSON.stringify(part)}`);
}

/** The error `fn` rejects with (fails when it resolves). */
async function assertRejects(fn: () => Promise<unknown>): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof Error);
    return err;
  }
  assert.fail("expected a rejection");
}

Deno.test("chooseRouteTable() takes RouteTableID, else the subnet's table, else the VPC main table", async (t) => {
  await withFake(async ({ fake, routes }) => {
    await t.step("configured", async () => {
      assert.deepEqual(
        await routes.chooseRouteTable("rtb-0aa00000000000001", sig()),
        "rtb-0aa00000000000001",
      );
    });
    await t.step("subnet association", async () => {
      assert.deepEqual(await routes.chooseRouteTable(null, sig()), "rtb-0bb00000000000002");
    });
    await t.step("main table when the subnet has none", async () => {
      fake.state.instances[0].subnetId = "subnet-0bb0000000000002";
      assert.deepEqual(await routes.chooseRouteTable(null, sig()), "rtb-0aa00000000000001");
    });
    await t.step("no subnet table and no main table → says to set RouteTableID", async () => {
      const saved = fake.state.routeTables;
      fake.state.routeTables = saved.filter((t) => !t.main);
      const err = await assertRejects(() => routes.chooseRouteTable(null, sig()));
      assert.equal(
        err.message,
        "Cannot choose a route table: neither subnet-0bb0000000000002 nor vpc-0ff0000000000001 has one; set RouteTableID",
      );
      fake.state.routeTables = saved;
    });
    await t.step("unknown RouteTableID is a clear error", async () => {
      const err = await assertRejects(() =>
        routes.chooseRouteTable("rtb-0dead00000000000ff", sig())
      );
      assert.ok(err instanceof AwsVpcError);
      assert.deepEqual(err.code, "InvalidRouteTableID.NotFound");
      assertStringIncludes(
        err.message,
        "DescribeRouteTables rtb-0dead00000000000ff failed: InvalidRouteTableID.NotFound: there is no such route table",
      );
    });
  });
});

Deno.test("disableSourceDestCheck() sends ModifyInstanceAttribute SourceDestCheck.Value=false", async () => {
  await withFake(async ({ fake, routes }) => {
    await routes.disableSourceDestCheck(sig());
    assert.deepEqual(fake.state.instances[0].sourceDestCheck, false);
    assert.deepEqual(fake.state.instances[1].sourceDestCheck, true);
    const call = fake.calls.find((c) => c.action === "ModifyInstanceAttribute")!;
    assert.deepEqual(call.params["SourceDestCheck.Value"], "false");
    assert.deepEqual(call.params.InstanceId, SELF);
  });
});

Deno.test("ensureRoute() creates, keeps, and replaces blackholes and foreign routes", async (t) => {
  await withFake(async ({ fake, routes, table }) => {
    await t.step("empty table → created", async () => {
      assert.deepEqual(
        await routes.ensureRoute("rtb-0bb00000000000002", "10.1.15.0/24", sig()),
        "created",
      );
      const r = table("rtb-0bb00000000000002").routes.find((r) =>
        r.destinationCidrBlock === "10.1.15.0/24"
      );
      assert.deepEqual(r?.instanceId, SELF);
    });
    await t.step("ours and active → present, no write", async () => {
      const before = fake.calls.length;
      assert.deepEqual(
        await routes.ensureRoute("rtb-0bb00000000000002", "10.1.15.0/24", sig()),
        "present",
      );
      assert.deepEqual(fake.calls.slice(before).map((c) => c.action), ["DescribeRouteTables"]);
    });
    await t.step("blackhole (dead instance) → replaced", async () => {
      table("rtb-0bb00000000000002").routes.push({
        destinationCidrBlock: "10.1.16.0/24",
        instanceId: "i-0dead000000000000",
        networkInterfaceId: "eni-0dead000000000000",
        origin: "CreateRoute",
      });
      assert.deepEqual(
        await routes.ensureRoute("rtb-0bb00000000000002", "10.1.16.0/24", sig()),
        "replaced",
      );
      const r = table("rtb-0bb00000000000002").routes.find((r) =>
        r.destinationCidrBlock === "10.1.16.0/24"
      );
      assert.deepEqual(r?.instanceId, SELF);
    });
    await t.step("another instance's route → replaced", async () => {
      table("rtb-0bb00000000000002").routes.push({
        destinationCidrBlock: "10.1.17.0/24",
        instanceId: PEER,
        origin: "CreateRoute",
      });
      assert.deepEqual(
        await routes.ensureRoute("rtb-0bb00000000000002", "10.1.17.0/24", sig()),
        "replaced",
      );
    });
  });
});

Deno.test("ensureRoute() fails on RouteLimitExceeded with the code and what it means", async () => {
  await withFake(async ({ fake, routes }) => {
    fake.state.faults.routeLimit = 0;
    const err = await assertRejects(() =>
      routes.ensureRoute("rtb-0bb00000000000002", "10.1.15.0/24", sig())
    );
    assert.ok(err instanceof AwsVpcError);
    assert.deepEqual(err.code, "RouteLimitExceeded");
    assert.deepEqual(
      err.message,
      `CreateRoute 10.1.15.0/24 → ${SELF} in rtb-0bb00000000000002 failed: RouteLimitExceeded: the route table holds its maximum of 50 routes; ask AWS for more or use vxlan`,
    );
  });
});

Deno.test("EC2 calls are retried with backoff on throttling and 5xx, not on client errors", async (t) => {
  await withFake(async ({ fake, routes, logs, table }) => {
    await t.step("RequestLimitExceeded twice, then success", async () => {
      fake.state.faults.throttle = 2;
      assert.deepEqual(
        await routes.ensureRoute("rtb-0bb00000000000002", "10.1.15.0/24", sig()),
        "created",
      );
      assert.deepEqual(fake.calls.filter((c) => c.error === "RequestLimitExceeded").length, 2);
      assert.deepEqual(logs.filter((l) => l.includes("RequestLimitExceeded")).length, 2);
      assertStringIncludes(logs[0], "retrying in 0.01s (attempt 2 of 4)");
      assert.ok(
        table("rtb-0bb00000000000002").routes.some((r) =>
          r.destinationCidrBlock === "10.1.15.0/24"
        ),
      );
    });
    await t.step("InternalError (500) once, then success", async () => {
      fake.state.faults.serverErrors = 1;
      assert.deepEqual(
        await routes.ensureRoute("rtb-0bb00000000000002", "10.1.16.0/24", sig()),
        "created",
      );
      assert.deepEqual(fake.calls.filter((c) => c.error === "InternalError").length, 1);
    });
    await t.step("throttled past the attempts → error", async () => {
      fake.state.faults.throttle = 10;
      const err = await assertRejects(() => routes.describeTable("rtb-0bb00000000000002", sig()));
      assert.ok(err instanceof AwsVpcError);
      assert.deepEqual(err.code, "RequestLimitExceeded");
      assert.deepEqual(fake.state.faults.throttle, 6);
      fake.state.faults.throttle = 0;
    });
    await t.step("UnauthorizedOperation is not retried", async () => {
      fake.state.faults.failAction = {
        action: "CreateRoute",
        code: "UnauthorizedOperation",
        status: 403,
        message: "You are not authorized to perform this operation.",
        count: 5,
      };
      const err = await assertRejects(() =>
        routes.ensureRoute("rtb-0bb00000000000002", "10.1.18.0/24", sig())
      );
      assert.deepEqual((err as AwsVpcError).code, "UnauthorizedOperation");
      assert.deepEqual(fake.state.faults.failAction!.count, 4);
      assertStringIncludes(
        (err as Error).message,
        "UnauthorizedOperation: the credentials are not allowed",
      );
    });
  });
});

Deno.test("deleteDepartedRoutes() deletes unleased overlay routes only", async () => {
  await withFake(async ({ fake, routes, table }) => {
    const t = table("rtb-0bb00000000000002");
    const add = (cidr: string, extra: Partial<FakeRouteTable["routes"][0]> = {}) =>
      t.routes.push({
        destinationCidrBlock: cidr,
        instanceId: PEER,
        origin: "CreateRoute",
        ...extra,
      });
    add("10.1.15.0/24", { instanceId: SELF }); // own
    add("10.1.20.0/24"); // leased peer
    add("10.1.21.0/24"); // departed peer
    add("10.1.22.0/24", { instanceId: "i-0dead000000000000" }); // departed, blackhole
    add("10.2.0.0/24"); // outside Network
    add("10.1.0.0/16"); // inside Network, not a subnet route
    add("0.0.0.0/0", { instanceId: undefined, gatewayId: "igw-0aa0000000000001" });
    const leased = new Set(["10.1.15.0/24", "10.1.20.0/24"]);
    const deleted = await routes.deleteDepartedRoutes("rtb-0bb00000000000002", leased, sig());
    assert.deepEqual(deleted.sort(), ["10.1.21.0/24", "10.1.22.0/24"]);
    assert.deepEqual(t.routes.map((r) => r.destinationCidrBlock).sort(), [
      "0.0.0.0/0",
      "10.0.0.0/16",
      "10.1.0.0/16",
      "10.1.15.0/24",
      "10.1.20.0/24",
      "10.2.0.0/24",
    ]);
    // Another host deleting first: InvalidRoute.NotFound is tolerated.
    add("10.1.23.0/24");
    fake.state.faults.failAction = {
      action: "DeleteRoute",
      code: "InvalidRoute.NotFound",
      status: 400,
      message: "The route identified by 10.1.23.0/24 does not exist.",
      count: 1,
    };
    assert.deepEqual(await routes.deleteDepartedRoutes("rtb-0bb00000000000002", leased, sig()), []);
  });
});

Deno.test("a wrong secret is refused by the fake's SigV4 check and reported clearly", async () => {
  await withFake(async ({ routes }) => {
    const err = await assertRejects(() => routes.describeTable("rtb-0bb00000000000002", sig()));
    assert.deepEqual((err as AwsVpcError).code, "SignatureDoesNotMatch");
    assertStringIncludes((err as Error).message, "check AWS_SECRET_ACCESS_KEY");
  }, "not-the-secret");
});
