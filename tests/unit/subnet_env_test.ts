import assert from "node:assert/strict";
import { lockSubnetFile, readSubnetFile, writeSubnetFile } from "../../lib/subnet/subnet_env.ts";
import { parseCIDR } from "../../lib/ip.ts";

function net(s: string) {
  const n = parseCIDR(s);
  if (typeof n === "string") throw new Error(n);
  return n;
}

Deno.test("writeSubnetFile() writes the exact text, mode 0644 despite the umask, parents 0755 under the umask", async () => {
  const dir = await Deno.makeTempDir();
  const prevUmask = Deno.umask(0o077);
  try {
    const path = `${dir}/run/flannel/subnet.env`;
    await writeSubnetFile(path, {
      network: net("10.1.0.0/16"),
      subnet: net("10.1.15.0/24"),
      mtu: 1450,
      ipMasq: false,
    });
    assert.equal(
      await Deno.readTextFile(path),
      "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.15.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    );
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o644);
    assert.equal((await Deno.stat(`${dir}/run/flannel`)).mode! & 0o777, 0o755 & ~0o077);
    // Overwrite: replaced whole, no temp files left behind.
    await writeSubnetFile(path, {
      network: net("10.1.0.0/16"),
      subnet: net("10.1.16.0/24"),
      mtu: 1472,
      ipMasq: true,
    });
    assert.match(
      await Deno.readTextFile(path),
      /FLANNEL_SUBNET=10\.1\.16\.1\/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n$/,
    );
    const names = [];
    for await (const e of Deno.readDir(`${dir}/run/flannel`)) names.push(e.name);
    assert.deepEqual(names, ["subnet.env"]);
  } finally {
    Deno.umask(prevUmask);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSubnetFile() returns what parses, the subnet as its network address", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/subnet.env`;
    const rows: [string, string, { network?: string; subnet?: string }][] = [
      [
        "normal file",
        "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.15.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
        { network: "10.1.0.0/16", subnet: "10.1.15.0/24" },
      ],
      ["junk around", "garbage\n\x00\x01\nFLANNEL_SUBNET=10.1.20.1/24\n=\n", {
        subnet: "10.1.20.0/24",
      }],
      ["bad subnet value", "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.999.1/24\n", {
        network: "10.1.0.0/16",
      }],
      ["empty", "", {}],
    ];
    for (const [name, text, want] of rows) {
      await t.step(name, async () => {
        await Deno.writeTextFile(path, text);
        const got = await readSubnetFile(path);
        assert.deepEqual(got, {
          ...(want.network ? { network: net(want.network) } : {}),
          ...(want.subnet ? { subnet: net(want.subnet) } : {}),
        });
      });
    }
    await t.step("missing file", async () => {
      assert.deepEqual(await readSubnetFile(`${dir}/absent.env`), {});
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeSubnetFile() under a regular file names the subnet file in its error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "");
    const path = `${dir}/file/subnet.env`;
    await assert.rejects(
      () =>
        writeSubnetFile(path, {
          network: net("10.1.0.0/16"),
          subnet: net("10.1.15.0/24"),
          mtu: 1450,
          ipMasq: false,
        }),
      (e: Error) => {
        assert.match(e.message, new RegExp(`^Cannot write subnet file ${path}: .*File exists`));
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lockSubnetFile(): a second holder is refused naming the lock file and our pid", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/run/flannel/subnet.env`;
    const first = lockSubnetFile(path);
    try {
      assert.equal(await Deno.readTextFile(`${path}.lock`), `${Deno.pid}\n`);
      // flock locks belong to the open file: a second open in this process conflicts too.
      assert.throws(() => lockSubnetFile(path), {
        message:
          `Another flanneld holds the lock file ${path}.lock (pid ${Deno.pid}): one daemon per host and subnet file`,
      });
    } finally {
      first.close();
    }
    lockSubnetFile(path).close(); // free again once closed
    await Deno.writeTextFile(`${dir}/file`, "");
    assert.throws(() => lockSubnetFile(`${dir}/file/subnet.env`), {
      message: new RegExp(`^Cannot open lock file ${dir}/file/subnet\\.env\\.lock: `),
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
