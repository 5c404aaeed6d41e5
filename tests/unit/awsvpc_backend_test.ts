/**
 * The aws-vpc Backend (lib/backend/awsvpc/mod.ts) with a recording subnet manager, against the
 * fake EC2 + IMDS through the real SDK, with the endpoints set the SDK way (environment).
 */

import assert from "node:assert/strict";
import { awsVpc } from "../../lib/backend/awsvpc/mod.ts";
import { fakeContext } from "./fake_netlink.ts";
import type { Backend } from "../../lib/backend/mod.ts";
import { NotEc2Error } from "../../lib/backend/awsvpc/imds.ts";
import type { NetworkConfig } from "../../lib/config.ts";
import { type IPNet, parseCIDR, parseIPv4 } from "../../lib/ip.ts";
import type { Lease, LeaseAttrs } from "../../lib/lease.ts";
import { setSink } from "../../lib/log.ts";
import type { Acquired, LeaseEvent, SubnetManager } from "../../lib/subnet/mod.ts";
import { FakeEc2 } from "../fake_ec2/server.ts";
import {
  defaultState,
  type FakeRoute,
  TEST_ACCESS_KEY_ID,
  TEST_SECRET_ACCESS_KEY,
} from "../fake_ec2/state.ts";

const SELF = "i-0aaaaaaaaaaaaaaa1";
const PEER = "i-0bbbbbbbbbbbbbbb2";
const net = (s: string) => parseCIDR(s) as IPNet;

function lease(cidr: string, ip = "10.0.1.11"): Lease {
  return {
    subnet: net(cidr),
    ipv6Subnet: null,
    attrs: {
      publicIP: parseIPv4(ip)!,
      publicIPv6: null,
      backendType: "",
      backendData: null,
      backendV6Data: null,
    },
    expiration: null,
    modRevision: 1,
    etcdLeaseId: null,
  };
}

/** A subnet manager that hands out 10.1.15.0/24 and lets the test push lease batches. */
class RecordingSubnets implements SubnetManager {
  readonly config: NetworkConfig = {
    ipv4: {
      network: net("10.1.0.0/16"),
      subnetLen: 24,
      subnetMin: parseIPv4("10.1.1.0")!,
      subnetMax: parseIPv4("10.1.255.0")!,
    },
    ipv6: null,
    backend: { type: "aws-vpc", routeTableID: null },
  };
  acquired: LeaseAttrs[] = [];
  #batches: LeaseEvent[][] = [];
  #wake: (() => void) | null = null;

