/**
 * The fake instance metadata service: IMDSv2 tokens, the instance-identity document, the
 * meta-data paths the backend and the SDK read, and instance-role credentials. The caller's
 * source address selects the instance (each real instance has its own IMDS).
 */

import type { FakeInstance, FakeState } from "./state.ts";

/** IMDS request handling; keeps the tokens it issued. */
export class FakeImds {
  #tokens = new Set<string>();

  /** Answers one IMDS request (`path` under /latest/) from `remote`. */
  async handle(req: Request, path: string, state: FakeState, remote: string): Promise<Response> {
    const f = state.faults;
    if (f.imdsDown) {
      // Never answer: the client times out as it would off EC2.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 30_000);
        req.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
      return new Response(null, { status: 504 });
    }
    if (path === "/latest/api/token") {
      if (req.method !== "PUT") return new Response(null, { status: 405 });
      if (f.imdsV1Only) return new Response("Not Found\n", { status: 404 });
      if (!req.headers.get("x-aws-ec2-metadata-token-ttl-seconds")) {
        return new Response(null, { status: 400 });
      }
      const token = `AQAEA${crypto.randomUUID().replaceAll("-", "")}==`;
      this.#tokens.add(token);
      return new Response(token, { headers: { "content-type": "text/plain" } });
    }
    if (req.method !== "GET") return new Response(null, { status: 405 });
    const token = req.headers.get("x-aws-ec2-metadata-token");
    if (token !== null && !this.#tokens.has(token)) return new Response(null, { status: 401 });
    if (token === null && f.imdsTokenRequired && !f.imdsV1Only) {
      return new Response(null, { status: 401 });
    }
    const inst = instanceFor(state, remote);
    if (!inst) return new Response("Not Found\n", { status: 404 });
    const text = imdsPath(state, path, inst);
    if (text === null) return new Response("Not Found\n", { status: 404 });
    return new Response(text, {
      headers: { "content-type": text.startsWith("{") ? "application/json" : "text/plain" },
    });
  }
}

function instanceFor(s: FakeState, remote: string): FakeInstance | undefined {
  return s.instances.find((i) => i.privateIp === remote) ??
    s.instances.find((i) => i.instanceId === s.defaultInstanceId);
}

function imdsPath(s: FakeState, path: string, inst: FakeInstance): string | null {
  const az = `${s.region}a`;
  const md = "/latest/meta-data/";
  const macs = `${md}network/interfaces/macs/${inst.mac}/`;
  const role = s.role;
  const table: Record<string, string> = {
    "/latest/dynamic/instance-identity/document": JSON.stringify(
      {
        accountId: s.accountId,
        architecture: "x86_64",
        availabilityZone: az,
        imageId: "ami-0fa1e0000000000aa",
        instanceId: inst.instanceId,
        instanceType: "t3.micro",
        pendingTime: "2026-11-27T08:00:00Z",
        privateIp: inst.privateIp,
        region: s.region,
        version: "2017-09-30",
      },
      null,
      2,
    ),
    [`${md}instance-id`]: inst.instanceId,
    [`${md}local-ipv4`]: inst.privateIp,
    [`${md}mac`]: inst.mac,
    [`${md}placement/region`]: s.region,
    [`${md}placement/availability-zone`]: az,
    [`${macs}subnet-id`]: inst.subnetId,
    [`${macs}vpc-id`]: inst.vpcId,
    [`${macs}interface-id`]: inst.networkInterfaceId,
  };
  if (role) {
    table[`${md}iam/security-credentials/`] = role.name;
    table[`${md}iam/security-credentials/${role.name}`] = JSON.stringify({
      Code: "Success",
      LastUpdated: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      Type: "AWS-HMAC",
      AccessKeyId: role.accessKeyId,
      SecretAccessKey: role.secretAccessKey,
      Token: role.token,
      Expiration: new Date(Date.now() + 6 * 3600_000).toISOString().replace(/\.\d+Z$/, "Z"),
    });
  }
  return table[path] ?? null;
}
