/**
 * The layer check (scripts/lint_layers.ts) run as `deno lint` runs it in `deno task ok`: on a small
 * temporary tree with its own deno.json that loads the plugin. A clean tree passes; each
 * deliberately wrong file fails with its path, line and rule.
 */

import assert from "node:assert/strict";

const PLUGIN = new URL("../../scripts/lint_layers.ts", import.meta.url).href;

/** The clean tree: every layer importing downward, plus things that only look like imports. */
const CLEAN: Record<string, string> = {
  "main.ts": `import { run } from "./lib/daemon.ts";\nrun();\n`,
  "lib/daemon.ts": `import { up } from "./backend/vxlan/mod.ts";\nexport const run = () => up();\n`,
  "lib/backend/vxlan/mod.ts": [
    `import { lease } from "../../subnet/manager.ts";`,
    `import { reg } from "../../registry/etcd/kv.ts";`,
    `export const up = () => lease() + reg();`,
    "",
  ].join("\n"),
  "lib/subnet/manager.ts": [
    `import { ip } from "../ip.ts";`,
    `// import { up } from "../backend/vxlan/mod.ts";  (a comment is not an import)`,
    `const text = 'import { run } from "../daemon.ts"';`,
    `export const lease = () => ip() + text;`,
    "",
  ].join("\n"),
  "lib/registry/etcd/kv.ts":
    `import { Etcd3 } from "etcd3";\nexport const reg = () => String(Etcd3);\n`,
  "lib/ip.ts": `import { sym } from "../ffi/libc.ts";\nexport const ip = () => String(sym);\n`,
  "ffi/libc.ts": `export const sym = Deno.dlopen;\n`,
  "tests/x_test.ts": `import { run } from "../lib/daemon.ts";\nimport "etcd3";\nrun();\n`,
};

/** One wrong file each, with the rule and (part of) the message `deno lint` must print. */
const WRONG: { name: string; file: string; text: string; rule: string; says: RegExp }[] = [
  {
    name: "subnet manager imports a backend (upward)",
    file: "lib/subnet/lease.ts",
    text: `import { up } from "../backend/vxlan/mod.ts";\nexport const x = up;\n`,
    rule: "layers/downward",
    says:
      /lib\/subnet\/lease\.ts \(layer lib\/subnet\/\*\*, lib\/registry\/\*\*\) imports lib\/backend\/vxlan\/mod\.ts/,
  },
  {
    name: "basics import the daemon through a dynamic import",
    file: "lib/log.ts",
    text: `export const x = () => import("./daemon.ts");\n`,
    rule: "layers/downward",
    says: /lib\/log\.ts \(layer lib\/\*\.ts basics\) imports lib\/daemon\.ts/,
  },
  {
    name: "ffi/ re-exports from lib/",
    file: "ffi/tun.ts",
    text: `export { ip } from "../lib/ip.ts";\n`,
    rule: "layers/ffi-imports-lib",
    says: /ffi\/tun\.ts imports lib\/ip\.ts: ffi\/ never imports lib\//,
  },
  {
    name: "a backend imports etcd3",
    file: "lib/backend/vxlan/peers.ts",
    text: `import { Etcd3 } from "npm:etcd3@1.1.2";\nexport const x = Etcd3;\n`,
    rule: "layers/etcd-client",
    says: /lib\/backend\/vxlan\/peers\.ts imports etcd3: only lib\/registry\//,
  },
  {
    name: "a script pins grpc-js a second time",
    file: "scripts/bench_x.ts",
    text: `import { credentials } from "npm:@grpc/grpc-js@1.14.7";\nconsole.log(credentials);\n`,
    rule: "layers/etcd-client",
    says: /scripts\/bench_x\.ts pins npm:@grpc\/grpc-js@1\.14\.7: use the import map/,
  },
  {
    name: "lib/ builds a pointer",
    file: "lib/extiface.ts",
    text: `export const p = (b: Uint8Array) => Deno.UnsafePointer.of(b);\n`,
    rule: "layers/ffi-only",
    says: /lib\/extiface\.ts uses Deno\.UnsafePointer: only ffi\//,
  },
  {
    name: "lib/ takes dlopen by destructuring",
    file: "lib/flags.ts",
    text: `const { dlopen } = Deno;\nexport const d = dlopen;\n`,
    rule: "layers/ffi-only",
    says: /lib\/flags\.ts uses Deno\.dlopen/,
  },
];

async function lintTree(files: Record<string, string>): Promise<{ code: number; out: string }> {
  const dir = await Deno.makeTempDir({ prefix: "lint_layers_" });
  try {
    const config = { lint: { plugins: [PLUGIN], rules: { tags: [] } } };
    await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify(config));
    for (const [path, text] of Object.entries(files)) {
      const sub = path.lastIndexOf("/");
      if (sub > 0) await Deno.mkdir(`${dir}/${path.slice(0, sub)}`, { recursive: true });
      await Deno.writeTextFile(`${dir}/${path}`, text);
    }
    const res = await new Deno.Command(Deno.execPath(), {
      args: ["lint"],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: res.code, out: dec.decode(res.stdout) + dec.decode(res.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("layer check passes a tree whose imports point downward", async () => {
  const { code, out } = await lintTree(CLEAN);
  assert.equal(code, 0, out);
  assert.match(out, /Checked 8 files/);
});

Deno.test("layer check fails on a wrong import, naming the file, line and rule", async (t) => {
  for (const w of WRONG) {
    await t.step(w.name, async () => {
      const { code, out } = await lintTree({ ...CLEAN, [w.file]: w.text });
      assert.equal(code, 1, out);
      assert.match(out, new RegExp(`error\\[${w.rule.replace("/", "\\/")}\\]: `));
      assert.match(out, w.says);
      assert.match(out, new RegExp(`--> .*/${w.file.replaceAll(".", "\\.")}:\\d+:\\d+`));
      assert.match(out, /Found 1 problem/);
    });
  }
});
