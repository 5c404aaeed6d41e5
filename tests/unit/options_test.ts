import assert from "node:assert/strict";
import { type Options, parseOptions, type ParseResult, VERSION } from "../../lib/options.ts";

const DEFAULTS: Options = {
  etcdEndpoints: ["http://127.0.0.1:4001", "http://127.0.0.1:2379"],
  etcdPrefix: "/coreos.com/network",
  etcdKeyfile: "",
  etcdCertfile: "",
  etcdCafile: "",
  etcdUsername: "",
  etcdPassword: "",
  iface: [],
  ifaceRegex: [],
  publicIP: "",
  publicIPv6: "",
  subnetFile: "/run/flannel/subnet.env",
  subnetLeaseRenewMargin: 60,
  ipMasq: false,
  ipMasqFullyRandomDisable: false,
  iptablesForwardRules: true,
  iptablesResync: 5,
  ipBlackholeRoute: false,
  ifaceCanReach: "",
  healthzIP: "0.0.0.0",
  healthzPort: 0,
  v: 0,
};

function run(argv: string[], env: Record<string, string> = {}): Options {
  const r = parseOptions(argv, env);
  assert.equal(r.kind, "run", JSON.stringify(r));
  return (r as { options: Options }).options;
}

function error(argv: string[], env: Record<string, string> = {}): string {
  const r: ParseResult = parseOptions(argv, env);
  if (r.kind !== "error") assert.fail(`expected an error, got ${JSON.stringify(r)}`);
  assert.ok(r.usage.startsWith("Usage: flanneld [OPTION]...\n"), r.usage);
  assert.doesNotMatch(r.message, /\n/);
  return r.message;
}

Deno.test("parseOptions() without flags gives upstream's defaults", () => {
  assert.deepEqual(run([]), DEFAULTS);
});

Deno.test("parseOptions() sets every flag from the command line", () => {
  const o = run([
    "--etcd-endpoints=https://etcd-a:2379, https://[fd00:100::1]:2379",
    "-etcd-prefix",
    "/my/net",
    "--etcd-keyfile=/k.pem",
    "--etcd-certfile=/c.pem",
    "--etcd-cafile=/ca.pem",
    "--etcd-username=flannel",
    "--etcd-password=s3cret",
    "--iface=eth1",
    "-iface",
    "192.168.1.10",
    "--iface-regex=^en",
    "--iface-regex=^10\\.0\\.",
    "--public-ip=203.0.113.7",
    "--public-ipv6=2001:db8::7",
    "--subnet-file=/tmp/subnet.env",
    "--subnet-lease-renew-margin=1439",
    "--ip-masq",
    "--ip-masq-fully-random-disable",
    "--iptables-forward-rules=false",
    "--iptables-resync=30",
    "--ip-blackhole-route",
    "--iface-can-reach=192.168.1.1",
    "--healthz-ip=127.0.0.1",
    "--healthz-port=8471",
    "-v=3",
  ]);
  assert.deepEqual(o, {
    etcdEndpoints: ["https://etcd-a:2379", "https://[fd00:100::1]:2379"],
    etcdPrefix: "/my/net",
    etcdKeyfile: "/k.pem",
    etcdCertfile: "/c.pem",
    etcdCafile: "/ca.pem",
    etcdUsername: "flannel",
    etcdPassword: "s3cret",
    iface: ["eth1", "192.168.1.10"],
    ifaceRegex: ["^en", "^10\\.0\\."],
    publicIP: "203.0.113.7",
    publicIPv6: "2001:db8::7",
    subnetFile: "/tmp/subnet.env",
    subnetLeaseRenewMargin: 1439,
    ipMasq: true,
    ipMasqFullyRandomDisable: true,
    iptablesForwardRules: false,
    iptablesResync: 30,
    ipBlackholeRoute: true,
    ifaceCanReach: "192.168.1.1",
    healthzIP: "127.0.0.1",
    healthzPort: 8471,
    v: 3,
  });
});

