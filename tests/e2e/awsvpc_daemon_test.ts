/**
 * aws-vpc through the daemon: `deno run -A main.ts` in host namespaces with real etcd, the SDK
 * pointed at the fake EC2 + IMDS running in the hub namespace (AWS_ENDPOINT_URL_EC2,
 * AWS_EC2_METADATA_SERVICE_ENDPOINT). The fake tells instances apart by source address, as IMDS
 * does per instance.
 *
 * One cluster, scenarios in order (each step leaves the state the next one starts from).
 */

import assert from "node:assert/strict";
import { Cluster, ETCD_PREFIX, type Host, HUB_IP } from "../harness/cluster.ts";
import { runOk } from "../harness/netns.ts";
import { FakeEc2Process } from "../fake_ec2/process.ts";
import type { FakeRoute } from "../fake_ec2/state.ts";

const TABLE = "rtb-0bb00000000000002";
const OUTSIDE = "10.2.0.0/24";
const instanceOf = (h: Host) => `i-0f1a0000000000${h.name.slice(1).padStart(3, "0")}`;

async function until<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false>,
  ms = 15_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function routeFor(routes: FakeRoute[], cidr: string): FakeRoute | undefined {
  return routes.find((r) => r.destinationCidrBlock === cidr);
}

async function ownSubnet(h: Host): Promise<string> {
  const env = await h.readSubnetEnv();
  const s = env?.FLANNEL_SUBNET;
  assert.ok(s, `no FLANNEL_SUBNET in ${h.subnetFile}`);
  const [ip, len] = s.split("/");
  return `${ip.replace(/\.\d+$/, ".0")}/${len}`;
}

