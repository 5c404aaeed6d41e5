/**
 * scripts/mk-docker-opts.sh under dash (plain POSIX sh), case by case against upstream flannel's
 * documented outputs. `ip` is replaced by a stub on PATH so the route check is deterministic.
 */

import assert from "node:assert/strict";

const SCRIPT = new URL("../../scripts/mk-docker-opts.sh", import.meta.url).pathname;
const SAMPLE = `FLANNEL_NETWORK=10.1.0.0/16
FLANNEL_SUBNET=10.1.74.1/24
FLANNEL_MTU=1472
FLANNEL_IPMASQ=false
`;
const haveDash = (() => {
  try {
    Deno.statSync("/usr/bin/dash");
    return true;
  } catch {
    return false;
  }
})();

interface Run {
  code: number;
  stderr: string;
  out: string | null;
}

async function mk(
  args: string[],
  opts: { env?: string | null; routes?: string; vars?: Record<string, string> } = {},
): Promise<Run> {
  const dir = await Deno.makeTempDir({ prefix: "mkdo-" });
  try {
    const bin = `${dir}/bin`;
    await Deno.mkdir(bin);
    await Deno.writeTextFile(`${bin}/ip`, `#!/bin/sh\nprintf '%s' "$ROUTES"\n`, { mode: 0o755 });
    const env = opts.env === undefined ? SAMPLE : opts.env;
    if (env !== null) await Deno.writeTextFile(`${dir}/subnet.env`, env);
    const r = await new Deno.Command("dash", {
      args: [SCRIPT, "-f", `${dir}/subnet.env`, "-d", `${dir}/out.env`, ...args],
      clearEnv: true,
      env: { PATH: `${bin}:/usr/bin:/bin`, ROUTES: opts.routes ?? "", ...opts.vars },
      stdout: "piped",
      stderr: "piped",
    }).output();
    let out: string | null = null;
    try {
      out = await Deno.readTextFile(`${dir}/out.env`);
    } catch {
      out = null;
    }
    return { code: r.code, stderr: new TextDecoder().decode(r.stderr), out };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const ALL = `DOCKER_OPT_BIP="--bip=10.1.74.1/24"
DOCKER_OPT_IPMASQ="--ip-masq=true"
DOCKER_OPT_MTU="--mtu=1472"
`;
const COMBINED = `DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n`;

Deno.test({
  name: "mk-docker-opts.sh writes upstream's variables for each option set (dash)",
  ignore: !haveDash,
  fn: async (t) => {
    const rows: [string, string[], string][] = [
      ["neither -i nor -c: both", [], ALL + COMBINED],
      ["-i: individual only", ["-i"], ALL],
      ["-c: combined only", ["-c"], COMBINED],
      ["-i -c together: both", ["-i", "-c"], ALL + COMBINED],
      [
        "-k renames the combined variable",
        ["-k", "CUSTOM_KEY"],
        ALL + COMBINED.replace("DOCKER_OPTS", "CUSTOM_KEY"),
      ],
      [
        "-m leaves --ip-masq out",
        ["-m"],
        `DOCKER_OPT_BIP="--bip=10.1.74.1/24"\nDOCKER_OPT_MTU="--mtu=1472"\nDOCKER_OPTS=" --bip=10.1.74.1/24 --mtu=1472"\n`,
      ],
    ];
    for (const [name, args, want] of rows) {
      await t.step(name, async () => {
        const r = await mk(args);
        assert.equal(r.stderr, "");
        assert.equal(r.code, 0);
        assert.equal(r.out, want);
      });
    }
  },
});

Deno.test({
  name: "mk-docker-opts.sh: FLANNEL_IPMASQ=true asks Docker not to masquerade",
  ignore: !haveDash,
  fn: async () => {
    const r = await mk(["-c"], { env: SAMPLE.replace("IPMASQ=false", "IPMASQ=true") });
    assert.equal(r.code, 0);
    assert.equal(r.out, `DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=false --mtu=1472"\n`);
  },
});

Deno.test({
  name: 'mk-docker-opts.sh: a missing subnet.env gives DOCKER_OPTS="" and exit 0',
  ignore: !haveDash,
  fn: async () => {
    const r = await mk([], { env: null });
    assert.equal(r.code, 0);
    assert.equal(r.out, `DOCKER_OPTS=""\n`);
  },
});

Deno.test({
  name: "mk-docker-opts.sh keeps an existing $DOCKER_OPTS in front",
  ignore: !haveDash,
  fn: async () => {
    const r = await mk(["-c"], { vars: { DOCKER_OPTS: "--debug --log-level=warn" } });
    assert.equal(r.code, 0);
    assert.equal(
      r.out,
      `DOCKER_OPTS="--debug --log-level=warn  --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n`,
    );
    const none = await mk(["-c"], { env: null, vars: { DOCKER_OPTS: "--debug" } });
    assert.equal(none.out, `DOCKER_OPTS="--debug "\n`);
  },
});

Deno.test({
  name: "mk-docker-opts.sh refuses a bad FLANNEL_IPMASQ, a bad -k and unknown options",
  ignore: !haveDash,
  fn: async () => {
    const bad = await mk([], { env: SAMPLE.replace("IPMASQ=false", "IPMASQ=yes") });
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, "Invalid value of FLANNEL_IPMASQ: yes\n");
    const key = await mk(["-k", "A-B"]);
    assert.equal(key.code, 1);
    assert.match(key.stderr, /-k A-B is not a shell variable name/);
    const opt = await mk(["-x"]);
    assert.equal(opt.code, 1);
    assert.match(opt.stderr, /Turns flannel's subnet\.env into Docker daemon options/);
  },
});

Deno.test({
  name: "mk-docker-opts.sh exits 1 when a route via a gateway already claims the subnet",
  ignore: !haveDash,
  fn: async () => {
    const route = "10.1.74.0/24 via 192.168.1.1 dev eth0\n";
    const r = await mk([], { routes: `default via 192.168.1.254 dev eth0\n${route}` });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `Your routing table already contains the subnet: ${route}`);
    const ok = await mk([], { routes: "10.1.74.0/24 dev docker0 proto kernel scope link\n" });
    assert.equal(ok.code, 0);
  },
});