Deno.test("parseOptions() takes every flag from FLANNELD_* when the command line does not", () => {
  const env = {
    FLANNELD_ETCD_ENDPOINTS: "http://10.0.0.1:2379",
    FLANNELD_ETCD_PREFIX: "/env/net",
    FLANNELD_ETCD_KEYFILE: "/k",
    FLANNELD_ETCD_CERTFILE: "/c",
    FLANNELD_ETCD_CAFILE: "/ca",
    FLANNELD_ETCD_USERNAME: "u",
    FLANNELD_ETCD_PASSWORD: "p",
    FLANNELD_IFACE: "eth0,10.0.0.2",
    FLANNELD_IFACE_REGEX: "^eth,^ens",
    FLANNELD_PUBLIC_IP: "198.51.100.1",
    FLANNELD_PUBLIC_IPV6: "fd00::1",
    FLANNELD_SUBNET_FILE: "/run/x.env",
    FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "5",
    FLANNELD_IP_MASQ: "true",
    FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE: "true",
    FLANNELD_IPTABLES_FORWARD_RULES: "false",
    FLANNELD_IPTABLES_RESYNC: "7",
    FLANNELD_IP_BLACKHOLE_ROUTE: "1",
    FLANNELD_IFACE_CAN_REACH: "10.9.9.9",
    FLANNELD_HEALTHZ_IP: "10.0.0.2",
    FLANNELD_HEALTHZ_PORT: "9000",
    FLANNELD_V: "2",
    FLANNELD_LOGTOSTDERR: "true",
    FLANNELD_LOG_DIR: "/var/log",
  };
  assert.deepEqual(run([], env), {
    etcdEndpoints: ["http://10.0.0.1:2379"],
    etcdPrefix: "/env/net",
    etcdKeyfile: "/k",
    etcdCertfile: "/c",
    etcdCafile: "/ca",
    etcdUsername: "u",
    etcdPassword: "p",
    iface: ["eth0", "10.0.0.2"],
    ifaceRegex: ["^eth", "^ens"],
    publicIP: "198.51.100.1",
    publicIPv6: "fd00::1",
    subnetFile: "/run/x.env",
    subnetLeaseRenewMargin: 5,
    ipMasq: true,
    ipMasqFullyRandomDisable: true,
    iptablesForwardRules: false,
    iptablesResync: 7,
    ipBlackholeRoute: true,
    ifaceCanReach: "10.9.9.9",
    healthzIP: "10.0.0.2",
    healthzPort: 9000,
    v: 2,
  });
  // The command line wins, flag by flag; empty variables are ignored.
  const o = run(["--iface=wlan0", "--ip-masq=false", "-v", "0"], {
    ...env,
    FLANNELD_ETCD_PREFIX: "",
  });
  assert.deepEqual(o.iface, ["wlan0"]);
  assert.equal(o.ipMasq, false);
  assert.equal(o.v, 0);
  assert.equal(o.etcdPrefix, "/coreos.com/network");
  assert.equal(o.publicIP, "198.51.100.1");
});

Deno.test("parseOptions() turns a leading Go regex flag group into a JavaScript one", () => {
  const o = run(["--iface-regex=(?i)^ETH", "--iface-regex=(?is)a.b", "--iface-regex=^(?:x|y)$"]);
  assert.deepEqual(o.ifaceRegex, ["(?i:^ETH)", "(?is:a.b)", "^(?:x|y)$"]);
  assert.equal(new RegExp(o.ifaceRegex[0]).test("eth0"), true);
  assert.equal(
    error(["--iface-regex=(?U)a+"]),
    'invalid value "(?U)a+" for flag -iface-regex: not a valid regular expression: ' +
      "Invalid regular expression: /(?U)a+/: Invalid group",
  );
});

Deno.test("parseOptions() accepts and ignores glog's flags", () => {
  assert.deepEqual(
    run([
      "-logtostderr",
      "-alsologtostderr=false",
      "-stderrthreshold=INFO",
      "-log_dir=/tmp",
      "-vmodule=subnet=2",
      "-log_backtrace_at=main.go:10",
    ]),
    DEFAULTS,
  );
});

