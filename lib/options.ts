/**
 * flanneld's command line: flag definitions, the `FLANNELD_*` environment overlay and
 * validation, turned into {@link Options} or a help/version/error outcome for main.ts.
 *
 * Order as upstream: parse the command line, answer `--help`/`--version`, then fill every flag
 * the command line left unset from the environment. Unlike Go's `flag`, a positional argument
 * is an error: Go stops at the first one and silently ignores every flag after it.
 */

import { FlagSet } from "./flags.ts";
import { IP, parseIPv4 } from "./ip.ts";

/** flanneld's version, printed by `--version`. */
export const VERSION = "0.1.0";

/** The validated command line. */
export interface Options {
  etcdEndpoints: string[];
  etcdPrefix: string;
  etcdKeyfile: string;
  etcdCertfile: string;
  etcdCafile: string;
  etcdUsername: string;
  etcdPassword: string;
  /** Interface names or IPv4 addresses, tried in order. */
  iface: string[];
  /**
   * Regexes (JavaScript syntax) matched against interface names and addresses, in order. A
   * leading Go flag group such as `(?i)` is rewritten to the JavaScript modifier `(?i:…)`.
   */
  ifaceRegex: string[];
  /** The PublicIP to advertise; `""` = the external interface's address. */
  publicIP: string;
  /** The PublicIPv6 to advertise (with `EnableIPv6`); `""` = the interface's IPv6 address. */
  publicIPv6: string;
  subnetFile: string;
  /** Minutes before lease expiry at which to renew, 1–1439. */
  subnetLeaseRenewMargin: number;
  /** Install masquerade rules; also printed as FLANNEL_IPMASQ in subnet.env. */
  ipMasq: boolean;
  /** Masquerade without `--random-fully`. */
  ipMasqFullyRandomDisable: boolean;
  /** Accept forwarding from and to the Network (filter FLANNEL-FWD). */
  iptablesForwardRules: boolean;
  /** Seconds between re-checks of the firewall rules (≥ 1). */
  iptablesResync: number;
  /** A blackhole route for the own subnet. */
  ipBlackholeRoute: boolean;
  /** IPv4 address whose route picks the external interface; `""` = not used. */
  ifaceCanReach: string;
  /** Address of the health server. */
  healthzIP: string;
  /** Port of the health server; 0 = off. */
  healthzPort: number;
  /** glog verbosity. */
  v: number;
}

/**
 * What main.ts does next. Texts carry no final newline.
 * help: print to stdout, exit 0; version: print, exit 0; error: print both to stderr, exit 2.
 */
export type ParseResult =
  | { kind: "run"; options: Options }
  | { kind: "help"; text: string }
  | { kind: "version"; text: string }
  | { kind: "error"; message: string; usage: string };

const DEFAULT_ENDPOINTS = "http://127.0.0.1:4001,http://127.0.0.1:2379";

/**
 * Parses flanneld's arguments (without the program name) and environment.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const r = parseOptions(["--iface=eth1"], { FLANNELD_ETCD_ENDPOINTS: "http://10.0.0.1:2379" });
 * assert.equal(r.kind, "run");
 * if (r.kind === "run") {
 *   assert.deepEqual(r.options.iface, ["eth1"]);
 *   assert.deepEqual(r.options.etcdEndpoints, ["http://10.0.0.1:2379"]);
 * }
 * ```
 */