Deno.test({
  name: "aws-vpc daemon: routes created, blackhole replaced, departed deleted, errors clear",
  sanitizeResources: false, // the harness's child processes outlive single steps by design
  sanitizeOps: false,
  async fn(t) {
    await using cluster = await Cluster.create({ hosts: 2 });
    const [h1, h2] = cluster.hosts;
    await using ec2 = await FakeEc2Process.start({
      ns: cluster.hub,
      hostname: HUB_IP,
      hosts: cluster.hosts.map((h) => ({ instanceId: instanceOf(h), privateIp: h.ip })),
    });
    const env = ec2.clientEnv();
    await ec2.update((s) => {
      const t = s.routeTables.find((t) => t.routeTableId === TABLE)!;
      t.routes.push({
        destinationCidrBlock: OUTSIDE,
        instanceId: "i-0dead0000000000ff",
        origin: "CreateRoute",
      });
      t.routes.push({
        destinationCidrBlock: "0.0.0.0/0",
        gatewayId: "igw-0ff0000000000001",
        origin: "CreateRoute",
      });
    });
    await cluster.putConfig({
      Network: "10.1.0.0/16",
      SubnetLen: 24,
      Backend: { Type: "aws-vpc" },
    });

    let h1Subnet = "";
    await t.step("empty table → route created and source/dest check disabled", async () => {
      const d = h1.startFlannel([], env);
      await d.waitReady(30_000);
      h1Subnet = await ownSubnet(h1);
      const r = routeFor(await ec2.routes(TABLE), h1Subnet);
      assert.equal(r?.instanceId, instanceOf(h1), d.tail());
      const s = await ec2.state();
      assert.equal(
        s.instances.find((i) => i.instanceId === instanceOf(h1))?.sourceDestCheck,
        false,
      );
      assert.equal((await h1.readSubnetEnv())?.FLANNEL_MTU, "1500");
      assert.match(d.logs(), /Using route table rtb-0bb00000000000002/);
    });

    const h2Subnet = "10.1.77.0/24";
    await t.step(
      "an existing blackhole for our CIDR → replaced; two hosts → two routes",
      async () => {
        // The subnet manager reuses the subnet named in subnet.env: pin h2 to 10.1.77.0/24.
        await Deno.writeTextFile(
          h2.subnetFile,
          "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.77.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n",
        );
        // An old mtime, so that waitReady() waits for the daemon's own write.
        await Deno.utime(h2.subnetFile, 0, 0);
        await ec2.update((s) => {
          s.routeTables.find((t) => t.routeTableId === TABLE)!.routes.push({
            destinationCidrBlock: h2Subnet,
            instanceId: "i-0dead0000000000aa",
            origin: "CreateRoute",
          });
        });
        const d = h2.startFlannel([], env);
        await d.waitReady(30_000);
        assert.equal(await ownSubnet(h2), h2Subnet);
        const routes = await ec2.routes(TABLE);
        assert.equal(routeFor(routes, h2Subnet)?.instanceId, instanceOf(h2), d.tail());
        assert.equal(routeFor(routes, h1Subnet)?.instanceId, instanceOf(h1));
        assert.ok((await ec2.calls()).some((c) => c.action === "ReplaceRoute" && !c.error));
        assert.match(
          d.logs(),
          /Replacing route 10\.1\.77\.0\/24 in rtb-0bb00000000000002 .*was i-0dead0000000000aa, blackhole/,
        );
      },
    );

    await t.step(
      "a host's lease removed → its route deleted by the others; outside Network kept",
      async () => {
        const d2 = h2.daemons.at(-1)!;
        d2.kill("SIGTERM");
        await d2.exitedWithin(5_000);
        await cluster.etcd.del(`${ETCD_PREFIX}/subnets/10.1.77.0-24`);
        await until(
          "h1 to delete 10.1.77.0/24",
          async () => !routeFor(await ec2.routes(TABLE), h2Subnet),
        );
        const routes = await ec2.routes(TABLE);
        assert.ok(routeFor(routes, OUTSIDE), "route outside Network deleted");
        assert.ok(routeFor(routes, "0.0.0.0/0"), "default route deleted");
        assert.equal(routeFor(routes, h1Subnet)?.instanceId, instanceOf(h1));
        assert.match(
          h1.daemons[0].logs(),
          /Deleted route 10\.1\.77\.0\/24 → i-0f1a0000000000002 in rtb-0bb00000000000002: no lease/,
        );
      },
    );

    await t.step("throttling twice then success → route present", async () => {
      await ec2.setFaults({ throttle: 2 });
      const d = h2.startFlannel([], env);
      await d.waitReady(30_000);
      await until(
        "h2's route",
        async () => routeFor(await ec2.routes(TABLE), h2Subnet)?.instanceId === instanceOf(h2),
      );
      const throttled = (await ec2.calls()).filter((c) => c.error === "RequestLimitExceeded");
      assert.equal(throttled.length, 2);
      const logs = d.logs() + h1.daemons[0].logs();
      assert.match(
        logs,
        /RequestLimitExceeded: EC2 is throttling this account's API calls; retrying in/,
      );
      d.kill("SIGTERM");
      assert.equal(await d.exitedWithin(5_000), 0);
      await cluster.etcd.del(`${ETCD_PREFIX}/subnets/10.1.77.0-24`);
      await until(
        "h1 to delete 10.1.77.0/24 again",
        async () => !routeFor(await ec2.routes(TABLE), h2Subnet),
      );
    });

    await t.step(
      "RouteLimitExceeded → the clear message, the daemon stays up and retries",
      async () => {
        // Full: h1's route, the outside route and the default route are 3 CreateRoute routes.
        await ec2.setFaults({ routeLimit: 3 });
        const d = h2.startFlannel([], env);
        await d.waitForLog(
          /CreateRoute 10\.1\.77\.0\/24 → i-0f1a0000000000002 in rtb-0bb00000000000002 failed: RouteLimitExceeded: the route table holds its maximum of 50 routes; ask AWS for more or use vxlan/,
          30_000,
        );
        await d.waitReady(10_000);
        await d.waitForLog(/Retrying route 10\.1\.77\.0\/24 in 10s/, 5_000);
        assert.equal(d.exitCode, null);
        await ec2.setFaults({ routeLimit: 50 });
        await until(
          "h2's route after the limit is raised",
          async () => routeFor(await ec2.routes(TABLE), h2Subnet)?.instanceId === instanceOf(h2),
          25_000,
        );
        assert.equal(d.exitCode, null);
        d.kill("SIGTERM");
        assert.equal(await d.exitedWithin(5_000), 0);
      },
    );

    await t.step("IMDS down → a clear error, exit 1", async () => {
      await ec2.setFaults({ imdsDown: true });
      const d = h2.startFlannel([], env);
      assert.equal(await d.exitedWithin(30_000), 1, d.tail());
      assert.match(
        d.logs(),
        /Cannot read the instance identity from the EC2 metadata service at http:\/\/192\.168\.100\.1:8080: this host does not look like an EC2 instance/,
      );
      await ec2.setFaults({ imdsDown: false });
    });

    const routes = await ec2.routes(TABLE);
    assert.ok(routeFor(routes, OUTSIDE), "route outside Network survived the whole run");
  },
});

