/**
 * The fake EC2's world: instances, route tables, credentials and fault switches, as plain JSON so
 * a test can read and replace it over the control API.
 */

/** An EC2 instance as the fake knows it. */
export interface FakeInstance {
  instanceId: string;
  subnetId: string;
  vpcId: string;
  /** Also how IMDS recognises the caller: a request from this source address gets this instance. */
  privateIp: string;
  mac: string;
  networkInterfaceId: string;
  sourceDestCheck: boolean;
  state: "running" | "terminated";
}

/** One route of a route table. */
export interface FakeRoute {
  destinationCidrBlock: string;
  instanceId?: string;
  networkInterfaceId?: string;
  gatewayId?: string;
  origin: "CreateRouteTable" | "CreateRoute";
}

/** A route table and its associations. */
export interface FakeRouteTable {
  routeTableId: string;
  vpcId: string;
  main: boolean;
  subnetIds: string[];
  routes: FakeRoute[];
}

/** Error switches. Counters count down as they fire. */
export interface FakeFaults {
  /** CreateRoute fails with RouteLimitExceeded when a table holds this many non-local routes. */
  routeLimit: number;
  /** The next N EC2 calls fail with RequestLimitExceeded (HTTP 503). */
  throttle: number;
  /** The next N EC2 calls fail with InternalError (HTTP 500). */
  serverErrors: number;
  /** IMDS requests hang until the client gives up (as off EC2, where 169.254.169.254 drops). */
  imdsDown: boolean;
  /** `PUT /latest/api/token` answers 404 (an IMDSv1-only service); GETs need no token. */
  imdsV1Only: boolean;
  /** GETs without a valid token answer 401 (HttpTokens=required). */
  imdsTokenRequired: boolean;
  /** The next `count` calls of `action` fail with this error. */
  failAction:
    | { action: string; code: string; status: number; message: string; count: number }
    | null;
}

/** Everything the fake serves. */
export interface FakeState {
  region: string;
  accountId: string;
  /** The instance IMDS answers for when the caller's address matches no instance. */
  defaultInstanceId: string;
  instances: FakeInstance[];
  routeTables: FakeRouteTable[];
  /** Access key id → secret; requests signed with other keys fail with AuthFailure. */
  credentials: Record<string, string>;
  /** Instance-role credentials served by IMDS (`iam/security-credentials/<role>`). */
  role: { name: string; accessKeyId: string; secretAccessKey: string; token: string } | null;
  faults: FakeFaults;
}

/** One EC2 call as the fake received it (also the refused ones). */
export interface FakeCall {
  action: string;
  params: Record<string, string>;
  /** The error code returned, null on success. */
  error: string | null;
  /** `x-amz-security-token`, when the request carried one. */
  sessionToken: string | null;
  /** The region of the SigV4 credential scope, when the signature was well-formed. */
  region: string | null;
}

/** Default faults: none, and AWS's default limit of 50 routes. */
export function noFaults(): FakeFaults {
  return {
    routeLimit: 50,
    throttle: 0,
    serverErrors: 0,
    imdsDown: false,
    imdsV1Only: false,
    imdsTokenRequired: false,
    failAction: null,
  };
}

/** Test credentials the default state accepts. */
export const TEST_ACCESS_KEY_ID = "AKIAFAKEFLANNEL0001";
/** The secret of {@link TEST_ACCESS_KEY_ID}. */
export const TEST_SECRET_ACCESS_KEY = "fake/secret/key/for/flannel/tests/0000001";

/**
 * A VPC 10.0.0.0/16 (`vpc-0ff0000000000001`) with two subnets: `subnet-0aa0000000000001`, which
 * has its own route table `rtb-0bb00000000000002`, and `subnet-0bb0000000000002`, which has none
 * and so uses the main table `rtb-0aa00000000000001`; one instance per entry of `hosts`, all in
 * the first subnet. Ids have the real shape (prefix and hex digits).
 */
export function defaultState(hosts: { instanceId: string; privateIp: string }[]): FakeState {
  const instances = hosts.map((h, i): FakeInstance => ({
    instanceId: h.instanceId,
    subnetId: "subnet-0aa0000000000001",
    vpcId: "vpc-0ff0000000000001",
    privateIp: h.privateIp,
    mac: `02:00:00:00:00:${(i + 1).toString(16).padStart(2, "0")}`,
    networkInterfaceId: `eni-0${(i + 1).toString(16).padStart(16, "0")}`,
    sourceDestCheck: true,
    state: "running",
  }));
  const local: FakeRoute = {
    destinationCidrBlock: "10.0.0.0/16",
    gatewayId: "local",
    origin: "CreateRouteTable",
  };
  return {
    region: "eu-west-1",
    accountId: "123456789012",
    defaultInstanceId: hosts[0]?.instanceId ?? "",
    instances,
    routeTables: [
      {
        routeTableId: "rtb-0aa00000000000001",
        vpcId: "vpc-0ff0000000000001",
        main: true,
        subnetIds: [],
        routes: [local],
      },
      {
        routeTableId: "rtb-0bb00000000000002",
        vpcId: "vpc-0ff0000000000001",
        main: false,
        subnetIds: ["subnet-0aa0000000000001"],
        routes: [{ ...local }],
      },
    ],
    credentials: { [TEST_ACCESS_KEY_ID]: TEST_SECRET_ACCESS_KEY },
    role: null,
    faults: noFaults(),
  };
}