  acquireLease(attrs: LeaseAttrs): Promise<Acquired> {
    this.acquired.push(attrs);
    return Promise.resolve({
      lease: { ...lease("10.1.15.0/24", "10.0.1.10"), attrs },
      peers: { revision: 1, entries: [] },
    });
  }
  keepLease(): Promise<void> {
    return Promise.resolve();
  }
  push(batch: LeaseEvent[]): void {
    this.#batches.push(batch);
    this.#wake?.();
  }
  async *watchLeases(
    _own: unknown,
    _from: unknown,
    signal: AbortSignal,
  ): AsyncIterable<LeaseEvent[]> {
    while (!signal.aborted) {
      const b = this.#batches.shift();
      if (b) {
        yield b;
        continue;
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
  }
}

interface Env {
  fake: FakeEc2;
  subnets: RecordingSubnets;
  logs: string[];
  routes(): FakeRoute[];
  backend: Backend;
}

async function withBackend(
  env: Record<string, string>,
  fn: (e: Env) => Promise<void>,
  setup: (fake: FakeEc2) => void = () => {},
): Promise<void> {
  const fake = new FakeEc2(
    defaultState([
      { instanceId: SELF, privateIp: "10.0.1.10" },
      { instanceId: PEER, privateIp: "10.0.1.11" },
    ]),
  );
  fake.state.defaultInstanceId = SELF;
  setup(fake);
  const ac = new AbortController();
  const server = fake.serve({ signal: ac.signal });
  const url = `http://127.0.0.1:${server.addr.port}`;
  const vars: Record<string, string> = {
    AWS_ENDPOINT_URL_EC2: url,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: url,
    AWS_ACCESS_KEY_ID: TEST_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: TEST_SECRET_ACCESS_KEY,
    ...env,
  };
  const saved = new Map<string, string | undefined>();
  for (const k of [...Object.keys(vars), "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"]) {
    saved.set(k, Deno.env.get(k));
    if (vars[k]) Deno.env.set(k, vars[k]);
    else Deno.env.delete(k);
  }
  const logs: string[] = [];
  const prev = setSink((l) => logs.push(l));
  const subnets = new RecordingSubnets();
  const backend = awsVpc({
    recheckMs: 60_000,
    routeRetryMs: 100,
    graceMs: 300,
    retry: { attempts: 4, baseMs: 10, capMs: 40 },
    imds: { timeoutMs: 200, retries: 1 },
  })(fakeContext({
    config: subnets.config,
    ext: {
      name: "eth0",
      index: 2,
      ifaceAddr: parseIPv4("10.0.1.10")!,
      publicIP: parseIPv4("10.0.1.10")!,
      ifaceV6Addr: null,
      publicIPv6: null,
      mtu: 9001,
    },
    subnets,
    env: Deno.env.toObject(),
  }));
  try {
    await fn({
      fake,
      subnets,
      logs,
      backend,
      routes: () =>
        fake.state.routeTables.find((t) => t.routeTableId === "rtb-0bb00000000000002")!.routes,
    });
  } finally {
    setSink(prev);
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    ac.abort();
    await server.finished;
  }
}

/** Polls `cond` every 20 ms until true, or fails after `ms`. */
async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const cidrs = (rs: FakeRoute[]) => rs.map((r) => r.destinationCidrBlock).sort();

Deno.test("init() disables source/dest check, creates the route and returns the external MTU", async () => {
  await withBackend({}, async ({ fake, subnets, backend, routes, logs }) => {
    const ready = await backend.init(new AbortController().signal);
    assert.equal(ready.mtu, 9001);
    assert.deepEqual(subnets.acquired, [
      {
        publicIP: parseIPv4("10.0.1.10"),
        publicIPv6: null,
        backendType: "",
        backendData: null,
        backendV6Data: null,
      },
    ]);
    assert.equal(fake.state.instances[0].sourceDestCheck, false);
    assert.deepEqual(
      routes().find((r) => r.destinationCidrBlock === "10.1.15.0/24")?.instanceId,
      SELF,
    );
    assert.ok(
      logs.some((l) =>
        l.includes(`Route 10.1.15.0/24 → ${SELF} in rtb-0bb00000000000002: created`)
      ),
    );
    assert.deepEqual(fake.calls.map((c) => c.sessionToken), fake.calls.map(() => null));
  });
});

Deno.test("AWS_SECURITY_TOKEN is sent as the session token when AWS_SESSION_TOKEN is unset", async () => {
  await withBackend({ AWS_SECURITY_TOKEN: "legacy-token-1" }, async ({ fake, backend }) => {
    await backend.init(new AbortController().signal);
    assert.ok(fake.calls.length > 0);
    assert.ok(fake.calls.every((c) => c.sessionToken === "legacy-token-1"));
  });
});

Deno.test("without keys in the environment the instance role's credentials from IMDS are used", async () => {
  await withBackend(
    { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" },
    async ({ fake, backend, routes }) => {
      await backend.init(new AbortController().signal);
      assert.ok(routes().some((r) => r.destinationCidrBlock === "10.1.15.0/24"));
      assert.ok(fake.calls.length > 0);
      assert.ok(fake.calls.every((c) => c.sessionToken === "role-session-token" && !c.error));
      assert.ok(
        fake.imdsRequests.includes(
          "GET /latest/meta-data/iam/security-credentials/flannel-node 200 +token",
        ),
        fake.imdsRequests.join("\n"),
      );
    },
    (fake) => {
      fake.state.role = {
        name: "flannel-node",
        accessKeyId: "ASIAFAKEROLE0000001",
        secretAccessKey: "role/secret/for/flannel/tests/00000000001",
        token: "role-session-token",
      };
      fake.state.credentials["ASIAFAKEROLE0000001"] = "role/secret/for/flannel/tests/00000000001";
    },
  );
});

Deno.test("init() fails at once with a clear line when there are no credentials at all", async () => {
  await withBackend(
    { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" },
    async ({ backend, fake, logs }) => {
      const err = await backend.init(new AbortController().signal).then(
        () => assert.fail("init resolved"),
        (e) => e,
      );
      assert.match(
        err.message,
        /^ModifyInstanceAttribute i-0aaaaaaaaaaaaaaa1 SourceDestCheck=false failed: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or attach an instance role/,
      );
      assert.deepEqual(fake.calls, []);
      assert.ok(!logs.some((l) => l.includes("retrying")), "a missing credential is not retried");
    },
  );
});

Deno.test("init() fails with a clear line when IMDS is down, before taking a lease", async () => {
  await withBackend({}, async ({ backend, subnets }) => {
    const err = await backend.init(new AbortController().signal).then(
      () => assert.fail("init resolved"),
      (e) => e,
    );
    assert.ok(err instanceof NotEc2Error);
    assert.match(err.message, /this host does not look like an EC2 instance/);
    assert.deepEqual(subnets.acquired, []);
  }, (fake) => {
    fake.state.faults.imdsDown = true;
  });
});

Deno.test("init() fails on UnauthorizedOperation with the code and the IAM actions needed", async () => {
  await withBackend({}, async ({ backend }) => {
    const err = await backend.init(new AbortController().signal).then(
      () => assert.fail("init resolved"),
      (e) => e,
    );
    assert.match(
      err.message,
      /^ModifyInstanceAttribute i-0aaaaaaaaaaaaaaa1 SourceDestCheck=false failed: UnauthorizedOperation: the credentials are not allowed this call; the IAM policy needs ec2:DescribeInstances/,
    );
  }, (fake) => {
    fake.state.faults.failAction = {
      action: "ModifyInstanceAttribute",
      code: "UnauthorizedOperation",
      status: 403,
      message: "You are not authorized to perform this operation.",
      count: 1,
    };
  });
});

Deno.test("RouteLimitExceeded: init succeeds with the clear line, run retries until the route exists", async () => {
  await withBackend({}, async ({ fake, backend, routes, logs, subnets }) => {
    const ac = new AbortController();
    const network = await backend.init(ac.signal);
    assert.ok(logs.some((l) =>
      l.includes(
        "RouteLimitExceeded: the route table holds its maximum of 50 routes; ask AWS for more or use vxlan",
      )
    ));
    const running = network.run(ac.signal);
    subnets.push([]);
    await until(
      "a second CreateRoute",
      () => fake.calls.filter((c) => c.action === "CreateRoute").length >= 2,
    );
    fake.state.faults.routeLimit = 50;
    await until("the route", () => routes().some((r) => r.destinationCidrBlock === "10.1.15.0/24"));
    ac.abort();
    await running;
  }, (fake) => {
    fake.state.faults.routeLimit = 0;
  });
});

Deno.test("run() deletes routes of removed leases at once and unleased ones after the grace", async () => {
  await withBackend({}, async ({ backend, routes, subnets, logs }) => {
    const ac = new AbortController();
    const network = await backend.init(ac.signal);
    const running = network.run(ac.signal);
    subnets.push([{ type: "added", lease: lease("10.1.20.0/24") }]);
    await until(
      "the stale route's grace to start",
      () =>
        logs.some((l) => l.includes("Route 10.1.21.0/24 in rtb-0bb00000000000002 has no lease")),
    );
    assert.deepEqual(cidrs(routes()), [
      "10.0.0.0/16",
      "10.1.15.0/24",
      "10.1.20.0/24",
      "10.1.21.0/24",
      "10.2.0.0/24",
    ]);
    subnets.push([{ type: "removed", lease: lease("10.1.20.0/24") }]);
    await until(
      "10.1.20.0/24 deleted",
      () => !routes().some((r) => r.destinationCidrBlock === "10.1.20.0/24"),
      1000,
    );
    await until(
      "10.1.21.0/24 deleted",
      () => !routes().some((r) => r.destinationCidrBlock === "10.1.21.0/24"),
      2000,
    );
    assert.deepEqual(cidrs(routes()), ["10.0.0.0/16", "10.1.15.0/24", "10.2.0.0/24"]);
    const t0 = performance.now();
    ac.abort();
    await running;
    assert.ok(performance.now() - t0 < 1000, "run() must return within 1 s of the abort");
  }, (fake) => {
    const t = fake.state.routeTables.find((t) => t.routeTableId === "rtb-0bb00000000000002")!;
    for (const c of ["10.1.20.0/24", "10.1.21.0/24", "10.2.0.0/24"]) {
      t.routes.push({ destinationCidrBlock: c, instanceId: PEER, origin: "CreateRoute" });
    }
  });
});

Deno.test("run() restores its own route even while deleting a departed route keeps failing", async () => {
  await withBackend({}, async ({ fake, backend, routes, subnets, logs }) => {
    const ac = new AbortController();
    const network = await backend.init(ac.signal);
    const running = network.run(ac.signal);
    subnets.push([]);
    await until(
      "a refused DeleteRoute",
      () => fake.calls.some((c) => c.action === "DeleteRoute" && c.error !== null),
    );
    // Someone deletes our route; the next passes must put it back although DeleteRoute of the
    // stale route still fails.
    const t = fake.state.routeTables.find((t) => t.routeTableId === "rtb-0bb00000000000002")!;
    t.routes = t.routes.filter((r) => r.destinationCidrBlock !== "10.1.15.0/24");
    await until(
      "our route back",
      () => routes().some((r) => r.destinationCidrBlock === "10.1.15.0/24"),
    );
    assert.ok(
      logs.some((l) => l.includes("DeleteRoute 10.1.21.0/24") && l.includes("Unauthorized")),
    );
    ac.abort();
    await running;
  }, (fake) => {
    const t = fake.state.routeTables.find((t) => t.routeTableId === "rtb-0bb00000000000002")!;
    t.routes.push({
      destinationCidrBlock: "10.1.21.0/24",
      instanceId: PEER,
      origin: "CreateRoute",
    });
    fake.state.faults.failAction = {
      action: "DeleteRoute",
      code: "UnauthorizedOperation",
      status: 403,
      message: "You are not authorized to perform this operation.",
      count: 1000,
    };
  });
});
