/**
 * A fake EC2 + instance metadata service speaking the real wire protocols, for the aws-vpc tests.
 *
 * - EC2 Query protocol: `POST /` with a form-encoded body `Action=…&Version=2016-11-15&…`, SigV4
 *   signed (checked, see sigv4.ts), XML answers in the `http://ec2.amazonaws.com/doc/2016-11-15/`
 *   namespace with the real element names, and the real error document
 *   `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`.
 * - IMDS under `/latest/` (imds.ts): `PUT /latest/api/token`, the instance-identity document and
 *   the meta-data paths the backend or the SDK read. The caller's address selects the instance.
 * - Control API under `/_fake/` (JSON): `GET|PUT /_fake/state`, `POST /_fake/faults` (merge),
 *   `GET /_fake/calls` (EC2 calls), `GET /_fake/imds` (IMDS requests).
 */

import { FakeImds } from "./imds.ts";
import { checkSigV4 } from "./sigv4.ts";
import {
  type FakeCall,
  type FakeInstance,
  type FakeRoute,
  type FakeRouteTable,
  type FakeState,
  noFaults,
} from "./state.ts";

const NS = "http://ec2.amazonaws.com/doc/2016-11-15/";

/** An EC2 error answer. */
class Ec2Error extends Error {
  constructor(readonly code: string, readonly status: number, message: string) {
    super(message);
  }
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** `<tag>…</tag>`; string content is escaped, arrays are concatenated. */
function el(tag: string, content: string | number | boolean | string[] | undefined): string {
  if (content === undefined) return "";
  const inner = Array.isArray(content) ? content.join("") : esc(String(content));
  return `<${tag}>${inner}</${tag}>`;
}

function errorXml(code: string, message: string, requestId: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>${el("Code", code)}${
    el("Message", message)
  }</Error></Errors>${el("RequestID", requestId)}</Response>`;
}

/** Values of `Prefix.1`, `Prefix.2`, … in order. */
function listParam(params: Record<string, string>, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 1; params[`${prefix}.${i}`] !== undefined; i++) out.push(params[`${prefix}.${i}`]);
  return out;
}

/** `Filter.N.Name` / `Filter.N.Value.M` as a map name → values. */
function filters(params: Record<string, string>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 1; params[`Filter.${i}.Name`] !== undefined; i++) {
    out.set(params[`Filter.${i}.Name`], listParam(params, `Filter.${i}.Value`));
  }
  return out;
}

function required(params: Record<string, string>, name: string): string {
  const v = params[name];
  if (v === undefined || v === "") {
    throw new Ec2Error(
      "MissingParameter",
      400,
      `The request must contain the parameter ${name}`,
    );
  }
  return v;
}

/** The fake's request handler and state; serve it with {@link FakeEc2.serve}. */
export class FakeEc2 {
  state: FakeState;
  calls: FakeCall[] = [];
  /** IMDS requests as `"<METHOD> <path> <status>"`, `+token` when one was sent. */
  imdsRequests: string[] = [];
  #imds = new FakeImds();

  constructor(state: FakeState) {
    this.state = state;
  }

  /** Serves on `hostname:port` (port 0 = random); the server's `addr` tells the port. */
  serve(
    opts: { hostname?: string; port?: number; signal?: AbortSignal } = {},
  ): Deno.HttpServer<Deno.NetAddr> {
    return Deno.serve({
      hostname: opts.hostname ?? "127.0.0.1",
      port: opts.port ?? 0,
      signal: opts.signal,
      onListen() {},
    }, (req, info) => this.handle(req, (info.remoteAddr as Deno.NetAddr).hostname));
  }

  /** Handles one HTTP request from `remote` (the caller's IP address). */
  async handle(req: Request, remote: string): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname.replace(/\/{2,}/g, "/");
    if (path.startsWith("/_fake/")) return await this.#control(req, path);
    if (path.startsWith("/latest/")) {
      const res = await this.#imds.handle(req, path, this.state, remote);
      const token = req.headers.has("x-aws-ec2-metadata-token") ? " +token" : "";
      this.imdsRequests.push(`${req.method} ${path} ${res.status}${token}`);
      return res;
    }
    if (req.method === "POST" && path === "/") return await this.#ec2(req, url.pathname);
    return new Response("Not Found\n", { status: 404 });
  }

  async #control(req: Request, path: string): Promise<Response> {
    if (path === "/_fake/state" && req.method === "GET") return Response.json(this.state);
    if (path === "/_fake/state" && req.method === "PUT") {
      this.state = await req.json();
      this.calls = [];
      return Response.json({ ok: true });
    }
    if (path === "/_fake/faults" && req.method === "POST") {
      this.state.faults = { ...noFaults(), ...this.state.faults, ...(await req.json()) };
      return Response.json(this.state.faults);
    }
    if (path === "/_fake/calls" && req.method === "GET") return Response.json(this.calls);
    if (path === "/_fake/imds" && req.method === "GET") return Response.json(this.imdsRequests);
    return new Response("Unknown control path\n", { status: 404 });
  }

  async #ec2(req: Request, rawPath: string): Promise<Response> {
    const requestId = crypto.randomUUID();
    const body = new Uint8Array(await req.arrayBuffer());
    const params = Object.fromEntries(new URLSearchParams(new TextDecoder().decode(body)));
    const call: FakeCall = {
      action: params.Action ?? "",
      params,
      error: null,
      sessionToken: req.headers.get("x-amz-security-token"),
      region: null,
    };
    this.calls.push(call);
    try {
      const auth = checkSigV4("POST", rawPath, req.headers, body, this.state.credentials);
      if ("code" in auth) throw new Ec2Error(auth.code, auth.status, auth.message);
      call.region = auth.region;
      if (params.Version !== "2016-11-15") {
        throw new Ec2Error(
          "InvalidParameterValue",
          400,
          `This fake speaks EC2 API version 2016-11-15 only, not ${
            JSON.stringify(params.Version ?? null)
          }`,
        );
      }
      if (!req.headers.get("content-type")?.startsWith("application/x-www-form-urlencoded")) {
        throw new Ec2Error("InvalidParameterValue", 400, "The body must be form-encoded");
      }
      this.#injectFaults(call.action);
      const inner = this.#dispatch(call.action, params);
      const name = `${call.action}Response`;
      const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<${name} xmlns="${NS}">${
        el("requestId", requestId)
      }${inner}</${name}>`;
      return new Response(xml, { headers: { "content-type": "text/xml;charset=UTF-8" } });
    } catch (err) {
      if (!(err instanceof Ec2Error)) throw err;
      call.error = err.code;
      return new Response(errorXml(err.code, err.message, requestId), {
        status: err.status,
        headers: { "content-type": "text/xml;charset=UTF-8" },
      });
    }
  }

  #injectFaults(action: string): void {
    const f = this.state.faults;
    if (f.throttle > 0) {
      f.throttle--;
      throw new Ec2Error("RequestLimitExceeded", 503, "Request limit exceeded.");
    }
    if (f.serverErrors > 0) {
      f.serverErrors--;
      throw new Ec2Error(
        "InternalError",
        500,
        "An internal error has occurred. Retry your request, but if the problem persists, contact us with details by posting a message on the AWS forums.",
      );
    }
    const fa = f.failAction;
    if (fa && fa.action === action && fa.count > 0) {
      fa.count--;
      throw new Ec2Error(fa.code, fa.status, fa.message);
    }
  }

  #dispatch(action: string, p: Record<string, string>): string {
    switch (action) {
      case "DescribeInstances":
        return this.#describeInstances(p);
      case "DescribeRouteTables":
        return this.#describeRouteTables(p);
      case "CreateRoute":
        return this.#createRoute(p);
      case "ReplaceRoute":
        return this.#replaceRoute(p);
      case "DeleteRoute":
        return this.#deleteRoute(p);
      case "ModifyInstanceAttribute":
        return this.#modifyInstanceAttribute(p);
      default:
        throw new Ec2Error(
          "InvalidAction",
          400,
          `The action ${action} is not valid for this web service.`,
        );
    }
  }

  #instance(id: string): FakeInstance {
    const inst = this.state.instances.find((i) => i.instanceId === id);
    if (!inst) {
      throw new Ec2Error(
        "InvalidInstanceID.NotFound",
        400,
        `The instance ID '${id}' does not exist`,
      );
    }
    return inst;
  }

  #table(id: string): FakeRouteTable {
    const t = this.state.routeTables.find((r) => r.routeTableId === id);
    if (!t) {
      throw new Ec2Error(
        "InvalidRouteTableID.NotFound",
        400,
        `The routeTable ID '${id}' does not exist`,
      );
    }
    return t;
  }

  #describeInstances(p: Record<string, string>): string {
    const ids = listParam(p, "InstanceId");
    const insts = ids.length ? ids.map((id) => this.#instance(id)) : this.state.instances;
    const items = insts.map((i) =>
      el("item", [
        el("reservationId", `r-${i.instanceId.slice(2)}`),
        el("ownerId", this.state.accountId),
        el("groupSet", []),
        el("instancesSet", [
          el("item", [
            el("instanceId", i.instanceId),
            el("imageId", "ami-0fa1e0000000000aa"),
            el("instanceState", [
              el("code", i.state === "running" ? 16 : 48),
              el("name", i.state),
            ]),
            el("instanceType", "t3.micro"),
            el("placement", [el("availabilityZone", `${this.state.region}a`)]),
            el("subnetId", i.subnetId),
            el("vpcId", i.vpcId),
            el("privateIpAddress", i.privateIp),
            el("sourceDestCheck", i.sourceDestCheck),
            el("networkInterfaceSet", [
              el("item", [
                el("networkInterfaceId", i.networkInterfaceId),
                el("subnetId", i.subnetId),
                el("vpcId", i.vpcId),
                el("macAddress", i.mac),
                el("privateIpAddress", i.privateIp),
                el("sourceDestCheck", i.sourceDestCheck),
              ]),
            ]),
          ]),
        ]),
      ])
    );
    return el("reservationSet", items);
  }

  #routeState(r: FakeRoute): string {
    if (!r.instanceId) return "active";
    const inst = this.state.instances.find((i) => i.instanceId === r.instanceId);
    return inst?.state === "running" ? "active" : "blackhole";
  }

  #describeRouteTables(p: Record<string, string>): string {
    const ids = listParam(p, "RouteTableId");
    let tables = ids.length ? ids.map((id) => this.#table(id)) : this.state.routeTables;
    for (const [name, values] of filters(p)) {
      tables = tables.filter((t) => {
        switch (name) {
          case "route-table-id":
            return values.includes(t.routeTableId);
          case "vpc-id":
            return values.includes(t.vpcId);
          case "association.subnet-id":
            return t.subnetIds.some((s) => values.includes(s));
          case "association.main":
            return values.includes(String(t.main));
          default:
            throw new Ec2Error(
              "InvalidParameterValue",
              400,
              `The filter '${name}' is invalid`,
            );
        }
      });
    }
    const items = tables.map((t) => {
      const assoc = [
        ...(t.main
          ? [el("item", [
            el("routeTableAssociationId", `rtbassoc-${t.routeTableId.slice(4, 20)}f`),
            el("routeTableId", t.routeTableId),
            el("main", true),
            el("associationState", [el("state", "associated")]),
          ])]
          : []),
        ...t.subnetIds.map((s) =>
          el("item", [
            el("routeTableAssociationId", `rtbassoc-${s.slice(7)}a`),
            el("routeTableId", t.routeTableId),
            el("subnetId", s),
            el("main", false),
            el("associationState", [el("state", "associated")]),
          ])
        ),
      ];
      const routes = t.routes.map((r) =>
        el("item", [
          el("destinationCidrBlock", r.destinationCidrBlock),
          el("gatewayId", r.gatewayId),
          el("instanceId", r.instanceId),
          el("instanceOwnerId", r.instanceId ? this.state.accountId : undefined),
          el("networkInterfaceId", r.networkInterfaceId),
          el("state", this.#routeState(r)),
          el("origin", r.origin),
        ])
      );
      return el("item", [
        el("routeTableId", t.routeTableId),
        el("vpcId", t.vpcId),
        el("ownerId", this.state.accountId),
        el("routeSet", routes),
        el("associationSet", assoc),
        el("propagatingVgwSet", []),
        el("tagSet", []),
      ]);
    });
    return el("routeTableSet", items);
  }

  #routeTarget(p: Record<string, string>): Pick<FakeRoute, "instanceId" | "networkInterfaceId"> {
    const inst = this.#instance(required(p, "InstanceId"));
    if (inst.state !== "running") {
      throw new Ec2Error(
        "IncorrectInstanceState",
        400,
        `The instance '${inst.instanceId}' is not in a state from which it can be used as a route target`,
      );
    }
    return { instanceId: inst.instanceId, networkInterfaceId: inst.networkInterfaceId };
  }

  #createRoute(p: Record<string, string>): string {
    const table = this.#table(required(p, "RouteTableId"));
    const cidr = required(p, "DestinationCidrBlock");
    const target = this.#routeTarget(p);
    if (table.routes.some((r) => r.destinationCidrBlock === cidr)) {
      throw new Ec2Error(
        "RouteAlreadyExists",
        400,
        `The route identified by ${cidr} already exists.`,
      );
    }
    const own = table.routes.filter((r) => r.origin === "CreateRoute").length;
    if (own >= this.state.faults.routeLimit) {
      throw new Ec2Error(
        "RouteLimitExceeded",
        400,
        "The maximum number of routes has been reached.",
      );
    }
    table.routes.push({ destinationCidrBlock: cidr, ...target, origin: "CreateRoute" });
    return el("return", true);
  }

  #replaceRoute(p: Record<string, string>): string {
    const table = this.#table(required(p, "RouteTableId"));
    const cidr = required(p, "DestinationCidrBlock");
    const target = this.#routeTarget(p);
    const i = table.routes.findIndex((r) => r.destinationCidrBlock === cidr);
    if (i < 0) {
      throw new Ec2Error(
        "InvalidRoute.NotFound",
        400,
        `There is no route defined for '${cidr}' in the route table. Use CreateRoute instead.`,
      );
    }
    table.routes[i] = { destinationCidrBlock: cidr, ...target, origin: "CreateRoute" };
    return el("return", true);
  }

  #deleteRoute(p: Record<string, string>): string {
    const table = this.#table(required(p, "RouteTableId"));
    const cidr = required(p, "DestinationCidrBlock");
    const i = table.routes.findIndex((r) => r.destinationCidrBlock === cidr);
    if (i < 0) {
      throw new Ec2Error(
        "InvalidRoute.NotFound",
        400,
        `The route identified by ${cidr} does not exist.`,
      );
    }
    if (table.routes[i].origin === "CreateRouteTable") {
      throw new Ec2Error(
        "InvalidParameterValue",
        400,
        `cannot remove local route ${cidr} in route table ${table.routeTableId}`,
      );
    }
    table.routes.splice(i, 1);
    return el("return", true);
  }

  #modifyInstanceAttribute(p: Record<string, string>): string {
    const inst = this.#instance(required(p, "InstanceId"));
    const v = p["SourceDestCheck.Value"];
    if (v === undefined) {
      throw new Ec2Error(
        "InvalidParameterCombination",
        400,
        "The fake only implements the SourceDestCheck attribute",
      );
    }
    inst.sourceDestCheck = v === "true";
    return el("return", true);
  }
}