Deno.test("parseOptions() rejects a bad flag with one line naming it", async (t) => {
  const rows: [string[], Record<string, string>, string][] = [
    [["-bogus"], {}, "flag provided but not defined: -bogus"],
    [
      ["--subnet-lease-renew-margin=2000"],
      {},
      'invalid value "2000" for flag -subnet-lease-renew-margin: must be between 1 and 1439',
    ],
    [
      ["--subnet-lease-renew-margin=0"],
      {},
      'invalid value "0" for flag -subnet-lease-renew-margin: must be between 1 and 1439',
    ],
    [["-v=x"], {}, 'invalid value "x" for flag -v: parse error'],
    [["-v=-1"], {}, 'invalid value "-1" for flag -v: must be between 0 and 2147483647'],
    [["--ip-masq=yes"], {}, 'invalid boolean value "yes" for -ip-masq: parse error'],
    [["--public-ip=10.0.0"], {}, 'invalid value "10.0.0" for flag -public-ip: not an IPv4 address'],
    [["--public-ip=host"], {}, 'invalid value "host" for flag -public-ip: not an IPv4 address'],
    [["--iface=10.1.300.4"], {}, 'invalid value "10.1.300.4" for flag -iface: not an IPv4 address'],
    [["--iface=fd00::1::2"], {}, 'invalid value "fd00::1::2" for flag -iface: not an IPv6 address'],
    [
      ["--public-ipv6=10.0.0.1"],
      {},
      'invalid value "10.0.0.1" for flag -public-ipv6: not an IPv6 address',
    ],
    [
      ["--iface=a-name-that-is-too-long"],
      {},
      'invalid value "a-name-that-is-too-long" for flag -iface: not an interface name or IP address',
    ],
    [
      ["--iface=eth0/1"],
      {},
      'invalid value "eth0/1" for flag -iface: not an interface name or IP address',
    ],
    [
      ["--iface-regex=(eth"],
      {},
      'invalid value "(eth" for flag -iface-regex: not a valid regular expression: ' +
      "Invalid regular expression: /(eth/: Unterminated group",
    ],
    [
      ["--etcd-endpoints=127.0.0.1:2379"],
      {},
      'invalid value "127.0.0.1:2379" for flag -etcd-endpoints: ' +
      '"127.0.0.1:2379" is not a URL (expected http://host:port or https://host:port)',
    ],
    [
      ["--etcd-endpoints=http://fd00:100::1:2379"],
      {},
      'invalid value "http://fd00:100::1:2379" for flag -etcd-endpoints: ' +
      '"http://fd00:100::1:2379" is not a URL (expected http://host:port or https://host:port; ' +
      "an IPv6 address goes in brackets: http://[fd00::1]:2379)",
    ],
    [
      ["--etcd-endpoints=http://a:1,unix:///run/etcd.sock"],
      {},
      'invalid value "http://a:1,unix:///run/etcd.sock" for flag -etcd-endpoints: ' +
      '"unix:///run/etcd.sock" is not an http:// or https:// URL',
    ],
    [
      ["--etcd-endpoints=,"],
      {},
      'invalid value "," for flag -etcd-endpoints: must list at least one endpoint',
    ],
    [
      ["--etcd-prefix=coreos.com/network"],
      {},
      'invalid value "coreos.com/network" for flag -etcd-prefix: must start with /',
    ],
    [["--subnet-file="], {}, 'invalid value "" for flag -subnet-file: must not be empty'],
    [["--etcd-prefix"], {}, "flag needs an argument: -etcd-prefix"],
    [
      [],
      { FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "1440" },
      'invalid value "1440" for flag -subnet-lease-renew-margin from environment variable ' +
      "FLANNELD_SUBNET_LEASE_RENEW_MARGIN: must be between 1 and 1439",
    ],
    [
      [],
      { FLANNELD_PUBLIC_IP: "nope" },
      'invalid value "nope" for flag -public-ip from environment variable FLANNELD_PUBLIC_IP: ' +
      "not an IPv4 address",
    ],
    [
      [],
      { FLANNELD_IP_MASQ: "on" },
      'invalid value "on" for flag -ip-masq from environment variable FLANNELD_IP_MASQ: ' +
      "parse error",
    ],
    [
      ["eth0"],
      {},
      'unexpected argument "eth0": flanneld takes no positional arguments',
    ],
    [
      ["--iface=eth0", "extra", "--ip-masq"],
      {},
      'unexpected argument "extra": flanneld takes no positional arguments',
    ],
  ];
  for (const [argv, env, message] of rows) {
    await t.step(`${argv.join(" ")} ${JSON.stringify(env)}`, () => {
      assert.equal(error(argv, env), message);
    });
  }
});

