/**
 * flanneld's command line: flag definitions, the `FLANNELD_*` environment overlay and
 * validation, turned into {@link Options} or a help/version/error outcome for main.ts.
 *
 * Order as upstream: parse the command line, answer `--help`/`--version`, then fill every flag
 * the command line left unset from the environment. Unlike Go's `flag`, a positional argument
 * is an error: Go stops at the first one and silently ignores every flag after it.
 */

import { FlagSet } from "./flags.ts";
import { parseIPv4 } from "./ip.ts";

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
  subnetFile: string;
  /** Minutes before lease expiry at which to renew, 1–1439. */
  subnetLeaseRenewMargin: number;
  /** Install masquerade rules; also printed as FLANNEL_IPMASQ in subnet.env. */
  ipMasq: boolean;
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
      "a comma-delimited list of etcd endpoints",
      checkEndpoints,
    ),
    etcdPrefix: fs.string("etcd-prefix", "/coreos.com/network", "etcd prefix", checkPrefix),
    etcdKeyfile: fs.string(
      "etcd-keyfile",
      "",
      "SSL key file used to secure etcd communication",
    ),
    etcdCertfile: fs.string(
      "etcd-certfile",
      "",
      "SSL certification file used to secure etcd communication",
    ),
    etcdCafile: fs.string(
      "etcd-cafile",
      "",
      "SSL Certificate Authority file used to secure etcd communication",
    ),
    etcdUsername: fs.string("etcd-username", "", "username for BasicAuth to etcd"),
    etcdPassword: fs.string("etcd-password", "", "password for BasicAuth to etcd"),
    iface: fs.list(
      "iface",
      [],
      "interface to use (IP or name) for inter-host communication. Can be specified multiple " +
        "times to check each option in order. Returns the first match found.",
      checkIface,
    ),
    ifaceRegex: fs.list(
      "iface-regex",
      [],
      "regex expression to match the first interface to use (IP or name) for inter-host " +
        "communication. Can be specified multiple times to check each regex in order. " +
        "Returns the first match found. Regexes are checked after specific interfaces " +
        "specified by the iface option have already been checked.",
      checkRegex,
    ),
    publicIP: fs.string(
      "public-ip",
      "",
      "IP accessible by other nodes for inter-host communication",
      checkIPv4,
    ),
    subnetFile: fs.string(
      "subnet-file",
      "/run/flannel/subnet.env",
      "filename where env variables (subnet, MTU, ... ) will be written to",
      (s) => s === "" ? "must not be empty" : null,
    ),
    subnetLeaseRenewMargin: fs.int(
      "subnet-lease-renew-margin",
      60,
      "subnet lease renewal margin, in minutes, ranging from 1 to 1439",
      { min: 1, max: 1439 },
    ),
    ipMasq: fs.bool(
      "ip-masq",
      false,
      "setup IP masquerade rule for traffic destined outside of overlay network",
    ),
    v: fs.int("v", 0, "log level for V logs", { min: 0, max: 2 ** 31 - 1 }),
  };
  const help = fs.bool("help", false, "print this message");
  const version = fs.bool("version", false, "print version and exit");
  // glog's flags: accepted for compatibility with upstream unit files, then ignored
  // (this daemon always logs to stderr).
  fs.bool("logtostderr", false, "log to standard error instead of files");
  fs.bool("alsologtostderr", false, "log to standard error as well as files");
  fs.string("stderrthreshold", "", "logs at or above this threshold go to stderr");
  fs.string("log_dir", "", "If non-empty, write log files in this directory");
  fs.string("vmodule", "", "comma-separated list of pattern=N settings for file-filtered logging");
  fs.string("log_backtrace_at", "", "when logging hits line file:N, emit a stack trace");

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
      subnetFile: f.subnetFile.value,
      subnetLeaseRenewMargin: f.subnetLeaseRenewMargin.value,
      ipMasq: f.ipMasq.value,
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
      return `${JSON.stringify(e)} is not a URL (expected http://host:port or https://host:port)`;
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

/** An IPv4 address, or a Linux interface name (1–15 bytes, no `/`, `:` or white space). */
function checkIface(s: string): string | null {
  if (/^[\d.]+$/.test(s)) return parseIPv4(s) !== null ? null : "not an IPv4 address";
  if (s.length === 0 || s.length > 15 || s === "." || s === ".." || /[/:\s]/.test(s)) {
    return "not an interface name or IPv4 address";
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