export function parseOptions(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParseResult {
  const fs = new FlagSet("flanneld");
  const f = {
    etcdEndpoints: fs.string(
      "etcd-endpoints",
      DEFAULT_ENDPOINTS,
      "etcd URLs, comma-separated; tried in turn",
      checkEndpoints,
    ),
    etcdPrefix: fs.string(
      "etcd-prefix",
      "/coreos.com/network",
      "etcd key prefix of the network config and the subnet leases",
      checkPrefix,
    ),
    etcdKeyfile: fs.string(
      "etcd-keyfile",
      "",
      "TLS client private key for etcd (PEM)",
    ),
    etcdCertfile: fs.string(
      "etcd-certfile",
      "",
      "TLS client certificate for etcd (PEM)",
    ),
    etcdCafile: fs.string(
      "etcd-cafile",
      "",
      "CA bundle that signs the etcd server certificate (PEM)",
    ),
    etcdUsername: fs.string("etcd-username", "", "etcd user name (etcd authentication)"),
    etcdPassword: fs.string("etcd-password", "", "etcd password (etcd authentication)"),
    iface: fs.list(
      "iface",
      [],
      "external interface, as a name or one of its IPv4 addresses; repeat the flag to try " +
        "several in order (the first that exists wins)",
      checkIface,
    ),
    ifaceRegex: fs.list(
      "iface-regex",
      [],
      "regular expression matched against interface names and IPv4 addresses; " +
        "repeatable, tried in order, and only consulted when no -iface matched",
      checkRegex,
    ),
    publicIP: fs.string(
      "public-ip",
      "",
      "IPv4 address to advertise to the other hosts (default: the interface's address)",
      checkIPv4,
    ),
    publicIPv6: fs.string(
      "public-ipv6",
      "",
      "IPv6 address to advertise to the other hosts when EnableIPv6 is set " +
        "(default: the interface's global IPv6 address)",
      checkIPv6,
    ),
    subnetFile: fs.string(
      "subnet-file",
      "/run/flannel/subnet.env",
      "file that receives FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU and FLANNEL_IPMASQ",
      (s) => s === "" ? "must not be empty" : null,
    ),
    subnetLeaseRenewMargin: fs.int(
      "subnet-lease-renew-margin",
      60,
      "renew the subnet lease this many minutes before it expires (1-1439)",
      { min: 1, max: 1439 },
    ),
    ipMasq: fs.bool(
      "ip-masq",
      false,
      "masquerade traffic from the overlay network to destinations outside it (iptables)",
    ),
    ipMasqFullyRandomDisable: fs.bool(
      "ip-masq-fully-random-disable",
      false,
      "masquerade without --random-fully",
    ),
    iptablesForwardRules: fs.bool(
      "iptables-forward-rules",
      true,
      "accept forwarding from and to the overlay network in the FORWARD chain (iptables)",
    ),
    iptablesResync: fs.int(
      "iptables-resync",
      5,
      "re-check the iptables rules every this many seconds and restore them when changed",
      { min: 1, max: 86400 },
    ),
    ipBlackholeRoute: fs.bool(
      "ip-blackhole-route",
      false,
      "add a blackhole route for the own subnet (unused addresses are dropped, not routed out)",
    ),
    ifaceCanReach: fs.string(
      "iface-can-reach",
      "",
      "use the interface (and source address) the kernel routes this IPv4 or IPv6 address through",
      (s) => s === "" || IP.parse(s) !== null ? null : "not an IP address",
    ),
    healthzIP: fs.string(
      "healthz-ip",
      "0.0.0.0",
      "address of the /healthz, /readyz and /metrics server",
      (s) => parseIPv4(s) !== null ? null : "not an IPv4 address",
    ),
    healthzPort: fs.int(
      "healthz-port",
      0,
      "port of the /healthz, /readyz and /metrics server (0 = off)",
      { min: 0, max: 65535 },
    ),
    v: fs.int("v", 0, "log verbosity: higher values log more", { min: 0, max: 2 ** 31 - 1 }),
  };
  // Upstream's Kubernetes subnet manager: accepted by name so that a unit passing one gets a
  // clear refusal instead of "flag provided but not defined".
  const kube = [
    fs.bool("kube-subnet-mgr", false, "not supported: this flannel keeps leases in etcd only"),
    fs.string("kube-api-url", "", "not supported (Kubernetes subnet manager)"),
    fs.string("kubeconfig-file", "", "not supported (Kubernetes subnet manager)"),
    fs.string("kube-annotation-prefix", "", "not supported (Kubernetes subnet manager)"),
  ];
  const help = fs.bool("help", false, "show this help");
  const version = fs.bool("version", false, "show the version");
  // glog's flags: accepted for compatibility with upstream unit files, then ignored
  // (this daemon always logs to stderr).
  fs.bool("logtostderr", false, "accepted for glog compatibility (logs always go to stderr)");
  fs.bool("alsologtostderr", false, "accepted for glog compatibility (ignored)");
  fs.string("stderrthreshold", "", "accepted for glog compatibility (ignored)");
  fs.string("log_dir", "", "accepted for glog compatibility (ignored)");
  fs.string("vmodule", "", "accepted for glog compatibility (ignored)");
  fs.string("log_backtrace_at", "", "accepted for glog compatibility (ignored)");

  const usage = fs.usage();
  const r = fs.parse(argv);
  if (r.kind === "help") return { kind: "help", text: usage };
  if (r.kind === "error") return { kind: "error", message: r.message, usage };
  if (help.value) return { kind: "help", text: usage };
  if (version.value) return { kind: "version", text: VERSION };
  if (r.args.length > 0) {
    return {
      kind: "error",
      message: `unexpected argument ${
        JSON.stringify(r.args[0])
      }: flanneld takes no positional arguments`,
      usage,
    };
  }
  const envError = fs.applyEnv(env, "FLANNELD_");
  if (envError !== null) return { kind: "error", message: envError, usage };
  const kubeSet = kube.find((k) => k.value !== k.defaultValue);
  if (kubeSet) {
    return {
      kind: "error",
      message: `-${kubeSet.name} is out of scope: this flannel has no Kubernetes subnet manager ` +
        "(leases live in etcd; use -etcd-endpoints)",
      usage,
    };
  }

  return {
    kind: "run",
    options: {
      etcdEndpoints: splitEndpoints(f.etcdEndpoints.value),
      etcdPrefix: f.etcdPrefix.value,
      etcdKeyfile: f.etcdKeyfile.value,
      etcdCertfile: f.etcdCertfile.value,
      etcdCafile: f.etcdCafile.value,
      etcdUsername: f.etcdUsername.value,
      etcdPassword: f.etcdPassword.value,
      iface: f.iface.value,
      ifaceRegex: f.ifaceRegex.value.map(goFlagGroup),
      publicIP: f.publicIP.value,
      publicIPv6: f.publicIPv6.value,
      subnetFile: f.subnetFile.value,
      subnetLeaseRenewMargin: f.subnetLeaseRenewMargin.value,
      ipMasq: f.ipMasq.value,
      ipMasqFullyRandomDisable: f.ipMasqFullyRandomDisable.value,
      iptablesForwardRules: f.iptablesForwardRules.value,
      iptablesResync: f.iptablesResync.value,
      ipBlackholeRoute: f.ipBlackholeRoute.value,
      ifaceCanReach: f.ifaceCanReach.value,
      healthzIP: f.healthzIP.value,
      healthzPort: f.healthzPort.value,
      v: f.v.value,
    },
  };
}

function splitEndpoints(s: string): string[] {
  return s.split(",").map((e) => e.trim()).filter((e) => e !== "");
}

function checkEndpoints(s: string): string | null {
  const list = splitEndpoints(s);
  if (list.length === 0) return "must list at least one endpoint";
  for (const e of list) {
    let url: URL;
    try {
      url = new URL(e);
    } catch {
      // `http://fd00::1:2379`: an IPv6 host must be in brackets, as in every URL.
      const v6 = /^[a-z]+:\/\/[0-9a-f]*:[0-9a-f]*:/i.test(e)
        ? "; an IPv6 address goes in brackets: http://[fd00::1]:2379"
        : "";
      const expected = `http://host:port or https://host:port${v6}`;
      return `${JSON.stringify(e)} is not a URL (expected ${expected})`;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      return `${JSON.stringify(e)} is not an http:// or https:// URL`;
    }
  }
  return null;
}

function checkPrefix(s: string): string | null {
  return s.startsWith("/") ? null : "must start with /";
}

function checkIPv4(s: string): string | null {
  return s === "" || parseIPv4(s) !== null ? null : "not an IPv4 address";
}

function checkIPv6(s: string): string | null {
  return s === "" || IP.parse(s)?.family === 6 ? null : "not an IPv6 address";
}

/**
 * An IPv4 or IPv6 address, or a Linux interface name (1–15 bytes, no `/`, `:` or white space).
 */
function checkIface(s: string): string | null {
  if (/^[\d.]+$/.test(s)) return parseIPv4(s) !== null ? null : "not an IPv4 address";
  if (s.includes(":")) return IP.parse(s)?.family === 6 ? null : "not an IPv6 address";
  if (s.length === 0 || s.length > 15 || s === "." || s === ".." || /[/\s]/.test(s)) {
    return "not an interface name or IP address";
  }
  return null;
}

/**
 * Go's RE2 allows a leading `(?i)` (flags for the whole pattern); JavaScript rejects it but has
 * the scoped `(?i:…)`, so `(?i)^eth` becomes `(?i:^eth)`. Other syntax is passed through.
 */
function goFlagGroup(s: string): string {
  const m = /^\(\?([ims]+)\)/.exec(s);
  return m ? `(?${m[1]}:${s.slice(m[0].length)})` : s;
}

function checkRegex(s: string): string | null {
  try {
    new RegExp(goFlagGroup(s));
    return null;
  } catch (err) {
    return `not a valid regular expression: ${(err as Error).message}`;
  }
}