Deno.test("parseOptions() --help prints usage with the defaults", async (t) => {
  for (const arg of ["-h", "--h", "-help", "--help", "--help=true"]) {
    await t.step(arg, () => {
      // Help comes before the environment, so a bad variable does not hide it.
      const r = parseOptions(["--iface=eth0", arg], { FLANNELD_V: "bad" });
      if (r.kind !== "help") assert.fail(JSON.stringify(r));
      assert.ok(r.text.startsWith("Usage: flanneld [OPTION]...\n"));
      for (
        const want of [
          "  -etcd-endpoints string\n    \tetcd URLs, comma-separated; tried in turn (default " +
          '"http://127.0.0.1:4001,http://127.0.0.1:2379")',
          '  -etcd-prefix string\n    \tetcd key prefix of the network config and the subnet leases (default "/coreos.com/network")',
          '(default "/run/flannel/subnet.env")',
          "  -subnet-lease-renew-margin int\n    \trenew the subnet lease this many minutes " +
          "before it expires (1-1439) (default 60)",
          "  -iface value\n",
          "  -iface-regex value\n",
          "  -ip-masq\n",
          "  -public-ip string\n",
          "  -v int\n",
          "  -version\n",
          "  -logtostderr\n",
          "  -log_dir string\n",
        ]
      ) assert.ok(r.text.includes(want), `help lacks ${JSON.stringify(want)}`);
    });
  }
  await t.step("--help=false runs", () => {
    assert.equal(parseOptions(["--help=false"], {}).kind, "run");
  });
});

Deno.test("parseOptions() --version prints VERSION", () => {
  assert.equal(VERSION, "0.1.0");
  assert.deepEqual(parseOptions(["--version"], {}), { kind: "version", text: "0.1.0" });
  assert.deepEqual(parseOptions(["-version", "-v=1"], {}), { kind: "version", text: "0.1.0" });
  // As upstream, help and version are read before the environment overlay.
  assert.equal(parseOptions([], { FLANNELD_VERSION: "true", FLANNELD_HELP: "true" }).kind, "run");
});

Deno.test("parseOptions() refuses bad host-integration values with one line each", async (t) => {
  const rows: [string[], string][] = [
    [
      ["--healthz-port=65536"],
      'invalid value "65536" for flag -healthz-port: must be between 0 and 65535',
    ],
    [
      ["--healthz-ip=localhost"],
      'invalid value "localhost" for flag -healthz-ip: not an IPv4 address',
    ],
    [
      ["--iptables-resync=0"],
      'invalid value "0" for flag -iptables-resync: must be between 1 and 86400',
    ],
    [
      ["--iface-can-reach=10.1"],
      'invalid value "10.1" for flag -iface-can-reach: not an IP address',
    ],
  ];
  for (const [argv, want] of rows) {
    await t.step(argv.join(" "), () => {
      const r = parseOptions(argv, {});
      if (r.kind !== "error") assert.fail(JSON.stringify(r));
      assert.equal(r.message, want);
    });
  }
});

Deno.test("parseOptions() says the --kube-* flags are out of scope", async (t) => {
  const rows: [string[], Record<string, string>, string][] = [
    [["--kube-subnet-mgr"], {}, "kube-subnet-mgr"],
    [["--kube-api-url=https://10.0.0.1:6443"], {}, "kube-api-url"],
    [[], { FLANNELD_KUBECONFIG_FILE: "/etc/kube.conf" }, "kubeconfig-file"],
    [["--kube-annotation-prefix=x"], {}, "kube-annotation-prefix"],
  ];
  for (const [argv, env, name] of rows) {
    await t.step(name, () => {
      const r = parseOptions(argv, env);
      if (r.kind !== "error") assert.fail(JSON.stringify(r));
      assert.equal(
        r.message,
        `-${name} is out of scope: this flannel has no Kubernetes subnet manager ` +
          "(leases live in etcd; use -etcd-endpoints)",
      );
    });
  }
  assert.equal(parseOptions(["--kube-subnet-mgr=false"], {}).kind, "run");
});