Deno.test({
  name: "aws-vpc daemon: RouteTableID is used when set; an unknown one is a clear fatal error",
  sanitizeResources: false, // the harness's child processes outlive single steps by design
  sanitizeOps: false,
  async fn(t) {
    await using cluster = await Cluster.create({ hosts: 1 });
    const [h1] = cluster.hosts;
    await using ec2 = await FakeEc2Process.start({
      ns: cluster.hub,
      hostname: HUB_IP,
      hosts: [{ instanceId: instanceOf(h1), privateIp: h1.ip }],
    });
    const env = ec2.clientEnv();

    await t.step(
      "RouteTableID rtb-0aa00000000000001 → the route goes there, not to the subnet's table",
      async () => {
        await cluster.putConfig({
          Network: "10.1.0.0/16",
          Backend: { Type: "aws-vpc", RouteTableID: "rtb-0aa00000000000001" },
        });
        const d = h1.startFlannel([], env);
        await d.waitReady(30_000);
        const subnet = await ownSubnet(h1);
        assert.equal(
          routeFor(await ec2.routes("rtb-0aa00000000000001"), subnet)?.instanceId,
          instanceOf(h1),
        );
        assert.equal(routeFor(await ec2.routes(TABLE), subnet), undefined);
        d.kill("SIGTERM");
        assert.equal(await d.exitedWithin(5_000), 0);
      },
    );

    await t.step(
      "RouteTableID rtb-0dead00000000000ff → InvalidRouteTableID.NotFound line, exit 1",
      async () => {
        await cluster.putConfig({
          Network: "10.1.0.0/16",
          Backend: { Type: "aws-vpc", RouteTableID: "rtb-0dead00000000000ff" },
        });
        const d = h1.startFlannel([], env);
        assert.equal(await d.exitedWithin(30_000), 1, d.tail());
        assert.match(
          d.logs(),
          /DescribeRouteTables rtb-0dead00000000000ff failed: InvalidRouteTableID\.NotFound: there is no such route table in this region; fix RouteTableID in the network config/,
        );
      },
    );
  },
});

Deno.test({
  name: "aws-vpc daemon: traffic between subnets follows the table (the hub plays the VPC router)",
  sanitizeResources: false, // the harness's child processes outlive single steps by design
  sanitizeOps: false,
  async fn() {
    await using cluster = await Cluster.create({ hosts: 2 });
    await using ec2 = await FakeEc2Process.start({
      ns: cluster.hub,
      hostname: HUB_IP,
      hosts: cluster.hosts.map((h) => ({ instanceId: instanceOf(h), privateIp: h.ip })),
    });
    await cluster.putConfig({ Network: "10.1.0.0/16", Backend: { Type: "aws-vpc" } });
    const [h1, h2] = cluster.hosts;
    for (const h of cluster.hosts) await h.startFlannel([], ec2.clientEnv()).waitReady(30_000);
    const [a, b] = [await h1.addContainerAddress(), await h2.addContainerAddress()];

    // Without the VPC's routes the hub drops the overlay traffic, as a VPC would.
    await runOk(["ip", "netns", "exec", cluster.hub, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    assert.equal((await h1.ping(b, { from: a })).ok, false);

    // The VPC router: every active instance route of the table → that instance's address.
    const s = await ec2.state();
    const ipOf = new Map(s.instances.map((i) => [i.instanceId, i.privateIp]));
    for (const r of await ec2.routes(TABLE)) {
      const via = r.instanceId ? ipOf.get(r.instanceId) : undefined;
      if (!via) continue;
      await runOk([
        "ip",
        "-n",
        cluster.hub,
        "route",
        "replace",
        r.destinationCidrBlock,
        "via",
        via,
      ]);
    }
    const ping = await h1.ping(b, { from: a, count: 3 });
    assert.ok(ping.ok, ping.output);
    const back = await h2.ping(a, { from: b });
    assert.ok(back.ok, back.output);
  },
});
